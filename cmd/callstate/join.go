package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/lkserver"
)

// maxCommandLine is the longest command line accepted on standard input,
// enough for a base64 payload of the largest message.
const maxCommandLine = 32 << 20

type joinConfig struct {
	server         serverFlags
	token          string
	room, identity string
	name           string
	userData       string
	attrs          kvFlag
	hidden         bool
	loopback       bool
	receiveOnly    bool
	joinTimeout    time.Duration
	commandTimeout time.Duration
	buffer         int
	verbose        bool
}

func newJoinFlags(e *env) (*flag.FlagSet, *joinConfig) {
	c := &joinConfig{attrs: kvFlag{}}
	fs := newFlagSet(e, "join", "[flags]", `
Join joins a room and acts as a participant scripted through JSON lines: it
writes one JSON object per line on standard output for every event (first a
"joined" line with the current state of the room), and reads one JSON
command per line on standard input, answering each with a "result" or an
"error" line. docs/cli.md describes the lines.

Give either -url and -token, or -url, -api-key, -api-secret, -room and
-identity to have a token minted (grants: join, publish data, update own
metadata, room admin for session data writes).

It leaves the room and exits 0 at the end of standard input, on a "leave"
command, or on SIGINT or SIGTERM; it exits 1 if the join fails or the room
ends for another reason (for example, the participant is removed).

Example:

	echo '{"id":1,"cmd":"app_message","data":{"text":"hi"}}' |
		callstate join -room standup -identity bot`)
	c.server.register(fs, e, "")
	envStringVar(fs, e, &c.token, "token", envToken, "access `token` to join with")
	fs.StringVar(&c.room, "room", "", "`room` to join, for a minted token")
	fs.StringVar(&c.identity, "identity", "", "participant `identity`, for a minted token")
	fs.StringVar(&c.name, "name", "", "display `name`, for a minted token")
	fs.StringVar(&c.userData, "user-data", "", "initial user data, as `JSON`")
	fs.Var(c.attrs, "attr", "initial attribute `key=value` (repeatable)")
	fs.BoolVar(&c.hidden, "hidden", false, "join hidden, for a minted token")
	fs.BoolVar(&c.loopback, "loopback", false, "connect over the loopback interface only (callstate does this by itself when the URL's host is a loopback address or localhost)")
	fs.BoolVar(&c.receiveOnly, "receive-only", false, "join without a publisher connection: receive only")
	fs.DurationVar(&c.joinTimeout, "join-timeout", 30*time.Second, "how long the join may take")
	fs.DurationVar(&c.commandTimeout, "command-timeout", 30*time.Second, "how long one command may take")
	fs.IntVar(&c.buffer, "buffer", callstate.DefaultMaxEvents, "events buffered while standard output is slow; beyond, events are dropped and reported")
	fs.BoolVar(&c.verbose, "v", false, "log the Room's diagnostics to standard error")
	return fs, c
}

func joinFlags(e *env) *flag.FlagSet { fs, _ := newJoinFlags(e); return fs }

func runJoin(ctx context.Context, args []string, e *env) int {
	fs, c := newJoinFlags(e)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if c.server.url == "" {
		return usageError(fs, "-url (or $%s) is required", envLiveKitURL)
	}
	token := c.token
	if token == "" {
		if c.server.apiKey == "" || c.server.apiSecret == "" || c.room == "" || c.identity == "" {
			return usageError(fs, "give -token, or -api-key, -api-secret, -room and -identity")
		}
		grants := lkserver.DefaultGrants(c.room)
		grants.Hidden = c.hidden
		var err error
		token, err = callstate.NewToken(c.server.apiKey, c.server.apiSecret, callstate.Claims{
			Identity: c.identity, Name: c.name, Grants: grants,
		})
		if err != nil {
			fmt.Fprintf(e.stderr, "callstate join: %v\n", err)
			return exitUsage
		}
	}
	opts := &callstate.JoinOptions{
		LoopbackICE: c.loopback,
		ReceiveOnly: c.receiveOnly,
		Attributes:  c.attrs,
	}
	if c.userData != "" {
		if !json.Valid([]byte(c.userData)) {
			return usageError(fs, "-user-data is not valid JSON")
		}
		opts.UserData = json.RawMessage(c.userData)
	}
	if c.verbose {
		opts.Logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}

	out := newLineWriter(e.stdout)
	jctx, cancel := context.WithTimeout(ctx, c.joinTimeout)
	room, err := callstate.Join(jctx, c.server.url, token, opts)
	cancel()
	if err != nil {
		out.write(errorLine(nil, errorCode(err), err))
		fmt.Fprintf(e.stderr, "callstate join: %v\n", err)
		return exitFailure
	}
	p := &participant{room: room, out: out, stderr: e.stderr, timeout: c.commandTimeout,
		tracks: map[string]*callstate.LocalDataTrack{}, frames: make(chan frameLineJSON, 256),
		streamTopics: map[streamTopic]struct{}{}}
	return p.run(ctx, e.stdin, c.buffer)
}

// lineWriter encodes output lines; only the participant's main loop uses it.
type lineWriter struct {
	// mu makes writes whole lines: RPC handlers write from goroutines of
	// their own.
	mu  sync.Mutex
	w   *bufio.Writer
	enc *json.Encoder
	err error
}

func newLineWriter(w io.Writer) *lineWriter {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &lineWriter{w: bw, enc: enc}
}

// write writes one line and flushes it. After a write error (standard
// output closed), it writes nothing more.
func (lw *lineWriter) write(l any) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.err != nil {
		return
	}
	if err := lw.enc.Encode(l); err != nil {
		lw.err = err
		return
	}
	lw.err = lw.w.Flush()
}

// participant is a joined Room driven by JSON lines.
type participant struct {
	room    *callstate.Room
	out     *lineWriter
	stderr  io.Writer
	timeout time.Duration
	// tracks are the data tracks published with publish_data_track, by
	// name; frames carries data_track_frame lines from the subscriptions'
	// readers to the one goroutine that writes lines.
	tracks map[string]*callstate.LocalDataTrack
	frames chan frameLineJSON
	// streamTopics are the topics registered with stream_register (used
	// by the executor only); readers counts the handlers reading their
	// streams.
	streamTopics map[streamTopic]struct{}
	readers      streamReaders
}

// input is one line read from standard input.
type input struct {
	text []byte
	err  error // a read error; the last input
}

// run writes the joined line and then, from one goroutine, every event and
// every command's answer in the order they happen, until the room ends.
func (p *participant) run(ctx context.Context, stdin io.Reader, buffer int) int {
	st, sub := p.room.SubscribeWithSnapshot(&callstate.SubscribeOptions{MaxEvents: buffer})
	p.out.write(line{Type: "joined", Time: time.Now().UTC(), State: &st})

	// The reader feeds the executor, which runs commands one at a time in
	// their order and hands their answers to this goroutine.
	inputs := make(chan input)
	answers := make(chan line)
	finished := make(chan struct{}) // the executor has run every command
	stop := make(chan struct{})     // this loop has ended
	defer close(stop)
	go readInputs(stdin, inputs, stop)
	go func() {
		defer close(finished)
		for in := range inputs {
			if in.err != nil {
				fmt.Fprintf(p.stderr, "callstate join: reading standard input: %v\n", in.err)
				return
			}
			l, leave := p.execute(ctx, in.text)
			select {
			case answers <- l:
			case <-stop:
				return
			}
			if leave {
				return
			}
		}
	}()

	leaving := false // we asked to leave: the room's end is a success
	leave := func() {
		if !leaving {
			leaving = true
			// Close returns once the Disconnected event is delivered;
			// run it aside so that this loop keeps writing.
			go p.room.Close()
		}
	}
	// ended handles the end of the subscription: the room has ended.
	ended := func() int {
		// Close releases the Room's resources.
		_ = p.room.Close()
		if leaving {
			return exitOK
		}
		if err := p.room.Err(); err != nil {
			fmt.Fprintf(p.stderr, "callstate join: %v\n", err)
		}
		return exitFailure
	}
	done := ctx.Done()
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				return ended()
			}
			p.writeEvent(ev)
		case l := <-answers:
			// Events the command caused were delivered before it returned:
			// write them first.
			open := p.drain(sub)
			p.out.write(l)
			if !open {
				return ended()
			}
		case l := <-p.frames:
			p.out.write(l)
		case <-finished:
			finished = nil
			leave()
		case <-done:
			done = nil
			leave()
		}
	}
}

// writeEvent writes an event's line. Before the room's last lines, it lets
// the stream readers, which end when the Room closes, write their
// stream_end lines: the disconnected lines stay the last.
func (p *participant) writeEvent(ev callstate.Event) {
	switch e := ev.(type) {
	case callstate.ConnectionStateChanged:
		if e.State == callstate.StateDisconnected {
			p.readers.close(streamDrainTimeout)
		}
	case callstate.Disconnected:
		p.readers.close(streamDrainTimeout)
	}
	p.out.write(eventLine(ev))
}

// drain writes the events already buffered in sub; it returns false if
// the subscription has ended.
func (p *participant) drain(sub *callstate.Subscription) bool {
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				return false
			}
			p.writeEvent(ev)
		default:
			return true
		}
	}
}

// readInputs sends standard input's lines, skipping blank ones, until the
// end of input (closing inputs) or a read error (sent as the last input).
func readInputs(r io.Reader, inputs chan<- input, stop <-chan struct{}) {
	defer close(inputs)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxCommandLine)
	for sc.Scan() {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		select {
		case inputs <- input{text: bytes.Clone(b)}:
		case <-stop:
			return
		}
	}
	if err := sc.Err(); err != nil {
		select {
		case inputs <- input{err: err}:
		case <-stop:
		}
	}
}

// commandJSON is one command line. Fields not used by the command must be
// absent.
type commandJSON struct {
	ID         json.RawMessage   `json:"id"`
	Cmd        string            `json:"cmd"`
	Payload    *string           `json:"payload"`
	Text       *string           `json:"text"`
	Kind       string            `json:"kind"`
	Topic      *string           `json:"topic"`
	To         []string          `json:"to"`
	Data       json.RawMessage   `json:"data"`
	Metadata   *string           `json:"metadata"`
	Name       *string           `json:"name"`
	Attributes map[string]string `json:"attributes"`
	Strategy   string            `json:"strategy"`
	Identity   string            `json:"identity"`
	Track      string            `json:"track"`
	UserTS     uint64            `json:"user_timestamp"`
	PacketSize int               `json:"max_packet_size"`
	Method     string            `json:"method"`
	TimeoutMs  int               `json:"timeout_ms"`
	Answer     *string           `json:"answer"`
	Path       string            `json:"path"`
	MimeType   string            `json:"mime_type"`
	SaveTo     *string           `json:"save_to"`
}

// topic returns the command's topic, "" when absent.
func (c *commandJSON) topic() string {
	if c.Topic == nil {
		return ""
	}
	return *c.Topic
}

// fieldsOf lists which fields each command accepts, besides id and cmd.
var fieldsOf = map[string][]string{
	"publish":              {"payload", "text", "kind", "topic", "to"},
	"app_message":          {"data", "to"},
	"set_user_data":        {"data"},
	"set_metadata":         {"metadata"},
	"set_name":             {"name"},
	"set_attributes":       {"attributes"},
	"set_session_data":     {"data", "strategy"},
	"publish_data_track":   {"name", "max_packet_size"},
	"push":                 {"name", "payload", "text", "user_timestamp"},
	"unpublish_data_track": {"name"},
	"subscribe_data_track": {"identity", "track"},
	"state":                nil,
	"leave":                nil,
	"rpc":                  {"to", "method", "text", "timeout_ms"},
	"rpc_register":         {"method", "answer"},
	"rpc_unregister":       {"method"},
	"send_text":            {"text", "topic", "to", "attributes"},
	"send_file":            {"path", "topic", "to", "attributes", "name", "mime_type"},
	"chat":                 {"text", "to"},
	"stream_register":      {"topic", "kind", "save_to"},
	"stream_unregister":    {"topic", "kind"},
}

// commandError is a command refused before it reached the Room.
type commandError struct {
	code string
	msg  string
}

func (e *commandError) Error() string { return e.msg }

func badCommand(format string, args ...any) error {
	return &commandError{code: "bad_command", msg: fmt.Sprintf(format, args...)}
}

func invalidArgument(format string, args ...any) error {
	return &commandError{code: "invalid_argument", msg: fmt.Sprintf(format, args...)}
}

// parseCommand decodes and checks a command line.
func parseCommand(text []byte) (*commandJSON, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(text, &fields); err != nil || fields == nil {
		return nil, badCommand("a command must be a JSON object on one line: %s", jsonErrorText(err))
	}
	var c commandJSON
	if raw, ok := fields["id"]; ok {
		c.ID = raw
	}
	if err := json.Unmarshal(text, &c); err != nil {
		return &c, badCommand("%s", jsonErrorText(err))
	}
	if c.Cmd == "" {
		return &c, badCommand(`the command has no "cmd" field`)
	}
	allowed, ok := fieldsOf[c.Cmd]
	if !ok {
		return &c, &commandError{code: "unknown_command", msg: fmt.Sprintf("unknown command %q", c.Cmd)}
	}
	for k := range fields {
		if k == "id" || k == "cmd" {
			continue
		}
		if !contains(allowed, k) {
			return &c, badCommand("the %s command has no field %q", c.Cmd, k)
		}
	}
	return &c, nil
}

func jsonErrorText(err error) string {
	if err == nil {
		return "not an object"
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("field %q must be a JSON %s", te.Field, jsonKind(te.Type.Kind().String()))
	}
	return err.Error()
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "slice":
		return "array"
	case "map", "struct":
		return "object"
	}
	return goKind
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// execute runs one command line and returns its answer, and whether the
// command was leave.
func (p *participant) execute(ctx context.Context, text []byte) (line, bool) {
	c, err := parseCommand(text)
	var id json.RawMessage
	if c != nil {
		id = c.ID
	}
	if err != nil {
		return p.fail(id, err), false
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	switch c.Cmd {
	case "state":
		l := resultLine(id)
		st := p.room.Snapshot()
		l.State = &st
		return l, false
	case "leave":
		return resultLine(id), true
	case "rpc", "send_text", "send_file", "chat":
		l, err := p.primitive(ctx, c)
		if err != nil {
			return p.fail(id, err), false
		}
		l.ID = id
		return l, false
	}
	if err := p.apply(ctx, c); err != nil {
		return p.fail(id, err), false
	}
	return resultLine(id), false
}

func (p *participant) fail(id json.RawMessage, err error) line {
	code := errorCode(err)
	var ce *commandError
	if errors.As(err, &ce) {
		code = ce.code
	}
	l := errorLine(id, code, err)
	var re *callstate.RpcError
	if errors.As(err, &re) {
		l.Code = "rpc_error"
		l.RpcCode = ptr(uint32(re.Code))
		l.RpcMessage = re.Message
		l.RpcData = re.Data
	}
	return l
}

// primitive runs the RPC, stream and chat commands, whose results carry
// more than ok.
func (p *participant) primitive(ctx context.Context, c *commandJSON) (line, error) {
	r := p.room
	text := ""
	if c.Text != nil {
		text = *c.Text
	}
	l := resultLine(nil)
	switch c.Cmd {
	case "rpc":
		if len(c.To) != 1 || c.Method == "" {
			return l, invalidArgument(`the rpc command needs "to" (one identity) and "method"`)
		}
		if c.TimeoutMs < 0 {
			return l, invalidArgument(`"timeout_ms" must not be negative`)
		}
		timeout := time.Duration(c.TimeoutMs) * time.Millisecond
		if timeout > 0 {
			// The call's own timeout, not the command timeout, bounds it.
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), timeout+time.Second)
			defer cancel()
		}
		out, err := r.PerformRpc(ctx, c.To[0], c.Method, text, &callstate.RpcOptions{ResponseTimeout: timeout})
		if err != nil {
			return l, err
		}
		l.Text = ptr(out)
		return l, nil
	case "send_text":
		if c.Text == nil {
			return l, invalidArgument(`the send_text command needs a "text" field`)
		}
		info, err := r.SendText(ctx, text, &callstate.StreamOptions{Topic: c.topic(), To: c.To, Attributes: c.Attributes})
		l.Stream = streamLine(info)
		return l, err
	case "send_file":
		if c.Path == "" {
			return l, invalidArgument(`the send_file command needs a "path" field`)
		}
		name := ""
		if c.Name != nil {
			name = *c.Name
		}
		info, err := r.SendFile(ctx, c.Path, &callstate.StreamOptions{Topic: c.topic(), To: c.To, Attributes: c.Attributes, Name: name, MimeType: c.MimeType})
		l.Stream = streamLine(info)
		return l, err
	case "chat":
		if c.Text == nil {
			return l, invalidArgument(`the chat command needs a "text" field`)
		}
		m, err := r.SendChatMessage(ctx, text, &callstate.ChatOptions{To: c.To})
		l.Stream = &streamJSON{ID: m.ID, Text: true}
		return l, err
	}
	return l, &commandError{code: "unknown_command", msg: fmt.Sprintf("unknown command %q", c.Cmd)}
}

func streamLine(i callstate.StreamInfo) *streamJSON {
	if i.ID == "" {
		return nil
	}
	return &streamJSON{ID: i.ID, MimeType: i.MimeType, Name: i.Name, Text: i.Text, Attributes: i.Attributes}
}

// registerRpc answers calls of method with answer, or with the request's
// payload when answer is nil, and writes an rpc_request line for each.
func (p *participant) registerRpc(method string, answer *string) error {
	return p.room.RegisterRpcMethod(method, func(_ context.Context, inv callstate.RpcInvocation) (string, error) {
		p.out.write(line{
			Type:      "rpc_request",
			Time:      time.Now().UTC(),
			From:      ptr(inv.CallerIdentity),
			Method:    inv.Method,
			RequestID: inv.RequestID,
			Text:      ptr(inv.Payload),
		})
		if answer != nil {
			return *answer, nil
		}
		return inv.Payload, nil
	})
}

// apply runs the commands that call the Room.
func (p *participant) apply(ctx context.Context, c *commandJSON) error {
	r := p.room
	switch c.Cmd {
	case "publish":
		payload, err := c.payload()
		if err != nil {
			return err
		}
		opts := &callstate.PublishOptions{Topic: c.topic(), To: c.To}
		switch c.Kind {
		case "", "reliable":
		case "lossy":
			opts.Kind = callstate.Lossy
		default:
			return invalidArgument(`"kind" must be "reliable" or "lossy", not %q`, c.Kind)
		}
		return r.PublishData(ctx, payload, opts)
	case "app_message":
		if len(c.Data) == 0 {
			return invalidArgument(`the app_message command needs a "data" field`)
		}
		return r.SendAppMessage(ctx, c.Data, c.To...)
	case "set_user_data":
		if len(c.Data) == 0 {
			return invalidArgument(`the set_user_data command needs a "data" field (null clears the user data)`)
		}
		return r.SetUserData(ctx, c.Data)
	case "set_metadata":
		if c.Metadata == nil {
			return invalidArgument(`the set_metadata command needs a "metadata" string`)
		}
		return r.SetMetadata(ctx, *c.Metadata)
	case "set_name":
		if c.Name == nil {
			return invalidArgument(`the set_name command needs a "name" string`)
		}
		return r.SetName(ctx, *c.Name)
	case "set_attributes":
		if c.Attributes == nil {
			return invalidArgument(`the set_attributes command needs an "attributes" object`)
		}
		return r.SetAttributes(ctx, c.Attributes)
	case "publish_data_track":
		if c.Name == nil {
			return invalidArgument(`the publish_data_track command needs a "name" string`)
		}
		if _, ok := p.tracks[*c.Name]; ok {
			return invalidArgument("data track %q is already published", *c.Name)
		}
		t, err := r.PublishDataTrack(ctx, *c.Name, &callstate.DataTrackOptions{MaxPacketSize: c.PacketSize})
		if err != nil {
			return err
		}
		p.tracks[*c.Name] = t
		return nil
	case "push":
		t, err := p.track(c)
		if err != nil {
			return err
		}
		payload, err := c.payload()
		if err != nil {
			return err
		}
		return t.Push(ctx, payload, &callstate.FrameOptions{UserTimestamp: c.UserTS})
	case "unpublish_data_track":
		t, err := p.track(c)
		if err != nil {
			return err
		}
		if err := t.Unpublish(ctx); err != nil {
			return err
		}
		delete(p.tracks, *c.Name)
		return nil
	case "subscribe_data_track":
		if c.Identity == "" || c.Track == "" {
			return invalidArgument(`the subscribe_data_track command needs "identity" and "track" (a name or sid)`)
		}
		s, err := r.SubscribeDataTrack(ctx, c.Identity, c.Track, nil)
		if err != nil {
			return err
		}
		go p.readFrames(s)
		return nil
	case "rpc_register":
		if c.Method == "" {
			return invalidArgument(`the rpc_register command needs a "method" field`)
		}
		return p.registerRpc(c.Method, c.Answer)
	case "stream_register":
		return p.registerStream(c)
	case "stream_unregister":
		return p.unregisterStream(c)
	case "rpc_unregister":
		if c.Method == "" {
			return invalidArgument(`the rpc_unregister command needs a "method" field`)
		}
		r.UnregisterRpcMethod(c.Method)
		return nil
	case "set_session_data":
		var data map[string]json.RawMessage
		if err := json.Unmarshal(c.Data, &data); err != nil || data == nil {
			return invalidArgument(`the set_session_data command needs a "data" object`)
		}
		strategy := callstate.Replace
		switch strings.ToLower(c.Strategy) {
		case "", "replace":
		case "merge", "shallow-merge", "shallow_merge":
			strategy = callstate.ShallowMerge
		default:
			return invalidArgument(`"strategy" must be "replace" or "merge", not %q`, c.Strategy)
		}
		return r.SetSessionData(ctx, data, strategy)
	}
	return &commandError{code: "unknown_command", msg: fmt.Sprintf("unknown command %q", c.Cmd)}
}

// track returns the local data track a command names.
func (p *participant) track(c *commandJSON) (*callstate.LocalDataTrack, error) {
	if c.Name == nil {
		return nil, invalidArgument(`the %s command needs the "name" of a published data track`, c.Cmd)
	}
	t, ok := p.tracks[*c.Name]
	if !ok {
		return nil, invalidArgument("no data track %q was published with publish_data_track", *c.Name)
	}
	return t, nil
}

// readFrames turns a subscription's frames into data_track_frame lines,
// until it ends; the line writer's loop writes them.
func (p *participant) readFrames(s *callstate.RemoteDataTrackSubscription) {
	for f := range s.C() {
		select {
		case p.frames <- frameLine(s, f):
		case <-p.room.Done():
			return
		}
	}
}

// payload returns the publish command's payload.
func (c *commandJSON) payload() ([]byte, error) {
	switch {
	case c.Payload != nil && c.Text != nil:
		return nil, invalidArgument(`give "payload" or "text", not both`)
	case c.Text != nil:
		return []byte(*c.Text), nil
	case c.Payload != nil:
		b, err := base64.StdEncoding.DecodeString(*c.Payload)
		if err != nil {
			return nil, invalidArgument(`"payload" is not standard base64: %v`, err)
		}
		return b, nil
	}
	return nil, invalidArgument(`the publish command needs a "payload" (base64) or a "text" field`)
}
