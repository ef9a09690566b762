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

// The JSON lines that the join command writes. Events, participants and
// the state are in callstate's own JSON encoding (callstate.MarshalEvent,
// the MarshalJSON methods of Participant, RoomInfo and Snapshot), which
// docs/events.md documents; this file adds the lines that are the
// command's own (joined, result, error), which docs/cli.md documents.

// line is one output line of the command's own: joined, result and error.
// Only the fields of its type are set.
type line struct {
	Type string    `json:"type"`
	Time time.Time `json:"time"`

	// result and error
	ID    json.RawMessage `json:"id,omitempty"`
	OK    *bool           `json:"ok,omitempty"`
	Error string          `json:"error,omitempty"`
	Code  string          `json:"code,omitempty"`

	// joined, and the result of "state"
	State *callstate.Snapshot `json:"state,omitempty"`

	// rpc_request, and the results of rpc, send_text, send_file and chat
	From      *string     `json:"from,omitempty"`
	Method    string      `json:"method,omitempty"`
	RequestID string      `json:"request_id,omitempty"`
	Text      *string     `json:"text,omitempty"`
	Stream    *streamJSON `json:"stream,omitempty"`

	// errors of rpc
	RpcCode    *uint32 `json:"rpc_code,omitempty"`
	RpcMessage string  `json:"rpc_message,omitempty"`
	RpcData    string  `json:"rpc_data,omitempty"`
}

// streamJSON describes a data stream sent, and one received in a
// stream_open line, as events.md describes the stream of a data line.
type streamJSON struct {
	ID         string            `json:"id"`
	Topic      string            `json:"topic,omitempty"`
	MimeType   string            `json:"mime_type,omitempty"`
	Name       string            `json:"name,omitempty"`
	Text       bool              `json:"text"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// Size and Timestamp are a received stream's only: the announced
	// length (absent when the sender did not say) and the sender's clock
	// at its start (absent when unknown).
	Size      *int64     `json:"size,omitempty"`
	Timestamp *time.Time `json:"timestamp,omitempty"`
}

// openedStream describes a received stream for its stream_open line.
func openedStream(i callstate.StreamInfo) *streamJSON {
	s := &streamJSON{ID: i.ID, Topic: i.Topic, MimeType: i.MimeType, Name: i.Name, Text: i.Text, Attributes: i.Attributes}
	if i.Size >= 0 {
		s.Size = ptr(i.Size)
	}
	if !i.Timestamp.IsZero() {
		s.Timestamp = ptr(i.Timestamp.UTC())
	}
	return s
}

// streamLineJSON is a stream_open, stream_chunk or stream_end line: a
// stream received on a topic registered with stream_register, as it
// arrives. Only the fields of its type are set.
type streamLineJSON struct {
	Type     string    `json:"type"`
	Time     time.Time `json:"time"`
	StreamID string    `json:"stream_id"`
	// stream_open
	From   *string     `json:"from,omitempty"`
	Stream *streamJSON `json:"stream,omitempty"`
	// stream_chunk: where its bytes start in the stream and how many
	// there are; stream_end: the bytes received in all.
	Offset *int64 `json:"offset,omitempty"`
	Size   *int64 `json:"size,omitempty"`
	// stream_chunk's content, unless the stream is saved to a file:
	// text for a text stream, standard base64 for a byte stream.
	Text    *string `json:"text,omitempty"`
	Payload []byte  `json:"payload,omitempty"`
	// stream_open and stream_end of a stream saved to a file.
	Path string `json:"path,omitempty"`
	// stream_end of a stream that did not end well.
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
}

func ptr[T any](v T) *T { return &v }

// eventLine converts an event into its output line: its callstate JSON
// encoding, or an unknown_event line for an event type this version of the
// command cannot encode (a newer library's).
func eventLine(ev callstate.Event) any {
	b, err := callstate.MarshalEvent(ev)
	if err != nil {
		return line{Type: "unknown_event", Time: ev.When().UTC(), Error: err.Error()}
	}
	return json.RawMessage(b)
}

// frameLineJSON is a data_track_frame line: a frame received on a data
// track subscribed with subscribe_data_track.
type frameLineJSON struct {
	Type          string            `json:"type"`
	Time          time.Time         `json:"time"`
	From          string            `json:"from"`
	Track         dataTrackLineJSON `json:"track"`
	Size          int               `json:"size"`
	Payload       string            `json:"payload"`
	Text          *string           `json:"text,omitempty"`
	UserTimestamp uint64            `json:"user_timestamp,omitempty"`
}

type dataTrackLineJSON struct {
	SID       string `json:"sid"`
	Name      string `json:"name"`
	Encrypted bool   `json:"encrypted"`
}

// frameLine is the line of a frame received on s.
func frameLine(s *callstate.RemoteDataTrackSubscription, f callstate.DataTrackFrame) frameLineJSON {
	info := s.Track()
	l := frameLineJSON{Type: "data_track_frame", Time: f.Received.UTC(), From: s.Publisher(),
		Track: dataTrackLineJSON{SID: info.SID, Name: info.Name, Encrypted: info.Encrypted},
		Size:  len(f.Payload), Payload: base64.StdEncoding.EncodeToString(f.Payload), UserTimestamp: f.UserTimestamp}
	if utf8.Valid(f.Payload) {
		l.Text = ptr(string(f.Payload))
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
		{callstate.ErrUnpublished, "unpublished"},
		{callstate.ErrDuplicateName, "duplicate_name"},
		{callstate.ErrInvalidHandle, "invalid_handle"},
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
		{callstate.ErrStreamAborted, "stream_aborted"},
		{callstate.ErrStreamTooSlow, "stream_too_slow"},
		{callstate.ErrStreamIncomplete, "stream_incomplete"},
		{context.DeadlineExceeded, "timeout"},
		{context.Canceled, "canceled"},
	} {
		if errors.Is(err, c.target) {
			return c.code
		}
	}
	return "failed"
}
