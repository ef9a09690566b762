package callstate_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

func stateIs(s callstate.ConnectionState) func(callstate.ConnectionStateChanged) bool {
	return func(e callstate.ConnectionStateChanged) bool { return e.State == s }
}

// joinVia joins through a fault-injecting proxy in front of srv.
func joinVia(t *testing.T, p *calltest.Proxy, srv *calltest.Server, room, identity string, opts *callstate.JoinOptions) *callstate.Room {
	t.Helper()
	r, err := callstate.Join(ctxT(t), p.URL(), srv.Token(room, identity), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func startProxy(t *testing.T, srv *calltest.Server) *calltest.Proxy {
	p, err := srv.StartProxy()
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// Network cuts of the signalling connection are survived: the Room resumes
// its session, others see no leave, and state and data keep flowing,
// exactly once.
func TestResumeAfterNetworkCuts(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	checkLeaks(t)
	proxy := startProxy(t, srv)
	a := joinVia(t, proxy, srv, room, "alice", nil)
	b := srv.Join(t, room, "bob", nil)
	subA, subB := a.Subscribe(nil), b.Subscribe(nil)
	presence := b.Subscribe(&callstate.SubscribeOptions{Filter: func(e callstate.Event) bool {
		switch e.(type) {
		case callstate.ParticipantLeft, callstate.ParticipantJoined:
			return true
		}
		return false
	}})
	ctx := ctxT(t)
	require.NoError(t, a.PublishData(ctx, []byte("before"), nil))
	e := calltest.Await(t, subB, fromIs("alice"))
	require.Equal(t, "before", string(e.Data.Payload))
	sid := a.LocalParticipant().SID

	check := func(round int) {
		t.Helper()
		calltest.Await(t, subA, stateIs(callstate.StateReconnecting))
		calltest.Await(t, subA, stateIs(callstate.StateConnected))
		assert.Equal(t, callstate.StateConnected, a.ConnectionState())
		assert.Equal(t, sid, a.LocalParticipant().SID, "the same session")
		// Requests go over the new connection and are answered.
		want := `{"round":` + string(rune('0'+round)) + `}`
		require.NoError(t, a.SetUserData(ctx, map[string]int{"round": round}))
		calltest.Await(t, subB, updatedBy("alice", func(e callstate.ParticipantUpdated) bool { return e.Participant.Metadata == want }))
	}
	// A cut.
	proxy.Cut()
	check(0)
	// A cut, and the server unreachable for a while; an update made
	// meanwhile is delivered once the session is back.
	proxy.SetDown(true)
	calltest.Await(t, subA, stateIs(callstate.StateReconnecting))
	updated := make(chan error, 1)
	go func() { updated <- a.SetName(ctx, "Alice (offline edit)") }()
	proxy.SetDown(false)
	calltest.Await(t, subA, stateIs(callstate.StateConnected))
	require.NoError(t, <-updated)
	calltest.Await(t, subB, updatedBy("alice", func(e callstate.ParticipantUpdated) bool {
		return e.Participant.Name == "Alice (offline edit)"
	}))
	proxy.Cut()
	check(1)

	// Data flows, exactly once: bob's next message from alice is "after".
	require.NoError(t, a.PublishData(ctx, []byte("after"), nil))
	e = calltest.Await(t, subB, fromIs("alice"))
	assert.Equal(t, "after", string(e.Data.Payload))
	require.NoError(t, b.PublishData(ctx, []byte("back"), nil))
	e = calltest.Await(t, subA, fromIs("bob"))
	assert.Equal(t, "back", string(e.Data.Payload))
	// Session data writes (HTTP, through the proxy too) work.
	require.NoError(t, a.SetSessionData(ctx, map[string]string{"after": "cuts"}, callstate.ShallowMerge))

	// The server kept alice's session, and bob never saw her leave: the
	// first presence event he gets is her leaving at Close.
	p, err := service(t, srv).GetParticipant(ctx, room, "alice")
	require.NoError(t, err)
	assert.Equal(t, sid, p.SID)
	require.NoError(t, a.Close())
	ev := calltest.Await[callstate.Event](t, presence, nil)
	l, ok := ev.(callstate.ParticipantLeft)
	require.True(t, ok, "first presence event: %T", ev)
	assert.Equal(t, sid, l.Participant.SID)
}

// When the server stays unreachable past the resume window, the Room ends
// with an error.
func TestRoomEndsWhenTheServerStaysUnreachable(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	checkLeaks(t)
	proxy := startProxy(t, srv)
	a := joinVia(t, proxy, srv, room, "alice", &callstate.JoinOptions{Resume: 500 * time.Millisecond})
	sub := a.Subscribe(nil)
	proxy.SetDown(true)
	calltest.Await(t, sub, stateIs(callstate.StateReconnecting))
	d := calltest.Await(t, sub, func(callstate.Disconnected) bool { return true })
	assert.Equal(t, callstate.ReasonSignalClose, d.Reason)
	assert.Error(t, d.Err)
	<-a.Done()
	assert.Error(t, a.Err())
	assert.ErrorIs(t, a.PublishData(ctxT(t), []byte("x"), nil), callstate.ErrClosed)
}

// Without resume, a cut ends the Room at once.
func TestResumeDisabled(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	proxy := startProxy(t, srv)
	a := joinVia(t, proxy, srv, room, "alice", &callstate.JoinOptions{Resume: -1})
	sub := a.Subscribe(nil)
	proxy.Cut()
	d := calltest.Await(t, sub, func(callstate.Disconnected) bool { return true })
	assert.Error(t, d.Err)
}

// When the server itself goes away, the Room ends.
func TestRoomEndsWhenTheServerIsGone(t *testing.T) {
	srv := calltest.NewServer(t, &calltest.Options{IgnoreEnv: true})
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", &callstate.JoinOptions{Resume: time.Second})
	sub := a.Subscribe(nil)
	require.NoError(t, srv.Close())
	d := calltest.Await(t, sub, func(callstate.Disconnected) bool { return true })
	assert.Error(t, d.Err)
	<-a.Done()
	assert.Error(t, a.Err())
}
