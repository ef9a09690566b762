package callstate_test

import (
	"time"

	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

func stateIs(s callstate.ConnectionState) func(callstate.ConnectionStateChanged) bool {
	return func(e callstate.ConnectionStateChanged) bool { return e.State == s }
}

// A cut of the signalling connection is survived: the Room resumes its
// session, others see no leave, and state and data keep flowing.
func TestResumeAfterSignallingCut(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	checkLeaks(t)
	a := srv.Join(t, room, "alice")
	b := srv.Join(t, room, "bob")
	subA, subB := a.Subscribe(), b.Subscribe()
	presence := b.Subscribe(callstate.WithFilter(func(e callstate.Event) bool {
		switch e.(type) {
		case callstate.ParticipantLeft, callstate.ParticipantJoined:
			return true
		}
		return false
	}))
	ctx := ctxT(t)
	require.NoError(t, a.PublishData(ctx, []byte("before")))
	e := calltest.Await(t, subB, fromIs("alice"))
	require.Equal(t, "before", string(e.Data.Payload))
	sid := a.LocalParticipant().SID

	for cut := range 2 {
		a.CutSignal()
		calltest.Await(t, subA, stateIs(callstate.StateReconnecting))
		calltest.Await(t, subA, stateIs(callstate.StateConnected))
		assert.Equal(t, callstate.StateConnected, a.ConnectionState())
		assert.Equal(t, sid, a.LocalParticipant().SID, "the same session")

		// Requests go over the new connection and are answered.
		require.NoError(t, a.SetUserData(ctx, map[string]int{"cut": cut}))
		calltest.Await(t, subB, updatedBy("alice", func(e callstate.ParticipantUpdated) bool {
			ud, _ := e.Participant.UserData()
			return string(ud) == `{"cut":`+string(rune('0'+cut))+`}`
		}))
	}
	// Data flows, exactly once: bob's next message from alice is "after".
	require.NoError(t, a.PublishData(ctx, []byte("after")))
	e = calltest.Await(t, subB, fromIs("alice"))
	assert.Equal(t, "after", string(e.Data.Payload))
	require.NoError(t, b.PublishData(ctx, []byte("back")))
	e = calltest.Await(t, subA, fromIs("bob"))
	assert.Equal(t, "back", string(e.Data.Payload))

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

// When the server is gone for good, the Room ends once its resume window
// has passed, with an error.
func TestRoomEndsWhenTheServerIsGone(t *testing.T) {
	srv := calltest.NewServer(t, &calltest.Options{IgnoreEnv: true})
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", callstate.WithResume(time.Second))
	sub := a.Subscribe()
	require.NoError(t, srv.Close())
	d := calltest.Await(t, sub, func(callstate.Disconnected) bool { return true })
	assert.Error(t, d.Err)
	<-a.Done()
	assert.Error(t, a.Err())
	assert.ErrorIs(t, a.PublishData(ctxT(t), []byte("x")), callstate.ErrClosed)
}
