// Recorder records a room: it joins as a hidden, receive-only participant
// (the others do not see it, and it cannot send) and writes the room's
// state and every later change and message to a JSON-lines file, one
// timestamped record per line. The first record is the snapshot returned by
// SubscribeWithSnapshot, so that the file starts from a consistent state and
// misses no change after it; every later line is an event in callstate's
// JSON encoding (callstate.MarshalEvent, documented in docs/events.md), the
// one `callstate join` prints. It can also replay a recorded file: it reads
// the events back with callstate.UnmarshalEvent and prints their timeline.
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
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// snapshotRecord is the first line of a recording: the room's state when
// the recording started. The other lines are events.
type snapshotRecord struct {
	Type  string             `json:"type"` // "snapshot"
	Time  time.Time          `json:"time"`
	State callstate.Snapshot `json:"state"`
}

// recordRoom writes the snapshot and then every event to w until ctx is
// done, the room ends, or stop reports true for a written event.
func recordRoom(ctx context.Context, room *callstate.Room, w io.Writer, stop func(callstate.Event) bool) (int, error) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	st, sub := room.SubscribeWithSnapshot(nil)
	defer sub.Close()
	snap, err := json.Marshal(snapshotRecord{Type: "snapshot", Time: time.Now().UTC(), State: st})
	if err != nil {
		return 0, err
	}
	if err := writeLine(bw, snap); err != nil {
		return 0, err
	}
	n := 1
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				return n, nil
			}
			b, err := callstate.MarshalEvent(ev)
			if err != nil {
				return n, err
			}
			if err := writeLine(bw, b); err != nil {
				return n, err
			}
			n++
			if stop != nil && stop(ev) {
				return n, nil
			}
		case <-ctx.Done():
			return n, nil
		}
	}
}

// writeLine writes one record and flushes it, so that a recording cut
// short by a crash keeps every record written so far.
func writeLine(w *bufio.Writer, b []byte) error {
	w.Write(b)
	w.WriteByte('\n')
	return w.Flush()
}

// printTimeline replays a recording: it decodes its records and prints
// them, with times relative to the first.
func printTimeline(r io.Reader, w io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 64<<20)
	var start time.Time
	for line := 1; sc.Scan(); line++ {
		t, what, err := describeLine(sc.Bytes())
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		if start.IsZero() {
			start = t
		}
		if what == "" {
			continue
		}
		fmt.Fprintf(w, "%+8.3fs  %s\n", t.Sub(start).Seconds(), what)
	}
	return sc.Err()
}

// describeLine decodes one record and says what it records.
func describeLine(b []byte) (time.Time, string, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return time.Time{}, "", err
	}
	if head.Type == "snapshot" {
		var snap snapshotRecord
		if err := json.Unmarshal(b, &snap); err != nil {
			return time.Time{}, "", err
		}
		var ids []string
		for _, p := range snap.State.Remote {
			ids = append(ids, p.Identity)
		}
		sd, _ := json.Marshal(snap.State.SessionData)
		return snap.Time, fmt.Sprintf("snapshot: %d participants %v, session data %s", len(ids), ids, sd), nil
	}
	ev, err := callstate.UnmarshalEvent(b)
	if err != nil {
		return time.Time{}, "", err
	}
	return ev.When(), describe(ev), nil
}

// describe says what an event records; "" for an event not worth a line.
func describe(ev callstate.Event) string {
	switch e := ev.(type) {
	case callstate.ParticipantJoined:
		return fmt.Sprintf("%s joined", e.Participant.Identity)
	case callstate.ParticipantLeft:
		return fmt.Sprintf("%s left (%s)", e.Participant.Identity, e.Reason)
	case callstate.ParticipantUpdated:
		p, c := e.Participant, e.Changes
		var changes []string
		for _, f := range []struct {
			name    string
			changed bool
		}{{"user_data", c.UserData}, {"metadata", c.Metadata && !c.UserData}, {"name", c.Name}, {"permissions", c.Permissions}} {
			if f.changed {
				changes = append(changes, f.name)
			}
		}
		for _, k := range slices.Concat(c.AttributesAdded, c.AttributesChanged, c.AttributesRemoved) {
			changes = append(changes, "attribute "+k)
		}
		s := fmt.Sprintf("%s changed %s:", p.Identity, strings.Join(changes, ", "))
		if ud, ok := p.UserData(); ok {
			s += fmt.Sprintf(" user data %s", ud)
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
	case callstate.DataReceived:
		d := e.Data
		s := fmt.Sprintf("%s sent %d bytes of %s data on topic %q", d.From, len(d.Payload), d.Kind, d.Topic)
		if len(d.Payload) <= 256 && isText(d.Payload) {
			s += fmt.Sprintf(": %q", d.Payload)
		}
		return s
	case callstate.AppMessage:
		return fmt.Sprintf("%s sent the app message %s", e.From, e.Data)
	case callstate.SessionDataUpdated:
		sd, _ := json.Marshal(e.Data)
		return fmt.Sprintf("session data is now %s (changed %s)", sd, strings.Join(e.Changed, ", "))
	case callstate.RoomMetadataChanged:
		// A session_data record follows metadata that is a JSON object
		// and says it better.
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(e.Metadata), &obj) == nil && obj != nil {
			return ""
		}
		return fmt.Sprintf("room metadata is now %q", e.Metadata)
	case callstate.ConnectionStateChanged:
		return fmt.Sprintf("recorder %s", e.State)
	case callstate.EventsDropped:
		return fmt.Sprintf("%d events dropped", e.Count)
	case callstate.Disconnected:
		return fmt.Sprintf("recording ended (%s)", e.Reason)
	}
	return fmt.Sprintf("%T", ev)
}

func isText(b []byte) bool {
	s := string(b)
	return utf8.ValidString(s) && !strings.ContainsAny(s, "\x00\r\n")
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

	var stopAt func(callstate.Event) bool
	scriptErr := make(chan error, 1)
	if *bots {
		// Record until both bots have left.
		left := map[string]bool{}
		stopAt = func(ev callstate.Event) bool {
			if l, ok := ev.(callstate.ParticipantLeft); ok {
				left[l.Participant.Identity] = true
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
	if *bots && !stopAt(nil) {
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
