package callstate_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// A resume after a plain cut of the signalling connection succeeds every
// time, however quickly the cuts follow one another.
func TestResumeAfterManyCuts(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	proxy := startProxy(t, srv)
	a := joinVia(t, proxy, srv, room, "alice", nil)
	sub := a.Subscribe(nil)
	sid := a.LocalParticipant().SID
	start := time.Now()
	for i := range 200 {
		proxy.Cut()
		calltest.Await(t, sub, stateIs(callstate.StateReconnecting))
		calltest.Await(t, sub, stateIs(callstate.StateConnected))
		require.Equal(t, sid, a.LocalParticipant().SID, "cut %d: the same session", i)
	}
	t.Logf("200 cuts resumed in %v", time.Since(start))
	require.NoError(t, a.Err())
}

// Cut-and-recover cycles leave no goroutine behind.
func TestCutRecoverCyclesLeaveNoGoroutine(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	checkLeaks(t)
	proxy := startProxy(t, srv)
	a := joinVia(t, proxy, srv, room, "alice", nil)
	sub := a.Subscribe(nil)
	for range 20 {
		proxy.SetDown(true)
		calltest.Await(t, sub, stateIs(callstate.StateReconnecting))
		proxy.SetDown(false)
		e := calltest.Await(t, sub, stateIs(callstate.StateConnected))
		require.Equal(t, callstate.RecoveryResumed, e.Recovery)
	}
	require.EqualValues(t, 20, a.Stats().Resumed)
}
