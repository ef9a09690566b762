package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/redact"
)

// The JSON lines that the join command writes. docs/cli.md documents them;
// keep the two in step.

// participantJSON is a participant in output lines.
type participantJSON struct {
	Identity    string            `json:"identity"`
	SID         string            `json:"sid"`
	Name        string            `json:"name"`
	Metadata    string            `json:"metadata"`
	UserData    json.RawMessage   `json:"user_data"`
	Attributes  map[string]string `json:"attributes"`
	Kind        string            `json:"kind"`
	JoinedAt    *time.Time        `json:"joined_at,omitempty"`
	Permissions permissionsJSON   `json:"permissions"`
}

type permissionsJSON struct {
	CanSubscribe      bool `json:"can_subscribe"`
	CanPublish        bool `json:"can_publish"`
	CanPublishData    bool `json:"can_publish_data"`
	CanUpdateMetadata bool `json:"can_update_metadata"`
	Hidden            bool `json:"hidden"`
}

func participantLine(p callstate.Participant) participantJSON {
	ud, ok := p.UserData()
	if !ok {
		ud = json.RawMessage("null")
	}
	attrs := p.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	out := participantJSON{
		Identity:   p.Identity,
		SID:        p.SID,
		Name:       p.Name,
		Metadata:   p.Metadata,
		UserData:   ud,
		Attributes: attrs,
		Kind:       p.Kind.String(),
		Permissions: permissionsJSON{
			CanSubscribe:      p.Permissions.CanSubscribe,
			CanPublish:        p.Permissions.CanPublish,
			CanPublishData:    p.Permissions.CanPublishData,
			CanUpdateMetadata: p.Permissions.CanUpdateMetadata,
			Hidden:            p.Permissions.Hidden,
		},
	}
	if !p.JoinedAt.IsZero() {
		t := p.JoinedAt.UTC()
		out.JoinedAt = &t
	}
	return out
}

// stateJSON is a snapshot of the room in "joined" lines and in the result
// of the "state" command.
type stateJSON struct {
	Room         roomJSON                   `json:"room"`
	Local        participantJSON            `json:"local"`
	Participants []participantJSON          `json:"participants"`
	SessionData  map[string]json.RawMessage `json:"session_data"`
	Connection   string                     `json:"connection_state"`
}

type roomJSON struct {
	Name     string `json:"name"`
	SID      string `json:"sid"`
	Metadata string `json:"metadata"`
}

func stateLine(st callstate.Snapshot) *stateJSON {
	out := &stateJSON{
		Room:         roomJSON{Name: st.Room.Name, SID: st.Room.SID, Metadata: st.Room.Metadata},
		Local:        participantLine(st.Local),
		Participants: []participantJSON{},
		SessionData:  st.SessionData,
		Connection:   st.Connection.String(),
	}
	for _, p := range st.Remote {
		out.Participants = append(out.Participants, participantLine(p))
	}
	return out
}

// changesJSON says what a participant_updated line changed.
type changesJSON struct {
	Metadata          bool     `json:"metadata,omitempty"`
	UserData          bool     `json:"user_data,omitempty"`
	Name              bool     `json:"name,omitempty"`
	Permissions       bool     `json:"permissions,omitempty"`
	AttributesAdded   []string `json:"attributes_added,omitempty"`
	AttributesChanged []string `json:"attributes_changed,omitempty"`
	AttributesRemoved []string `json:"attributes_removed,omitempty"`
}

// streamJSON describes the LiveKit data stream that carried a message.
type streamJSON struct {
	ID         string            `json:"id"`
	MimeType   string            `json:"mime_type,omitempty"`
	Name       string            `json:"name,omitempty"`
	Text       bool              `json:"text"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// line is one output line. Only the fields of its type are set.
type line struct {
	Type string    `json:"type"`
	Time time.Time `json:"time"`

	// result and error
	ID    json.RawMessage `json:"id,omitempty"`
	OK    *bool           `json:"ok,omitempty"`
	Error string          `json:"error,omitempty"`
	Code  string          `json:"code,omitempty"`

	// joined, and the result of "state"
	State *stateJSON `json:"state,omitempty"`

	// participant events
	Participant *participantJSON `json:"participant,omitempty"`
	Local       *bool            `json:"local,omitempty"`
	Changes     *changesJSON     `json:"changes,omitempty"`

	// data and app_message
	From     *string         `json:"from,omitempty"`
	FromSID  string          `json:"from_sid,omitempty"`
	Topic    *string         `json:"topic,omitempty"`
	Kind     string          `json:"kind,omitempty"`
	Size     *int            `json:"size,omitempty"`
	Payload  *string         `json:"payload,omitempty"`
	Text     *string         `json:"text,omitempty"`
	Stream   *streamJSON     `json:"stream,omitempty"`
	JSONData json.RawMessage `json:"data,omitempty"`

	// session_data (its data is in JSONData)
	Changed []string `json:"changed,omitempty"`

	// room_metadata
	Metadata *string `json:"metadata,omitempty"`
	Previous *string `json:"previous,omitempty"`

	// connection_state
	ConnectionState string `json:"connection_state,omitempty"`

	// participant_left and disconnected
	Reason string `json:"reason,omitempty"`

	// events_dropped
	Count *uint64 `json:"count,omitempty"`
}

func ptr[T any](v T) *T { return &v }

// eventLine converts an event into its output line.
func eventLine(ev callstate.Event) line {
	l := line{Time: ev.When().UTC()}
	switch e := ev.(type) {
	case callstate.ParticipantJoined:
		l.Type = "participant_joined"
		l.Participant = ptr(participantLine(e.Participant))
	case callstate.ParticipantLeft:
		l.Type = "participant_left"
		l.Participant = ptr(participantLine(e.Participant))
		l.Reason = e.Reason.String()
	case callstate.ParticipantUpdated:
		l.Type = "participant_updated"
		l.Participant = ptr(participantLine(e.Participant))
		l.Local = ptr(e.Local)
		c := e.Changes
		l.Changes = &changesJSON{
			Metadata:          c.Metadata,
			UserData:          c.UserData,
			Name:              c.Name,
			Permissions:       c.Permissions,
			AttributesAdded:   c.AttributesAdded,
			AttributesChanged: c.AttributesChanged,
			AttributesRemoved: c.AttributesRemoved,
		}
	case callstate.DataReceived:
		d := e.Data
		l.Type = "data"
		l.From = ptr(d.From)
		l.FromSID = d.FromSID
		l.Topic = ptr(d.Topic)
		l.Kind = d.Kind.String()
		l.Size = ptr(len(d.Payload))
		l.Payload = ptr(base64.StdEncoding.EncodeToString(d.Payload))
		if utf8.Valid(d.Payload) {
			l.Text = ptr(string(d.Payload))
		}
		if s := d.Stream; s != nil {
			l.Stream = &streamJSON{ID: s.ID, MimeType: s.MimeType, Name: s.Name, Text: s.Text, Attributes: s.Attributes}
		}
	case callstate.AppMessage:
		l.Type = "app_message"
		l.From = ptr(e.From)
		l.JSONData = e.Data
	case callstate.SessionDataUpdated:
		l.Type = "session_data"
		data := e.Data
		if data == nil {
			data = map[string]json.RawMessage{}
		}
		b, err := json.Marshal(data)
		if err != nil { // values come from a parsed JSON object
			b = []byte("{}")
		}
		l.JSONData = b
		l.Changed = e.Changed
	case callstate.RoomMetadataChanged:
		l.Type = "room_metadata"
		l.Metadata = ptr(e.Metadata)
		l.Previous = ptr(e.Previous)
	case callstate.ConnectionStateChanged:
		l.Type = "connection_state"
		l.ConnectionState = e.State.String()
	case callstate.Disconnected:
		l.Type = "disconnected"
		l.Reason = e.Reason.String()
		if e.Err != nil {
			l.Error = e.Err.Error()
		}
	case callstate.EventsDropped:
		l.Type = "events_dropped"
		l.Count = ptr(e.Count)
	default:
		l.Type = "unknown_event"
	}
	return l
}

// resultLine is the answer to a successful command.
func resultLine(id json.RawMessage) line {
	return line{Type: "result", Time: time.Now().UTC(), ID: id, OK: ptr(true)}
}

// errorLine is the answer to a failed command, or reports a failure that
// is no command's.
func errorLine(id json.RawMessage, code string, err error) line {
	return line{Type: "error", Time: time.Now().UTC(), ID: id, Error: redact.String(err.Error()), Code: code}
}

// errorCode maps an error to the code of its error line.
func errorCode(err error) string {
	for _, c := range []struct {
		target error
		code   string
	}{
		{callstate.ErrClosed, "closed"},
		{callstate.ErrTooLarge, "too_large"},
		{callstate.ErrNotPermitted, "not_permitted"},
		{callstate.ErrInvalidJSON, "invalid_json"},
		{callstate.ErrInvalidArgument, "invalid_argument"},
		{callstate.ErrUnknownParticipant, "unknown_participant"},
		{callstate.ErrReceiveOnly, "receive_only"},
		{callstate.ErrNotConnected, "not_connected"},
		{callstate.ErrBadToken, "bad_token"},
		{callstate.ErrServerUnreachable, "server_unreachable"},
		{callstate.ErrJoinRefused, "join_refused"},
		{callstate.ErrNotFound, "not_found"},
		{callstate.ErrLimitExceeded, "limit_exceeded"},
		{callstate.ErrRejected, "rejected"},
		{context.DeadlineExceeded, "timeout"},
		{context.Canceled, "canceled"},
	} {
		if errors.Is(err, c.target) {
			return c.code
		}
	}
	return "failed"
}
