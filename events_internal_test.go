package callstate

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newTestRoom returns a Room with no connection, for tests of its state and
// event machinery.
func newTestRoom() *Room {
	return &Room{
		remotes: map[string]Participant{},
		subs:    map[*Subscription]struct{}{},
		session: newSessionData("test"),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
}

func (r *Room) emitTest(e Event) {
	r.mu.Lock()
	defer r.unlock()
	r.emitLocked(e)
}

func joined(id string) ParticipantJoined {
	return ParticipantJoined{Time: time.Now(), Participant: Participant{Identity: id}}
}

func TestSubscriptionOrder(t *testing.T) {
	r := newTestRoom()
	s := r.Subscribe(nil)
	for i := range 100 {
		r.emitTest(joined(string(rune('a' + i%26))))
	}
	for i := range 100 {
		e := <-s.Events()
		require.Equal(t, string(rune('a'+i%26)), e.(ParticipantJoined).Participant.Identity)
	}
	assert.Zero(t, s.Dropped())
}

func TestSubscriptionOverflowIsReported(t *testing.T) {
	r := newTestRoom()
	s := r.Subscribe(&SubscribeOptions{MaxEvents: 4})
	for i := range 10 {
		r.emitTest(joined(string(rune('a' + i))))
	}
	// The four buffered events arrive, then nothing until there is room.
	for i := range 4 {
		e := <-s.Events()
		require.Equal(t, string(rune('a'+i)), e.(ParticipantJoined).Participant.Identity)
	}
	assert.EqualValues(t, 6, s.Dropped())
	select {
	case e := <-s.Events():
		t.Fatalf("unexpected event %T", e)
	default:
	}
	// The next event is preceded by the notice of the six lost ones.
	r.emitTest(joined("z"))
	e := <-s.Events()
	require.IsType(t, EventsDropped{}, e)
	assert.EqualValues(t, 6, e.(EventsDropped).Count)
	e = <-s.Events()
	assert.Equal(t, "z", e.(ParticipantJoined).Participant.Identity)
}

func TestSlowSubscriberDoesNotDelayOthers(t *testing.T) {
	r := newTestRoom()
	slow := r.Subscribe(&SubscribeOptions{MaxEvents: 1})
	fast := r.Subscribe(nil)
	for i := range 500 {
		r.emitTest(joined(string(rune('a' + i%26))))
	}
	assert.Len(t, fast.Events(), 500)
	assert.EqualValues(t, 499, slow.Dropped())
	assert.Zero(t, fast.Dropped())
}

func TestSubscriptionFilterAndClose(t *testing.T) {
	r := newTestRoom()
	s := r.Subscribe(&SubscribeOptions{Filter: func(e Event) bool {
		_, ok := e.(ParticipantLeft)
		return ok
	}})
	r.emitTest(joined("a"))
	r.emitTest(ParticipantLeft{Time: time.Now(), Participant: Participant{Identity: "a"}})
	e := <-s.Events()
	require.IsType(t, ParticipantLeft{}, e)
	s.Close()
	s.Close()
	_, ok := <-s.Events()
	assert.False(t, ok, "channel closed after Close")
	r.emitTest(joined("b")) // no panic on a closed subscription
}

func TestSubscribeWithStateIsAtomic(t *testing.T) {
	r := newTestRoom()
	const total = 2000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range total {
			id := string(rune(0x4e00 + i))
			r.mu.Lock()
			p := Participant{Identity: id}
			r.remotes[id] = p
			r.emitLocked(ParticipantJoined{Time: time.Now(), Participant: p})
			r.unlock()
		}
	}()
	st, s := r.SubscribeWithSnapshot(&SubscribeOptions{MaxEvents: total})
	wg.Wait()
	seen := map[string]bool{}
	for _, p := range st.Remote {
		seen[p.Identity] = true
	}
	n := len(seen)
	for len(s.Events()) > 0 {
		e := (<-s.Events()).(ParticipantJoined)
		require.False(t, seen[e.Participant.Identity], "change both in the snapshot and in the events")
		seen[e.Participant.Identity] = true
	}
	assert.Len(t, seen, total, "snapshot (%d) plus events must cover every change", n)
}

func TestSubscribeAfterEndIsClosed(t *testing.T) {
	r := newTestRoom()
	r.ended = true
	s := r.Subscribe(nil)
	_, ok := <-s.Events()
	assert.False(t, ok)
}

func TestDiffParticipants(t *testing.T) {
	a := Participant{Metadata: "x", Name: "n", Attributes: map[string]string{"k1": "1", "k2": "2"}}
	b := Participant{Metadata: `{"a":1}`, Name: "n", Attributes: map[string]string{"k2": "3", "k3": "4"}}
	c := diffParticipants(a, b)
	assert.True(t, c.Metadata)
	assert.True(t, c.UserData)
	assert.False(t, c.Name)
	assert.Equal(t, []string{"k3"}, c.AttributesAdded)
	assert.Equal(t, []string{"k2"}, c.AttributesChanged)
	assert.Equal(t, []string{"k1"}, c.AttributesRemoved)
	assert.False(t, diffParticipants(a, a).Any())
}

func TestDisconnectedAlwaysDelivered(t *testing.T) {
	r := newTestRoom()
	s := r.Subscribe(&SubscribeOptions{MaxEvents: 2})
	for i := range 5 {
		r.emitTest(joined(string(rune('a' + i))))
	}
	r.emitTest(Disconnected{Time: time.Now(), Reason: ReasonRoomDeleted})
	var got []Event
	for len(s.Events()) > 0 {
		got = append(got, <-s.Events())
	}
	require.Len(t, got, 4)
	assert.IsType(t, ParticipantJoined{}, got[0])
	assert.IsType(t, ParticipantJoined{}, got[1])
	require.IsType(t, EventsDropped{}, got[2])
	assert.EqualValues(t, 3, got[2].(EventsDropped).Count)
	assert.Equal(t, ReasonRoomDeleted, got[3].(Disconnected).Reason)
}

func TestIsLoopbackURL(t *testing.T) {
	for u, want := range map[string]bool{
		"ws://127.0.0.1:7880":         true,
		"ws://127.3.2.1:7880":         true,
		"http://localhost:7880":       true,
		"ws://[::1]:7880":             true,
		"wss://example.com":           false,
		"ws://10.0.0.1:7880":          false,
		"::not a url":                 false,
		"wss://127.0.0.1.example.com": false,
	} {
		assert.Equal(t, want, isLoopbackURL(u), u)
	}
}
