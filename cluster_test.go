package callstate_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
	"github.com/callstate/callstate/internal/lkpb"
)

// The tests of this file run callstate on a LiveKit cluster: three
// livekit-server nodes sharing one Redis (calltest.NewCluster). A room
// lives on one node; participants signalling through another node are
// relayed to it by LiveKit over Redis, while their WebRTC transport (and
// so their data) goes to the room's node. They skip when no redis-server
// is installed (see calltest.EnvClusterTests).

// clusterService is service for a cluster node.
func clusterService(t *testing.T, n *calltest.Server) *callstate.RoomService {
	return service(t, n)
}

// Participants signalling through different nodes share every kind of
// state, a late joiner through a third node sees it, and the server API of
// any node acts on the room.
func TestClusterSharesStateAcrossNodes(t *testing.T) {
	c := calltest.NewCluster(t, 3)
	room := c.RoomName(t)
	c.PlaceRoom(t, room, 0)
	ctx := ctxT(t)
	top := t // the Rooms outlive the subtests

	// alice and bob both signal through nodes that do not host the room.
	a := c.Node(1).Join(t, room, "alice", nil)
	b := c.Node(2).Join(t, room, "bob", nil)
	subA, subB := a.Subscribe(nil), b.Subscribe(nil)
	_, err := a.WaitForParticipant(ctx, "bob")
	require.NoError(t, err)
	_, err = b.WaitForParticipant(ctx, "alice")
	require.NoError(t, err)
	require.Equal(t, 0, c.HostOf(t, room), "the room stays on its node")

	t.Run("reliable data", func(t *testing.T) {
		require.NoError(t, a.PublishData(ctx, []byte("a->b"), &callstate.PublishOptions{Topic: "chat"}))
		e := calltest.Await(t, subB, fromIs("alice"))
		assert.Equal(t, "a->b", string(e.Data.Payload))
		assert.Equal(t, "chat", e.Data.Topic)
		require.NoError(t, b.PublishData(ctx, []byte("b->a"), &callstate.PublishOptions{To: []string{"alice"}}))
		e = calltest.Await(t, subA, fromIs("bob"))
		assert.Equal(t, "b->a", string(e.Data.Payload))
	})

	t.Run("reliable data in order", func(t *testing.T) {
		const n = 200
		for i := range n {
			require.NoError(t, a.PublishData(ctx, fmt.Appendf(nil, "%d", i), &callstate.PublishOptions{Topic: "seq"}))
		}
		for i := range n {
			e := calltest.Await(t, subB, func(e callstate.DataReceived) bool { return e.Data.Topic == "seq" })
			require.Equal(t, fmt.Sprint(i), string(e.Data.Payload), "message %d", i)
		}
	})

	t.Run("lossy data", func(t *testing.T) {
		// Lossy data may be dropped; on loopback it rarely is. Send until
		// one arrives, within the deadline.
		got := make(chan string, 1)
		sub := b.Subscribe(&callstate.SubscribeOptions{Filter: func(e callstate.Event) bool {
			d, ok := e.(callstate.DataReceived)
			return ok && d.Data.Topic == "lossy"
		}})
		defer sub.Close()
		go func() {
			e, err := calltest.AwaitEvent[callstate.DataReceived](ctx, sub, calltest.AwaitTimeout, nil)
			if err == nil {
				got <- string(e.Data.Payload)
			}
			close(got)
		}()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			require.NoError(t, a.PublishData(ctx, []byte("lossy"), &callstate.PublishOptions{Kind: callstate.Lossy, Topic: "lossy"}))
			select {
			case p, ok := <-got:
				require.True(t, ok, "no lossy packet arrived")
				assert.Equal(t, "lossy", p)
				return
			case <-tick.C:
			}
		}
	})

	t.Run("app messages", func(t *testing.T) {
		require.NoError(t, b.SendAppMessage(ctx, map[string]any{"hello": "from bob"}))
		m := calltest.Await(t, subA, func(m callstate.AppMessage) bool { return m.From == "bob" })
		assert.JSONEq(t, `{"hello":"from bob"}`, string(m.Data))
		// A large one travels as a stream, across nodes too.
		big := map[string]string{"blob": string(make([]byte, 64<<10))}
		require.NoError(t, a.SendAppMessage(ctx, big, "bob"))
		m = calltest.Await(t, subB, func(m callstate.AppMessage) bool { return m.From == "alice" })
		var back map[string]string
		require.NoError(t, json.Unmarshal(m.Data, &back))
		assert.Len(t, back["blob"], 64<<10)
	})

	t.Run("user data and attributes", func(t *testing.T) {
		require.NoError(t, a.SetUserData(ctx, map[string]string{"mood": "fine"}))
		calltest.Await(t, subB, updatedBy("alice", func(e callstate.ParticipantUpdated) bool {
			return e.Participant.Metadata == `{"mood":"fine"}`
		}))
		require.NoError(t, b.SetAttributes(ctx, map[string]string{"hand": "up"}))
		calltest.Await(t, subA, updatedBy("bob", func(e callstate.ParticipantUpdated) bool {
			return e.Participant.Attributes["hand"] == "up"
		}))
	})

	t.Run("session data with concurrent merges", func(t *testing.T) {
		const n = 5
		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		for _, w := range []struct {
			r    *callstate.Room
			name string
		}{{a, "a"}, {b, "b"}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n {
					errs <- w.r.SetSessionData(ctx, map[string]int{fmt.Sprintf("%s%d", w.name, i): i}, callstate.ShallowMerge)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		want := `{"a0":0,"a1":1,"a2":2,"a3":3,"a4":4,"b0":0,"b1":1,"b2":2,"b3":3,"b4":4}`
		awaitSession(t, a, subA, want)
		awaitSession(t, b, subB, want)
	})

	t.Run("late joiner through a third node", func(t *testing.T) {
		// carol signals through the room's own node, the third one.
		cr := c.Node(0).Join(top, room, "carol", nil)
		subC := cr.Subscribe(nil)
		assert.JSONEq(t, `{"a0":0,"a1":1,"a2":2,"a3":3,"a4":4,"b0":0,"b1":1,"b2":2,"b3":3,"b4":4}`,
			canon(t, cr.SessionData()))
		pa, err := cr.WaitForParticipant(ctx, "alice")
		require.NoError(t, err)
		assert.Equal(t, `{"mood":"fine"}`, pa.Metadata)
		pb, err := cr.WaitForParticipant(ctx, "bob")
		require.NoError(t, err)
		assert.Equal(t, "up", pb.Attributes["hand"])
		require.NoError(t, cr.SendAppMessage(ctx, "hi all"))
		for _, s := range []*callstate.Subscription{subA, subB} {
			m := calltest.Await(t, s, func(m callstate.AppMessage) bool { return m.From == "carol" })
			assert.JSONEq(t, `"hi all"`, string(m.Data))
		}
		require.NoError(t, a.PublishData(ctx, []byte("to carol"), nil))
		e := calltest.Await(t, subC, fromIs("alice"))
		assert.Equal(t, "to carol", string(e.Data.Payload))
	})

	t.Run("server API on any node", func(t *testing.T) {
		for i, n := range c.Nodes() {
			svc := clusterService(t, n)
			ps, err := svc.ListParticipants(ctx, room)
			require.NoError(t, err, "node %d", i)
			assert.Len(t, ps, 3, "node %d lists the room's participants", i)

			msg := fmt.Sprintf("from node %d", i)
			require.NoError(t, svc.SendAppMessage(ctx, room, msg))
			for _, s := range []*callstate.Subscription{subA, subB} {
				m := calltest.Await(t, s, func(m callstate.AppMessage) bool { return m.From == "" })
				assert.JSONEq(t, fmt.Sprintf("%q", msg), string(m.Data))
			}

			md := fmt.Sprintf(`{"set by":%d}`, i)
			_, err = svc.UpdateParticipant(ctx, room, "bob", callstate.ParticipantUpdate{Metadata: &md})
			require.NoError(t, err)
			calltest.Await(t, subA, updatedBy("bob", func(e callstate.ParticipantUpdated) bool { return e.Participant.Metadata == md }))
		}
		// Session data written from node 2's API reaches participants of
		// every node.
		_, err := clusterService(t, c.Node(2)).UpdateRoomMetadata(ctx, room, `{"plain":true}`)
		require.NoError(t, err)
		awaitSession(t, a, subA, `{"plain":true}`)
		awaitSession(t, b, subB, `{"plain":true}`)
	})
}

// seqSub subscribes to the data messages of topic "seq" from identity.
func seqSub(r *callstate.Room, from string) *callstate.Subscription {
	return r.Subscribe(&callstate.SubscribeOptions{Filter: func(e callstate.Event) bool {
		d, ok := e.(callstate.DataReceived)
		return ok && d.Data.Topic == "seq" && d.Data.From == from
	}})
}

// awaitSeq checks that sub delivers the messages "0".."n-1" in order.
func awaitSeq(t *testing.T, sub *callstate.Subscription, n int) {
	t.Helper()
	for i := range n {
		e := calltest.Await[callstate.DataReceived](t, sub, nil)
		require.Equal(t, fmt.Sprint(i), string(e.Data.Payload), "message %d", i)
	}
}

// When the node a participant signals through dies, and the room's node
// lives, the participant's WebRTC transport (to the room's node) is
// untouched: only the signalling connection is lost. Behind a load
// balancer that moves to a live node (here a calltest.Proxy whose target
// is changed), the Room resumes its session through that node within
// milliseconds: same session, nobody sees it leave, and reliable messages
// in both directions arrive, in order and once.
func TestClusterSignalNodeKilledResumesThroughAnotherNode(t *testing.T) {
	c := calltest.NewCluster(t, 3)
	room := c.RoomName(t)
	c.PlaceRoom(t, room, 0)
	ctx := ctxT(t)
	lb, err := c.Node(1).StartProxy()
	require.NoError(t, err)
	t.Cleanup(func() { _ = lb.Close() })
	a, err := callstate.Join(ctx, lb.URL(), c.Node(1).Token(room, "alice"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	b := c.Node(2).Join(t, room, "bob", nil)
	_, err = a.WaitForParticipant(ctx, "bob")
	require.NoError(t, err)
	_, err = b.WaitForParticipant(ctx, "alice")
	require.NoError(t, err)
	sid := a.LocalParticipant().SID
	subA, subB := a.Subscribe(nil), b.Subscribe(nil)
	fromA, fromB := seqSub(b, "alice"), seqSub(a, "bob")
	left := b.Subscribe(&callstate.SubscribeOptions{Filter: func(e callstate.Event) bool {
		_, ok := e.(callstate.ParticipantLeft)
		return ok
	}})

	const n = 40
	send := func(i int) {
		require.NoError(t, a.PublishData(ctx, fmt.Appendf(nil, "%d", i), &callstate.PublishOptions{Topic: "seq"}))
		require.NoError(t, b.PublishData(ctx, fmt.Appendf(nil, "%d", i), &callstate.PublishOptions{Topic: "seq"}))
	}
	for i := range n / 2 {
		send(i)
	}
	killed := time.Now()
	c.Kill(t, 1)
	require.NoError(t, lb.SetTarget(c.Node(2)))
	for i := n / 2; i < n; i++ {
		send(i) // during the resume, and after
	}
	calltest.Await(t, subA, stateIs(callstate.StateReconnecting))
	back := calltest.Await(t, subA, stateIs(callstate.StateConnected))
	t.Logf("resumed through node 2 %v after node 1 was killed", back.Time.Sub(killed).Round(time.Millisecond))
	assert.Equal(t, sid, a.LocalParticipant().SID, "the same session")
	awaitSeq(t, fromA, n)
	awaitSeq(t, fromB, n)

	// Requests go over the new signalling connection and are answered.
	require.NoError(t, a.SetUserData(ctx, "resumed"))
	calltest.Await(t, subB, updatedBy("alice", func(e callstate.ParticipantUpdated) bool { return e.Participant.Metadata == `"resumed"` }))
	require.NoError(t, a.SetSessionData(ctx, map[string]bool{"resumed": true}, callstate.ShallowMerge))
	select {
	case ev := <-left.Events():
		t.Fatalf("bob saw %#v", ev)
	default:
	}
}

// Without a load balancer, a Room that signals through a node that dies
// resumes at the same URL, which no longer answers: its data keeps flowing
// meanwhile (the WebRTC transport goes to the room's node, alive), and the
// Room ends when the resume window has passed. Spreading participants over
// nodes by URL gives no failover; a load balancer in front does (see
// TestClusterSignalNodeKilledResumesThroughAnotherNode).
func TestClusterSignalNodeKilledWithoutBalancer(t *testing.T) {
	c := calltest.NewCluster(t, 2)
	room := c.RoomName(t)
	c.PlaceRoom(t, room, 0)
	ctx := ctxT(t)
	const window = 3 * time.Second
	a := c.Node(1).Join(t, room, "alice", &callstate.JoinOptions{Resume: window})
	b := c.Node(0).Join(t, room, "bob", nil)
	_, err := b.WaitForParticipant(ctx, "alice")
	require.NoError(t, err)
	subA, fromA := a.Subscribe(nil), seqSub(b, "alice")
	killed := time.Now()
	c.Kill(t, 1)
	calltest.Await(t, subA, stateIs(callstate.StateReconnecting))
	const n = 10
	for i := range n {
		require.NoError(t, a.PublishData(ctx, fmt.Appendf(nil, "%d", i), &callstate.PublishOptions{Topic: "seq"}))
	}
	awaitSeq(t, fromA, n)
	d := calltest.Await(t, subA, func(callstate.Disconnected) bool { return true })
	assert.Equal(t, callstate.ReasonSignalClose, d.Reason)
	assert.Error(t, d.Err)
	assert.GreaterOrEqual(t, d.Time.Sub(killed), window, "the Room tried for its whole resume window")
}

// When the node hosting the room dies, the room dies with it. What the
// server does today (livekit-server v1.13.5): nothing for about 12 s (the
// signalling nodes keep answering pings, and the Room's sends succeed
// locally but reach nobody), then each signalling node closes its
// participants' WebSocket with a normal closure; the Room's resume is
// answered by a leave with action RECONNECT (reason STATE_MISMATCH), which
// asks for a full rejoin. By then LiveKit has declared
// the node dead (its stats in Redis are older than 5 s), so a new join
// through a live node recreates the room there, with its metadata (the
// session data), which LiveKit keeps in Redis.
//
// The Room recovers by itself with the ladder's last rung: a full rejoin
// as a new session with the same identity.
func TestClusterRoomNodeKilled(t *testing.T) {
	c := calltest.NewCluster(t, 3)
	room := c.RoomName(t)
	c.PlaceRoom(t, room, 0)
	ctx := ctxT(t)
	leaves := make(chan *lkpb.LeaveRequest, 4)
	hook := func(src string, b []byte) {
		var m lkpb.SignalResponse
		if src == "signal" && proto.Unmarshal(b, &m) == nil && m.GetLeave() != nil {
			select {
			case leaves <- m.GetLeave():
			default:
			}
		}
	}
	a := c.Node(1).Join(t, room, "alice", callstate.WithRawHook(nil, hook))
	b := c.Node(2).Join(t, room, "bob", nil)
	_, err := b.WaitForParticipant(ctx, "alice")
	require.NoError(t, err)
	require.NoError(t, a.SetSessionData(ctx, map[string]int{"kept": 1}, callstate.ShallowMerge))
	subA := a.Subscribe(nil)
	killed := time.Now()
	c.Kill(t, 0)

	// The Room rejoins by itself: its resume is answered by a leave with
	// action RECONNECT, and it joins again as a new session.
	e, err := calltest.AwaitEvent(ctx, subA, 40*time.Second, func(e callstate.ConnectionStateChanged) bool {
		return e.State == callstate.StateConnected
	})
	require.NoError(t, err, "the Room recovers from the loss of the room's node")
	t.Logf("the Room rejoined %v after the room's node was killed", e.Time.Sub(killed).Round(time.Millisecond))
	assert.Equal(t, callstate.RecoveryRejoined, e.Recovery)
	select {
	case l := <-leaves:
		assert.Equal(t, lkpb.LeaveRequest_RECONNECT, l.GetAction(), "the server asks for a full rejoin")
		t.Logf("the resume was answered by a leave: reason %v, action %v", l.GetReason(), l.GetAction())
	default:
		t.Error("no leave from the server")
	}
	assert.JSONEq(t, `{"kept":1}`, canon(t, a.SessionData()), "the session data came back")
	assert.NotEqual(t, 0, c.HostOf(t, room), "the room moved to a live node")
	require.NoError(t, a.SetSessionData(ctx, map[string]int{"after": 2}, callstate.ShallowMerge))
}
