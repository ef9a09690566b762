package callstate

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
)

// A hostile (or huge) server cannot make the Room keep more participants,
// or more participant bytes, than its bounds; the excess is counted.
func TestParticipantStateIsBounded(t *testing.T) {
	r := newOfflineRoom(t)
	const announced = DefaultMaxParticipants + 5000
	var infos []*lkpb.ParticipantInfo
	for i := range announced {
		infos = append(infos, &lkpb.ParticipantInfo{Identity: fmt.Sprintf("fake-%d", i), Sid: fmt.Sprintf("PA_%d", i), Version: 1})
	}
	for i := 0; i < len(infos); i += 1000 {
		r.handleSignal(&lkpb.SignalResponse{Message: &lkpb.SignalResponse_Update{Update: &lkpb.ParticipantUpdate{Participants: infos[i:min(i+1000, len(infos))]}}})
	}
	assert.Len(t, r.RemoteParticipants(), DefaultMaxParticipants)
	assert.EqualValues(t, announced-DefaultMaxParticipants, r.Stats().ParticipantsRefused)

	// Bytes: metadata that would take the state over the byte bound is
	// left out, and an update that would is refused (the old state stays).
	o, err := (&JoinOptions{MaxParticipantBytes: 1 << 20}).resolve("ws://127.0.0.1:1")
	require.NoError(t, err)
	r2 := newOfflineRoom(t)
	r2.opts = o
	big := strings.Repeat("m", 300<<10)
	for i := range 5 {
		r2.handleSignal(&lkpb.SignalResponse{Message: &lkpb.SignalResponse_Update{Update: &lkpb.ParticipantUpdate{Participants: []*lkpb.ParticipantInfo{
			{Identity: fmt.Sprint("p", i), Sid: fmt.Sprint("PA_p", i), Version: 1, Metadata: big}}}}})
	}
	assert.Len(t, r2.RemoteParticipants(), 3)
	assert.EqualValues(t, 2, r2.Stats().ParticipantsRefused)
	r2.handleSignal(&lkpb.SignalResponse{Message: &lkpb.SignalResponse_Update{Update: &lkpb.ParticipantUpdate{Participants: []*lkpb.ParticipantInfo{
		{Identity: "p0", Sid: "PA_p0", Version: 2, Metadata: big + big}}}}})
	p0, ok := r2.Participant("p0")
	require.True(t, ok)
	assert.Equal(t, big, p0.Metadata)
	assert.EqualValues(t, 3, r2.Stats().ParticipantsRefused)
	// Leaving frees the budget.
	r2.handleSignal(&lkpb.SignalResponse{Message: &lkpb.SignalResponse_Update{Update: &lkpb.ParticipantUpdate{Participants: []*lkpb.ParticipantInfo{
		{Identity: "p1", Sid: "PA_p1", State: lkpb.ParticipantInfo_DISCONNECTED}}}}})
	r2.handleSignal(&lkpb.SignalResponse{Message: &lkpb.SignalResponse_Update{Update: &lkpb.ParticipantUpdate{Participants: []*lkpb.ParticipantInfo{
		{Identity: "p9", Sid: "PA_p9", Version: 1, Metadata: big}}}}})
	_, ok = r2.Participant("p9")
	assert.True(t, ok)
}

// A subscription holds at most MaxBytes of payload: a slow subscriber of
// large messages drops (and counts) what does not fit.
func TestSubscriptionIsBoundedInBytes(t *testing.T) {
	r := newOfflineRoom(t)
	sub := r.Subscribe(&SubscribeOptions{MaxBytes: 1 << 20})
	payload := make([]byte, 300<<10)
	for i := range 10 {
		pkt, err := proto.Marshal(&lkpb.DataPacket{ParticipantIdentity: "x", ParticipantSid: "PA_x", Sequence: uint32(i + 1),
			Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: payload}}})
		require.NoError(t, err)
		r.onData(true, pkt)
	}
	n, bytes := sub.Pending()
	assert.Equal(t, 3, n)
	assert.LessOrEqual(t, bytes, 1<<20)
	assert.EqualValues(t, 7, sub.Dropped())
	// Receiving makes room again, and the drop is reported in sequence.
	for range 3 {
		<-sub.Events()
	}
	pkt, err := proto.Marshal(&lkpb.DataPacket{ParticipantIdentity: "x", ParticipantSid: "PA_x", Sequence: 100,
		Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: []byte("small")}}})
	require.NoError(t, err)
	r.onData(true, pkt)
	require.IsType(t, EventsDropped{}, <-sub.Events())
	require.IsType(t, DataReceived{}, <-sub.Events())
	_, bytes = sub.Pending()
	assert.Zero(t, bytes)
}

// What the Room hands out is the receiver's own: changing it changes
// neither the Room nor another subscription. Run with -race.
func TestHandedOutValuesArePrivate(t *testing.T) {
	r := newOfflineRoom(t)
	s1, s2 := r.Subscribe(nil), r.Subscribe(nil)
	r.handleSignal(&lkpb.SignalResponse{Message: &lkpb.SignalResponse_Update{Update: &lkpb.ParticipantUpdate{Participants: []*lkpb.ParticipantInfo{
		{Identity: "a", Sid: "PA_a", Version: 1, Attributes: map[string]string{"k": "v"}}}}}})
	r.handleSignal(&lkpb.SignalResponse{Message: &lkpb.SignalResponse_RoomUpdate{RoomUpdate: &lkpb.RoomUpdate{Room: &lkpb.Room{Metadata: `{"x":{"y":1}}`}}}})
	pkt, err := proto.Marshal(&lkpb.DataPacket{ParticipantIdentity: "a", ParticipantSid: "PA_a",
		Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: []byte("payload")}}})
	require.NoError(t, err)
	r.onData(true, pkt)

	var wg sync.WaitGroup
	scribble := func(sub *Subscription) {
		defer wg.Done()
		for range 3 {
			switch e := (<-sub.Events()).(type) {
			case ParticipantJoined:
				e.Participant.Attributes["k"] = "changed"
			case SessionDataUpdated:
				e.Data["x"][0] = '!'
				e.Data["new"] = json.RawMessage(`1`)
			case DataReceived:
				e.Data.Payload[0] = '!'
			}
		}
	}
	wg.Add(2)
	go scribble(s1)
	go scribble(s2)
	snap := r.Snapshot()
	p, _ := r.Participant("a")
	p.Attributes["k"] = "mine"
	snap.Remote[0].Attributes["k"] = "snap"
	snap.SessionData["x"][0] = '?'
	wg.Wait()

	p, _ = r.Participant("a")
	assert.Equal(t, "v", p.Attributes["k"])
	assert.Equal(t, `{"y":1}`, string(r.SessionData()["x"]))
	assert.NotContains(t, r.SessionData(), "new")
}

// A hidden participant's messages carry its sid; only the server API's
// carry neither identity nor sid.
func TestServerAndHiddenSendersAreToldApart(t *testing.T) {
	r := newOfflineRoom(t)
	sub := r.Subscribe(nil)
	for _, p := range []*lkpb.DataPacket{
		{ParticipantSid: "PA_hidden", Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: []byte(`{"a":1}`), Topic: proto.String(AppMessageTopic)}}},
		{Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: []byte(`{"a":2}`), Topic: proto.String(AppMessageTopic)}}},
		{ParticipantSid: "PA_hidden", Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: []byte("x")}}},
		{Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: []byte("y")}}},
	} {
		b, err := proto.Marshal(p)
		require.NoError(t, err)
		r.onData(true, b)
	}
	hidden := (<-sub.Events()).(AppMessage)
	server := (<-sub.Events()).(AppMessage)
	assert.Equal(t, "", hidden.From)
	assert.Equal(t, "PA_hidden", hidden.FromSID)
	assert.False(t, hidden.FromServer)
	assert.True(t, server.FromServer)
	hd := (<-sub.Events()).(DataReceived)
	sd := (<-sub.Events()).(DataReceived)
	assert.False(t, hd.Data.FromServer)
	assert.True(t, sd.Data.FromServer)
}

func TestDisconnectReasonNames(t *testing.T) {
	assert.Equal(t, "ROOM_DELETED", ReasonRoomDeleted.String())
	assert.Equal(t, "reason(999)", DisconnectReason(999).String())
}

// A filter may call the Room, even one that makes it emit, without a
// deadlock, and events keep their order.
func TestFilterMayCallTheRoom(t *testing.T) {
	r := newOfflineRoom(t)
	var seen []string
	sub := r.Subscribe(&SubscribeOptions{Filter: func(e Event) bool {
		_ = r.Snapshot()
		if j, ok := e.(ParticipantJoined); ok && j.Participant.Identity == "a" {
			// Emits while the filter runs: delivered after this event.
			r.handleSignal(&lkpb.SignalResponse{Message: &lkpb.SignalResponse_Update{Update: &lkpb.ParticipantUpdate{Participants: []*lkpb.ParticipantInfo{
				{Identity: "b", Sid: "PA_b", Version: 1}}}}})
		}
		return true
	}})
	r.handleSignal(&lkpb.SignalResponse{Message: &lkpb.SignalResponse_Update{Update: &lkpb.ParticipantUpdate{Participants: []*lkpb.ParticipantInfo{
		{Identity: "a", Sid: "PA_a", Version: 1}}}}})
	deadline := time.After(5 * time.Second)
	for len(seen) < 2 {
		select {
		case e := <-sub.Events():
			seen = append(seen, e.(ParticipantJoined).Participant.Identity)
		case <-deadline:
			t.Fatalf("only %v delivered", seen)
		}
	}
	assert.Equal(t, []string{"a", "b"}, seen)
}
