package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// awaitLine is how long a test waits for an output line. Participant
// updates may take ~3 s to reach others.
const awaitLine = 20 * time.Second

// joinProc is a "callstate join" process driven through its standard
// streams.
type joinProc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan map[string]any
	stderr *lockedBuffer
	exited chan struct{}
	code   int
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startJoin starts bin with the join command and the given flags. Every
// stdout line must be a JSON object with a type and an RFC 3339 time.
func startJoin(t *testing.T, bin, name string, args ...string) *joinProc {
	t.Helper()
	p := &joinProc{
		t:      t,
		name:   name,
		cmd:    exec.Command(bin, append([]string{"join"}, args...)...),
		lines:  make(chan map[string]any, 1024),
		stderr: &lockedBuffer{},
		exited: make(chan struct{}),
	}
	p.cmd.Stderr = p.stderr
	var err error
	p.stdin, err = p.cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := p.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	var readDone sync.WaitGroup
	readDone.Go(func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 8<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil || m == nil {
				t.Errorf("%s: a stdout line is not a JSON object: %q", name, sc.Text())
				continue
			}
			typ, _ := m["type"].(string)
			ts, _ := m["time"].(string)
			if _, err := time.Parse(time.RFC3339Nano, ts); typ == "" || err != nil {
				t.Errorf("%s: a line without type or time: %q", name, sc.Text())
			}
			p.lines <- m
		}
	})
	go func() {
		readDone.Wait()
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, p.stderr.String())
		}
	})
	return p
}

// send writes one command line.
func (p *joinProc) send(line string) {
	p.t.Helper()
	_, err := io.WriteString(p.stdin, line+"\n")
	require.NoError(p.t, err, "%s: writing %s", p.name, line)
}

// await returns the first line of the given type that match accepts
// (nil accepts any), discarding the lines before it.
func (p *joinProc) await(typ string, match func(map[string]any) bool) map[string]any {
	p.t.Helper()
	timer := time.NewTimer(awaitLine)
	defer timer.Stop()
	var seen []string
	for {
		select {
		case m, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("%s: output ended while waiting for a %s line; saw %v", p.name, typ, seen)
			}
			seen = append(seen, fmt.Sprint(m["type"]))
			if m["type"] == typ && (match == nil || match(m)) {
				return m
			}
		case <-timer.C:
			p.t.Fatalf("%s: no %s line within %v; saw %v", p.name, typ, awaitLine, seen)
		}
	}
}

// awaitTimeout returns the first line of the given type within d, or nil.
func (p *joinProc) awaitTimeout(typ string, d time.Duration) map[string]any {
	p.t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-p.lines:
			if !ok {
				return nil
			}
			if m["type"] == typ {
				return m
			}
		case <-timer.C:
			return nil
		}
	}
}

// answer awaits the result or error line of the command with this id.
func (p *joinProc) answer(id any) map[string]any {
	p.t.Helper()
	want, _ := json.Marshal(id)
	timer := time.NewTimer(awaitLine)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("%s: output ended while waiting for the answer to %s", p.name, want)
			}
			got, _ := json.Marshal(m["id"])
			if (m["type"] == "result" || m["type"] == "error") && bytes.Equal(got, want) {
				return m
			}
		case <-timer.C:
			p.t.Fatalf("%s: no answer to command %s within %v", p.name, want, awaitLine)
		}
	}
}

// ok sends a command and requires a successful result.
func (p *joinProc) ok(id any, line string) map[string]any {
	p.t.Helper()
	p.send(line)
	m := p.answer(id)
	require.Equal(p.t, "result", m["type"], "%s: %s answered %v", p.name, line, m)
	require.Equal(p.t, true, m["ok"])
	return m
}

// wait waits for the process to exit and returns its status.
func (p *joinProc) wait() int {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(awaitLine):
		p.t.Fatalf("%s did not exit", p.name)
		return -1
	}
}

func identityOf(m map[string]any) string {
	pm, _ := m["participant"].(map[string]any)
	s, _ := pm["identity"].(string)
	return s
}

func TestJoinCommand(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	bin := buildBinary(t)
	creds := []string{"-url", srv.URL(), "-api-key", srv.APIKey(), "-api-secret", srv.APISecret()}

	t.Run("DataTracks", func(t *testing.T) {
		t.Parallel()
		room := srv.RoomName(t)
		alice := startJoin(t, bin, "alice", append(creds, "-room", room, "-identity", "alice")...)
		alice.await("joined", nil)
		bob := startJoin(t, bin, "bob", append(creds, "-room", room, "-identity", "bob")...)
		bob.await("joined", nil)
		alice.await("participant_joined", func(m map[string]any) bool { return identityOf(m) == "bob" })
		alice.ok(1, `{"id":1,"cmd":"publish_data_track","name":"position"}`)
		pub := bob.await("data_track_published", nil)
		assert.Equal(t, "position", pub["track"].(map[string]any)["name"])
		bob.ok(2, `{"id":2,"cmd":"subscribe_data_track","identity":"alice","track":"position"}`)
		// The track is lossy: push until a frame arrives.
		var f map[string]any
		for i := 0; f == nil && i < 10; i++ {
			alice.ok(3+i, fmt.Sprintf(`{"id":%d,"cmd":"push","name":"position","text":"x=1","user_timestamp":42}`, 3+i))
			f = bob.awaitTimeout("data_track_frame", 2*time.Second)
		}
		require.NotNil(t, f, "no frame arrived")
		assert.Equal(t, "x=1", f["text"])
		assert.Equal(t, "alice", f["from"])
		assert.EqualValues(t, 42, f["user_timestamp"])
		alice.send(`{"id":20,"cmd":"publish_data_track","name":"position"}`)
		assert.Equal(t, "invalid_argument", alice.answer(20)["code"], "published already by this session")
		alice.send(`{"id":21,"cmd":"push","name":"nope","text":"x"}`)
		assert.Equal(t, "invalid_argument", alice.answer(21)["code"])
		alice.ok(22, `{"id":22,"cmd":"unpublish_data_track","name":"position"}`)
		bob.await("data_track_unpublished", nil)
	})

	t.Run("Conversation", func(t *testing.T) {
		t.Parallel()
		room := srv.RoomName(t)
		alice := startJoin(t, bin, "alice", append(creds, "-room", room, "-identity", "alice", "-user-data", `{"role":"host"}`)...)
		j := alice.await("joined", nil)
		st := j["state"].(map[string]any)
		assert.Equal(t, room, st["room"].(map[string]any)["name"])
		assert.Equal(t, "alice", st["local"].(map[string]any)["identity"])
		assert.Equal(t, map[string]any{"role": "host"}, st["local"].(map[string]any)["user_data"])
		assert.Equal(t, "connected", st["connection_state"])

		bob := startJoin(t, bin, "bob", append(creds, "-room", room, "-identity", "bob")...)
		j = bob.await("joined", nil)
		others := j["state"].(map[string]any)["participants"].([]any)
		require.Len(t, others, 1)
		assert.Equal(t, "alice", others[0].(map[string]any)["identity"])
		assert.Equal(t, map[string]any{"role": "host"}, others[0].(map[string]any)["user_data"])
		alice.await("participant_joined", func(m map[string]any) bool { return identityOf(m) == "bob" })

		// Data, reliable, with a topic. The payload is in one field:
		// text for UTF-8, json for compact JSON, payload (base64)
		// otherwise.
		alice.ok(1, `{"id":1,"cmd":"publish","text":"hello <bob>","topic":"chat"}`)
		d := bob.await("data", nil)
		assert.Equal(t, "alice", d["from"])
		assert.Equal(t, "chat", d["topic"])
		assert.Equal(t, "reliable", d["kind"])
		assert.Equal(t, "hello <bob>", d["text"])
		assert.Equal(t, float64(len("hello <bob>")), d["size"])
		assert.NotContains(t, d, "payload", "UTF-8 text")
		alice.ok("1j", `{"id":"1j","cmd":"publish","text":"{\"n\":[1,2]}"}`)
		d = bob.await("data", nil)
		assert.Equal(t, map[string]any{"n": []any{1.0, 2.0}}, d["json"])
		assert.NotContains(t, d, "text", "compact JSON")

		bob.ok("b1", `{"id":"b1","cmd":"publish","payload":"/wAB","to":["alice"]}`)
		d = alice.await("data", nil)
		assert.Equal(t, "bob", d["from"])
		assert.Equal(t, "/wAB", d["payload"])
		assert.NotContains(t, d, "text", "not UTF-8")
		assert.NotContains(t, d, "json", "not UTF-8")
		assert.Equal(t, "", d["topic"])

		// App message, addressed, JSON inline.
		alice.ok(2, `{"id":2,"cmd":"app_message","data":{"hi":"bob","n":[1, 2]},"to":["bob"]}`)
		am := bob.await("app_message", nil)
		assert.Equal(t, "alice", am["from"])
		assert.Equal(t, map[string]any{"hi": "bob", "n": []any{1.0, 2.0}}, am["data"])

		// User data seen by the other.
		bob.ok(3, `{"id":3,"cmd":"set_user_data","data":{"mood":"ok"}}`)
		u := alice.await("participant_updated", func(m map[string]any) bool { return identityOf(m) == "bob" })
		assert.Equal(t, map[string]any{"mood": "ok"}, u["participant"].(map[string]any)["user_data"])
		assert.Equal(t, false, u["local"])
		assert.Equal(t, true, u["changes"].(map[string]any)["user_data"])

		// Name and attributes.
		bob.ok(4, `{"id":4,"cmd":"set_name","name":"Bob"}`)
		bob.ok(5, `{"id":5,"cmd":"set_attributes","attributes":{"hand":"up"}}`)
		alice.await("participant_updated", func(m map[string]any) bool {
			pm := m["participant"].(map[string]any)
			attrs, _ := pm["attributes"].(map[string]any)
			return pm["identity"] == "bob" && pm["name"] == "Bob" && attrs["hand"] == "up"
		})

		// Session data, replace then merge with a delete.
		alice.ok(6, `{"id":6,"cmd":"set_session_data","data":{"topic":"demo","timer":5}}`)
		bob.await("session_data", func(m map[string]any) bool {
			return assert.ObjectsAreEqual(map[string]any{"topic": "demo", "timer": 5.0}, m["data"])
		})
		bob.ok(7, `{"id":7,"cmd":"set_session_data","data":{"timer":null,"notes":"x"},"strategy":"merge"}`)
		sd := alice.await("session_data", func(m map[string]any) bool {
			return assert.ObjectsAreEqual(map[string]any{"topic": "demo", "notes": "x"}, m["data"])
		})
		assert.Equal(t, []any{"notes", "timer"}, sd["changed"])
		st = alice.ok(8, `{"id":8,"cmd":"state"}`)["state"].(map[string]any)
		assert.Equal(t, map[string]any{"topic": "demo", "notes": "x"}, st["session_data"])

		// Errors: a malformed line, an unknown command, bad arguments, a
		// refused send; each answered in order.
		alice.send(`this is not JSON`)
		e := alice.await("error", nil)
		assert.Equal(t, "bad_command", e["code"])
		assert.NotContains(t, e, "id")
		for _, c := range []struct {
			id         int
			line, code string
		}{
			{10, `{"id":10,"cmd":"dance"}`, "unknown_command"},
			{11, `{"id":11,"cmd":"publish","text":"x","to":["nobody"]}`, "unknown_participant"},
			{12, `{"id":12,"cmd":"publish","text":"x","kind":"maybe"}`, "invalid_argument"},
			{13, `{"id":13,"cmd":"publish","text":"x","colour":"red"}`, "bad_command"},
			{14, `{"id":14,"cmd":"set_name","name":42}`, "bad_command"},
			{15, `{"id":15,"cmd":"set_metadata","metadata":""}`, "invalid_argument"},
			{16, `{"id":16,"cmd":"app_message","data":{"a":1}}`, ""},
		} {
			alice.send(c.line)
			m := alice.answer(c.id)
			if c.code == "" {
				assert.Equal(t, "result", m["type"], c.line)
				continue
			}
			assert.Equal(t, "error", m["type"], c.line)
			assert.Equal(t, c.code, m["code"], c.line)
			assert.NotEmpty(t, m["error"], c.line)
		}

		// Leave: bob answers, disconnects and exits 0; alice sees him go.
		bob.ok(20, `{"id":20,"cmd":"leave"}`)
		d = bob.await("disconnected", nil)
		assert.Equal(t, "CLIENT_INITIATED", d["reason"])
		assert.Equal(t, exitOK, bob.wait())
		alice.await("participant_left", func(m map[string]any) bool { return identityOf(m) == "bob" })

		// End of input: alice leaves and exits 0.
		require.NoError(t, alice.stdin.Close())
		alice.await("disconnected", nil)
		assert.Equal(t, exitOK, alice.wait())
	})

	t.Run("RemovedByServer", func(t *testing.T) {
		t.Parallel()
		room := srv.RoomName(t)
		tok := srv.Token(room, "carol")
		carol := startJoin(t, bin, "carol", "-url", srv.URL(), "-token", tok)
		carol.await("joined", nil)
		ctx, cancel := context.WithTimeout(t.Context(), awaitLine)
		defer cancel()
		require.NoError(t, srv.RoomService().RemoveParticipant(ctx, room, "carol"))
		d := carol.await("disconnected", nil)
		assert.Equal(t, "PARTICIPANT_REMOVED", d["reason"])
		assert.Equal(t, exitFailure, carol.wait())
	})

	t.Run("BadToken", func(t *testing.T) {
		t.Parallel()
		tok, err := callstate.NewToken(srv.APIKey(), "not-the-secret-of-this-server-0123456789", callstate.Claims{
			Identity: "mallory", Grants: callstate.Grants{RoomJoin: true, Room: "r"},
		})
		require.NoError(t, err)
		p := startJoin(t, bin, "mallory", "-url", srv.URL(), "-token", tok, "-v")
		e := p.await("error", nil)
		assert.Equal(t, "bad_token", e["code"])
		assert.Equal(t, exitFailure, p.wait())
		// LiveKit's refusal quotes the token: neither the error line nor
		// standard error (with debug logs) shows it.
		msg, _ := e["error"].(string)
		assert.NotContains(t, msg, tok)
		assert.NotContains(t, p.stderr.String(), tok)
		assert.NotRegexp(t, `eyJ[A-Za-z0-9_-]{4,}\.`, msg+p.stderr.String())
	})

	t.Run("UnreachableServer", func(t *testing.T) {
		t.Parallel()
		tok := srv.Token(srv.RoomName(t), "nobody")
		// A port nothing listens on: the dial error names the URL, which
		// carries the token.
		p := startJoin(t, bin, "nobody", "-url", "ws://127.0.0.1:1", "-token", tok, "-v", "-join-timeout", "2s")
		e := p.await("error", nil)
		assert.Equal(t, "server_unreachable", e["code"])
		assert.Equal(t, exitFailure, p.wait())
		msg, _ := e["error"].(string)
		assert.NotContains(t, msg+p.stderr.String(), tok)
	})

	t.Run("ReceiveOnly", func(t *testing.T) {
		t.Parallel()
		room := srv.RoomName(t)
		rec := startJoin(t, bin, "rec", append(creds, "-room", room, "-identity", "rec", "-receive-only")...)
		rec.await("joined", nil)
		rec.send(`{"id":1,"cmd":"publish","text":"x"}`)
		e := rec.answer(1)
		assert.Equal(t, "receive_only", e["code"])
		rec.send(`{"id":2,"cmd":"leave"}`)
		assert.Equal(t, "result", rec.answer(2)["type"])
		assert.Equal(t, exitOK, rec.wait())
	})
}

// TestJoinInProcess drives the join command in process, so that its code
// counts for coverage and runs under the race detector with the test.
func TestJoinInProcess(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	var code int
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer outW.Close()
		code = run(ctx, []string{"join", "-url", srv.URL(), "-api-key", srv.APIKey(), "-api-secret", srv.APISecret(),
			"-room", room, "-identity", "dan", "-attr", "team=blue"}, &env{
			stdin: inR, stdout: outW, stderr: io.Discard, getenv: func(string) string { return "" },
		})
	}()
	sc := bufio.NewScanner(outR)
	next := func() map[string]any {
		t.Helper()
		require.True(t, sc.Scan(), "a line")
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		return m
	}
	j := next()
	require.Equal(t, "joined", j["type"])
	assert.Equal(t, map[string]any{"team": "blue"}, j["state"].(map[string]any)["local"].(map[string]any)["attributes"])

	_, err := io.WriteString(inW, `{"id":"u","cmd":"set_user_data","data":[1,2]}`+"\n")
	require.NoError(t, err)
	// The local update event and the result, in this order.
	m := next()
	assert.Equal(t, "participant_updated", m["type"])
	assert.Equal(t, true, m["local"])
	assert.Equal(t, []any{1.0, 2.0}, m["participant"].(map[string]any)["user_data"])
	m = next()
	assert.Equal(t, "result", m["type"])
	assert.Equal(t, "u", m["id"])

	// Cancelling (SIGINT, SIGTERM) leaves cleanly: the last lines report
	// the end, and the status is 0.
	cancel()
	var types []string
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		types = append(types, m["type"].(string))
	}
	<-done
	assert.Equal(t, exitOK, code)
	require.NotEmpty(t, types)
	assert.Equal(t, "disconnected", types[len(types)-1], "the last line; lines after the result: %v", types)
	inW.Close()
}

func TestErrorCodes(t *testing.T) {
	for err, want := range map[error]string{
		callstate.ErrClosed:                                        "closed",
		fmt.Errorf("x: %w", callstate.ErrTooLarge):                 "too_large",
		&callstate.SizeError{What: "x", Size: 2, Limit: 1}:         "too_large",
		&callstate.PermissionError{Op: "x", Grant: "y"}:            "not_permitted",
		callstate.ErrInvalidJSON:                                   "invalid_json",
		callstate.ErrInvalidArgument:                               "invalid_argument",
		callstate.ErrUnknownParticipant:                            "unknown_participant",
		callstate.ErrNotConnected:                                  "not_connected",
		callstate.ErrReceiveOnly:                                   "receive_only",
		&callstate.JoinError{Kind: callstate.ErrBadToken}:          "bad_token",
		&callstate.JoinError{Kind: callstate.ErrServerUnreachable}: "server_unreachable",
		context.DeadlineExceeded:                                   "timeout",
		errors.New("other"):                                        "failed",
	} {
		assert.Equal(t, want, errorCode(err), "%v", err)
	}
}

func TestParseCommand(t *testing.T) {
	c, err := parseCommand([]byte(`{"id":{"k":[1]},"cmd":"set_session_data","data":{"a":null},"strategy":"merge"}`))
	require.NoError(t, err)
	assert.JSONEq(t, `{"k":[1]}`, string(c.ID))
	assert.Equal(t, "set_session_data", c.Cmd)
	assert.JSONEq(t, `{"a":null}`, string(c.Data))

	for line, code := range map[string]string{
		`[1]`:                                 "bad_command",
		`null`:                                "bad_command",
		`{"id":1}`:                            "bad_command",
		`{"id":1,"cmd":"publish","to":"bob"}`: "bad_command",
		`{"id":1,"cmd":"jump"}`:               "unknown_command",
		`{"id":1,"cmd":"state","text":"x"}`:   "bad_command",
	} {
		c, err := parseCommand([]byte(line))
		var ce *commandError
		require.ErrorAs(t, err, &ce, line)
		assert.Equal(t, code, ce.code, line)
		if strings.HasPrefix(line, `{"id":1`) {
			assert.Equal(t, "1", string(c.ID), line)
		}
	}
}
