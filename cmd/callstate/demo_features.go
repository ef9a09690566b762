package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callstate/callstate"
)

// The steps of the features added to the SDK after the first script:
// presence, webhooks, RPC, data streams read by handlers, chat, the JSON
// encoding of events, data tracks and room signals.

// errNotApplicable is returned by a step that cannot run in this setup
// (not a failure: the step is listed apart and not counted).
type errNotApplicable string

func (e errNotApplicable) Error() string { return string(e) }

func (d *demo) stepPresence(ctx context.Context) (string, error) {
	sub, err := d.sub("alice")
	if err != nil {
		return "", err
	}
	_, took, err := d.join(ctx, "erin", nil)
	if err != nil {
		return "", err
	}
	returned := time.Now()
	text := fmt.Sprintf("erin joined in %s, publishing callstate's presence data track", seconds(took))
	ev, err := await(ctx, sub, func(e callstate.ParticipantJoined) bool { return e.Participant.Identity == "erin" })
	if err != nil {
		return text, err
	}
	if !ev.Participant.IsPublisher {
		return text, errors.New("alice does not see erin as a publisher")
	}
	// The server announces a publisher at once; the event may even reach
	// alice before erin's Join has returned (it returns after the
	// presence track is accepted).
	gap := ev.When().Sub(returned)
	when := fmt.Sprintf("%.1fms after erin's Join returned", float64(gap)/float64(time.Millisecond))
	if gap < 0 {
		when = fmt.Sprintf("%.1fms before erin's Join returned", float64(-gap)/float64(time.Millisecond))
	}
	return text + fmt.Sprintf("; alice saw participant_joined erin %s (a participant publishing nothing waits for the server's 3 s ticker)", when), nil
}

// sub returns a participant's subscription, or an error if it did not join.
func (d *demo) sub(identity string) (*callstate.Subscription, error) {
	if _, err := d.room(identity); err != nil {
		return nil, err
	}
	return d.subs[identity], nil
}

// demoWebhooks is the demo's webhook endpoint: a loopback HTTP server that
// verifies the local server's webhooks with its key and secret.
type demoWebhooks struct {
	url      string
	srv      *http.Server
	receiver atomic.Pointer[callstate.WebhookReceiver]

	mu     sync.Mutex
	events []callstate.WebhookEvent
	notify chan struct{} // signalled after each event
}

// maxDemoWebhooks bounds the events kept: the demo's call causes a few
// dozen.
const maxDemoWebhooks = 1000

func startDemoWebhooks() (*demoWebhooks, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("webhook endpoint: %w", err)
	}
	h := &demoWebhooks{url: "http://" + ln.Addr().String() + "/webhook", notify: make(chan struct{}, 1)}
	h.srv = &http.Server{Handler: http.HandlerFunc(h.serveHTTP), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = h.srv.Serve(ln) }()
	return h, nil
}

// setCredentials makes the endpoint verify webhooks with the server's key
// and secret, known only once the server has started; until then webhooks
// are refused (the server posts none before it has started).
func (h *demoWebhooks) setCredentials(key, secret string) error {
	w, err := callstate.NewWebhookReceiver(key, secret)
	if err != nil {
		return err
	}
	h.receiver.Store(w)
	return nil
}

func (h *demoWebhooks) serveHTTP(rw http.ResponseWriter, r *http.Request) {
	w := h.receiver.Load()
	if w == nil {
		http.Error(rw, "not ready", http.StatusServiceUnavailable)
		return
	}
	w.Handler(h.add).ServeHTTP(rw, r)
}

func (h *demoWebhooks) add(ev callstate.WebhookEvent) {
	h.mu.Lock()
	if len(h.events) < maxDemoWebhooks {
		h.events = append(h.events, ev)
	}
	h.mu.Unlock()
	select {
	case h.notify <- struct{}{}:
	default:
	}
}

// wait waits until done reports true for the events received so far.
func (h *demoWebhooks) wait(ctx context.Context, done func([]callstate.WebhookEvent) bool) error {
	for {
		h.mu.Lock()
		ok := done(h.events)
		h.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-h.notify:
		case <-ctx.Done():
			return fmt.Errorf("not all webhooks in time: %w", context.Cause(ctx))
		}
	}
}

func (h *demoWebhooks) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = h.srv.Shutdown(ctx)
}

func (d *demo) stepWebhooks(ctx context.Context) (string, error) {
	if d.webhooks == nil {
		return "", errNotApplicable("needs the demo's own server (not with -url)")
	}
	want := []string{"alice", "bob", "carol", "erin"}
	for _, id := range want {
		if _, err := d.room(id); err != nil {
			return "", err
		}
	}
	seen := map[string]callstate.WebhookEvent{}
	err := d.webhooks.wait(ctx, func(evs []callstate.WebhookEvent) bool {
		for _, ev := range evs {
			if ev.Type == callstate.WebhookParticipantJoined && ev.Room != nil && ev.Room.Name == d.roomName && ev.Participant != nil {
				seen[ev.Participant.Identity] = ev
			}
		}
		return len(seen) >= len(want)
	})
	got := slices.Sorted(maps.Keys(seen))
	text := fmt.Sprintf("the demo's endpoint %s verified (signed with the server's API key) participant_joined for %s", d.webhooks.url, strings.Join(got, ", "))
	if err != nil {
		return text, err
	}
	ev := seen["alice"]
	return text + fmt.Sprintf("; alice's event %s was created at %s, in room %s", ev.ID, ev.CreatedAt.Format(time.TimeOnly), ev.Room.Name), nil
}

// greet is bob's RPC method: it answers a name with a greeting and fails
// with an application error without one.
func greet(calls chan<- callstate.RpcInvocation) callstate.RpcHandler {
	return func(ctx context.Context, inv callstate.RpcInvocation) (string, error) {
		select {
		case calls <- inv:
		default:
		}
		if inv.Payload == "" {
			return "", callstate.NewRpcError(2001, "no name", "the payload was empty")
		}
		return "hello " + inv.Payload, nil
	}
}

// rpcBob registers bob's method, once, and returns the channel its calls
// are reported on.
func (d *demo) rpcBob() (*callstate.Room, chan callstate.RpcInvocation, error) {
	bob, err := d.room("bob")
	if err != nil {
		return nil, nil, err
	}
	if d.rpcCalls == nil {
		c := make(chan callstate.RpcInvocation, 1)
		if err := bob.RegisterRpcMethod("greet", greet(c)); err != nil {
			return nil, nil, err
		}
		d.rpcCalls = c
	}
	return bob, d.rpcCalls, nil
}

// nextCall waits for the handler's report of a call.
func nextCall(ctx context.Context, calls <-chan callstate.RpcInvocation) (callstate.RpcInvocation, error) {
	select {
	case inv := <-calls:
		return inv, nil
	case <-ctx.Done():
		return callstate.RpcInvocation{}, fmt.Errorf("bob's handler was not called: %w", context.Cause(ctx))
	}
}

func (d *demo) stepRpc(ctx context.Context) (string, error) {
	alice, err := d.room("alice")
	if err != nil {
		return "", err
	}
	_, calls, err := d.rpcBob()
	if err != nil {
		return "", err
	}
	text := `bob registered the method greet; alice called it with "alice"`
	t := time.Now()
	out, err := alice.PerformRpc(ctx, "bob", "greet", "alice", nil)
	took := time.Since(t)
	if err != nil {
		return text, err
	}
	inv, err := nextCall(ctx, calls)
	if err != nil {
		return text, err
	}
	if inv.CallerIdentity != "alice" || inv.Payload != "alice" || out != "hello alice" {
		return text, fmt.Errorf("bob's handler saw caller %q payload %q, alice got %q", inv.CallerIdentity, inv.Payload, out)
	}
	return text + fmt.Sprintf("; bob's handler saw caller alice, alice got %q after %s", out, seconds(took)), nil
}

func (d *demo) stepRpcError(ctx context.Context) (string, error) {
	alice, err := d.room("alice")
	if err != nil {
		return "", err
	}
	_, calls, err := d.rpcBob()
	if err != nil {
		return "", err
	}
	text := "alice called greet without a name; bob's handler answered NewRpcError(2001, ...)"
	_, err = alice.PerformRpc(ctx, "bob", "greet", "", nil)
	var re *callstate.RpcError
	if !errors.As(err, &re) {
		return text, fmt.Errorf("alice got %v, not an *RpcError", err)
	}
	if _, err := nextCall(ctx, calls); err != nil {
		return text, err
	}
	if re.Code != 2001 || re.Message != "no name" || re.Data != "the payload was empty" {
		return text, fmt.Errorf("alice got %v", re)
	}
	return text + fmt.Sprintf("; alice got an *RpcError with code %d, message %q, data %q", re.Code, re.Message, re.Data), nil
}

func (d *demo) stepRpcServer(ctx context.Context) (string, error) {
	_, calls, err := d.rpcBob()
	if err != nil {
		return "", err
	}
	text := `the RoomService called bob's greet with "the server"`
	t := time.Now()
	out, err := d.rs.PerformRpc(ctx, d.roomName, "bob", "greet", "the server", callstate.RpcOptions{})
	took := time.Since(t)
	if err != nil {
		return text, err
	}
	inv, err := nextCall(ctx, calls)
	if err != nil {
		return text, err
	}
	if inv.CallerIdentity != "" || out != "hello the server" {
		return text, fmt.Errorf("bob's handler saw caller %q, the server API got %q", inv.CallerIdentity, out)
	}
	return text + fmt.Sprintf("; bob's handler saw no caller identity (the server), the API got %q after %s", out, seconds(took)), nil
}

// streamRead is what a stream handler read.
type streamRead struct {
	from  string
	info  callstate.StreamInfo
	data  []byte
	reads int           // Reads that returned bytes
	first time.Duration // from the send's start to the first bytes
	err   error
}

// readIncrementally reads r in small pieces, as an application processing
// a stream as it arrives would (callstate join's stream_register does it
// too, writing what it reads as stream_chunk lines).
func readIncrementally(r io.Reader, start time.Time) streamRead {
	var res streamRead
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if res.reads == 0 {
				res.first = time.Since(start)
			}
			res.reads++
			res.data = append(res.data, buf[:n]...)
		}
		if err == io.EOF {
			return res
		}
		if err != nil {
			res.err = err
			return res
		}
	}
}

// awaitRead waits for a handler's report.
func awaitRead(ctx context.Context, c <-chan streamRead) (streamRead, error) {
	select {
	case res := <-c:
		return res, res.err
	case <-ctx.Done():
		return streamRead{}, fmt.Errorf("bob's handler did not finish reading: %w", context.Cause(ctx))
	}
}

func (d *demo) stepTextStream(ctx context.Context) (string, error) {
	alice, err := d.room("alice")
	if err != nil {
		return "", err
	}
	bob, err := d.room("bob")
	if err != nil {
		return "", err
	}
	// Multi-byte characters over several chunks: the reader sees UTF-8
	// bytes, whole once the stream ends.
	text := strings.Repeat("Grüße aus dem Demo-Raum — ", 2000)
	start := time.Now()
	got := make(chan streamRead, 1)
	if err := bob.RegisterTextStreamHandler("notes", func(r *callstate.TextStreamReader) {
		res := readIncrementally(r, start)
		res.from, res.info = r.From(), r.Info()
		got <- res
	}); err != nil {
		return "", err
	}
	defer bob.UnregisterTextStreamHandler("notes")
	line := fmt.Sprintf("alice sent %d bytes of text (SendText, topic notes)", len(text))
	if _, err := alice.SendText(ctx, text, &callstate.StreamOptions{Topic: "notes"}); err != nil {
		return line, err
	}
	res, err := awaitRead(ctx, got)
	if err != nil {
		return line, err
	}
	if res.from != "alice" || !res.info.Text || string(res.data) != text {
		return line, fmt.Errorf("bob's handler read %d bytes from %q that differ", len(res.data), res.from)
	}
	// Every recipient advertises raw deflate, so SendText compressed it.
	if !res.info.Compressed {
		return line, errors.New("the text stream was not sent compressed, though bob advertises raw deflate")
	}
	return line + fmt.Sprintf(", raw-deflate compressed on the wire; bob's handler read it through io.Reader in %d reads, the first after %s, all of it identical after %s",
		res.reads, seconds(res.first), seconds(time.Since(start))), nil
}

func (d *demo) stepByteStream(ctx context.Context) (string, error) {
	alice, err := d.room("alice")
	if err != nil {
		return "", err
	}
	bob, err := d.room("bob")
	if err != nil {
		return "", err
	}
	const size, piece = 256 << 10, 16 << 10
	payload := make([]byte, size)
	_, _ = rand.Read(payload)
	start := time.Now()
	got := make(chan streamRead, 1)
	if err := bob.RegisterByteStreamHandler("recording", func(r *callstate.ByteStreamReader) {
		res := readIncrementally(r, start)
		res.from, res.info = r.From(), r.Info()
		got <- res
	}); err != nil {
		return "", err
	}
	defer bob.UnregisterByteStreamHandler("recording")
	line := fmt.Sprintf("alice streamed 256 KiB of random bytes (StreamBytes writer, %d writes of 16 KiB, topic recording)", size/piece)
	w, err := alice.StreamBytes(ctx, &callstate.StreamOptions{Topic: "recording", Name: "take1.bin", Size: size})
	if err != nil {
		return line, err
	}
	for off := 0; off < size; off += piece {
		if _, err := w.Write(payload[off : off+piece]); err != nil {
			_ = w.CloseWithError(err)
			return line, err
		}
	}
	if err := w.Close(); err != nil {
		return line, err
	}
	res, err := awaitRead(ctx, got)
	if err != nil {
		return line, err
	}
	if res.from != "alice" || res.info.Name != "take1.bin" || res.info.Size != size {
		return line, fmt.Errorf("bob's handler got a stream from %q named %q of size %d", res.from, res.info.Name, res.info.Size)
	}
	if sha256.Sum256(res.data) != sha256.Sum256(payload) {
		return line, fmt.Errorf("bob's handler read %d bytes that differ", len(res.data))
	}
	return line + fmt.Sprintf("; bob's handler read %s (%d bytes announced) in %d reads, the first after %s, all identical after %s",
		res.info.Name, res.info.Size, res.reads, seconds(res.first), seconds(time.Since(start))), nil
}

func (d *demo) stepChat(ctx context.Context) (string, error) {
	alice, sub, err := d.pair("alice", "bob")
	if err != nil {
		return "", err
	}
	const msg = "the demo is nearly over 👋"
	t := time.Now()
	sent, err := alice.SendChatMessage(ctx, msg, nil)
	if err != nil {
		return "", err
	}
	text := fmt.Sprintf("alice wrote %q in the chat (SendChatMessage)", msg)
	ev, err := await(ctx, sub, func(e callstate.ChatMessage) bool { return e.From == "alice" && e.ID == sent.ID })
	if err != nil {
		return text, err
	}
	if ev.Text != msg {
		return text, fmt.Errorf("bob got %q", ev.Text)
	}
	d.chat = &ev
	return text + fmt.Sprintf("; bob got a ChatMessage event with that text after %s", seconds(ev.When().Sub(t))), nil
}

func (d *demo) stepEventJSON(ctx context.Context) (string, error) {
	if d.chat == nil {
		return "", errors.New("no chat message to encode (the chat step failed)")
	}
	b, err := callstate.MarshalEvent(*d.chat)
	if err != nil {
		return "", err
	}
	text := "bob's ChatMessage event as callstate.MarshalEvent writes it: " + string(b)
	back, err := callstate.UnmarshalEvent(b)
	if err != nil {
		return text, err
	}
	m, ok := back.(callstate.ChatMessage)
	// The encoding writes times in UTC; compare the instants.
	if !ok || m.From != d.chat.From || m.ID != d.chat.ID || m.Text != d.chat.Text || !m.Time.Equal(d.chat.Time) || !m.Timestamp.Equal(d.chat.Timestamp) {
		return text, fmt.Errorf("UnmarshalEvent read back %#v", back)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil || string(obj["type"]) == "" {
		return text, fmt.Errorf("not a JSON object with a type: %v", err)
	}
	return text + "; UnmarshalEvent reads the same event back", nil
}

// demoFrameSizes are the sizes of the data track frames sent: one packet,
// a full packet, and a frame cut into many packets.
var demoFrameSizes = []int{24, 1200, 60_000}

func (d *demo) stepDataTrack(ctx context.Context) (string, error) {
	alice, sub, err := d.pair("alice", "bob")
	if err != nil {
		return "", err
	}
	bob, _ := d.room("bob")
	tr, err := alice.PublishDataTrack(ctx, "cursor", nil)
	if err != nil {
		return "", err
	}
	text := "alice published the data track cursor"
	if _, err := await(ctx, sub, func(e callstate.DataTrackPublished) bool {
		return e.Participant.Identity == "alice" && e.Track.Name == "cursor"
	}); err != nil {
		return text, err
	}
	rs, err := bob.SubscribeDataTrack(ctx, "alice", "cursor", nil)
	if err != nil {
		return text, err
	}
	text += "; bob saw it and subscribed"
	var got []string
	for i, n := range demoFrameSizes {
		frame := make([]byte, n)
		_, _ = rand.Read(frame)
		ts := uint64(time.Now().UnixMicro())
		// Frames travel lossy: send again until one arrives whole (as
		// for lossy data), and check what arrives.
		var f callstate.DataTrackFrame
		var lastErr error
		attempt := 1
		for ; attempt <= lossyAttempts; attempt++ {
			t := time.Now()
			if err := tr.Push(ctx, frame, &callstate.FrameOptions{UserTimestamp: ts}); err != nil {
				return text, err
			}
			wctx, cancel := context.WithTimeout(ctx, min(lossyWait, time.Until(deadline(ctx))))
			f, lastErr = rs.Next(wctx)
			cancel()
			if lastErr == nil {
				if !bytes.Equal(f.Payload, frame) || f.UserTimestamp != ts {
					return text, fmt.Errorf("bob got frame %d of %d bytes that differs", i, len(f.Payload))
				}
				got = append(got, fmt.Sprintf("%d bytes after %s (%s)", n, seconds(f.Received.Sub(t)), attemptText(attempt)))
				break
			}
			if ctx.Err() != nil {
				break
			}
		}
		if lastErr != nil {
			return text, fmt.Errorf("bob never got frame %d of %d bytes: %w (%+v)", i, n, lastErr, rs.Stats())
		}
	}
	return text + "; bob got each frame byte-exact with its user timestamp: " + strings.Join(got, ", "), nil
}

func (d *demo) stepRoomSignals(ctx context.Context) (string, error) {
	bob, sub, err := d.pair("bob", "dave")
	if err != nil {
		return "", err
	}
	dave, _ := d.room("dave")
	var pubs []string
	for _, p := range dave.Snapshot().Remote {
		if p.IsPublisher {
			pubs = append(pubs, p.Identity)
		}
	}
	slices.Sort(pubs)
	want := slices.Sorted(maps.Keys(d.rooms))
	want = slices.DeleteFunc(want, func(id string) bool { return id == "dave" })
	text := fmt.Sprintf("dave sees as publishers (their presence tracks): %s", strings.Join(pubs, ", "))
	if !reflect.DeepEqual(pubs, want) {
		return text, fmt.Errorf("want %s", strings.Join(want, ", "))
	}
	// The server reports the counts in room updates, not at join: a
	// metadata change (here a session data merge) brings one.
	if err := bob.SetSessionData(ctx, json.RawMessage(`{"phase":"wrap-up"}`), callstate.ShallowMerge); err != nil {
		return text, err
	}
	text += `; bob merged {"phase":"wrap-up"}`
	if _, err := await(ctx, sub, func(e callstate.RoomMetadataChanged) bool {
		return strings.Contains(e.Metadata, `"wrap-up"`)
	}); err != nil {
		return text, err
	}
	info := dave.Info()
	text += fmt.Sprintf("; in the room update dave received, the server counts %d participants and %d publishers", info.NumParticipants, info.NumPublishers)
	if info.NumParticipants != len(d.rooms) {
		return text, fmt.Errorf("%d are in the call", len(d.rooms))
	}
	return text, nil
}
