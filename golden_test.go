package callstate_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
	"github.com/callstate/callstate/internal/lkpb"
)

// The golden vectors in testdata/golden are frames captured from
// livekit-server v1.13.5 by TestCaptureGolden. Decoding them checks our
// .proto subset's field numbers and types against the real server.

func readGolden(t *testing.T, name string) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", "golden", name))
	require.NoError(t, err)
	return b
}

func TestGoldenJoinResponse(t *testing.T) {
	var msg lkpb.SignalResponse
	require.NoError(t, proto.Unmarshal(readGolden(t, "join_response.bin"), &msg))
	j := msg.GetJoin()
	require.NotNil(t, j)
	assert.Equal(t, "golden-room", j.GetRoom().GetName())
	assert.Equal(t, `{"topic":"golden"}`, j.GetRoom().GetMetadata())
	assert.NotEmpty(t, j.GetRoom().GetSid())
	p := j.GetParticipant()
	assert.Equal(t, "bob", p.GetIdentity())
	assert.Equal(t, "Bob", p.GetName())
	assert.Equal(t, `{"role":"guest"}`, p.GetMetadata())
	assert.Equal(t, map[string]string{"team": "blue"}, p.GetAttributes())
	assert.True(t, p.GetPermission().GetCanPublishData())
	assert.True(t, p.GetPermission().GetCanUpdateMetadata())
	require.Len(t, j.GetOtherParticipants(), 1)
	o := j.GetOtherParticipants()[0]
	assert.Equal(t, "alice", o.GetIdentity())
	assert.Equal(t, "Alice", o.GetName())
	assert.Equal(t, `{"role":"host"}`, o.GetMetadata())
	assert.NotZero(t, o.GetJoinedAt())
	assert.NotZero(t, o.GetJoinedAtMs())
	assert.True(t, j.GetSubscriberPrimary())
	assert.EqualValues(t, 5, j.GetPingInterval())
	assert.EqualValues(t, 15, j.GetPingTimeout())
	assert.Equal(t, "1.13.5", j.GetServerInfo().GetVersion())
	assert.EqualValues(t, 17, j.GetServerInfo().GetProtocol())
}

func TestGoldenParticipantUpdate(t *testing.T) {
	var msg lkpb.SignalResponse
	require.NoError(t, proto.Unmarshal(readGolden(t, "participant_update.bin"), &msg))
	u := msg.GetUpdate()
	require.NotNil(t, u)
	var bob *lkpb.ParticipantInfo
	for _, p := range u.GetParticipants() {
		if p.GetIdentity() == "bob" {
			bob = p
		}
	}
	require.NotNil(t, bob, "the update names bob")
	assert.Equal(t, "Bob", bob.GetName())
	assert.Equal(t, `{"role":"guest"}`, bob.GetMetadata())
	assert.Equal(t, map[string]string{"team": "blue"}, bob.GetAttributes())
	assert.NotZero(t, bob.GetVersion())
	assert.NotEmpty(t, bob.GetSid())
}

func TestGoldenDataPacket(t *testing.T) {
	var pkt lkpb.DataPacket
	require.NoError(t, proto.Unmarshal(readGolden(t, "data_packet.bin"), &pkt))
	assert.Equal(t, "bob", pkt.GetParticipantIdentity(), "the server stamps the sender")
	assert.NotEmpty(t, pkt.GetParticipantSid())
	assert.Equal(t, lkpb.DataPacket_RELIABLE, pkt.GetKind())
	assert.NotZero(t, pkt.GetSequence())
	u := pkt.GetUser()
	require.NotNil(t, u)
	assert.Equal(t, "hello golden", string(u.GetPayload()))
	assert.Equal(t, "greetings", u.GetTopic())
	assert.Equal(t, "bob", u.GetParticipantIdentity(), "the server fills the legacy fields")
}

// TestCaptureGolden rewrites the golden vectors from a real server. It runs
// only when CALLSTATE_CAPTURE_GOLDEN=1.
func TestCaptureGolden(t *testing.T) {
	if os.Getenv("CALLSTATE_CAPTURE_GOLDEN") != "1" {
		t.Skip("set CALLSTATE_CAPTURE_GOLDEN=1 to capture the golden vectors")
	}
	srv := calltest.NewServer(t, &calltest.Options{IgnoreEnv: true})
	const room = "golden-room"
	ctx := ctxT(t)
	svc := service(t, srv)
	_, err := svc.CreateRoom(ctx, callstate.CreateRoomOptions{Name: room, Metadata: `{"topic":"golden"}`})
	require.NoError(t, err)

	var mu sync.Mutex
	frames := map[string][]byte{}
	keep := func(name string, b []byte) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := frames[name]; !ok {
			frames[name] = append([]byte(nil), b...)
		}
	}
	aliceHook := callstate.WithRawHook(nil, func(source string, b []byte) {
		if source == "data" {
			keep("data_packet.bin", b)
			return
		}
		var msg lkpb.SignalResponse
		if proto.Unmarshal(b, &msg) == nil {
			for _, p := range msg.GetUpdate().GetParticipants() {
				if p.GetIdentity() == "bob" && p.GetMetadata() != "" {
					keep("participant_update.bin", b)
				}
			}
		}
	})
	bobHook := callstate.WithRawHook(nil, func(source string, b []byte) {
		var msg lkpb.SignalResponse
		if source == "signal" && proto.Unmarshal(b, &msg) == nil && msg.GetJoin() != nil {
			keep("join_response.bin", b)
		}
	})
	a := srv.JoinWith(t, callstate.Claims{Identity: "alice", Name: "Alice", Metadata: `{"role":"host"}`,
		Grants: calltest.DefaultGrants(room)}, aliceHook)
	sub := a.Subscribe(nil)
	b := srv.JoinWith(t, callstate.Claims{Identity: "bob", Name: "Bob", Metadata: `{"role":"guest"}`,
		Attributes: map[string]string{"team": "blue"}, Grants: calltest.DefaultGrants(room)}, bobHook)
	calltest.Await(t, sub, func(e callstate.ParticipantJoined) bool { return e.Participant.Identity == "bob" })
	require.NoError(t, b.PublishData(ctx, []byte("hello golden"), &callstate.PublishOptions{Topic: "greetings"}))
	calltest.Await(t, sub, fromIs("bob"))

	dir := filepath.Join("testdata", "golden")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	mu.Lock()
	defer mu.Unlock()
	for _, name := range []string{"join_response.bin", "participant_update.bin", "data_packet.bin"} {
		require.Contains(t, frames, name)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), frames[name], 0o644))
	}
}
