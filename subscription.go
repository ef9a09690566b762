package callstate

import (
	"encoding/json"
	"maps"
	"slices"
	"sync"
)

// Subscription delivers a Room's events, in the order the Room observed
// them, on the channel returned by Events.
//
// Each subscription has its own buffer, bounded both in events and in bytes
// (SubscribeOptions). The Room never waits for a subscriber: when a buffer
// is full, further events are discarded and counted (Dropped), and an
// EventsDropped event takes their place in the sequence as soon as the
// subscriber has made room. A slow subscriber therefore never delays the
// network, the Room or other subscribers, and never holds more memory than
// its bounds.
//
// Events are delivered outside the Room's locks: code that receives events,
// and a Filter, may call any Room method. Every delivered event is the
// subscription's own copy.
//
// The channel is closed after Close, or after the Disconnected event when
// the Room ends. A Subscription may be used from any goroutine.
type Subscription struct {
	room   *Room
	c      chan Event
	filter func(Event) bool
	from   uint64 // the first event sequence number this subscription gets

	mu       sync.Mutex
	maxBytes int
	sizes    []int // the sizes of the events in c, oldest first
	bytes    int   // their sum
	dropped  uint64
	pending  uint64 // dropped since the last EventsDropped
	closed   bool
}

// SubscribeOptions configures a Subscription; nil or the zero value means
// the defaults.
type SubscribeOptions struct {
	// MaxEvents bounds how many events wait for the subscriber; zero
	// means DefaultMaxEvents.
	MaxEvents int
	// MaxBytes bounds the payload bytes of the events that wait (data
	// payloads, app messages, metadata, session data, attributes); zero
	// means DefaultMaxBytes. An event larger than MaxBytes on its own is
	// never delivered: it is counted as dropped.
	MaxBytes int
	// Filter, when set, delivers only the events for which it returns true
	// (and always EventsDropped and Disconnected). It runs outside the
	// Room's locks, in the order of the events, and may call the Room; it
	// should be quick, since the Room's other subscriptions wait for it.
	Filter func(Event) bool
}

// Default bounds of a Subscription's buffer.
const (
	DefaultMaxEvents = 1024
	DefaultMaxBytes  = 64 << 20
)

// Events returns the subscription's channel.
func (s *Subscription) Events() <-chan Event { return s.c }

// Dropped returns how many events this subscription has discarded because
// its buffer was full.
func (s *Subscription) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Pending returns how many events, and how many payload bytes, wait in the
// subscription's buffer.
func (s *Subscription) Pending() (events, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reconcileLocked()
	return len(s.sizes), s.bytes
}

// Close stops the subscription and closes its channel; events already
// buffered can still be received. Close is idempotent.
func (s *Subscription) Close() {
	s.room.mu.Lock()
	delete(s.room.subs, s)
	s.room.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
}

func (s *Subscription) closeLocked() {
	if s.closed {
		return
	}
	s.closed = true
	close(s.c)
}

// reconcileLocked forgets the sizes of the events the subscriber has
// received since the last look: the channel is FIFO, so they are the
// oldest. s.mu held.
func (s *Subscription) reconcileLocked() {
	n := len(s.sizes) - len(s.c)
	for _, sz := range s.sizes[:max(n, 0)] {
		s.bytes -= sz
	}
	if n > 0 {
		s.sizes = slices.Delete(s.sizes, 0, n)
	}
}

// pushLocked puts e in the channel; s.mu held and room checked.
func (s *Subscription) pushLocked(e Event, size int) {
	s.c <- e
	s.sizes = append(s.sizes, size)
	s.bytes += size
}

// deliver offers e to the subscription without blocking. It runs on the
// Room's delivery turn (one at a time, in event order), outside the Room's
// lock.
//
// The channel has two slots beyond the subscription's event bound: one for
// an EventsDropped notice, one for the final Disconnected event, so that
// both always find room.
//
// owned says that e shares nothing with anyone else and may be delivered as
// it is; otherwise the subscription gets a private copy.
func (s *Subscription) deliver(e Event, owned bool) {
	_, final := e.(Disconnected)
	if !final && s.filter != nil && !s.filter(e) {
		return
	}
	size := eventSize(e)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.reconcileLocked()
	room := cap(s.c) - 2 // the subscription's event bound
	if final {
		if s.pending > 0 && len(s.c) < cap(s.c)-1 {
			s.pushLocked(EventsDropped{Time: e.When(), Count: s.pending}, 0)
			s.pending = 0
		}
		s.pushLocked(e, 0) // the last slot is always free for it
		return
	}
	if len(s.c) >= room || s.bytes+size > s.maxBytes {
		s.pending++
		s.dropped++
		return
	}
	// The notice of what was dropped goes just before the first event
	// that fits again (it has a slot of its own beyond the bound).
	if s.pending > 0 {
		s.pushLocked(EventsDropped{Time: e.When(), Count: s.pending}, 0)
		s.pending = 0
	}
	if !owned {
		e = private(e)
	}
	s.pushLocked(e, size)
}

// Subscribe starts a subscription to the Room's events from now on, with
// opts (nil for the defaults). After the Room has ended, the
// subscription's channel is closed at once.
func (r *Room) Subscribe(opts *SubscribeOptions) *Subscription {
	_, s := r.subscribe(false, opts)
	return s
}

// SubscribeWithSnapshot returns the Room's current state and a
// subscription to every later event, atomically: no change is missing from
// both and none is in both. Recorders use it to start from a consistent
// snapshot.
func (r *Room) SubscribeWithSnapshot(opts *SubscribeOptions) (Snapshot, *Subscription) {
	return r.subscribe(true, opts)
}

func (r *Room) subscribe(withState bool, opts *SubscribeOptions) (Snapshot, *Subscription) {
	var o SubscribeOptions
	if opts != nil {
		o = *opts
	}
	if o.MaxEvents <= 0 {
		o.MaxEvents = DefaultMaxEvents
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	// EventsDropped and Disconnected have slots of their own.
	s := &Subscription{room: r, c: make(chan Event, o.MaxEvents+2), filter: o.Filter, maxBytes: o.MaxBytes}
	r.mu.Lock()
	defer r.mu.Unlock()
	var st Snapshot
	if withState {
		st = r.snapshotLocked()
	}
	if r.ended {
		s.closed = true
		close(s.c)
		return st, s
	}
	// Events emitted before now may still wait in the outbox: they are in
	// the snapshot already, so the subscription starts after them.
	s.from = r.emitted
	r.subs[s] = struct{}{}
	return st, s
}

// outEvent is an event waiting in the Room's outbox, with its sequence
// number.
type outEvent struct {
	seq uint64
	e   Event
}

// emitLocked queues e for every subscription; r.mu held. The event is
// delivered when the caller releases the lock with unlock.
func (r *Room) emitLocked(e Event) {
	r.emitted++
	r.outbox = append(r.outbox, outEvent{seq: r.emitted, e: e})
}

// unlock releases r.mu and delivers the events emitted while it was held.
// Every method that emits releases r.mu with it.
func (r *Room) unlock() {
	more := len(r.outbox) > 0
	r.mu.Unlock()
	if more {
		r.flush()
	}
}

// flush delivers the outbox, in order, outside r.mu. One goroutine at a
// time delivers (the one holding deliverMu); others leave their events to
// it. A filter that calls the Room and emits does not deadlock: its own
// flush finds the turn taken and returns, and the delivering goroutine
// takes the new events on its next round. (A filter must not call Close,
// which waits for the turn.)
func (r *Room) flush() {
	for {
		if !r.deliverMu.TryLock() {
			return
		}
		r.drain()
		r.deliverMu.Unlock()
		// Events emitted after the last round, whose flush found the
		// turn taken, are taken now.
		r.mu.Lock()
		more := len(r.outbox) > 0
		r.mu.Unlock()
		if !more {
			return
		}
	}
}

// drain delivers the outbox until it is empty; deliverMu held.
func (r *Room) drain() {
	for {
		r.mu.Lock()
		batch := r.outbox
		r.outbox = nil
		subs := make([]*Subscription, 0, len(r.subs))
		for s := range r.subs {
			subs = append(subs, s)
		}
		r.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		for _, oe := range batch {
			// The Room keeps no reference to a data payload or app
			// message, so the last subscription may take the event as
			// it is; the others get copies.
			last := -1
			if transferable(oe.e) {
				for i, s := range subs {
					if oe.seq > s.from {
						last = i
					}
				}
			}
			for i, s := range subs {
				if oe.seq > s.from {
					s.deliver(oe.e, i == last)
				}
			}
		}
	}
}

// transferable reports events that share nothing with the Room's state.
func transferable(e Event) bool {
	switch e.(type) {
	case DataReceived, AppMessage:
		return true
	}
	return false
}

// eventSize is what an event holds in bytes, for the subscription's byte
// bound: its payloads and strings, plus a fixed cost for the value.
func eventSize(e Event) int {
	const base = 64
	switch x := e.(type) {
	case DataReceived:
		return base + len(x.Data.Payload) + len(x.Data.Topic) + attrSize(attrsOf(x.Data.Stream))
	case AppMessage:
		return base + len(x.Data)
	case SessionDataUpdated:
		n := base
		for k, v := range x.Data {
			n += len(k) + len(v)
		}
		return n
	case RoomMetadataChanged:
		return base + len(x.Metadata) + len(x.Previous)
	case ParticipantJoined:
		return base + participantSize(x.Participant)
	case ParticipantLeft:
		return base + participantSize(x.Participant)
	case ParticipantUpdated:
		return base + participantSize(x.Participant) + participantSize(x.Previous)
	}
	return base
}

func participantSize(p Participant) int {
	n := len(p.Metadata) + len(p.Name) + len(p.Identity) + len(p.SID) + attrSize(p.Attributes)
	for _, t := range p.DataTracks {
		n += len(t.SID) + len(t.Name)
	}
	return n
}

func attrSize(m map[string]string) int {
	n := 0
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}

func attrsOf(si *StreamInfo) map[string]string {
	if si == nil {
		return nil
	}
	return si.Attributes
}

// private returns a copy of e that shares no map or slice with the Room or
// with other subscriptions, so that a subscriber may change what it
// receives.
func private(e Event) Event {
	switch x := e.(type) {
	case DataReceived:
		x.Data = x.Data.clone()
		return x
	case AppMessage:
		x.Data = slices.Clone(x.Data)
		return x
	case ActiveSpeakersChanged:
		x.Speakers = slices.Clone(x.Speakers)
		return x
	case SessionDataUpdated:
		x.Data = cloneSession(x.Data)
		x.Changed = slices.Clone(x.Changed)
		return x
	case ParticipantJoined:
		x.Participant = x.Participant.clone()
		return x
	case ParticipantLeft:
		x.Participant = x.Participant.clone()
		return x
	case ParticipantUpdated:
		x.Participant = x.Participant.clone()
		x.Previous = x.Previous.clone()
		x.Changes = x.Changes.clone()
		return x
	}
	return e
}

func cloneSession(m map[string]json.RawMessage) map[string]json.RawMessage {
	if m == nil {
		return nil
	}
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

// clone returns a copy of p with its own Attributes and KindDetails.
func (p Participant) clone() Participant {
	p.Attributes = maps.Clone(p.Attributes)
	p.KindDetails = slices.Clone(p.KindDetails)
	p.DataTracks = slices.Clone(p.DataTracks)
	return p
}

// clone returns a copy of c with its own slices.
func (c Changes) clone() Changes {
	c.AttributesAdded = slices.Clone(c.AttributesAdded)
	c.AttributesChanged = slices.Clone(c.AttributesChanged)
	c.AttributesRemoved = slices.Clone(c.AttributesRemoved)
	return c
}

// clone returns a copy of d with its own payload and attributes.
func (d Data) clone() Data {
	d.Payload = slices.Clone(d.Payload)
	if d.Stream != nil {
		si := *d.Stream
		si.Attributes = maps.Clone(si.Attributes)
		d.Stream = &si
	}
	return d
}
