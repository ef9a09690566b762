package callstate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/callstate/callstate/internal/lkpb"
)

// The JSON encoding of events, participants, rooms and snapshots: one
// schema for `callstate join`'s output lines, the recorder example and
// users' own recorders, documented in docs/events.md. Keep the two in step.
//
// An event is one JSON object with a "type" (participant_joined,
// participant_left, participant_updated, data, app_message, session_data,
// room_metadata, connection_state, disconnected, events_dropped,
// active_speakers, connection_quality, recording, chat) and a
// "time" (RFC 3339 with nanoseconds, UTC), and the fields of its type.
// UnmarshalEvent reads it back into the same event: an encoded event
// decodes to one equal to the original, except that times come back in
// UTC, nil maps and slices may come back empty, JSON values (app messages,
// session data) come back compacted (and with <, > and & escaped after
// encoding/json's HTML escaping), and Disconnected.Err comes back as an
// error with the original's message only. Data payloads always come back
// byte for byte.
//
// Decoding ignores fields it does not know, so that a recording made by a
// newer version can be read by an older one.

// MarshalEvent returns the JSON encoding of e, without a trailing newline.
// It is the form the event types' MarshalJSON methods write, but without
// the HTML escaping of encoding/json ("<" stays "<"), as `callstate join`
// prints it. It returns an error wrapping ErrInvalidArgument for an event
// type this version does not know, and one wrapping ErrInvalidJSON when an
// AppMessage's or SessionDataUpdated's JSON is not valid.
func MarshalEvent(e Event) ([]byte, error) {
	v, err := eventWire(e)
	if err != nil {
		return nil, err
	}
	return marshalNoEscape(v)
}

// UnmarshalEvent decodes an event that MarshalEvent (or an event's
// MarshalJSON) encoded. It returns an error wrapping ErrInvalidJSON when b
// is not such an event: not JSON, an unknown or missing type, a field of the
// wrong type, or a data payload given in more than one form or not matching
// its size.
func UnmarshalEvent(b []byte) (Event, error) {
	var h eventHead
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, eventError("", err)
	}
	switch h.Type {
	case "participant_joined":
		return decodeEvent(b, h.Type, func(w *participantJoinedJSON) (Event, error) {
			return ParticipantJoined{Time: h.Time, Participant: w.Participant}, nil
		})
	case "participant_left":
		return decodeEvent(b, h.Type, func(w *participantLeftJSON) (Event, error) {
			return ParticipantLeft{Time: h.Time, Participant: w.Participant, Reason: w.Reason}, nil
		})
	case "participant_updated":
		return decodeEvent(b, h.Type, func(w *participantUpdatedJSON) (Event, error) {
			return ParticipantUpdated{Time: h.Time, Participant: w.Participant, Previous: w.Previous, Changes: Changes(w.Changes), Local: w.Local}, nil
		})
	case "data":
		return decodeEvent(b, h.Type, func(w *dataJSON) (Event, error) { return w.event(h.Time) })
	case "app_message":
		return decodeEvent(b, h.Type, func(w *appMessageJSON) (Event, error) {
			return AppMessage{Time: h.Time, From: w.From, FromSID: w.FromSID, FromServer: w.FromServer, Data: w.Data}, nil
		})
	case "session_data":
		return decodeEvent(b, h.Type, func(w *sessionDataJSON) (Event, error) {
			if w.Data == nil {
				w.Data = map[string]json.RawMessage{}
			}
			return SessionDataUpdated{Time: h.Time, Data: w.Data, Changed: w.Changed}, nil
		})
	case "room_metadata":
		return decodeEvent(b, h.Type, func(w *roomMetadataJSON) (Event, error) {
			return RoomMetadataChanged{Time: h.Time, Metadata: w.Metadata, Previous: w.Previous}, nil
		})
	case "connection_state":
		return decodeEvent(b, h.Type, func(w *connectionStateJSON) (Event, error) {
			return ConnectionStateChanged{Time: h.Time, State: w.State}, nil
		})
	case "disconnected":
		return decodeEvent(b, h.Type, func(w *disconnectedJSON) (Event, error) {
			d := Disconnected{Time: h.Time, Reason: w.Reason}
			if w.Error != "" {
				d.Err = errors.New(w.Error)
			}
			return d, nil
		})
	case "events_dropped":
		return decodeEvent(b, h.Type, func(w *eventsDroppedJSON) (Event, error) {
			return EventsDropped{Time: h.Time, Count: w.Count}, nil
		})
	case "active_speakers":
		return decodeEvent(b, h.Type, func(w *activeSpeakersJSON) (Event, error) {
			speakers := make([]Speaker, len(w.Speakers))
			for i, sp := range w.Speakers {
				speakers[i] = Speaker(sp)
			}
			return ActiveSpeakersChanged{Time: h.Time, Speakers: speakers}, nil
		})
	case "connection_quality":
		return decodeEvent(b, h.Type, func(w *connectionQualityJSON) (Event, error) {
			return ConnectionQualityChanged{Time: h.Time, Identity: w.Identity, SID: w.SID, Quality: w.Quality, Score: w.Score, Local: w.Local}, nil
		})
	case "recording":
		return decodeEvent(b, h.Type, func(w *recordingJSON) (Event, error) {
			return RecordingChanged{Time: h.Time, Recording: w.Recording}, nil
		})
	case "data_track_published":
		return decodeEvent(b, h.Type, func(w *dataTrackEventJSON) (Event, error) {
			return DataTrackPublished{Time: h.Time, Participant: w.Participant, Track: DataTrackInfo(w.Track)}, nil
		})
	case "data_track_unpublished":
		return decodeEvent(b, h.Type, func(w *dataTrackEventJSON) (Event, error) {
			return DataTrackUnpublished{Time: h.Time, Participant: w.Participant, Track: DataTrackInfo(w.Track)}, nil
		})
	case "chat":
		return decodeEvent(b, h.Type, func(w *chatJSON) (Event, error) {
			return ChatMessage{Time: h.Time, From: w.From, ID: w.ID, Text: w.Text, Timestamp: fromOptTime(w.Timestamp),
				Edited: fromOptTime(w.Edited), Deleted: w.Deleted, Generated: w.Generated, Legacy: w.Legacy}, nil
		})
	case "":
		return nil, fmt.Errorf("%w: event without a type", ErrInvalidJSON)
	}
	return nil, fmt.Errorf("%w: unknown event type %q", ErrInvalidJSON, h.Type)
}

// eventHead is what every event's encoding starts with.
type eventHead struct {
	Type string    `json:"type"`
	Time time.Time `json:"time"`
}

func head(typ string, t time.Time) eventHead { return eventHead{Type: typ, Time: t.UTC()} }

type participantJoinedJSON struct {
	eventHead
	Participant Participant `json:"participant"`
}

type participantLeftJSON struct {
	eventHead
	Participant Participant      `json:"participant"`
	Reason      DisconnectReason `json:"reason"`
}

type participantUpdatedJSON struct {
	eventHead
	Participant Participant `json:"participant"`
	Previous    Participant `json:"previous"`
	Local       bool        `json:"local"`
	Changes     changesJSON `json:"changes"`
}

// changesJSON has the fields of Changes in the same order and of the same
// types, so that the two convert into each other.
type changesJSON struct {
	Metadata          bool     `json:"metadata,omitempty"`
	UserData          bool     `json:"user_data,omitempty"`
	Name              bool     `json:"name,omitempty"`
	Permissions       bool     `json:"permissions,omitempty"`
	AttributesAdded   []string `json:"attributes_added,omitempty"`
	AttributesChanged []string `json:"attributes_changed,omitempty"`
	AttributesRemoved []string `json:"attributes_removed,omitempty"`
}

// dataJSON is a DataReceived. The payload is in exactly one of three
// fields, the most compact and readable that keeps its bytes exact: "json"
// for a payload that is compact JSON (most app payloads), embedded as is;
// "text" for other valid UTF-8; "payload", standard base64, for the rest.
type dataJSON struct {
	eventHead
	From       string          `json:"from"`
	FromSID    string          `json:"from_sid,omitempty"`
	FromServer bool            `json:"from_server,omitempty"`
	Topic      string          `json:"topic"`
	Kind       DataKind        `json:"kind"`
	Size       *int            `json:"size"`
	JSON       json.RawMessage `json:"json,omitempty"`
	Text       *string         `json:"text,omitempty"`
	Payload    []byte          `json:"payload,omitempty"`
	Stream     *streamJSON     `json:"stream,omitempty"`
}

// streamJSON is the encoding of a StreamInfo.
type streamJSON struct {
	ID         string            `json:"id"`
	Topic      string            `json:"topic,omitempty"`
	MimeType   string            `json:"mime_type,omitempty"`
	Name       string            `json:"name,omitempty"`
	Text       bool              `json:"text"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Size       int64             `json:"size"`
	Timestamp  *time.Time        `json:"timestamp,omitempty"`
	Compressed bool              `json:"compressed,omitempty"`
}

func newStreamJSON(s *StreamInfo) *streamJSON {
	w := &streamJSON{ID: s.ID, Topic: s.Topic, MimeType: s.MimeType, Name: s.Name, Text: s.Text, Attributes: s.Attributes, Size: s.Size, Compressed: s.Compressed}
	if !s.Timestamp.IsZero() {
		w.Timestamp = new(time.Time)
		*w.Timestamp = s.Timestamp.UTC()
	}
	return w
}

func (w *streamJSON) info() *StreamInfo {
	s := &StreamInfo{ID: w.ID, Topic: w.Topic, MimeType: w.MimeType, Name: w.Name, Text: w.Text, Attributes: w.Attributes, Size: w.Size, Compressed: w.Compressed}
	if w.Timestamp != nil {
		s.Timestamp = *w.Timestamp
	}
	return s
}

// chatJSON is the encoding of a ChatMessage.
type chatJSON struct {
	eventHead
	From      string     `json:"from"`
	ID        string     `json:"id"`
	Text      string     `json:"text"`
	Timestamp *time.Time `json:"timestamp,omitempty"`
	Edited    *time.Time `json:"edited,omitempty"`
	Deleted   bool       `json:"deleted,omitempty"`
	Generated bool       `json:"generated,omitempty"`
	Legacy    bool       `json:"legacy,omitempty"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func fromOptTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

func newDataJSON(e DataReceived) *dataJSON {
	d := e.Data
	w := &dataJSON{eventHead: head("data", e.Time), From: d.From, FromSID: d.FromSID, FromServer: d.FromServer, Topic: d.Topic, Kind: d.Kind, Size: new(int)}
	*w.Size = len(d.Payload)
	switch {
	case embeddableJSON(d.Payload):
		w.JSON = d.Payload
	case utf8.Valid(d.Payload):
		s := string(d.Payload)
		w.Text = &s
	default:
		w.Payload = d.Payload
	}
	if d.Stream != nil {
		w.Stream = newStreamJSON(d.Stream)
	}
	return w
}

// embeddableJSON reports whether p can be embedded in the encoding as a
// JSON value and read back byte for byte: valid, already compact (encoders
// compact embedded values), and free of the characters that encoding/json
// escapes in HTML-safe mode (a user's json.Marshal of the event would
// change them).
func embeddableJSON(p []byte) bool {
	if len(p) == 0 || !utf8.Valid(p) || !json.Valid(p) {
		return false
	}
	if bytes.ContainsAny(p, "<>&\u2028\u2029") {
		return false
	}
	var c bytes.Buffer
	if json.Compact(&c, p) != nil {
		return false
	}
	return bytes.Equal(c.Bytes(), p)
}

func (w *dataJSON) event(t time.Time) (Event, error) {
	forms := 0
	var p []byte
	if w.JSON != nil {
		forms++
		p = w.JSON
	}
	if w.Text != nil {
		forms++
		p = []byte(*w.Text)
	}
	if w.Payload != nil {
		forms++
		p = w.Payload
	}
	if forms != 1 {
		return nil, fmt.Errorf("%w: data event: the payload must be in exactly one of json, text and payload, not %d", ErrInvalidJSON, forms)
	}
	if w.Size != nil && *w.Size != len(p) {
		return nil, fmt.Errorf("%w: data event: size %d, but the payload has %d bytes", ErrInvalidJSON, *w.Size, len(p))
	}
	d := Data{From: w.From, FromSID: w.FromSID, FromServer: w.FromServer, Topic: w.Topic, Payload: p, Kind: w.Kind}
	if w.Stream != nil {
		d.Stream = w.Stream.info()
	}
	return DataReceived{Time: t, Data: d}, nil
}

type appMessageJSON struct {
	eventHead
	From       string          `json:"from"`
	FromSID    string          `json:"from_sid,omitempty"`
	FromServer bool            `json:"from_server,omitempty"`
	Data       json.RawMessage `json:"data"`
}

type sessionDataJSON struct {
	eventHead
	Data    map[string]json.RawMessage `json:"data"`
	Changed []string                   `json:"changed,omitempty"`
}

type roomMetadataJSON struct {
	eventHead
	Metadata string `json:"metadata"`
	Previous string `json:"previous"`
}

type connectionStateJSON struct {
	eventHead
	State ConnectionState `json:"connection_state"`
}

type disconnectedJSON struct {
	eventHead
	Reason DisconnectReason `json:"reason"`
	Error  string           `json:"error,omitempty"`
}

type activeSpeakersJSON struct {
	eventHead
	Speakers []speakerJSON `json:"speakers"`
}

// speakerJSON has the fields of Speaker, which converts to it.
type speakerJSON struct {
	Identity string  `json:"identity"`
	SID      string  `json:"sid"`
	Level    float32 `json:"level"`
	Active   bool    `json:"active"`
}

type connectionQualityJSON struct {
	eventHead
	Identity string            `json:"identity"`
	SID      string            `json:"sid"`
	Quality  ConnectionQuality `json:"quality"`
	Score    float32           `json:"score"`
	Local    bool              `json:"local"`
}

type recordingJSON struct {
	eventHead
	Recording bool `json:"recording"`
}

// dataTrackEventJSON is DataTrackPublished's and DataTrackUnpublished's
// encoding.
type dataTrackEventJSON struct {
	eventHead
	Participant Participant   `json:"participant"`
	Track       dataTrackJSON `json:"track"`
}

// dataTrackJSON has the fields of DataTrackInfo, which converts to it.
type dataTrackJSON struct {
	SID       string `json:"sid"`
	Name      string `json:"name"`
	Encrypted bool   `json:"encrypted"`
}

type eventsDroppedJSON struct {
	eventHead
	Count uint64 `json:"count"`
}

// eventWire returns the value whose JSON is e's encoding.
func eventWire(e Event) (any, error) {
	switch e := e.(type) {
	case ParticipantJoined:
		return participantJoinedJSON{head("participant_joined", e.Time), e.Participant}, nil
	case ParticipantLeft:
		return participantLeftJSON{head("participant_left", e.Time), e.Participant, e.Reason}, nil
	case ParticipantUpdated:
		return participantUpdatedJSON{head("participant_updated", e.Time), e.Participant, e.Previous, e.Local, changesJSON(e.Changes)}, nil
	case DataReceived:
		return newDataJSON(e), nil
	case AppMessage:
		data := e.Data
		if len(data) == 0 {
			data = json.RawMessage("null")
		} else if !json.Valid(data) {
			return nil, fmt.Errorf("%w: app message data is not JSON", ErrInvalidJSON)
		}
		return appMessageJSON{head("app_message", e.Time), e.From, e.FromSID, e.FromServer, data}, nil
	case SessionDataUpdated:
		data := e.Data
		if data == nil {
			data = map[string]json.RawMessage{}
		}
		for k, v := range data {
			if !json.Valid(v) {
				return nil, fmt.Errorf("%w: session data key %q is not JSON", ErrInvalidJSON, k)
			}
		}
		return sessionDataJSON{head("session_data", e.Time), data, e.Changed}, nil
	case RoomMetadataChanged:
		return roomMetadataJSON{head("room_metadata", e.Time), e.Metadata, e.Previous}, nil
	case ConnectionStateChanged:
		return connectionStateJSON{head("connection_state", e.Time), e.State}, nil
	case Disconnected:
		w := disconnectedJSON{eventHead: head("disconnected", e.Time), Reason: e.Reason}
		if e.Err != nil {
			w.Error = e.Err.Error()
		}
		return w, nil
	case EventsDropped:
		return eventsDroppedJSON{head("events_dropped", e.Time), e.Count}, nil
	case ActiveSpeakersChanged:
		speakers := make([]speakerJSON, len(e.Speakers))
		for i, sp := range e.Speakers {
			speakers[i] = speakerJSON(sp)
		}
		return activeSpeakersJSON{head("active_speakers", e.Time), speakers}, nil
	case ConnectionQualityChanged:
		return connectionQualityJSON{head("connection_quality", e.Time), e.Identity, e.SID, e.Quality, e.Score, e.Local}, nil
	case RecordingChanged:
		return recordingJSON{head("recording", e.Time), e.Recording}, nil
	case DataTrackPublished:
		return dataTrackEventJSON{head("data_track_published", e.Time), e.Participant, dataTrackJSON(e.Track)}, nil
	case DataTrackUnpublished:
		return dataTrackEventJSON{head("data_track_unpublished", e.Time), e.Participant, dataTrackJSON(e.Track)}, nil
	case ChatMessage:
		return chatJSON{head("chat", e.Time), e.From, e.ID, e.Text, optTime(e.Timestamp), optTime(e.Edited), e.Deleted, e.Generated, e.Legacy}, nil
	case nil:
		return nil, fmt.Errorf("%w: MarshalEvent: nil event", ErrInvalidArgument)
	}
	return nil, fmt.Errorf("%w: MarshalEvent: unknown event type %T", ErrInvalidArgument, e)
}

// decodeEvent decodes b into a wire struct W and converts it with conv.
func decodeEvent[W any](b []byte, typ string, conv func(*W) (Event, error)) (Event, error) {
	var w W
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, eventError(typ, err)
	}
	return conv(&w)
}

func eventError(typ string, err error) error {
	if typ == "" {
		return fmt.Errorf("%w: event: %v", ErrInvalidJSON, err)
	}
	return fmt.Errorf("%w: %s event: %v", ErrInvalidJSON, typ, err)
}

// marshalNoEscape is json.Marshal without HTML escaping: the encoding is
// read by people and scripts, not embedded in HTML.
func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// unmarshalAs decodes b as event type T, for the UnmarshalJSON methods.
func unmarshalAs[T Event](b []byte, dst *T) error {
	e, err := UnmarshalEvent(b)
	if err != nil {
		return err
	}
	v, ok := e.(T)
	if !ok {
		return fmt.Errorf("%w: a %T event cannot be read into a %T", ErrInvalidJSON, e, *dst)
	}
	*dst = v
	return nil
}

// MarshalJSON returns the event's encoding (see MarshalEvent).
func (e ParticipantJoined) MarshalJSON() ([]byte, error) { return MarshalEvent(e) }

// UnmarshalJSON reads the event's encoding (see UnmarshalEvent).
func (e *ParticipantJoined) UnmarshalJSON(b []byte) error { return unmarshalAs(b, e) }

// MarshalJSON returns the event's encoding (see MarshalEvent).
func (e ParticipantLeft) MarshalJSON() ([]byte, error) { return MarshalEvent(e) }

// UnmarshalJSON reads the event's encoding (see UnmarshalEvent).
func (e *ParticipantLeft) UnmarshalJSON(b []byte) error { return unmarshalAs(b, e) }

// MarshalJSON returns the event's encoding (see MarshalEvent).
func (e ParticipantUpdated) MarshalJSON() ([]byte, error) { return MarshalEvent(e) }

// UnmarshalJSON reads the event's encoding (see UnmarshalEvent).
func (e *ParticipantUpdated) UnmarshalJSON(b []byte) error { return unmarshalAs(b, e) }

// MarshalJSON returns the event's encoding (see MarshalEvent).
func (e DataReceived) MarshalJSON() ([]byte, error) { return MarshalEvent(e) }

// UnmarshalJSON reads the event's encoding (see UnmarshalEvent).
func (e *DataReceived) UnmarshalJSON(b []byte) error { return unmarshalAs(b, e) }

// MarshalJSON returns the event's encoding (see MarshalEvent).
func (e AppMessage) MarshalJSON() ([]byte, error) { return MarshalEvent(e) }

// UnmarshalJSON reads the event's encoding (see UnmarshalEvent).
func (e *AppMessage) UnmarshalJSON(b []byte) error { return unmarshalAs(b, e) }

// MarshalJSON returns the event's encoding (see MarshalEvent).
func (e SessionDataUpdated) MarshalJSON() ([]byte, error) { return MarshalEvent(e) }

// UnmarshalJSON reads the event's encoding (see UnmarshalEvent).
func (e *SessionDataUpdated) UnmarshalJSON(b []byte) error { return unmarshalAs(b, e) }

// MarshalJSON returns the event's encoding (see MarshalEvent).
func (e RoomMetadataChanged) MarshalJSON() ([]byte, error) { return MarshalEvent(e) }

// UnmarshalJSON reads the event's encoding (see UnmarshalEvent).
func (e *RoomMetadataChanged) UnmarshalJSON(b []byte) error { return unmarshalAs(b, e) }

// MarshalJSON returns the event's encoding (see MarshalEvent).
func (e ConnectionStateChanged) MarshalJSON() ([]byte, error) { return MarshalEvent(e) }

// UnmarshalJSON reads the event's encoding (see UnmarshalEvent).
func (e *ConnectionStateChanged) UnmarshalJSON(b []byte) error { return unmarshalAs(b, e) }

// MarshalJSON returns the event's encoding (see MarshalEvent).
func (e Disconnected) MarshalJSON() ([]byte, error) { return MarshalEvent(e) }

// UnmarshalJSON reads the event's encoding (see UnmarshalEvent).
func (e *Disconnected) UnmarshalJSON(b []byte) error { return unmarshalAs(b, e) }

// MarshalJSON returns the event's encoding (see MarshalEvent).
func (e EventsDropped) MarshalJSON() ([]byte, error) { return MarshalEvent(e) }

// UnmarshalJSON reads the event's encoding (see UnmarshalEvent).
func (e *EventsDropped) UnmarshalJSON(b []byte) error { return unmarshalAs(b, e) }

// MarshalJSON returns the event's encoding (see MarshalEvent).
func (e ActiveSpeakersChanged) MarshalJSON() ([]byte, error) { return MarshalEvent(e) }

// UnmarshalJSON reads the event's encoding (see UnmarshalEvent).
func (e *ActiveSpeakersChanged) UnmarshalJSON(b []byte) error { return unmarshalAs(b, e) }

// MarshalJSON returns the event's encoding (see MarshalEvent).
func (e ConnectionQualityChanged) MarshalJSON() ([]byte, error) { return MarshalEvent(e) }

// UnmarshalJSON reads the event's encoding (see UnmarshalEvent).
func (e *ConnectionQualityChanged) UnmarshalJSON(b []byte) error { return unmarshalAs(b, e) }

// MarshalJSON returns the event's encoding (see MarshalEvent).
func (e RecordingChanged) MarshalJSON() ([]byte, error) { return MarshalEvent(e) }

// UnmarshalJSON reads the event's encoding (see UnmarshalEvent).
func (e *RecordingChanged) UnmarshalJSON(b []byte) error { return unmarshalAs(b, e) }

// MarshalJSON writes the event's encoding (see MarshalEvent).
func (e DataTrackPublished) MarshalJSON() ([]byte, error) { return MarshalEvent(e) }

// UnmarshalJSON reads the event's encoding (see UnmarshalEvent).
func (e *DataTrackPublished) UnmarshalJSON(b []byte) error { return unmarshalAs(b, e) }

// MarshalJSON writes the event's encoding (see MarshalEvent).
func (e DataTrackUnpublished) MarshalJSON() ([]byte, error) { return MarshalEvent(e) }

// UnmarshalJSON reads the event's encoding (see UnmarshalEvent).
func (e *DataTrackUnpublished) UnmarshalJSON(b []byte) error { return unmarshalAs(b, e) }

// participantJSON is a Participant's encoding. UserData is written for
// readers (the metadata as JSON, or null) and ignored when read: Metadata
// holds it.
type participantJSON struct {
	Identity    string                  `json:"identity"`
	SID         string                  `json:"sid"`
	Name        string                  `json:"name"`
	Metadata    string                  `json:"metadata"`
	UserData    json.RawMessage         `json:"user_data"`
	Attributes  map[string]string       `json:"attributes"`
	Kind        ParticipantKind         `json:"kind"`
	KindDetails []ParticipantKindDetail `json:"kind_details,omitempty"`
	IsPublisher bool                    `json:"is_publisher,omitempty"`
	JoinedAt    *time.Time              `json:"joined_at,omitempty"`
	Permissions permissionsJSON         `json:"permissions"`
	Version     uint32                  `json:"version,omitempty"`
	DataTracks  []dataTrackJSON         `json:"data_tracks,omitempty"`
	// DeflateStreams is Participant.DeflateStreams.
	DeflateStreams bool `json:"deflate_streams,omitempty"`
}

// permissionsJSON has the fields of Permissions, which converts to it.
type permissionsJSON struct {
	CanSubscribe      bool `json:"can_subscribe"`
	CanPublish        bool `json:"can_publish"`
	CanPublishData    bool `json:"can_publish_data"`
	CanUpdateMetadata bool `json:"can_update_metadata"`
	Hidden            bool `json:"hidden"`
}

// MarshalJSON returns the participant as the JSON object of the event
// encoding (docs/events.md): identity, sid, name, metadata, user_data,
// attributes, kind, kind_details, is_publisher, joined_at, permissions,
// version, data_tracks and deflate_streams.
func (p Participant) MarshalJSON() ([]byte, error) {
	ud, ok := p.UserData()
	if !ok {
		ud = json.RawMessage("null")
	}
	attrs := p.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	w := participantJSON{
		Identity: p.Identity, SID: p.SID, Name: p.Name, Metadata: p.Metadata, UserData: ud,
		Attributes: attrs, Kind: p.Kind, KindDetails: p.KindDetails, IsPublisher: p.IsPublisher,
		Permissions: permissionsJSON(p.Permissions), Version: p.Version, DeflateStreams: p.DeflateStreams,
	}
	for _, t := range p.DataTracks {
		w.DataTracks = append(w.DataTracks, dataTrackJSON(t))
	}
	if !p.JoinedAt.IsZero() {
		t := p.JoinedAt.UTC()
		w.JoinedAt = &t
	}
	return marshalNoEscape(w)
}

// UnmarshalJSON reads the encoding MarshalJSON writes.
func (p *Participant) UnmarshalJSON(b []byte) error {
	var w participantJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: participant: %v", ErrInvalidJSON, err)
	}
	*p = Participant{
		SID: w.SID, Identity: w.Identity, Name: w.Name, Metadata: w.Metadata, Attributes: w.Attributes,
		Kind: w.Kind, KindDetails: w.KindDetails, IsPublisher: w.IsPublisher,
		Permissions: Permissions(w.Permissions), Version: w.Version, DeflateStreams: w.DeflateStreams,
	}
	for _, t := range w.DataTracks {
		p.DataTracks = append(p.DataTracks, DataTrackInfo(t))
	}
	if p.Attributes == nil {
		p.Attributes = map[string]string{}
	}
	if w.JoinedAt != nil {
		p.JoinedAt = *w.JoinedAt
	}
	return nil
}

// roomInfoJSON is a RoomInfo's encoding; the timeouts are in seconds, as
// LiveKit gives them.
type roomInfoJSON struct {
	Name             string     `json:"name"`
	SID              string     `json:"sid"`
	Metadata         string     `json:"metadata"`
	NumParticipants  int        `json:"num_participants"`
	NumPublishers    int        `json:"num_publishers"`
	Recording        bool       `json:"recording"`
	MaxParticipants  int        `json:"max_participants"`
	CreatedAt        *time.Time `json:"created_at,omitempty"`
	EmptyTimeout     float64    `json:"empty_timeout_s"`
	DepartureTimeout float64    `json:"departure_timeout_s"`
}

// MarshalJSON returns the room as a JSON object: name, sid, metadata,
// num_participants, num_publishers, recording, max_participants, created_at,
// empty_timeout_s and
// departure_timeout_s.
func (r RoomInfo) MarshalJSON() ([]byte, error) {
	w := roomInfoJSON{
		Name: r.Name, SID: r.SID, Metadata: r.Metadata,
		NumParticipants: r.NumParticipants, NumPublishers: r.NumPublishers, Recording: r.Recording,
		MaxParticipants: r.MaxParticipants, EmptyTimeout: r.EmptyTimeout.Seconds(), DepartureTimeout: r.DepartureTimeout.Seconds(),
	}
	if !r.CreatedAt.IsZero() {
		t := r.CreatedAt.UTC()
		w.CreatedAt = &t
	}
	return marshalNoEscape(w)
}

// UnmarshalJSON reads the encoding MarshalJSON writes.
func (r *RoomInfo) UnmarshalJSON(b []byte) error {
	var w roomInfoJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: room: %v", ErrInvalidJSON, err)
	}
	empty, err1 := seconds(w.EmptyTimeout)
	departure, err2 := seconds(w.DepartureTimeout)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("%w: room: %v", ErrInvalidJSON, err)
	}
	*r = RoomInfo{
		SID: w.SID, Name: w.Name, Metadata: w.Metadata, NumParticipants: w.NumParticipants,
		NumPublishers: w.NumPublishers, Recording: w.Recording, MaxParticipants: w.MaxParticipants, EmptyTimeout: empty, DepartureTimeout: departure,
	}
	if w.CreatedAt != nil {
		r.CreatedAt = *w.CreatedAt
	}
	return nil
}

// seconds converts a timeout in seconds, refusing what a Duration cannot
// hold.
func seconds(s float64) (time.Duration, error) {
	ns := math.Round(s * float64(time.Second))
	if math.IsNaN(ns) || ns < 0 || ns > math.MaxInt64 {
		return 0, fmt.Errorf("timeout %v s out of range", s)
	}
	return time.Duration(ns), nil
}

// snapshotJSON is a Snapshot's encoding.
type snapshotJSON struct {
	Room         RoomInfo                   `json:"room"`
	Local        Participant                `json:"local"`
	Participants []Participant              `json:"participants"`
	SessionData  map[string]json.RawMessage `json:"session_data"`
	Connection   ConnectionState            `json:"connection_state"`
}

// MarshalJSON returns the snapshot as a JSON object: room, local,
// participants (the remote ones, an array, never null), session_data (null
// when the room metadata is not a JSON object) and connection_state.
func (s Snapshot) MarshalJSON() ([]byte, error) {
	w := snapshotJSON{Room: s.Room, Local: s.Local, Participants: s.Remote, SessionData: s.SessionData, Connection: s.Connection}
	if w.Participants == nil {
		w.Participants = []Participant{}
	}
	return marshalNoEscape(w)
}

// UnmarshalJSON reads the encoding MarshalJSON writes.
func (s *Snapshot) UnmarshalJSON(b []byte) error {
	var w snapshotJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: snapshot: %v", ErrInvalidJSON, err)
	}
	*s = Snapshot{Room: w.Room, Local: w.Local, Remote: w.Participants, SessionData: w.SessionData, Connection: w.Connection}
	return nil
}

// The text forms of the enumerations in the encoding: their String.

// MarshalText returns the kind's name, as String gives it.
func (k ParticipantKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a name MarshalText writes, including the "kind(N)"
// form of kinds this version does not know.
func (k *ParticipantKind) UnmarshalText(b []byte) error {
	s := string(b)
	if v, ok := lkpb.ParticipantInfo_Kind_value[strings.ToUpper(s)]; ok && s == strings.ToLower(s) {
		*k = ParticipantKind(v)
		return nil
	}
	n, err := numbered(s, "kind")
	*k = ParticipantKind(n)
	return err
}

// MarshalText returns the detail's name, as String gives it.
func (d ParticipantKindDetail) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a name MarshalText writes, including the
// "kind_detail(N)" form of details this version does not know.
func (d *ParticipantKindDetail) UnmarshalText(b []byte) error {
	s := string(b)
	if v, ok := lkpb.ParticipantInfo_KindDetail_value[strings.ToUpper(s)]; ok && s == strings.ToLower(s) {
		*d = ParticipantKindDetail(v)
		return nil
	}
	n, err := numbered(s, "kind_detail")
	*d = ParticipantKindDetail(n)
	return err
}

// MarshalText returns the quality's name, as String gives it.
func (q ConnectionQuality) MarshalText() ([]byte, error) { return []byte(q.String()), nil }

// UnmarshalText reads a name MarshalText writes, including the
// "quality(N)" form of qualities this version does not know.
func (q *ConnectionQuality) UnmarshalText(b []byte) error {
	for _, v := range []ConnectionQuality{QualityPoor, QualityGood, QualityExcellent, QualityLost} {
		if v.String() == string(b) {
			*q = v
			return nil
		}
	}
	n, err := numbered(string(b), "quality")
	*q = ConnectionQuality(n)
	return err
}

// MarshalText returns "reliable" or "lossy".
func (k DataKind) MarshalText() ([]byte, error) {
	if k != Reliable && k != Lossy {
		return nil, fmt.Errorf("%w: unknown data kind %d", ErrInvalidArgument, int(k))
	}
	return []byte(k.String()), nil
}

// UnmarshalText reads "reliable" or "lossy".
func (k *DataKind) UnmarshalText(b []byte) error {
	switch string(b) {
	case "reliable":
		*k = Reliable
	case "lossy":
		*k = Lossy
	default:
		return fmt.Errorf("%w: unknown data kind %q", ErrInvalidJSON, b)
	}
	return nil
}

// MarshalText returns the state's name, as String gives it.
func (s ConnectionState) MarshalText() ([]byte, error) {
	if s < StateConnecting || s > StateDisconnected {
		return nil, fmt.Errorf("%w: unknown connection state %d", ErrInvalidArgument, int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads a name MarshalText writes.
func (s *ConnectionState) UnmarshalText(b []byte) error {
	for v := StateConnecting; v <= StateDisconnected; v++ {
		if v.String() == string(b) {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("%w: unknown connection state %q", ErrInvalidJSON, b)
}

// MarshalText returns the reason's name, as String gives it.
func (r DisconnectReason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a name MarshalText writes, including the "reason(N)"
// form of reasons this version does not know.
func (r *DisconnectReason) UnmarshalText(b []byte) error {
	if v, ok := lkpb.DisconnectReason_value[string(b)]; ok {
		*r = DisconnectReason(v)
		return nil
	}
	n, err := numbered(string(b), "reason")
	*r = DisconnectReason(n)
	return err
}

// numbered reads the "name(N)" form that String gives values it does not
// know.
func numbered(s, name string) (int32, error) {
	inner, ok := strings.CutPrefix(s, name+"(")
	if ok {
		inner, ok = strings.CutSuffix(inner, ")")
	}
	if ok {
		if n, err := strconv.ParseInt(inner, 10, 32); err == nil {
			return int32(n), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown %s %q", ErrInvalidJSON, name, s)
}

// MarshalJSON returns the event's encoding (see MarshalEvent).
func (e ChatMessage) MarshalJSON() ([]byte, error) { return MarshalEvent(e) }

// UnmarshalJSON reads the event's encoding (see UnmarshalEvent).
func (e *ChatMessage) UnmarshalJSON(b []byte) error { return unmarshalAs(b, e) }
