package callstate_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
)

var (
	jsonTime = time.Date(2026, 11, 22, 1, 7, 17, 152745058, time.UTC)
	alice    = callstate.Participant{
		SID: "PA_alice", Identity: "alice", Name: "Alice", Metadata: `{"mood":"ok"}`,
		Attributes: map[string]string{"hand": "up"}, JoinedAt: time.UnixMilli(1_700_000_000_123).UTC(),
		Kind: callstate.KindAgent, Version: 7,
		Permissions: callstate.Permissions{CanSubscribe: true, CanPublishData: true, CanUpdateMetadata: true, Hidden: true},
	}
)

// allEvents has one event of every type, with every field set.
func allEvents() []callstate.Event {
	bob := alice
	bob.Identity, bob.SID, bob.Metadata, bob.Kind = "bob", "PA_bob", "not json", callstate.ParticipantKind(42)
	bob.KindDetails, bob.IsPublisher = []callstate.ParticipantKindDetail{callstate.KindDetailForwarded, 77}, true
	prev := bob
	prev.Name, prev.Attributes, prev.KindDetails = "", map[string]string{}, nil
	carol := alice
	carol.Identity, carol.SID = "carol", "PA_carol"
	carol.DataTracks = []callstate.DataTrackInfo{{SID: "DTR_x", Name: "position"}, {SID: "DTR_z", Name: "e2ee", Encrypted: true}}
	carol.DeflateStreams = true
	return []callstate.Event{
		callstate.ParticipantJoined{Time: jsonTime, Participant: alice},
		callstate.ParticipantLeft{Time: jsonTime, Participant: bob, Reason: callstate.ReasonParticipantRemoved},
		callstate.ParticipantLeft{Time: jsonTime, Participant: bob, Reason: callstate.DisconnectReason(99)},
		callstate.ParticipantUpdated{Time: jsonTime, Participant: bob, Previous: prev, Local: true, Changes: callstate.Changes{
			Metadata: true, UserData: true, Name: true, Permissions: true,
			AttributesAdded: []string{"a"}, AttributesChanged: []string{"b"}, AttributesRemoved: []string{"c"},
		}},
		callstate.DataReceived{Time: jsonTime, Data: callstate.Data{From: "alice", FromSID: "PA_alice", Topic: "chat", Payload: []byte(`{"hi":"bob","n":[1,2]}`), Kind: callstate.Reliable}},
		callstate.DataReceived{Time: jsonTime, Data: callstate.Data{From: "alice", Topic: "t", Payload: []byte("hi <bob> & \u2028"), Kind: callstate.Lossy}},
		callstate.DataReceived{Time: jsonTime, Data: callstate.Data{Payload: []byte{0xff, 0, 1, 0xfe}, Kind: callstate.Reliable, Stream: &callstate.StreamInfo{
			ID: "stream-1", Topic: "files", MimeType: "application/octet-stream", Name: "f.bin", Text: false, Attributes: map[string]string{"k": "v"},
			Size: 4, Timestamp: jsonTime, Compressed: true,
		}}},
		callstate.DataReceived{Time: jsonTime, Data: callstate.Data{From: "alice", Payload: []byte{}, Kind: callstate.Reliable}},
		callstate.DataReceived{Time: jsonTime, Data: callstate.Data{FromServer: true, Payload: []byte("x"), Kind: callstate.Reliable}},
		callstate.AppMessage{Time: jsonTime, From: "alice", FromSID: "PA_alice", Data: json.RawMessage(`{"chat":"hi <bob>"}`)},
		callstate.AppMessage{Time: jsonTime, FromServer: true, Data: json.RawMessage(`1`)},
		callstate.SessionDataUpdated{Time: jsonTime, Data: map[string]json.RawMessage{"topic": json.RawMessage(`"demo"`), "n": json.RawMessage(`[1,{"a":null}]`)}, Changed: []string{"n", "topic"}},
		callstate.RoomMetadataChanged{Time: jsonTime, Metadata: `{"topic":"demo"}`, Previous: "plain"},
		callstate.ConnectionStateChanged{Time: jsonTime, State: callstate.StateReconnecting},
		callstate.Disconnected{Time: jsonTime, Reason: callstate.ReasonClientInitiated},
		callstate.EventsDropped{Time: jsonTime, Count: 12},
		callstate.ActiveSpeakersChanged{Time: jsonTime, Speakers: []callstate.Speaker{{Identity: "alice", SID: "PA_alice", Level: 0.75, Active: true}, {SID: "PA_hidden", Level: 0.125}}},
		callstate.ActiveSpeakersChanged{Time: jsonTime, Speakers: []callstate.Speaker{}},
		callstate.ConnectionQualityChanged{Time: jsonTime, Identity: "bob", SID: "PA_bob", Quality: callstate.QualityGood, Score: 4.25, Local: true},
		callstate.ConnectionQualityChanged{Time: jsonTime, SID: "PA_x", Quality: callstate.ConnectionQuality(9)},
		callstate.RecordingChanged{Time: jsonTime, Recording: true},
		callstate.DataTrackPublished{Time: jsonTime, Participant: carol, Track: carol.DataTracks[0]},
		callstate.DataTrackUnpublished{Time: jsonTime, Participant: bob, Track: callstate.DataTrackInfo{SID: "DTR_y", Name: "gone", Encrypted: true}},
		callstate.ChatMessage{Time: jsonTime, From: "alice", ID: "msg-1", Text: "hi <all>", Timestamp: jsonTime, Edited: jsonTime, Deleted: true, Generated: true, Legacy: true},
		callstate.ChatMessage{Time: jsonTime, From: "bob", ID: "msg-2", Text: ""},
	}
}

// TestEventJSONRoundTrip encodes an event of every type, with every field
// set, and decodes it back, both with MarshalEvent/UnmarshalEvent and with
// encoding/json (which HTML-escapes the encoding).
func TestEventJSONRoundTrip(t *testing.T) {
	t.Parallel()
	for _, ev := range allEvents() {
		b, err := callstate.MarshalEvent(ev)
		require.NoError(t, err, "%T", ev)
		require.True(t, json.Valid(b), string(b))
		got, err := callstate.UnmarshalEvent(b)
		require.NoError(t, err, string(b))
		assert.Equal(t, ev, got, string(b))

		// encoding/json escapes <, > and & in JSON values (app messages,
		// session data), which keeps their meaning but not their bytes;
		// data payloads keep their bytes.
		escaped, err := json.Marshal(ev)
		require.NoError(t, err)
		got, err = callstate.UnmarshalEvent(escaped)
		require.NoError(t, err, string(escaped))
		again, err := callstate.MarshalEvent(got)
		require.NoError(t, err)
		assert.JSONEq(t, string(b), string(again))
		if d, ok := ev.(callstate.DataReceived); ok {
			assert.Equal(t, d, got)
		}
	}
}

// TestEventJSONDisconnectedError checks that a Disconnected's error keeps
// its message.
func TestEventJSONDisconnectedError(t *testing.T) {
	t.Parallel()
	ev := callstate.Disconnected{Time: jsonTime, Reason: callstate.ReasonSignalClose, Err: errors.New("read: EOF")}
	b, err := callstate.MarshalEvent(ev)
	require.NoError(t, err)
	assert.JSONEq(t, `{"type":"disconnected","time":"2026-11-22T01:07:17.152745058Z","reason":"SIGNAL_CLOSE","error":"read: EOF"}`, string(b))
	got, err := callstate.UnmarshalEvent(b)
	require.NoError(t, err)
	d := got.(callstate.Disconnected)
	require.Error(t, d.Err)
	assert.Equal(t, "read: EOF", d.Err.Error())
}

// TestEventJSONUnmarshalInto checks the event types' UnmarshalJSON, also
// inside a user's own struct.
func TestEventJSONUnmarshalInto(t *testing.T) {
	t.Parallel()
	type record struct {
		Seq   int                  `json:"seq"`
		Event callstate.AppMessage `json:"event"`
	}
	in := record{Seq: 3, Event: callstate.AppMessage{Time: jsonTime, From: "a", Data: json.RawMessage(`[1]`)}}
	b, err := json.Marshal(in)
	require.NoError(t, err)
	var out record
	require.NoError(t, json.Unmarshal(b, &out))
	assert.Equal(t, in, out)

	var wrong callstate.DataReceived
	err = json.Unmarshal(b[strings.Index(string(b), `{"type"`):len(b)-1], &wrong)
	assert.ErrorIs(t, err, callstate.ErrInvalidJSON)
}

// TestEventJSONPayloadForms checks that a data payload is in exactly one of
// json, text and payload, and which one.
func TestEventJSONPayloadForms(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		payload string
		field   string
	}{
		{`{"a":[1,2]}`, "json"},
		{`"str"`, "json"},
		{`17`, "json"},
		{`{"a": 1}`, "text"},  // not compact: embedding would change its bytes
		{`{"a":"<"}`, "text"}, // json.Marshal would escape it
		{"hello", "text"},
		{"", "text"},
		{"\xff\x00", "payload"},
	} {
		b, err := callstate.MarshalEvent(callstate.DataReceived{Data: callstate.Data{Payload: []byte(c.payload)}})
		require.NoError(t, err)
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(b, &m))
		for _, f := range []string{"json", "text", "payload"} {
			_, ok := m[f]
			assert.Equal(t, f == c.field, ok, "%q: field %s in %s", c.payload, f, b)
		}
		assert.Equal(t, json.RawMessage(`"reliable"`), m["kind"])
	}
}

// TestEventJSONRefused checks that what is not an event, or is an
// inconsistent one, is an error matching ErrInvalidJSON.
func TestEventJSONRefused(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		``, `[]`, `{}`, `{"type":"nope"}`, `{"type":"data","size":1}`,
		`{"type":"data","text":"a","payload":"YQ=="}`,
		`{"type":"data","text":"a","json":1}`,
		`{"type":"data","size":2,"text":"a"}`,
		`{"type":"data","kind":"sideways","text":"a"}`,
		`{"type":"data","payload":"!!"}`,
		`{"type":"connection_state","connection_state":"asleep"}`,
		`{"type":"participant_left","reason":"GONE"}`,
		`{"type":"participant_joined","participant":{"kind":"robot"}}`,
		`{"type":"participant_joined","participant":[]}`,
		`{"type":"events_dropped","count":-1}`,
		`{"type":"app_message","time":"yesterday"}`,
	} {
		_, err := callstate.UnmarshalEvent([]byte(in))
		assert.ErrorIs(t, err, callstate.ErrInvalidJSON, in)
	}
	_, err := callstate.MarshalEvent(nil)
	assert.ErrorIs(t, err, callstate.ErrInvalidArgument)
	_, err = callstate.MarshalEvent(callstate.AppMessage{Data: json.RawMessage("{")})
	assert.ErrorIs(t, err, callstate.ErrInvalidJSON)
}

// TestEventJSONFormat pins the documented line format (docs/events.md).
func TestEventJSONFormat(t *testing.T) {
	t.Parallel()
	b, err := callstate.MarshalEvent(callstate.DataReceived{Time: jsonTime, Data: callstate.Data{
		From: "alice", FromSID: "PA_9", Topic: "chat", Payload: []byte("hi <bob>"), Kind: callstate.Reliable,
	}})
	require.NoError(t, err)
	assert.Equal(t, `{"type":"data","time":"2026-11-22T01:07:17.152745058Z","from":"alice","from_sid":"PA_9","topic":"chat","kind":"reliable","size":8,"text":"hi <bob>"}`, string(b))

	b, err = callstate.MarshalEvent(callstate.ParticipantJoined{Time: jsonTime, Participant: alice})
	require.NoError(t, err)
	assert.Equal(t, `{"type":"participant_joined","time":"2026-11-22T01:07:17.152745058Z","participant":{"identity":"alice","sid":"PA_alice","name":"Alice","metadata":"{\"mood\":\"ok\"}","user_data":{"mood":"ok"},"attributes":{"hand":"up"},"kind":"agent","joined_at":"2023-11-14T22:13:20.123Z","permissions":{"can_subscribe":true,"can_publish":false,"can_publish_data":true,"can_update_metadata":true,"hidden":true},"version":7}}`, string(b))
}

// TestSnapshotJSONRoundTrip encodes a snapshot and reads it back.
func TestSnapshotJSONRoundTrip(t *testing.T) {
	t.Parallel()
	bob := alice
	bob.Identity = "bob"
	st := callstate.Snapshot{
		Room: callstate.RoomInfo{SID: "RM_1", Name: "standup", Metadata: `{"topic":"demo"}`, NumParticipants: 2, NumPublishers: 1, Recording: true, MaxParticipants: 10,
			CreatedAt: time.Unix(1_700_000_000, 0).UTC(), EmptyTimeout: 300 * time.Second, DepartureTimeout: 20 * time.Second},
		Local:       alice,
		Remote:      []callstate.Participant{bob},
		SessionData: map[string]json.RawMessage{"topic": json.RawMessage(`"demo"`)},
		Connection:  callstate.StateConnected,
	}
	b, err := json.Marshal(st)
	require.NoError(t, err)
	var got callstate.Snapshot
	require.NoError(t, json.Unmarshal(b, &got))
	assert.Equal(t, st, got, string(b))

	b, err = json.Marshal(callstate.Snapshot{})
	require.NoError(t, err)
	assert.Contains(t, string(b), `"participants":[]`)
	assert.Contains(t, string(b), `"session_data":null`)
	assert.Contains(t, string(b), `"connection_state":"connecting"`)
}

// FuzzUnmarshalEvent checks that any input either fails with
// ErrInvalidJSON or decodes to an event whose encoding decodes to the same
// event.
func FuzzUnmarshalEvent(f *testing.F) {
	for _, ev := range allEvents() {
		b, err := callstate.MarshalEvent(ev)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte(`{"type":"data","json":{"a":1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := callstate.UnmarshalEvent(b)
		if err != nil {
			require.ErrorIs(t, err, callstate.ErrInvalidJSON)
			return
		}
		again, err := callstate.MarshalEvent(ev)
		if err != nil {
			// Only JSON values that came in invalid can fail, and
			// encoding/json does not let those through.
			t.Fatalf("decoded %#v, cannot encode it: %v", ev, err)
		}
		back, err := callstate.UnmarshalEvent(again)
		require.NoError(t, err, string(again))
		againAgain, err := callstate.MarshalEvent(back)
		require.NoError(t, err)
		require.Equal(t, string(again), string(againAgain))
	})
}

// A recorder writes each event as a JSON line and replays it later.
func ExampleMarshalEvent() {
	ev := callstate.DataReceived{
		Time: time.Date(2026, 11, 22, 1, 7, 17, 0, time.UTC),
		Data: callstate.Data{From: "alice", Topic: "chat", Payload: []byte(`{"text":"hi"}`)},
	}
	line, err := callstate.MarshalEvent(ev)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(line))

	replayed, err := callstate.UnmarshalEvent(line)
	if err != nil {
		panic(err)
	}
	d := replayed.(callstate.DataReceived).Data
	fmt.Printf("%s said %s on %q\n", d.From, d.Payload, d.Topic)
	// Output:
	// {"type":"data","time":"2026-11-22T01:07:17Z","from":"alice","topic":"chat","kind":"reliable","size":13,"json":{"text":"hi"}}
	// alice said {"text":"hi"} on "chat"
}
