package callstate

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/callstate/callstate/internal/lkpb"
)

// Event is a change observed by a Room. The concrete types are
// ParticipantJoined, ParticipantLeft, ParticipantUpdated, DataReceived,
// AppMessage, SessionDataUpdated, RoomMetadataChanged, RecordingChanged,
// ActiveSpeakersChanged, ConnectionQualityChanged, ConnectionStateChanged,
// Disconnected and EventsDropped; use a type switch.
//
// Events are plain values with exported fields, so tests of event handlers
// can build them. Every event a subscription delivers is its own: its maps
// and byte slices may be changed without affecting the Room or other
// subscriptions.
type Event interface {
	// When returns the time the Room observed the change.
	When() time.Time
	isEvent()
}

// ParticipantJoined reports a remote participant that joined the room.
type ParticipantJoined struct {
	// Time is when the Room observed the change.
	Time time.Time
	// Participant is the participant's state on joining.
	Participant Participant
}

// ParticipantLeft reports a remote participant that left the room.
type ParticipantLeft struct {
	// Time is when the Room observed the change.
	Time time.Time
	// Participant is the participant's last known state.
	Participant Participant
	// Reason is why the participant left, when the server says.
	Reason DisconnectReason
}

// ParticipantUpdated reports a change of a participant's metadata, name,
// attributes or permissions; Local tells whether it is the local participant.
type ParticipantUpdated struct {
	// Time is when the Room observed the change.
	Time time.Time
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
	// Time is when the Room observed the change.
	Time time.Time
	// Data is the received message.
	Data Data
}

// AppMessage reports an app message (Daily's vocabulary).
type AppMessage struct {
	// Time is when the Room observed the change.
	Time time.Time
	// From is the sender's identity. It is empty for messages sent with the
	// server API (FromServer) and for messages from a hidden participant,
	// whose identity the server keeps secret (FromSID is set then).
	From string
	// FromSID is the sender's participant sid; empty only for the server
	// API.
	FromSID string
	// FromServer is true for a message the server API sent
	// (RoomService.SendAppMessage): no participant sent it.
	FromServer bool
	// Data is the message, as JSON.
	Data json.RawMessage
}

// SessionDataUpdated reports new session data.
type SessionDataUpdated struct {
	// Time is when the Room observed the change.
	Time time.Time
	// Data is the whole session data after the change.
	Data map[string]json.RawMessage
	// Changed lists the top-level keys that were added, changed or removed,
	// sorted.
	Changed []string
}

// RoomMetadataChanged reports a change of the room's metadata string, the
// raw form of the session data.
type RoomMetadataChanged struct {
	// Time is when the Room observed the change.
	Time time.Time
	// Metadata is the new value.
	Metadata string
	// Previous is the value before the change.
	Previous string
}

// ConnectionStateChanged reports a change of the Room's connection state.
type ConnectionStateChanged struct {
	// Time is when the Room observed the change.
	Time time.Time
	// State is the new state.
	State ConnectionState
	// Recovery says, for a change to StateConnected after
	// StateReconnecting, how the connection came back: the same session
	// resumed (RecoveryResumed, RecoveryICERestart) or a new session
	// (RecoveryRejoined). It is RecoveryNone otherwise.
	Recovery Recovery
}

// Disconnected is the last event of every subscription of a Room that
// ended, whether by Close or by the server.
type Disconnected struct {
	// Time is when the Room observed the change.
	Time time.Time
	// Reason says why the room ended.
	Reason DisconnectReason
	// Err is the error that ended the room, nil after Close.
	Err error
}

// EventsDropped reports that a subscription's buffer was full and Count
// events were discarded at this point of the sequence. It is delivered in
// place of the lost events as soon as there is room again.
type EventsDropped struct {
	// Time is when the Room observed the change.
	Time time.Time
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

// DisconnectReason says why a Room or a participant left.
type DisconnectReason int32

// Disconnect reasons, as LiveKit reports them.
const (
	ReasonUnknown            = DisconnectReason(lkpb.DisconnectReason_UNKNOWN_REASON)
	ReasonClientInitiated    = DisconnectReason(lkpb.DisconnectReason_CLIENT_INITIATED)
	ReasonDuplicateIdentity  = DisconnectReason(lkpb.DisconnectReason_DUPLICATE_IDENTITY)
	ReasonServerShutdown     = DisconnectReason(lkpb.DisconnectReason_SERVER_SHUTDOWN)
	ReasonParticipantRemoved = DisconnectReason(lkpb.DisconnectReason_PARTICIPANT_REMOVED)
	ReasonRoomDeleted        = DisconnectReason(lkpb.DisconnectReason_ROOM_DELETED)
	ReasonStateMismatch      = DisconnectReason(lkpb.DisconnectReason_STATE_MISMATCH)
	ReasonJoinFailure        = DisconnectReason(lkpb.DisconnectReason_JOIN_FAILURE)
	ReasonSignalClose        = DisconnectReason(lkpb.DisconnectReason_SIGNAL_CLOSE)
	ReasonRoomClosed         = DisconnectReason(lkpb.DisconnectReason_ROOM_CLOSED)
	ReasonConnectionTimeout  = DisconnectReason(lkpb.DisconnectReason_CONNECTION_TIMEOUT)
)

// String returns the reason's name, for example "PARTICIPANT_REMOVED", or
// "reason(N)" for a number this version does not know.
func (r DisconnectReason) String() string {
	if name, ok := lkpb.DisconnectReason_name[int32(r)]; ok {
		return name
	}
	return fmt.Sprintf("reason(%d)", int32(r))
}

// When returns the time the Room observed the change.
func (e ParticipantJoined) When() time.Time { return e.Time }
func (ParticipantJoined) isEvent()          {}

// When returns the time the Room observed the change.
func (e ParticipantLeft) When() time.Time { return e.Time }
func (ParticipantLeft) isEvent()          {}

// When returns the time the Room observed the change.
func (e ParticipantUpdated) When() time.Time { return e.Time }
func (ParticipantUpdated) isEvent()          {}

// When returns the time the Room observed the change.
func (e DataReceived) When() time.Time { return e.Time }
func (DataReceived) isEvent()          {}

// When returns the time the Room observed the change.
func (e AppMessage) When() time.Time { return e.Time }
func (AppMessage) isEvent()          {}

// When returns the time the Room observed the change.
func (e SessionDataUpdated) When() time.Time { return e.Time }
func (SessionDataUpdated) isEvent()          {}

// When returns the time the Room observed the change.
func (e RoomMetadataChanged) When() time.Time { return e.Time }
func (RoomMetadataChanged) isEvent()          {}

// When returns the time the Room observed the change.
func (e ConnectionStateChanged) When() time.Time { return e.Time }
func (ConnectionStateChanged) isEvent()          {}

// When returns the time the Room observed the change.
func (e Disconnected) When() time.Time { return e.Time }
func (Disconnected) isEvent()          {}

// When returns the time the Room observed the change.
func (e EventsDropped) When() time.Time { return e.Time }
func (EventsDropped) isEvent()          {}
