package callstate

import (
	"encoding/json"
	"time"
)

// Event is a change observed by a Room. The concrete types are
// ParticipantJoined, ParticipantLeft, ParticipantUpdated, DataReceived,
// AppMessage, SessionDataUpdated, RoomMetadataChanged,
// ConnectionStateChanged, Disconnected and EventsDropped; use a type switch.
type Event interface {
	// When returns the time the Room observed the change.
	When() time.Time
	isEvent()
}

// at is embedded in every event.
type at struct{ t time.Time }

// When returns the time the Room observed the change.
func (a at) When() time.Time { return a.t }
func (at) isEvent()          {}

// ParticipantJoined reports a remote participant that joined the room.
type ParticipantJoined struct {
	at
	// Participant is the participant's state on joining.
	Participant Participant
}

// ParticipantLeft reports a remote participant that left the room.
type ParticipantLeft struct {
	at
	// Participant is the participant's last known state.
	Participant Participant
	// Reason is why the participant left, when the server says.
	Reason DisconnectReason
}

// ParticipantUpdated reports a change of a participant's metadata, name,
// attributes or permissions; Local tells whether it is the local participant.
type ParticipantUpdated struct {
	at
	// Participant is the new state.
	Participant Participant
	// Previous is the state before the change.
	Previous Participant
	// Changes says what changed.
	Changes Changes
	// Local is true for the local participant.
	Local bool
}

// Changes says what a ParticipantUpdated changed.
type Changes struct {
	// Metadata is true when the metadata string changed.
	Metadata bool
	// UserData is true when the user data (the JSON view of the metadata)
	// changed: the metadata changed and either the old or the new value is
	// JSON.
	UserData bool
	// Name is true when the name changed.
	Name bool
	// Permissions is true when the permissions changed.
	Permissions bool
	// AttributesAdded, AttributesChanged and AttributesRemoved list the
	// attribute keys, sorted.
	AttributesAdded, AttributesChanged, AttributesRemoved []string
}

// Any reports whether anything changed.
func (c Changes) Any() bool {
	return c.Metadata || c.Name || c.Permissions ||
		len(c.AttributesAdded)+len(c.AttributesChanged)+len(c.AttributesRemoved) > 0
}

// DataReceived reports a data packet (LiveKit's vocabulary) from another
// participant or from the server API.
type DataReceived struct {
	at
	// Data is the received message.
	Data Data
}

// AppMessage reports an app message (Daily's vocabulary).
type AppMessage struct {
	at
	// From is the sender's identity; empty for messages sent with the
	// server API.
	From string
	// Data is the message, as JSON.
	Data json.RawMessage
}

// SessionDataUpdated reports new session data.
type SessionDataUpdated struct {
	at
	// Data is the whole session data after the change.
	Data map[string]json.RawMessage
	// Changed lists the top-level keys that were added, changed or removed,
	// sorted.
	Changed []string
}

// RoomMetadataChanged reports a change of the room's metadata string, the
// raw form of the session data.
type RoomMetadataChanged struct {
	at
	// Metadata is the new value.
	Metadata string
	// Previous is the value before the change.
	Previous string
}

// ConnectionStateChanged reports a change of the Room's connection state.
type ConnectionStateChanged struct {
	at
	// State is the new state.
	State ConnectionState
}

// Disconnected is the last event of every subscription of a Room that
// ended, whether by Close or by the server.
type Disconnected struct {
	at
	// Reason says why the room ended.
	Reason DisconnectReason
	// Err is the error that ended the room, nil after Close.
	Err error
}

// EventsDropped reports that a subscription's buffer was full and Count
// events were discarded at this point of the sequence. It is delivered in
// place of the lost events as soon as there is room again.
type EventsDropped struct {
	at
	// Count is the number of events discarded.
	Count uint64
}

// ConnectionState is the state of a Room's connection to the server.
type ConnectionState int

// Connection states.
const (
	// StateConnecting is the state during Join.
	StateConnecting ConnectionState = iota
	// StateConnected is the state of a joined Room.
	StateConnected
	// StateReconnecting is the state while the Room re-establishes a lost
	// connection.
	StateReconnecting
	// StateDisconnected is the final state.
	StateDisconnected
)

// String returns the state's name in lower case.
func (s ConnectionState) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateReconnecting:
		return "reconnecting"
	case StateDisconnected:
		return "disconnected"
	}
	return "unknown"
}

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
