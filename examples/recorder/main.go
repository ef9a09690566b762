// Recorder records a room: it joins as a hidden, receive-only participant
// (the others do not see it, and it cannot send) and writes the room's
// state and every later change and message to a JSON-lines file, one
// timestamped record per line. The first record is the snapshot returned by
// SubscribeWithSnapshot, so that the file starts from a consistent state and
// misses no change after it. It can also print the timeline of a recorded
// file.
//
// Run it with
//
//	go run ./examples/recorder                       # record a scripted call to recording.jsonl, print it
//	go run ./examples/recorder -print recording.jsonl
//
// Without -url, it starts a local LiveKit server (package calltest; the
// first run installs livekit-server, which takes a few minutes) and, so that
// there is something to record, a couple of bots that talk for a few
// seconds. To record a room on an existing server, give -url, -api-key,
// -api-secret (or set CALLSTATE_URL, CALLSTATE_API_KEY and
// CALLSTATE_API_SECRET) and -room; it records for -duration, or until
// interrupted when -duration is 0.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// Record is one line of a recording.
type Record struct {
	Time time.Time `json:"t"`
	// Type is snapshot, participant_joined, participant_left,
	// participant_updated, data, app_message, session_data, room_metadata,
	// events_dropped or disconnected.
	Type string `json:"type"`

	Participants []ParticipantRecord `json:"participants,omitempty"` // snapshot
	Participant  *ParticipantRecord  `json:"participant,omitempty"`  // participant_*
	Changes      []string            `json:"changes,omitempty"`      // participant_updated
	From         string              `json:"from,omitempty"`         // data, app_message
	Topic        string              `json:"topic,omitempty"`        // data
	Kind         string              `json:"kind,omitempty"`         // data
	Size         int                 `json:"size,omitempty"`         // data
	Text         string              `json:"text,omitempty"`         // data, when short UTF-8 text
	Data         json.RawMessage     `json:"data,omitempty"`         // app_message, session_data, snapshot
	Changed      []string            `json:"changed,omitempty"`      // session_data
	Metadata     *string             `json:"metadata,omitempty"`     // room_metadata, when not a JSON object
	Reason       string              `json:"reason,omitempty"`       // participant_left, disconnected
	Count        uint64              `json:"count,omitempty"`        // events_dropped
}

// ParticipantRecord is a participant's state in a record.
type ParticipantRecord struct {
	Identity   string            `json:"identity"`
	Name       string            `json:"name,omitempty"`
	Metadata   string            `json:"metadata,omitempty"`
	UserData   json.RawMessage   `json:"user_data,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

func participantRecord(p callstate.Participant) *ParticipantRecord {
	ud, _ := p.UserData()
	pr := &ParticipantRecord{Identity: p.Identity, Name: p.Name, Metadata: p.Metadata, UserData: ud}
	if len(p.Attributes) > 0 {
		pr.Attributes = p.Attributes
	}
	return pr
}

// record converts an event; ok is false for events not recorded.
func record(ev callstate.Event) (Record, bool) {
	r := Record{Time: ev.When().UTC()}
	switch e := ev.(type) {
	case callstate.ParticipantJoined:
		r.Type, r.Participant = "participant_joined", participantRecord(e.Participant)
	case callstate.ParticipantLeft:
		r.Type, r.Participant, r.Reason = "participant_left", participantRecord(e.Participant), e.Reason.String()
	case callstate.ParticipantUpdated:
		r.Type, r.Participant = "participant_updated", participantRecord(e.Participant)
		c := e.Changes
		for _, f := range []struct {
			name    string
			changed bool
		}{{"user_data", c.UserData}, {"metadata", c.Metadata && !c.UserData}, {"name", c.Name}, {"permissions", c.Permissions}} {
			if f.changed {
				r.Changes = append(r.Changes, f.name)
			}
		}
		for _, k := range append(append(c.AttributesAdded, c.AttributesChanged...), c.AttributesRemoved...) {
			r.Changes = append(r.Changes, "attribute "+k)
		}
	case callstate.DataReceived:
		d := e.Data
		r.Type, r.From, r.Topic, r.Kind, r.Size = "data", d.From, d.Topic, d.Kind.String(), len(d.Payload)
		if len(d.Payload) <= 256 && isText(d.Payload) {
			r.Text = string(d.Payload)
		}
	case callstate.AppMessage:
		r.Type, r.From, r.Data = "app_message", e.From, e.Data
	case callstate.SessionDataUpdated:
		r.Type, r.Changed = "session_data", e.Changed
		r.Data, _ = json.Marshal(e.Data)
	case callstate.RoomMetadataChanged:
		// Session data records carry the metadata that is a JSON object.
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(e.Metadata), &obj) == nil && obj != nil {
			return r, false
		}
		r.Type, r.Metadata = "room_metadata", &e.Metadata
	case callstate.EventsDropped:
		r.Type, r.Count = "events_dropped", e.Count
	case callstate.Disconnected:
		r.Type, r.Reason = "disconnected", e.Reason.String()
	default:
		return r, false
	}
	return r, true
}

func isText(b []byte) bool {
	s := string(b)
	return strings.ToValidUTF8(s, "\uFFFD") == s && !strings.ContainsAny(s, "\x00\r\n")
}

// recordRoom writes the snapshot and then every event to w until ctx is
// done, the room ends, or stop reports true for a written record.
func recordRoom(ctx context.Context, room *callstate.Room, w io.Writer, stop func(Record) bool) (int, error) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	st, sub := room.SubscribeWithSnapshot(nil)
	defer sub.Close()
	snap := Record{Time: time.Now().UTC(), Type: "snapshot"}
	for _, p := range st.Remote {
		snap.Participants = append(snap.Participants, *participantRecord(p))
	}
	snap.Data, _ = json.Marshal(st.SessionData)
	if err := enc.Encode(snap); err != nil {
		return 0, err
	}
	n := 1
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				return n, nil
			}
			r, ok := record(ev)
			if !ok {
				continue
			}
			if err := enc.Encode(r); err != nil {
				return n, err
			}
			n++
			if stop != nil && stop(r) {
				return n, nil
			}
		case <-ctx.Done():
			return n, nil
		}
	}
}

// printTimeline prints a recording, with times relative to its first
// record.
func printTimeline(r io.Reader, w io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 64<<20)
	var start time.Time
	for line := 1; sc.Scan(); line++ {
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		if start.IsZero() {
			start = rec.Time
		}
		fmt.Fprintf(w, "%+8.3fs  %s\n", rec.Time.Sub(start).Seconds(), describe(rec))
	}
	return sc.Err()
}

func describe(r Record) string {
	who := func() string {
		if r.Participant == nil {
			return "?"
		}
		return r.Participant.Identity
	}
	switch r.Type {
	case "snapshot":
		var ids []string
		for _, p := range r.Participants {
			ids = append(ids, p.Identity)
		}
		return fmt.Sprintf("snapshot: %d participants %v, session data %s", len(ids), ids, r.Data)
	case "participant_joined":
		return fmt.Sprintf("%s joined", who())
	case "participant_left":
		return fmt.Sprintf("%s left (%s)", who(), r.Reason)
	case "participant_updated":
		p := r.Participant
		s := fmt.Sprintf("%s changed %s:", who(), strings.Join(r.Changes, ", "))
		if len(p.UserData) > 0 {
			s += fmt.Sprintf(" user data %s", p.UserData)
		} else if p.Metadata != "" {
			s += fmt.Sprintf(" metadata %q", p.Metadata)
		}
		if p.Name != "" {
			s += fmt.Sprintf(" name %q", p.Name)
		}
		if len(p.Attributes) > 0 {
			s += fmt.Sprintf(" attributes %v", p.Attributes)
		}
		return s
	case "data":
		s := fmt.Sprintf("%s sent %d bytes of %s data on topic %q", r.From, r.Size, r.Kind, r.Topic)
		if r.Text != "" {
			s += fmt.Sprintf(": %q", r.Text)
		}
		return s
	case "app_message":
		return fmt.Sprintf("%s sent the app message %s", r.From, r.Data)
	case "session_data":
		return fmt.Sprintf("session data is now %s (changed %s)", r.Data, strings.Join(r.Changed, ", "))
	case "room_metadata":
		return fmt.Sprintf("room metadata is now %q", *r.Metadata)
	case "events_dropped":
		return fmt.Sprintf("%d events dropped", r.Count)
	case "disconnected":
		return fmt.Sprintf("recording ended (%s)", r.Reason)
	}
	return r.Type
}

// script is a short call between two bots, so that there is something to
// record. Each step waits until the other bot has observed it.
func script(ctx context.Context, join func(identity string) (*callstate.Room, error)) error {
	alice, err := join("alice")
	if err != nil {
		return err
	}
	defer alice.Close()
	aliceEvents := alice.Subscribe(nil)
	bob, err := join("bob")
	if err != nil {
		return err
	}
	defer bob.Close()
	bobEvents := bob.Subscribe(nil)
	await := func(sub *callstate.Subscription, what string, match func(callstate.Event) bool) error {
		_, err := calltest.AwaitEvent(ctx, sub, 20*time.Second, match)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		return nil
	}
	steps := []struct {
		what  string
		do    func() error
		sub   *callstate.Subscription
		match func(callstate.Event) bool
	}{
		// Participant changes are checked on the observer's state: a
		// change may reach it in a participant_joined event.
		{"alice's user data", func() error { return alice.SetUserData(ctx, map[string]any{"role": "host"}) }, bobEvents,
			func(callstate.Event) bool { p, _ := bob.Participant("alice"); _, ok := p.UserData(); return ok }},
		{"bob's name", func() error { return bob.SetName(ctx, "Bob") }, aliceEvents,
			func(callstate.Event) bool { p, _ := alice.Participant("bob"); return p.Name == "Bob" }},
		{"the session data", func() error {
			return alice.SetSessionData(ctx, map[string]any{"topic": "recording demo", "slide": 1}, callstate.Replace)
		}, bobEvents, func(e callstate.Event) bool { _, ok := e.(callstate.SessionDataUpdated); return ok }},
		{"the next slide", func() error { return bob.SetSessionData(ctx, map[string]any{"slide": 2}, callstate.ShallowMerge) }, aliceEvents,
			func(e callstate.Event) bool {
				s, ok := e.(callstate.SessionDataUpdated)
				return ok && string(s.Data["slide"]) == "2"
			}},
		{"an app message", func() error { return alice.SendAppMessage(ctx, map[string]string{"chat": "hi bob"}) }, bobEvents,
			func(e callstate.Event) bool { _, ok := e.(callstate.AppMessage); return ok }},
		{"a data packet", func() error {
			return bob.PublishData(ctx, []byte("thumbs up"), &callstate.PublishOptions{Topic: "reactions"})
		}, aliceEvents,
			func(e callstate.Event) bool { _, ok := e.(callstate.DataReceived); return ok }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
		if err := await(s.sub, s.what, s.match); err != nil {
			return err
		}
	}
	return nil // both leave
}

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	serverURL := flag.String("url", os.Getenv("CALLSTATE_URL"), "LiveKit server URL (default: start a local server and bots)")
	apiKey := flag.String("api-key", os.Getenv("CALLSTATE_API_KEY"), "API key of the server")
	apiSecret := flag.String("api-secret", os.Getenv("CALLSTATE_API_SECRET"), "API secret of the server")
	roomName := flag.String("room", "", "room to record (default: a new room, with -bots)")
	out := flag.String("o", "recording.jsonl", "file to record to")
	printFile := flag.String("print", "", "print the timeline of this recording and exit")
	duration := flag.Duration("duration", 0, "how long to record; 0 records until interrupted, or until the bots are done")
	bots := flag.Bool("bots", false, "script two bots in the room (the default without -url)")
	flag.Parse()

	if *printFile != "" {
		f, err := os.Open(*printFile)
		if err != nil {
			return err
		}
		defer f.Close()
		return printTimeline(f, os.Stdout)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *serverURL == "" {
		srv, err := calltest.Start(ctx, &calltest.Options{IgnoreEnv: true})
		if err != nil {
			return err
		}
		defer srv.Close()
		*serverURL, *apiKey, *apiSecret = srv.URL(), srv.APIKey(), srv.APISecret()
		*bots = true
	}
	if *roomName == "" {
		if !*bots {
			return errors.New("-room is required to record an existing server's room (or use -bots)")
		}
		*roomName = fmt.Sprintf("recorder-%d", time.Now().UnixNano())
	}
	if *bots && *duration == 0 {
		*duration = 30 * time.Second
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	// The recorder is hidden and receive-only: its token hides it and does
	// not let it publish data or change its metadata.
	token, err := callstate.NewToken(*apiKey, *apiSecret, callstate.Claims{
		Identity: "recorder",
		Grants: callstate.Grants{
			Room: *roomName, RoomJoin: true, Hidden: true,
			CanPublish: callstate.Bool(false), CanPublishData: callstate.Bool(false),
		},
	})
	if err != nil {
		return err
	}
	rec, err := callstate.Join(ctx, *serverURL, token, &callstate.JoinOptions{ReceiveOnly: true})
	if err != nil {
		return err
	}
	defer rec.Close()
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()

	var stopAt func(Record) bool
	scriptErr := make(chan error, 1)
	if *bots {
		// Record until both bots have left.
		left := map[string]bool{}
		stopAt = func(r Record) bool {
			if r.Type == "participant_left" {
				left[r.Participant.Identity] = true
			}
			return left["alice"] && left["bob"]
		}
		join := func(identity string) (*callstate.Room, error) {
			tok, err := callstate.NewToken(*apiKey, *apiSecret, callstate.Claims{Identity: identity, Grants: calltest.DefaultGrants(*roomName)})
			if err != nil {
				return nil, err
			}
			return callstate.Join(ctx, *serverURL, tok, nil)
		}
		go func() { scriptErr <- script(ctx, join) }()
	} else {
		close(scriptErr)
	}
	fmt.Fprintf(os.Stderr, "recorder: recording room %s to %s\n", *roomName, *out)
	n, err := recordRoom(ctx, rec, f, stopAt)
	if err != nil {
		return err
	}
	if err := <-scriptErr; err != nil {
		return fmt.Errorf("the bots failed: %w", err)
	}
	if *bots && !stopAt(Record{}) {
		return fmt.Errorf("the recording ended before the bots left: %w", context.Cause(ctx))
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "recorder: %d records in %s\n", n, *out)
	if *bots {
		f, err := os.Open(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		return printTimeline(f, os.Stdout)
	}
	return nil
}
