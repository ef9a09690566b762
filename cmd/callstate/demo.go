package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/lkserver"
)

type demoConfig struct {
	server      serverFlags
	timeout     time.Duration
	stepTimeout time.Duration
	verbose     bool
}

func newDemoFlags(e *env) (*flag.FlagSet, *demoConfig) {
	c := &demoConfig{}
	fs := newFlagSet(e, "demo", "[flags]", `
Demo runs a short scripted call with a few bot participants that exercises
every feature of callstate, and narrates it: one line per step, saying what
was sent and what the receiving side observed, and when. It ends with a
checklist of the features and exits 0 only if every step was observed by
its receiver.

Without -url, it starts a local LiveKit server on the loopback interface
(the first run installs livekit-server, which takes a few minutes) and stops
it at the end; that server posts its webhooks to the demo, which verifies
them. With -url, -api-key and -api-secret, it uses that server, and the
webhook step is not run.`)
	c.server.register(fs, e, " to use instead of starting one")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Minute, "bound on the whole call (not the server's start)")
	fs.DurationVar(&c.stepTimeout, "step-timeout", 15*time.Second, "how long a step waits for its receiver")
	fs.BoolVar(&c.verbose, "v", false, "copy the local server's log to standard error")
	return fs, c
}

func demoFlags(e *env) *flag.FlagSet { fs, _ := newDemoFlags(e); return fs }

func runDemo(ctx context.Context, args []string, e *env) int {
	fs, c := newDemoFlags(e)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	existing, err := c.server.complete()
	if err != nil {
		return usageError(fs, "%v", err)
	}
	if c.timeout <= 0 || c.stepTimeout <= 0 {
		return usageError(fs, "-timeout and -step-timeout must be positive")
	}

	d := &demo{
		out:         e.stdout,
		stepTimeout: c.stepTimeout,
		rooms:       map[string]*callstate.Room{},
		subs:        map[string]*callstate.Subscription{},
	}
	srvStart := time.Now()
	where := ""
	if existing {
		d.url, d.apiKey, d.apiSecret = c.server.url, c.server.apiKey, c.server.apiSecret
		where = "the server at " + d.url
	} else {
		fmt.Fprintln(e.stderr, "callstate demo: starting a local LiveKit server...")
		// The demo's own server posts its webhooks to the demo's loopback
		// endpoint; a server given with -url posts them elsewhere, if at all.
		hooks, err := startDemoWebhooks()
		if err != nil {
			fmt.Fprintf(e.stderr, "callstate demo: %v\n", err)
			return exitFailure
		}
		defer hooks.close()
		srv, err := startLocalServer(ctx, e, c.verbose, &lkserver.Options{WebhookURLs: []string{hooks.url}})
		if err != nil {
			fmt.Fprintf(e.stderr, "callstate demo: %v\n", err)
			return exitFailure
		}
		defer func() {
			t := time.Now()
			if err := srv.Close(); err != nil {
				fmt.Fprintf(e.stderr, "callstate demo: stopping the server: %v\n", err)
			}
			fmt.Fprintf(d.out, "Local server stopped in %s.\n", seconds(time.Since(t)))
		}()
		d.url, d.apiKey, d.apiSecret = srv.URL(), srv.APIKey(), srv.APISecret()
		if err := hooks.setCredentials(d.apiKey, d.apiSecret); err != nil {
			fmt.Fprintf(e.stderr, "callstate demo: %v\n", err)
			return exitFailure
		}
		d.webhooks = hooks
		where = fmt.Sprintf("a local LiveKit server at %s (started in %s)", d.url, seconds(time.Since(srvStart)))
	}
	d.roomName = "demo-" + randomHex(4)
	rs, err := callstate.NewRoomService(d.url, d.apiKey, d.apiSecret, nil)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	d.rs = rs

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	fmt.Fprintf(d.out, "callstate demo: a scripted call in room %s on %s\n\n", d.roomName, where)
	d.start = time.Now()
	d.script(ctx)
	elapsed := time.Since(d.start)
	d.closeRooms()
	return d.report(ctx, elapsed)
}

// demo is the state of a scripted call.
type demo struct {
	out                    io.Writer
	url, apiKey, apiSecret string
	roomName               string
	rs                     *callstate.RoomService
	stepTimeout            time.Duration
	start                  time.Time

	rooms map[string]*callstate.Room
	subs  map[string]*callstate.Subscription

	webhooks *demoWebhooks                // nil with -url
	rpcCalls chan callstate.RpcInvocation // bob's RPC handler's calls, once registered
	chat     *callstate.ChatMessage       // the chat message bob received

	results []stepResult
}

type stepResult struct {
	feature string
	ok      bool
	skipped bool   // not run: the call was stopped
	omitted string // not run, not counted: why the step does not apply
}

// The features the script checks, in order: each is one step and one line
// of the checklist.
const (
	featJoin        = "join, participant_joined events"
	featUserData    = "user data (SetUserData)"
	featMetadata    = "participant metadata (SetMetadata)"
	featName        = "participant name (SetName)"
	featAttributes  = "participant attributes (SetAttributes: set, delete)"
	featSessReplace = "session data, Replace"
	featSessMerge   = "session data, ShallowMerge with a null delete"
	featAppBcast    = "app message to everyone"
	featAppTo       = "app message to one participant, not seen by others"
	featReliable    = "reliable data with a topic"
	featLossy       = "lossy data with a topic"
	featLargeRel    = "large reliable data (1 MiB, byte-exact)"
	featLargeLossy  = "large lossy data (10 KiB in fragments, byte-exact)"
	featLateJoiner  = "late joiner gets user data and session data at Join"
	featPresence    = "presence: a joiner announced to the others at once"
	featWebhooks    = "webhooks: participant_joined verified (WebhookReceiver)"
	featRpc         = "RPC: a participant's method called (PerformRpc)"
	featRpcError    = "RPC: an application error comes back typed (*RpcError)"
	featRpcServer   = "RPC from the server API (RoomService.PerformRpc)"
	featTextStream  = "text stream read incrementally by a handler"
	featByteStream  = "byte stream (writer) read incrementally by a handler, byte-exact"
	featChat        = "chat message (SendChatMessage, ChatMessage event)"
	featEventJSON   = "event JSON encoding (MarshalEvent, UnmarshalEvent)"
	featDataTrack   = "data track: publish, subscribe, frames byte-exact"
	featSignals     = "room signals: publishers and the room's counts"
	featRemove      = "participant removed with the RoomService"
)

// The values the script sets; the late joiner checks them.
var (
	aliceUserData  = json.RawMessage(`{"role":"host","color":"teal"}`)
	bobUserData    = json.RawMessage(`{"mood":"focused","hand":false}`)
	carolMetadata  = "carol is presenting (plain text, not JSON)"
	sessionInitial = json.RawMessage(`{"topic":"weekly sync","agenda":["demo","questions"],"timer":300}`)
	sessionMerge   = json.RawMessage(`{"notes":"ship on Friday","timer":null}`)
	sessionFinal   = json.RawMessage(`{"topic":"weekly sync","agenda":["demo","questions"],"notes":"ship on Friday"}`)
)

func (d *demo) script(ctx context.Context) {
	d.step(ctx, featJoin, d.stepJoin)
	d.step(ctx, featPresence, d.stepPresence)
	d.step(ctx, featWebhooks, d.stepWebhooks)
	d.step(ctx, featUserData, d.stepUserData)
	d.step(ctx, featMetadata, d.stepMetadata)
	d.step(ctx, featName, d.stepName)
	d.step(ctx, featAttributes, d.stepAttributes)
	d.step(ctx, featSessReplace, d.stepSessionReplace)
	d.step(ctx, featSessMerge, d.stepSessionMerge)
	d.step(ctx, featAppBcast, d.stepAppBroadcast)
	d.step(ctx, featAppTo, d.stepAppAddressed)
	d.step(ctx, featReliable, d.stepReliable)
	d.step(ctx, featLossy, d.stepLossy)
	d.step(ctx, featLargeRel, d.stepLargeReliable)
	d.step(ctx, featLargeLossy, d.stepLargeLossy)
	d.step(ctx, featLateJoiner, d.stepLateJoiner)
	d.step(ctx, featRpc, d.stepRpc)
	d.step(ctx, featRpcError, d.stepRpcError)
	d.step(ctx, featRpcServer, d.stepRpcServer)
	d.step(ctx, featTextStream, d.stepTextStream)
	d.step(ctx, featByteStream, d.stepByteStream)
	d.step(ctx, featChat, d.stepChat)
	d.step(ctx, featEventJSON, d.stepEventJSON)
	d.step(ctx, featDataTrack, d.stepDataTrack)
	d.step(ctx, featSignals, d.stepRoomSignals)
	d.step(ctx, featRemove, d.stepRemove)
}

// step runs one step with its own deadline and prints its line. Once the
// call is stopped (interrupted, or out of time), the remaining steps are
// not run.
func (d *demo) step(ctx context.Context, feature string, f func(ctx context.Context) (string, error)) {
	if ctx.Err() != nil {
		d.results = append(d.results, stepResult{feature: feature, skipped: true})
		return
	}
	at := time.Since(d.start)
	sctx, cancel := context.WithTimeout(ctx, d.stepTimeout)
	text, err := f(sctx)
	cancel()
	var na errNotApplicable
	if errors.As(err, &na) {
		fmt.Fprintf(d.out, "[%6.2fs] – %s: not run: %s\n", at.Seconds(), feature, na)
		d.results = append(d.results, stepResult{feature: feature, omitted: string(na)})
		return
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("stopped: %v", context.Cause(ctx))
	}
	mark := "✓"
	if err != nil {
		mark = "✗"
		if text != "" {
			text += "; "
		}
		text += "FAILED: " + err.Error()
	}
	fmt.Fprintf(d.out, "[%6.2fs] %s %s: %s\n", at.Seconds(), mark, feature, text)
	d.results = append(d.results, stepResult{feature: feature, ok: err == nil})
}

func (d *demo) report(ctx context.Context, elapsed time.Duration) int {
	fmt.Fprintf(d.out, "\nChecklist:\n")
	passed, counted := 0, 0
	for _, r := range d.results {
		mark, note := "✗", ""
		if r.omitted == "" {
			counted++
		}
		switch {
		case r.omitted != "":
			mark, note = "–", " (not run: "+r.omitted+")"
		case r.ok:
			mark = "✓"
			passed++
		case r.skipped:
			note = " (not run)"
		}
		fmt.Fprintf(d.out, "  %s %s%s\n", mark, r.feature, note)
	}
	fmt.Fprintf(d.out, "\n%d of %d features observed by their receivers in %s.\n", passed, counted, seconds(elapsed))
	if ctx.Err() != nil && passed < counted {
		fmt.Fprintf(d.out, "Stopped early: %v.\n", context.Cause(ctx))
	}
	if passed != counted {
		return exitFailure
	}
	return exitOK
}

// closeRooms closes every Room, in parallel.
func (d *demo) closeRooms() {
	var wg sync.WaitGroup
	for _, r := range d.rooms {
		wg.Go(func() { _ = r.Close() })
	}
	wg.Wait()
}

// join joins the demo room as identity and subscribes to its events.
func (d *demo) join(ctx context.Context, identity string, opts *callstate.JoinOptions) (*callstate.Room, time.Duration, error) {
	t := time.Now()
	r, err := d.dial(ctx, identity, opts)
	if err != nil {
		return nil, 0, err
	}
	d.add(identity, r)
	return r, time.Since(t), nil
}

// dial joins the demo room as identity; it may run concurrently.
func (d *demo) dial(ctx context.Context, identity string, opts *callstate.JoinOptions) (*callstate.Room, error) {
	tok, err := callstate.NewToken(d.apiKey, d.apiSecret, callstate.Claims{
		Identity: identity,
		Name:     strings.ToUpper(identity[:1]) + identity[1:],
		Grants:   lkserver.DefaultGrants(d.roomName),
	})
	if err != nil {
		return nil, err
	}
	r, err := callstate.Join(ctx, d.url, tok, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", identity, err)
	}
	return r, nil
}

// add records a joined participant and subscribes to its events.
func (d *demo) add(identity string, r *callstate.Room) {
	d.rooms[identity] = r
	d.subs[identity] = r.Subscribe(nil)
}

// room returns a participant's Room, or an error if it did not join.
func (d *demo) room(identity string) (*callstate.Room, error) {
	if r := d.rooms[identity]; r != nil {
		return r, nil
	}
	return nil, fmt.Errorf("%s is not in the call", identity)
}

// pair returns the sender's Room and the receiver's subscription.
func (d *demo) pair(from, to string) (*callstate.Room, *callstate.Subscription, error) {
	r, err := d.room(from)
	if err != nil {
		return nil, nil, err
	}
	if _, err := d.room(to); err != nil {
		return nil, nil, err
	}
	return r, d.subs[to], nil
}

// await waits for an event of type E on sub that matches (nil matches
// any), within the step's deadline (ctx). Other events are discarded; the
// end of the Room or of the subscription ends the wait with an error.
func await[E callstate.Event](ctx context.Context, sub *callstate.Subscription, match func(E) bool) (E, error) {
	var zero E
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				return zero, fmt.Errorf("the subscription ended while waiting for %T", zero)
			}
			if e, ok := ev.(E); ok && (match == nil || match(e)) {
				return e, nil
			}
			if d, ok := ev.(callstate.Disconnected); ok {
				return zero, fmt.Errorf("the room ended (%s: %v) while waiting for %T", d.Reason, d.Err, zero)
			}
		case <-ctx.Done():
			return zero, fmt.Errorf("no %T in time: %w", zero, context.Cause(ctx))
		}
	}
}

func (d *demo) stepJoin(ctx context.Context) (string, error) {
	_, took, err := d.join(ctx, "alice", &callstate.JoinOptions{UserData: aliceUserData})
	if err != nil {
		return "", err
	}
	t := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, id := range []string{"bob", "carol"} {
		wg.Go(func() {
			r, err := d.dial(ctx, id, nil)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			d.add(id, r)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	bothJoined := time.Since(t)
	seen := map[string]time.Duration{}
	_, err = await(ctx, d.subs["alice"], func(e callstate.ParticipantJoined) bool {
		seen[e.Participant.Identity] = e.When().Sub(t)
		return len(seen) == 2
	})
	text := fmt.Sprintf("alice joined with user data %s in %s; bob and carol joined in %s", aliceUserData, seconds(took), seconds(bothJoined))
	if err != nil {
		return text, err
	}
	return text + fmt.Sprintf("; alice saw participant_joined for bob after %s and for carol after %s",
		seconds(seen["bob"]), seconds(seen["carol"])), nil
}

func (d *demo) stepUserData(ctx context.Context) (string, error) {
	bob, sub, err := d.pair("bob", "alice")
	if err != nil {
		return "", err
	}
	t := time.Now()
	if err := bob.SetUserData(ctx, bobUserData); err != nil {
		return "", err
	}
	applied := time.Since(t)
	text := fmt.Sprintf("bob set user data %s (applied in %s)", bobUserData, seconds(applied))
	ev, err := await(ctx, sub, func(e callstate.ParticipantUpdated) bool {
		ud, ok := e.Participant.UserData()
		return e.Participant.Identity == "bob" && ok && jsonEqual(ud, bobUserData)
	})
	if err != nil {
		return text, err
	}
	var v struct {
		Mood string `json:"mood"`
	}
	if err := ev.Participant.DecodeUserData(&v); err != nil {
		return text, err
	}
	return text + fmt.Sprintf("; alice saw it after %s and decoded mood=%q", seconds(ev.When().Sub(t)), v.Mood), nil
}

func (d *demo) stepMetadata(ctx context.Context) (string, error) {
	carol, sub, err := d.pair("carol", "alice")
	if err != nil {
		return "", err
	}
	t := time.Now()
	if err := carol.SetMetadata(ctx, carolMetadata); err != nil {
		return "", err
	}
	text := fmt.Sprintf("carol set metadata %q", carolMetadata)
	ev, err := await(ctx, sub, func(e callstate.ParticipantUpdated) bool {
		return e.Participant.Identity == "carol" && e.Participant.Metadata == carolMetadata
	})
	if err != nil {
		return text, err
	}
	if _, ok := ev.Participant.UserData(); ok {
		return text, errors.New("alice reads user data from metadata that is not JSON")
	}
	return text + fmt.Sprintf("; alice saw it after %s (not JSON, so carol has no user data)", seconds(ev.When().Sub(t))), nil
}

func (d *demo) stepName(ctx context.Context) (string, error) {
	bob, sub, err := d.pair("bob", "alice")
	if err != nil {
		return "", err
	}
	const name = "Bob the Builder"
	t := time.Now()
	if err := bob.SetName(ctx, name); err != nil {
		return "", err
	}
	text := fmt.Sprintf("bob set his name to %q", name)
	ev, err := await(ctx, sub, func(e callstate.ParticipantUpdated) bool {
		return e.Participant.Identity == "bob" && e.Participant.Name == name
	})
	if err != nil {
		return text, err
	}
	return text + fmt.Sprintf("; alice saw %q -> %q after %s", ev.Previous.Name, ev.Participant.Name, seconds(ev.When().Sub(t))), nil
}

func (d *demo) stepAttributes(ctx context.Context) (string, error) {
	bob, sub, err := d.pair("bob", "alice")
	if err != nil {
		return "", err
	}
	t := time.Now()
	if err := bob.SetAttributes(ctx, map[string]string{"hand": "raised", "lang": "fr"}); err != nil {
		return "", err
	}
	text := `bob set attributes hand=raised lang=fr`
	ev, err := await(ctx, sub, func(e callstate.ParticipantUpdated) bool {
		a := e.Participant.Attributes
		return e.Participant.Identity == "bob" && a["hand"] == "raised" && a["lang"] == "fr"
	})
	if err != nil {
		return text, err
	}
	text += fmt.Sprintf("; alice saw them after %s", seconds(ev.When().Sub(t)))
	t = time.Now()
	if err := bob.SetAttributes(ctx, map[string]string{"lang": ""}); err != nil {
		return text, err
	}
	text += `; bob deleted lang`
	ev, err = await(ctx, sub, func(e callstate.ParticipantUpdated) bool {
		_, has := e.Participant.Attributes["lang"]
		return e.Participant.Identity == "bob" && !has
	})
	if err != nil {
		return text, err
	}
	if ev.Participant.Attributes["hand"] != "raised" {
		return text, fmt.Errorf("alice lost the attribute hand: %v", ev.Participant.Attributes)
	}
	return text + fmt.Sprintf("; alice saw it removed after %s, hand kept", seconds(ev.When().Sub(t))), nil
}

func (d *demo) stepSessionReplace(ctx context.Context) (string, error) {
	alice, sub, err := d.pair("alice", "bob")
	if err != nil {
		return "", err
	}
	t := time.Now()
	if err := alice.SetSessionData(ctx, sessionInitial, callstate.Replace); err != nil {
		return "", err
	}
	text := fmt.Sprintf("alice replaced the session data with %s (applied in %s)", sessionInitial, seconds(time.Since(t)))
	ev, err := await(ctx, sub, func(e callstate.SessionDataUpdated) bool {
		return sessionEqual(e.Data, sessionInitial)
	})
	if err != nil {
		return text, err
	}
	return text + fmt.Sprintf("; bob saw exactly that after %s (changed: %s)", seconds(ev.When().Sub(t)), strings.Join(ev.Changed, ", ")), nil
}

func (d *demo) stepSessionMerge(ctx context.Context) (string, error) {
	bob, sub, err := d.pair("bob", "alice")
	if err != nil {
		return "", err
	}
	t := time.Now()
	if err := bob.SetSessionData(ctx, sessionMerge, callstate.ShallowMerge); err != nil {
		return "", err
	}
	text := fmt.Sprintf("bob merged %s", sessionMerge)
	ev, err := await(ctx, sub, func(e callstate.SessionDataUpdated) bool {
		return sessionEqual(e.Data, sessionFinal)
	})
	if err != nil {
		return text, err
	}
	return text + fmt.Sprintf("; alice saw %s after %s (changed: %s; timer deleted, topic and agenda kept)",
		compactJSON(sessionFinal), seconds(ev.When().Sub(t)), strings.Join(ev.Changed, ", ")), nil
}

func (d *demo) stepAppBroadcast(ctx context.Context) (string, error) {
	alice, subBob, err := d.pair("alice", "bob")
	if err != nil {
		return "", err
	}
	if _, err := d.room("carol"); err != nil {
		return "", err
	}
	msg := json.RawMessage(`{"chat":"hello everyone"}`)
	t := time.Now()
	if err := alice.SendAppMessage(ctx, msg); err != nil {
		return "", err
	}
	text := fmt.Sprintf("alice sent %s to everyone", msg)
	match := func(e callstate.AppMessage) bool { return e.From == "alice" && jsonEqual(e.Data, msg) }
	var bobAt, carolAt time.Duration
	var bobErr, carolErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		var ev callstate.AppMessage
		ev, bobErr = await(ctx, subBob, match)
		bobAt = ev.When().Sub(t)
	})
	wg.Go(func() {
		var ev callstate.AppMessage
		ev, carolErr = await(ctx, d.subs["carol"], match)
		carolAt = ev.When().Sub(t)
	})
	wg.Wait()
	if err := errors.Join(bobErr, carolErr); err != nil {
		return text, err
	}
	return text + fmt.Sprintf("; bob got it after %s, carol after %s", seconds(bobAt), seconds(carolAt)), nil
}

func (d *demo) stepAppAddressed(ctx context.Context) (string, error) {
	alice, subBob, err := d.pair("alice", "bob")
	if err != nil {
		return "", err
	}
	if _, err := d.room("carol"); err != nil {
		return "", err
	}
	secret := json.RawMessage(`{"whisper":"for bob only"}`)
	marker := json.RawMessage(`{"marker":"after the whisper"}`)
	t := time.Now()
	if err := alice.SendAppMessage(ctx, secret, "bob"); err != nil {
		return "", err
	}
	if err := alice.SendAppMessage(ctx, marker); err != nil {
		return "", err
	}
	text := fmt.Sprintf("alice sent %s to bob, then %s to everyone", secret, marker)
	// Messages from one sender arrive in order: carol has received
	// everything alice sent her before the marker once she has the marker.
	var bobAt time.Duration
	var bobErr, carolErr error
	carolLeak := false
	var wg sync.WaitGroup
	wg.Go(func() {
		sawSecret := false
		var ev callstate.AppMessage
		ev, bobErr = await(ctx, subBob, func(e callstate.AppMessage) bool {
			if e.From == "alice" && jsonEqual(e.Data, secret) {
				sawSecret = true
				bobAt = e.When().Sub(t)
			}
			return e.From == "alice" && jsonEqual(e.Data, marker)
		})
		_ = ev
		if bobErr == nil && !sawSecret {
			bobErr = errors.New("bob got the marker without the whisper before it")
		}
	})
	wg.Go(func() {
		_, carolErr = await(ctx, d.subs["carol"], func(e callstate.AppMessage) bool {
			if e.From == "alice" && jsonEqual(e.Data, secret) {
				carolLeak = true
			}
			return e.From == "alice" && jsonEqual(e.Data, marker)
		})
	})
	wg.Wait()
	if carolLeak {
		carolErr = errors.New("carol received the whisper addressed to bob")
	}
	if err := errors.Join(bobErr, carolErr); err != nil {
		return text, err
	}
	return text + fmt.Sprintf("; bob got the whisper after %s, then the marker; carol got the marker and never the whisper", seconds(bobAt)), nil
}

func (d *demo) stepReliable(ctx context.Context) (string, error) {
	bob, sub, err := d.pair("bob", "alice")
	if err != nil {
		return "", err
	}
	payload := []byte("status: ready to ship")
	t := time.Now()
	if err := bob.PublishData(ctx, payload, &callstate.PublishOptions{Topic: "status"}); err != nil {
		return "", err
	}
	text := fmt.Sprintf("bob published %q on topic status, reliable", payload)
	ev, err := await(ctx, sub, func(e callstate.DataReceived) bool {
		return e.Data.From == "bob" && e.Data.Topic == "status"
	})
	if err != nil {
		return text, err
	}
	if !bytes.Equal(ev.Data.Payload, payload) || ev.Data.Kind != callstate.Reliable {
		return text, fmt.Errorf("alice got %q (%s)", ev.Data.Payload, ev.Data.Kind)
	}
	return text + fmt.Sprintf("; alice got it after %s on topic %q (%s)", seconds(ev.When().Sub(t)), ev.Data.Topic, ev.Data.Kind), nil
}

// lossyAttempts is how many times a lossy message is sent before its step
// fails; each attempt waits lossyWait for the receiver. Lossy data may be
// lost by design.
const (
	lossyAttempts = 5
	lossyWait     = 2 * time.Second
)

// sendLossy sends payload lossy from one participant to another until the
// receiver gets it whole; it returns the event and the attempt number.
func (d *demo) sendLossy(ctx context.Context, from, to, topic string, payload []byte) (callstate.DataReceived, int, time.Time, error) {
	r, sub, err := d.pair(from, to)
	if err != nil {
		return callstate.DataReceived{}, 0, time.Time{}, err
	}
	var lastErr error
	for attempt := 1; attempt <= lossyAttempts; attempt++ {
		t := time.Now()
		if err := r.PublishData(ctx, payload, &callstate.PublishOptions{Kind: callstate.Lossy, Topic: topic}); err != nil {
			return callstate.DataReceived{}, attempt, t, err
		}
		wait := min(lossyWait, time.Until(deadline(ctx)))
		attemptCtx, cancel := context.WithTimeout(ctx, wait)
		ev, err := await(attemptCtx, sub, func(e callstate.DataReceived) bool {
			return e.Data.From == from && e.Data.Topic == topic && bytes.Equal(e.Data.Payload, payload)
		})
		cancel()
		if err == nil {
			if ev.Data.Kind != callstate.Lossy {
				return ev, attempt, t, fmt.Errorf("%s got it as %s data", to, ev.Data.Kind)
			}
			return ev, attempt, t, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return callstate.DataReceived{}, lossyAttempts, time.Time{}, fmt.Errorf("%s never got it whole: %w", to, lastErr)
}

func deadline(ctx context.Context) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(time.Minute)
}

func attemptText(n int) string {
	if n == 1 {
		return "first attempt"
	}
	return fmt.Sprintf("attempt %d", n)
}

func (d *demo) stepLossy(ctx context.Context) (string, error) {
	payload := []byte(`{"x":0.42,"y":0.17}`)
	text := fmt.Sprintf("carol published %s on topic cursor, lossy", payload)
	ev, n, t, err := d.sendLossy(ctx, "carol", "alice", "cursor", payload)
	if err != nil {
		return text, err
	}
	return text + fmt.Sprintf("; alice got it after %s (%s, %s)", seconds(ev.When().Sub(t)), ev.Data.Kind, attemptText(n)), nil
}

func (d *demo) stepLargeReliable(ctx context.Context) (string, error) {
	bob, sub, err := d.pair("bob", "alice")
	if err != nil {
		return "", err
	}
	payload := make([]byte, 1<<20)
	_, _ = rand.Read(payload)
	sum := sha256.Sum256(payload)
	t := time.Now()
	if err := bob.PublishData(ctx, payload, &callstate.PublishOptions{Topic: "file"}); err != nil {
		return "", err
	}
	text := fmt.Sprintf("bob published 1 MiB of random bytes (sha256 %s…) on topic file", hex.EncodeToString(sum[:4]))
	ev, err := await(ctx, sub, func(e callstate.DataReceived) bool {
		return e.Data.From == "bob" && e.Data.Topic == "file"
	})
	if err != nil {
		return text, err
	}
	if got := sha256.Sum256(ev.Data.Payload); got != sum {
		return text, fmt.Errorf("alice got %d bytes that differ (sha256 %s…)", len(ev.Data.Payload), hex.EncodeToString(got[:4]))
	}
	took := ev.When().Sub(t)
	how := "as one packet"
	if ev.Data.Stream != nil {
		how = "as a LiveKit data stream"
	}
	return text + fmt.Sprintf("; alice got all %d bytes, identical, after %s (%.1f MB/s, %s)",
		len(ev.Data.Payload), seconds(took), float64(len(payload))/took.Seconds()/1e6, how), nil
}

func (d *demo) stepLargeLossy(ctx context.Context) (string, error) {
	payload := make([]byte, 10<<10)
	_, _ = rand.Read(payload)
	text := "carol published 10 KiB of random bytes on topic frame, lossy (fragments of one network packet each)"
	ev, n, t, err := d.sendLossy(ctx, "carol", "alice", "frame", payload)
	if err != nil {
		return text, err
	}
	return text + fmt.Sprintf("; alice got all %d bytes, identical, after %s (%s)", len(ev.Data.Payload), seconds(ev.When().Sub(t)), attemptText(n)), nil
}

func (d *demo) stepLateJoiner(ctx context.Context) (string, error) {
	for _, id := range []string{"alice", "bob", "carol"} {
		if _, err := d.room(id); err != nil {
			return "", err
		}
	}
	dave, took, err := d.join(ctx, "dave", nil)
	if err != nil {
		return "", err
	}
	st := dave.Snapshot()
	text := fmt.Sprintf("dave joined in %s", seconds(took))
	want := map[string]json.RawMessage{"alice": aliceUserData, "bob": bobUserData, "carol": nil}
	var problems []string
	var seen []string
	for _, p := range st.Remote {
		w, ok := want[p.Identity]
		if !ok {
			continue
		}
		delete(want, p.Identity)
		ud, has := p.UserData()
		switch {
		case w == nil && has:
			problems = append(problems, fmt.Sprintf("%s has user data %s", p.Identity, ud))
		case w == nil && p.Metadata != carolMetadata:
			problems = append(problems, fmt.Sprintf("%s has metadata %q", p.Identity, p.Metadata))
		case w != nil && (!has || !jsonEqual(ud, w)):
			problems = append(problems, fmt.Sprintf("%s has user data %s, want %s", p.Identity, ud, w))
		}
		if has {
			seen = append(seen, fmt.Sprintf("%s %s", p.Identity, ud))
		} else {
			seen = append(seen, fmt.Sprintf("%s metadata %q", p.Identity, p.Metadata))
		}
	}
	for id := range want {
		problems = append(problems, id+" is missing")
	}
	if !sessionEqual(st.SessionData, sessionFinal) {
		b, _ := json.Marshal(st.SessionData)
		problems = append(problems, fmt.Sprintf("session data %s, want %s", b, compactJSON(sessionFinal)))
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return text, errors.New(strings.Join(problems, "; "))
	}
	return text + fmt.Sprintf("; when Join returned, dave's state had %s, and session data %s",
		strings.Join(seen, ", "), compactJSON(sessionFinal)), nil
}

func (d *demo) stepRemove(ctx context.Context) (string, error) {
	carol, err := d.room("carol")
	if err != nil {
		return "", err
	}
	if _, err := d.room("alice"); err != nil {
		return "", err
	}
	t := time.Now()
	if err := d.rs.RemoveParticipant(ctx, d.roomName, "carol"); err != nil {
		return "", err
	}
	text := "the RoomService removed carol"
	var left callstate.ParticipantLeft
	var disc callstate.Disconnected
	var leftErr, discErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		left, leftErr = await(ctx, d.subs["alice"], func(e callstate.ParticipantLeft) bool { return e.Participant.Identity == "carol" })
	})
	wg.Go(func() {
		// The Disconnected event ends carol's subscription.
		for ev := range d.subs["carol"].Events() {
			if e, ok := ev.(callstate.Disconnected); ok {
				disc = e
				return
			}
		}
		discErr = errors.New("carol's subscription ended without a Disconnected event")
	})
	select {
	case <-carol.Done():
	case <-ctx.Done():
		discErr = errors.New("carol's Room did not end")
		carol.Close() // ends carol's subscription
	}
	wg.Wait()
	if discErr == nil && disc.Reason != callstate.ReasonParticipantRemoved {
		discErr = fmt.Errorf("carol's Room ended with reason %s, want %s", disc.Reason, callstate.ReasonParticipantRemoved)
	}
	if err := errors.Join(leftErr, discErr); err != nil {
		return text, err
	}
	return text + fmt.Sprintf("; carol's Room ended after %s (%s), alice saw participant_left carol after %s (%s)",
		seconds(disc.When().Sub(t)), disc.Reason, seconds(left.When().Sub(t)), left.Reason), nil
}

// jsonEqual reports whether two JSON texts have the same value.
func jsonEqual(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// sessionEqual reports whether session data equals the JSON object want.
func sessionEqual(got map[string]json.RawMessage, want json.RawMessage) bool {
	if got == nil {
		return false
	}
	b, err := json.Marshal(got)
	return err == nil && jsonEqual(b, want)
}

func compactJSON(b []byte) string {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return string(b)
	}
	return buf.String()
}

// seconds formats a duration for the narration: milliseconds below a
// second, seconds above.
func seconds(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
