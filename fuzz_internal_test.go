package callstate

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/chunk"
	"github.com/callstate/callstate/internal/lkpb"
	"github.com/callstate/callstate/internal/rtc"
)

// newOfflineRoom returns a Room as Join builds it, with a real (unconnected)
// WebRTC transport and no signalling connection, for feeding it input as if
// it came from the network.
func newOfflineRoom(tb testing.TB) *Room {
	o, err := (*JoinOptions)(nil).resolve("ws://127.0.0.1:1")
	require.NoError(tb, err)
	r := newRoom(o, "ws://127.0.0.1:1", "")
	r.state = StateConnected
	r.local = Participant{Identity: "me", SID: "PA_me", Permissions: Permissions{CanPublishData: true, CanUpdateMetadata: true}}
	r.info = RoomInfo{Name: "room", SID: "RM_room"}
	cfg := r.chunkConfig()
	r.asm = chunk.NewAssembler(cfg)
	r.enc = chunk.NewEncoder(cfg)
	r.lossyEnc = chunk.NewEncoder(cfg)
	r.session = newSessionData("me")
	tr, err := rtc.New(rtc.Config{
		SendSignal: func(*lkpb.SignalRequest) error { return nil },
		OnMessage:  r.onData,
	})
	require.NoError(tb, err)
	r.tr = tr
	tb.Cleanup(func() {
		r.shutdown(ReasonClientInitiated, nil, false)
		<-r.done
	})
	return r
}

func goldenSeed(f *testing.F, name string) {
	b, err := os.ReadFile(filepath.Join("testdata", "golden", name))
	require.NoError(f, err)
	f.Add(b)
}

// FuzzSignalResponse feeds arbitrary frames to the Room's signalling
// handler: whatever the server sends, the Room must not panic.
func FuzzSignalResponse(f *testing.F) {
	goldenSeed(f, "join_response.bin")
	goldenSeed(f, "participant_update.bin")
	for _, m := range []*lkpb.SignalResponse{
		{Message: &lkpb.SignalResponse_Offer{Offer: &lkpb.SessionDescription{Type: "offer", Sdp: "v=0\r\n", Id: 1}}},
		{Message: &lkpb.SignalResponse_Trickle{Trickle: &lkpb.TrickleRequest{CandidateInit: `{"candidate":"x"}`}}},
		{Message: &lkpb.SignalResponse_RoomUpdate{RoomUpdate: &lkpb.RoomUpdate{Room: &lkpb.Room{Metadata: `{"a":1,"__callstate":{"v":1}}`}}}},
		{Message: &lkpb.SignalResponse_RequestResponse{RequestResponse: &lkpb.RequestResponse{RequestId: 1}}},
		{Message: &lkpb.SignalResponse_Leave{Leave: &lkpb.LeaveRequest{Reason: lkpb.DisconnectReason_ROOM_DELETED}}},
		{Message: &lkpb.SignalResponse_Update{Update: &lkpb.ParticipantUpdate{Participants: []*lkpb.ParticipantInfo{
			{Identity: "x", Sid: "PA_x", Version: 1}, {Identity: "x", Sid: "PA_y", Version: 1}, {Identity: "me", Sid: "PA_me", Version: 9},
			{Identity: "x", Sid: "PA_y", State: lkpb.ParticipantInfo_DISCONNECTED}}}}},
	} {
		b, err := proto.Marshal(m)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var msg lkpb.SignalResponse
		if proto.Unmarshal(b, &msg) != nil {
			return
		}
		r := newOfflineRoom(t)
		sub := r.Subscribe(nil)
		r.handleSignal(&msg)
		r.handleSignal(&msg) // twice: duplicates are harmless too
		_ = r.Snapshot()
		sub.Close()
	})
}

// FuzzDataPacket feeds arbitrary data-channel messages to the Room.
func FuzzDataPacket(f *testing.F) {
	goldenSeed(f, "data_packet.bin")
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	enc := chunk.NewEncoder(chunk.Config{})
	_, err := enc.Encode(chunk.Message{Topic: AppMessageTopic, Payload: []byte(`{"x":1}`), Reliable: true}, nil, func(p []byte) error {
		f.Add(append([]byte(nil), p...))
		return nil
	})
	require.NoError(f, err)
	_, err = enc.Encode(chunk.Message{Topic: "t", Payload: make([]byte, 3000)}, nil, func(p []byte) error {
		f.Add(append([]byte(nil), p...))
		return nil
	})
	require.NoError(f, err)
	r := newOfflineRoom(f)
	sub := r.Subscribe(&SubscribeOptions{MaxEvents: 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		r.onData(len(b)%2 == 0, b)
		for len(sub.Events()) > 0 {
			<-sub.Events()
		}
		assert.LessOrEqual(t, r.asm.Stats().Buffered, 8*DefaultMaxMessageSize)
	})
}

func TestMalformedInputIsCountedNotFatal(t *testing.T) {
	r := newOfflineRoom(t)
	sub := r.Subscribe(nil)
	r.onData(true, []byte{0xff, 0xff, 0xff, 0xff})
	r.onData(false, []byte("not a protobuf at all \x00\x01"))
	// An app message whose payload is not JSON.
	pkt, err := proto.Marshal(&lkpb.DataPacket{ParticipantIdentity: "x", Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{
		Payload: []byte("{not json"), Topic: proto.String(AppMessageTopic)}}})
	require.NoError(t, err)
	r.onData(true, pkt)
	assert.EqualValues(t, 3, r.Stats().Malformed)
	// A valid packet still arrives afterwards.
	pkt, err = proto.Marshal(&lkpb.DataPacket{ParticipantIdentity: "x", Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: []byte("ok")}}})
	require.NoError(t, err)
	r.onData(true, pkt)
	select {
	case e := <-sub.Events():
		d, ok := e.(DataReceived)
		require.True(t, ok, "%T", e)
		assert.Equal(t, "ok", string(d.Data.Payload))
		assert.Equal(t, "x", d.Data.From)
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
}

func TestRepeatedReliablePacketsAreDroppedOnce(t *testing.T) {
	r := newOfflineRoom(t)
	sub := r.Subscribe(nil)
	packet := func(seq uint32, sid, body string, kind lkpb.DataPacket_Kind) []byte {
		b, err := proto.Marshal(&lkpb.DataPacket{Kind: kind, ParticipantIdentity: "x", ParticipantSid: sid, Sequence: seq,
			Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: []byte(body)}}})
		require.NoError(t, err)
		return b
	}
	r.onData(true, packet(1, "PA_x", "one", lkpb.DataPacket_RELIABLE))
	r.onData(true, packet(2, "PA_x", "two", lkpb.DataPacket_RELIABLE))
	r.onData(true, packet(2, "PA_x", "two again", lkpb.DataPacket_RELIABLE))
	r.onData(true, packet(1, "PA_x", "one again", lkpb.DataPacket_RELIABLE))
	r.onData(true, packet(1, "PA_y", "another sender", lkpb.DataPacket_RELIABLE))
	r.onData(true, packet(0, "", "server API", lkpb.DataPacket_RELIABLE))
	r.onData(false, packet(0, "PA_x", "lossy", lkpb.DataPacket_LOSSY))
	var got []string
	for len(sub.Events()) > 0 {
		got = append(got, string((<-sub.Events()).(DataReceived).Data.Payload))
	}
	assert.Equal(t, []string{"one", "two", "another sender", "server API", "lossy"}, got)
	assert.EqualValues(t, 2, r.Stats().Repeated)
}
