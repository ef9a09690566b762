package callstate

// Subscription delivers a Room's events, in the order the Room observed
// them, on the channel returned by Events.
//
// Each subscription has its own bounded buffer (see WithBuffer). The Room
// never waits for a subscriber: when a buffer is full, further events are
// discarded and counted (Dropped), and an EventsDropped event takes their
// place in the sequence as soon as the subscriber has made room. A slow
// subscriber therefore never delays the network, the Room or other
// subscribers.
//
// The channel is closed after Close, or after the Disconnected event when
// the Room ends. A Subscription may be used from any goroutine; code that
// receives events may call any Room method.
type Subscription struct {
	room    *Room
	c       chan Event
	filter  func(Event) bool
	dropped uint64 // total, guarded by room.mu
	pending uint64 // dropped since the last EventsDropped, guarded by room.mu
	closed  bool   // guarded by room.mu
}

// SubscribeOption configures a Subscription.
type SubscribeOption func(*Subscription)

// DefaultEventBuffer is the default number of events a Subscription buffers.
const DefaultEventBuffer = 1024

// WithBuffer sets how many events the subscription buffers before it drops
// events. n < 1 means 1.
func WithBuffer(n int) SubscribeOption {
	return func(s *Subscription) {
		if n < 1 {
			n = 1
		}
		// EventsDropped and Disconnected have slots of their own.
		s.c = make(chan Event, n+2)
	}
}

// WithFilter delivers only the events for which keep returns true (and
// always EventsDropped and Disconnected). keep runs while the Room holds its
// lock: it must be fast and must not call the Room.
func WithFilter(keep func(Event) bool) SubscribeOption {
	return func(s *Subscription) { s.filter = keep }
}

// Events returns the subscription's channel.
func (s *Subscription) Events() <-chan Event { return s.c }

// Dropped returns how many events this subscription has discarded because
// its buffer was full.
func (s *Subscription) Dropped() uint64 {
	s.room.mu.Lock()
	defer s.room.mu.Unlock()
	return s.dropped
}

// Close stops the subscription and closes its channel; events already
// buffered can still be received. Close is idempotent.
func (s *Subscription) Close() {
	s.room.mu.Lock()
	defer s.room.mu.Unlock()
	s.closeLocked()
}

func (s *Subscription) closeLocked() {
	if s.closed {
		return
	}
	s.closed = true
	delete(s.room.subs, s)
	close(s.c)
}

// deliverLocked offers e to the subscription without blocking; room.mu held.
//
// The channel has two slots beyond the subscription's buffer: one for an
// EventsDropped notice, one for the final Disconnected event, so that both
// always find room.
func (s *Subscription) deliverLocked(e Event) {
	if s.closed {
		return
	}
	_, final := e.(Disconnected)
	if !final && s.filter != nil && !s.filter(e) {
		return
	}
	room := cap(s.c) - 2 // the subscription's buffer
	if final {
		if s.pending > 0 && len(s.c) < cap(s.c)-1 {
			s.c <- EventsDropped{at: at{e.When()}, Count: s.pending}
			s.pending = 0
		}
		s.c <- e // the last slot is always free for it
		return
	}
	if s.pending > 0 {
		if len(s.c) >= room {
			s.pending++
			s.dropped++
			return
		}
		s.c <- EventsDropped{at: at{e.When()}, Count: s.pending}
		s.pending = 0
	}
	if len(s.c) >= room {
		s.pending++
		s.dropped++
		return
	}
	s.c <- e
}

// Subscribe starts a subscription to the Room's events from now on. After
// the Room has ended, the subscription's channel is closed at once.
func (r *Room) Subscribe(opts ...SubscribeOption) *Subscription {
	_, s := r.subscribe(false, opts)
	return s
}

// SubscribeWithState returns the Room's current state and a subscription to
// every later event, atomically: no change is missing from both and none is
// in both. Recorders use it to start from a consistent snapshot.
func (r *Room) SubscribeWithState(opts ...SubscribeOption) (State, *Subscription) {
	return r.subscribe(true, opts)
}

func (r *Room) subscribe(withState bool, opts []SubscribeOption) (State, *Subscription) {
	s := &Subscription{room: r}
	WithBuffer(DefaultEventBuffer)(s)
	for _, o := range opts {
		o(s)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var st State
	if withState {
		st = r.stateLocked()
	}
	if r.ended {
		s.closed = true
		close(s.c)
		return st, s
	}
	r.subs[s] = struct{}{}
	return st, s
}

// emitLocked delivers e to every subscription; r.mu held.
func (r *Room) emitLocked(e Event) {
	for s := range r.subs {
		s.deliverLocked(e)
	}
}
