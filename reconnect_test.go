package callstate_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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

// 1,000 numbered reliable messages streamed while the room's server dies
// (the cluster node hosting the room is killed, as a server restart loses
// the room): both Rooms rejoin as new sessions, and every message arrives
// at the receiver exactly once and in order, or its send returned an
// error. Afterwards both agree on the participants and the session data.
//
// It used to lose a message or two sent just before the kill under load:
// the room's node had acknowledged them (SCTP) but not forwarded them, and
// the Room forgot them 2 s later, long before it found out about the kill.
// Retained packets now wait for proof that the server lived on after them
// (see retain.go).
func TestReliableStreamAcrossRoomNodeLoss(t *testing.T) {
	c := calltest.NewCluster(t, 2)
	room := c.RoomName(t)
	c.PlaceRoom(t, room, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	a := c.Node(1).Join(t, room, "alice", nil)
	b := c.Node(1).Join(t, room, "bob", nil)
	_, err := b.WaitForParticipant(ctx, "alice")
	require.NoError(t, err)
	require.NoError(t, a.SetSessionData(ctx, map[string]int{"kept": 1}, callstate.ShallowMerge))
	fromA := seqSub(b, "alice")
	subA := a.Subscribe(nil)
	const n = 1000
	failed := map[int]bool{}
	sent := make(chan struct{})
	killed := time.Now()
	go func() {
		defer close(sent)
		for i := range n {
			if i == 100 {
				killed = time.Now()
				c.Kill(t, 0)
			}
			if err := a.PublishData(ctx, fmt.Appendf(nil, "%d", i), &callstate.PublishOptions{Topic: "seq"}); err != nil {
				failed[i] = true
			}
			time.Sleep(5 * time.Millisecond) // a steady stream, not a burst
		}
	}()
	e, err := calltest.AwaitEvent(ctx, subA, 60*time.Second, func(e callstate.ConnectionStateChanged) bool {
		return e.State == callstate.StateConnected
	})
	require.NoError(t, err)
	assert.Equal(t, callstate.RecoveryRejoined, e.Recovery)
	t.Logf("alice rejoined %v after the kill", e.Time.Sub(killed).Round(time.Millisecond))
	<-sent
	got := 0
	for i := range n {
		if failed[i] {
			continue
		}
		d, err := calltest.AwaitEvent(ctx, fromA, 30*time.Second, func(callstate.DataReceived) bool { return true })
		require.NoError(t, err, "message %d", i)
		require.Equal(t, fmt.Sprint(i), string(d.Data.Payload), "message %d: exactly once and in order", i)
		got++
	}
	t.Logf("%d of %d delivered, %d sends returned an error", got, n, len(failed))
	// Nothing more (no repeat) arrives after the last one.
	require.NoError(t, a.PublishData(ctx, []byte("end"), &callstate.PublishOptions{Topic: "seq"}))
	d, err := calltest.AwaitEvent(ctx, fromA, 30*time.Second, func(callstate.DataReceived) bool { return true })
	require.NoError(t, err)
	assert.Equal(t, "end", string(d.Data.Payload))
	// Both are back and agree.
	_, err = a.WaitForParticipant(ctx, "bob")
	require.NoError(t, err)
	p, err := b.WaitForParticipant(ctx, "alice")
	require.NoError(t, err)
	assert.Equal(t, a.LocalParticipant().SID, p.SID)
	assert.JSONEq(t, `{"kept":1}`, canon(t, a.SessionData()))
	assert.JSONEq(t, `{"kept":1}`, canon(t, b.SessionData()))
}
