package callstate_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// The tests of this file inject faults on real sockets (calltest.FaultyNet
// for the data path, calltest.Proxy for signalling, Server.Restart for the
// server) while a participant streams numbered reliable messages.

// faultyNet returns a FaultyNet for one participant.
func faultyNet(t *testing.T) *calltest.FaultyNet {
	t.Helper()
	f, err := calltest.NewFaultyNet()
	require.NoError(t, err)
	return f
}

// stream sends n numbered reliable messages (topic "seq") from r, a steady
// stream, calling fault before message at; it returns which sends failed.
// It runs on a goroutine of its own; the result comes on the channel.
func stream(ctx context.Context, r *callstate.Room, n, at int, fault func()) <-chan map[int]error {
	done := make(chan map[int]error, 1)
	go func() {
		failed := map[int]error{}
		for i := range n {
			if i == at {
				fault()
			}
			if err := r.PublishData(ctx, fmt.Appendf(nil, "%d", i), &callstate.PublishOptions{Topic: "seq"}); err != nil {
				failed[i] = err
			}
			time.Sleep(2 * time.Millisecond) // a steady stream, not a burst
		}
		done <- failed
	}()
	return done
}

// checkStream checks that sub delivers every message of 0..n-1 whose send
// did not fail, exactly once and in order, and nothing after them (a last
// message "end" is sent and must be the next one). It returns when message
// at (the first one sent after the fault) arrived.
func checkStream(t *testing.T, ctx context.Context, from *callstate.Room, sub *callstate.Subscription, n, at int, failed map[int]error) time.Time {
	t.Helper()
	got := 0
	var atTime time.Time
	for i := range n {
		if failed[i] != nil {
			continue
		}
		d, err := calltest.AwaitEvent[callstate.DataReceived](ctx, sub, 30*time.Second, nil)
		require.NoError(t, err, "message %d", i)
		require.Equal(t, fmt.Sprint(i), string(d.Data.Payload), "message %d: exactly once and in order", i)
		if i >= at && atTime.IsZero() {
			atTime = d.Time
		}
		got++
	}
	for i, err := range failed {
		// A failed send says why: no nil for a lost message, no silent
		// success for a failed one.
		assert.Error(t, err, "message %d", i)
	}
	t.Logf("%d of %d delivered, %d sends returned an error", got, n, len(failed))
	require.NoError(t, from.PublishData(ctx, []byte("end"), &callstate.PublishOptions{Topic: "seq"}))
	d, err := calltest.AwaitEvent[callstate.DataReceived](ctx, sub, 30*time.Second, nil)
	require.NoError(t, err)
	assert.Equal(t, "end", string(d.Data.Payload), "no message repeated")
	return atTime
}

// (a) A 2 s block of the sender's data path plus a cut of its signalling
// connection: every message arrives once and in order.
func TestStreamAcrossShortBlockAndCut(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	proxy := startProxy(t, srv)
	fn := faultyNet(t)
	a := joinVia(t, proxy, srv, room, "alice", fn.Options(nil))
	b := srv.Join(t, room, "bob", nil)
	seeEachOther(t, ctx, a, b)
	fromA := seqSub(b, "alice")
	subA := a.Subscribe(nil)
	const n, block = 1000, 2 * time.Second
	var unblocked time.Time
	done := stream(ctx, a, n, 100, func() {
		fn.Block(block)
		unblocked = time.Now().Add(block)
		proxy.Cut()
	})
	calltest.Await(t, subA, stateIs(callstate.StateReconnecting))
	e := calltest.Await(t, subA, stateIs(callstate.StateConnected))
	failed := <-done
	assert.Positive(t, fn.Stats().Blocked, "the block discarded datagrams")
	first := checkStream(t, ctx, a, fromA, n, 100, failed)
	t.Logf("signalling %v; data flowing again %v after the 2 s block ended",
		e.Recovery, first.Sub(unblocked).Round(time.Millisecond))
}

// (b) A 30 s block of the sender's data path, longer than the server
// waits for a silent participant: the Room gets its connection back once
// the path is, and every message arrives once and in order.
func TestStreamAcrossLongBlock(t *testing.T) {
	if testing.Short() {
		t.Skip("a 30 s outage")
	}
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	fn := faultyNet(t)
	a := srv.Join(t, room, "alice", fn.Options(&callstate.JoinOptions{Resume: 90 * time.Second, ReconnectAttempts: 100}))
	b := srv.Join(t, room, "bob", nil)
	seeEachOther(t, ctx, a, b)
	fromA := seqSub(b, "alice")
	subA := a.Subscribe(nil)
	const n, block = 1000, 30 * time.Second
	var unblocked time.Time
	done := stream(ctx, a, n, 100, func() {
		fn.Block(block)
		unblocked = time.Now().Add(block)
	})
	calltest.Await(t, subA, stateIs(callstate.StateReconnecting))
	e, err := calltest.AwaitEvent(ctx, subA, 80*time.Second, stateIs(callstate.StateConnected))
	require.NoError(t, err, "the Room recovers after the block")
	failed := <-done
	first := checkStream(t, ctx, a, fromA, n, 100, failed)
	t.Logf("recovered (%v) %v after the 30 s block ended; data flowing again after %v",
		e.Recovery, e.Time.Sub(unblocked).Round(time.Millisecond), first.Sub(unblocked).Round(time.Millisecond))
	_, err = b.WaitForParticipant(ctx, "alice")
	require.NoError(t, err)
}

// (c) The server is killed and started again on the same ports and keys
// while alice streams: both Rooms rejoin the room, which the server
// recreates, every message arrives once and in order, and afterwards both
// agree on the participants, their metadata and the session data, which
// the participants restored.
func TestStreamAcrossServerRestart(t *testing.T) {
	srv := calltest.NewServer(t, &calltest.Options{IgnoreEnv: true})
	room := srv.RoomName(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	a := srv.Join(t, room, "alice", nil)
	b := srv.Join(t, room, "bob", nil)
	seeEachOther(t, ctx, a, b)
	require.NoError(t, a.SetUserData(ctx, "alice's"))
	require.NoError(t, b.SetAttributes(ctx, map[string]string{"hand": "up"}))
	require.NoError(t, a.SetSessionData(ctx, map[string]int{"kept": 1}, callstate.ShallowMerge))
	subB := b.Subscribe(nil)
	awaitSession(t, b, subB, `{"kept":1}`)
	fromA := seqSub(b, "alice")
	subA := a.Subscribe(nil)
	const n = 1000
	type restart struct {
		began, at time.Time // the kill, and the new process answering
		err       error
	}
	restarts := make(chan restart, 1)
	done := stream(ctx, a, n, 100, func() {
		go func() {
			began := time.Now()
			err := srv.Restart(ctx)
			restarts <- restart{began, time.Now(), err}
		}()
	})
	e, err := calltest.AwaitEvent(ctx, subA, 60*time.Second, stateIs(callstate.StateConnected))
	require.NoError(t, err)
	rs := <-restarts
	require.NoError(t, rs.err)
	restarted := rs.began
	t.Logf("the server took %v to restart (kill, start, answering)", rs.at.Sub(rs.began).Round(time.Millisecond))
	assert.Equal(t, callstate.RecoveryRejoined, e.Recovery)
	t.Logf("alice rejoined %v after the kill", e.Time.Sub(restarted).Round(time.Millisecond))
	eb, err := calltest.AwaitEvent(ctx, subB, 60*time.Second, stateIs(callstate.StateConnected))
	require.NoError(t, err)
	t.Logf("bob rejoined %v after the kill", eb.Time.Sub(restarted).Round(time.Millisecond))
	// Session data written after the restart joins what was restored.
	require.NoError(t, b.SetSessionData(ctx, map[string]int{"after": 2}, callstate.ShallowMerge))
	failed := <-done
	first := checkStream(t, ctx, a, fromA, n, 100, failed)
	t.Logf("data flowing again %v after the kill", first.Sub(restarted).Round(time.Millisecond))

	// Both are back and agree.
	pa, err := b.WaitForParticipant(ctx, "alice")
	require.NoError(t, err)
	assert.Equal(t, a.LocalParticipant().SID, pa.SID)
	pb, err := a.WaitForParticipant(ctx, "bob")
	require.NoError(t, err)
	assert.Equal(t, b.LocalParticipant().SID, pb.SID)
	awaitParticipant(t, ctx, b, "alice", func(p callstate.Participant) bool { return p.Metadata == `"alice's"` })
	awaitParticipant(t, ctx, a, "bob", func(p callstate.Participant) bool { return p.Attributes["hand"] == "up" })
	awaitSession(t, a, subA, `{"after":2,"kept":1}`)
	awaitSession(t, b, subB, `{"after":2,"kept":1}`)
	info, err := service(t, srv).ListRooms(ctx, room)
	require.NoError(t, err)
	require.Len(t, info, 1)
	assert.Equal(t, a.Metadata(), info[0].Metadata, "the server has the session data")
}

// awaitParticipant waits until r sees identity in a state ok accepts.
func awaitParticipant(t *testing.T, ctx context.Context, r *callstate.Room, identity string, ok func(callstate.Participant) bool) {
	t.Helper()
	sub := r.Subscribe(nil)
	defer sub.Close()
	if p, there := r.Participant(identity); there && ok(p) {
		return
	}
	_, err := calltest.AwaitEvent(ctx, sub, calltest.AwaitTimeout, func(e callstate.ParticipantUpdated) bool {
		return e.Participant.Identity == identity && ok(e.Participant)
	})
	require.NoError(t, err, "%s as %s sees it", identity, r.LocalParticipant().Identity)
}

// A tenth of the data datagrams a participant sends dropped: about a tenth
// of its lossy messages are lost, the drops show in the FaultyNet's
// counters, and reliable messages all arrive, in order.
func TestInjectedLossyDrop(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	ctx := ctxT(t)
	fn := faultyNet(t)
	a := srv.Join(t, room, "alice", fn.Options(nil))
	b := srv.Join(t, room, "bob", nil)
	seeEachOther(t, ctx, a, b)
	lossy := b.Subscribe(&callstate.SubscribeOptions{Filter: func(e callstate.Event) bool {
		d, ok := e.(callstate.DataReceived)
		return ok && d.Data.Topic == "lossy"
	}})
	fromA := seqSub(b, "alice")
	fn.DropData(0.10)
	const n = 1000
	for i := range n {
		require.NoError(t, a.PublishData(ctx, fmt.Appendf(nil, "%d", i), &callstate.PublishOptions{Kind: callstate.Lossy, Topic: "lossy"}))
		time.Sleep(time.Millisecond) // keep the lossy channel's buffer from overflowing
	}
	for i := range 100 {
		require.NoError(t, a.PublishData(ctx, fmt.Appendf(nil, "%d", i), &callstate.PublishOptions{Topic: "seq"}))
	}
	awaitSeq(t, fromA, 100)
	fn.DropData(0)
	// Every lossy message that arrived did so before the reliable ones
	// (sent after them, and waited for): count what is there now.
	got := 0
	for {
		select {
		case <-lossy.Events():
			got++
			continue
		default:
		}
		break
	}
	st := fn.Stats()
	t.Logf("lossy: %d of %d arrived; %d data datagrams dropped, %d sent", got, n, st.Dropped, st.Sent)
	assert.Positive(t, st.Dropped)
	assert.InDelta(t, 0.10, float64(st.Dropped)/float64(st.Dropped+st.Sent), 0.05, "about a tenth dropped")
	assert.Less(t, got, n*97/100, "lossy messages were lost")
	assert.Greater(t, got, n*70/100, "most lossy messages arrived")
}

// Requests in flight across each rung of the ladder complete, or fail with
// a clear error; none hangs. Each is made while the Room is recovering.
func TestRequestsInFlightAcrossRecovery(t *testing.T) {
	srv := calltest.NewServer(t, &calltest.Options{IgnoreEnv: true})
	room := srv.RoomName(t)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	proxy := startProxy(t, srv)
	fn := faultyNet(t)
	// Short ICE timeouts: the PeerConnection fails 3 s into an outage,
	// and the Room restarts ICE by itself (with pion's defaults the
	// server's leave, about 16 s in, comes first).
	se := callstate.NewSettingEngine()
	se.SetICETimeouts(time.Second, 2*time.Second, 500*time.Millisecond)
	a := joinVia(t, proxy, srv, room, "alice", fn.Options(&callstate.JoinOptions{SettingEngine: se}))
	subA := a.Subscribe(nil)
	for _, rung := range []struct {
		name  string
		want  callstate.Recovery
		fault func() (end func())
	}{
		{"resume", callstate.RecoveryResumed, func() func() {
			proxy.SetDown(true)
			return func() { proxy.SetDown(false) }
		}},
		{"ICE restart", callstate.RecoveryICERestart, func() func() {
			fn.Block(time.Minute)
			return fn.Unblock
		}},
		{"rejoin", callstate.RecoveryRejoined, func() func() {
			restarted := make(chan error, 1)
			go func() { restarted <- srv.Restart(ctx) }()
			return func() { require.NoError(t, <-restarted) }
		}},
	} {
		t.Run(rung.name, func(t *testing.T) {
			end := rung.fault()
			calltest.Await(t, subA, stateIs(callstate.StateReconnecting))
			var wg sync.WaitGroup
			errs := make([]error, 3)
			took := make([]time.Duration, 3)
			reqs := []func() error{
				func() error { return a.SetUserData(ctx, rung.name) },
				func() error { return a.SetAttributes(ctx, map[string]string{"rung": rung.name}) },
				func() error {
					return a.SetSessionData(ctx, map[string]string{"rung": rung.name}, callstate.ShallowMerge)
				},
			}
			for i, req := range reqs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					start := time.Now()
					errs[i] = req()
					took[i] = time.Since(start)
				}()
			}
			// The outage lasts until the requests are surely in flight:
			// a second is far more than a request needs to leave.
			time.Sleep(time.Second)
			end()
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					// A failure is a clear one, never the context's deadline
					// (a hang).
					assert.NotErrorIs(t, err, context.DeadlineExceeded, "request %d hung", i)
				}
				t.Logf("request %d: %v after %v", i, err, took[i].Round(time.Millisecond))
			}
			e, err := calltest.AwaitEvent(ctx, subA, 60*time.Second, stateIs(callstate.StateConnected))
			require.NoError(t, err)
			assert.Equal(t, rung.want, e.Recovery)
			// Once connected again the requests succeed.
			require.NoError(t, a.SetUserData(ctx, rung.name+" after"))
			require.NoError(t, a.SetSessionData(ctx, map[string]string{"after": rung.name}, callstate.ShallowMerge))
		})
	}
}

// The server-assisted scenarios (SignalRequest.simulate): the Room
// recovers from a node failure and a migration, as from the real failure,
// and its data reaches the others; a server leave (action DISCONNECT) ends
// it.
func TestSimulatedScenarios(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	a := srv.Join(t, room, "alice", nil)
	b := srv.Join(t, room, "bob", nil)
	_, err := b.WaitForParticipant(ctx, "alice")
	require.NoError(t, err)
	subA := a.Subscribe(nil)
	fromA := seqSub(b, "alice")
	for i, sc := range []callstate.Scenario{callstate.ScenarioNodeFailure, callstate.ScenarioMigration} {
		start := time.Now()
		require.NoError(t, a.Simulate(ctx, sc))
		calltest.Await(t, subA, stateIs(callstate.StateReconnecting))
		e, err := calltest.AwaitEvent(ctx, subA, 40*time.Second, stateIs(callstate.StateConnected))
		require.NoError(t, err, "%v", sc)
		t.Logf("%v: %v after %v", sc, e.Recovery, e.Time.Sub(start).Round(time.Millisecond))
		require.NoError(t, a.PublishData(ctx, fmt.Appendf(nil, "%d", i), &callstate.PublishOptions{Topic: "seq"}))
		d, err := calltest.AwaitEvent[callstate.DataReceived](ctx, fromA, 30*time.Second, nil)
		require.NoError(t, err, "%v", sc)
		assert.Equal(t, fmt.Sprint(i), string(d.Data.Payload))
	}
	assert.ErrorIs(t, a.Simulate(ctx, callstate.Scenario(99)), callstate.ErrInvalidArgument)
	// A server leave comes with action DISCONNECT, which ends the Room
	// with the server's reason.
	require.NoError(t, a.Simulate(ctx, callstate.ScenarioServerLeave))
	d := calltest.Await(t, subA, func(callstate.Disconnected) bool { return true })
	assert.Equal(t, callstate.ReasonServerShutdown, d.Reason)
}
