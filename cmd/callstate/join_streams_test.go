package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// receivedStream is what a joinProc wrote about one incoming stream.
type receivedStream struct {
	open   map[string]any
	chunks []map[string]any
	end    map[string]any
	data   []byte // the chunks' content, concatenated
	bytes  int64  // the chunks' sizes, added up
	saved  bool   // the stream is saved to a file: chunks carry no content
}

// awaitStreamOpen returns the next stream_open line on topic.
func (p *joinProc) awaitStreamOpen(topic string) map[string]any {
	p.t.Helper()
	return p.await("stream_open", func(m map[string]any) bool {
		s, _ := m["stream"].(map[string]any)
		return s["topic"] == topic || topic == "" && s["topic"] == nil
	})
}

// awaitChunks reads the stream's lines until its content has at least
// want bytes or it ends, checking that each chunk starts where the last
// ended; it returns the content of the chunks read.
func (p *joinProc) awaitChunks(rs *receivedStream, want int) []byte {
	p.t.Helper()
	id := rs.open["stream_id"]
	text := rs.open["stream"].(map[string]any)["text"] == true
	var got []byte
	n := 0 // bytes of the chunks read, also when saved
	timer := time.NewTimer(awaitLine)
	defer timer.Stop()
	for n < want && rs.end == nil {
		select {
		case m, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("%s: output ended inside stream %v", p.name, id)
			}
			if m["stream_id"] != id {
				continue
			}
			switch m["type"] {
			case "stream_chunk":
				require.EqualValues(p.t, rs.bytes, m["offset"], "chunks are contiguous")
				size, _ := m["size"].(float64)
				require.Greater(p.t, size, 0.0)
				require.LessOrEqual(p.t, size, float64(streamChunkSize))
				rs.bytes += int64(size)
				n += int(size)
				rs.chunks = append(rs.chunks, m)
				var b []byte
				switch {
				case rs.saved:
					assert.NotContains(p.t, m, "payload")
					assert.NotContains(p.t, m, "text")
					continue
				case text:
					assert.NotContains(p.t, m, "payload")
					s, _ := m["text"].(string)
					b = []byte(s)
				default:
					assert.NotContains(p.t, m, "text")
					var err error
					b, err = base64.StdEncoding.DecodeString(m["payload"].(string))
					require.NoError(p.t, err)
				}
				require.EqualValues(p.t, len(b), size)
				rs.data = append(rs.data, b...)
				got = append(got, b...)
			case "stream_end":
				rs.end = m
			default:
				p.t.Fatalf("%s: unexpected line in stream %v: %v", p.name, id, m)
			}
		case <-timer.C:
			p.t.Fatalf("%s: stream %v: %d of %d bytes within %v", p.name, id, n, want, awaitLine)
		}
	}
	return got
}

// awaitStream reads a whole stream that starts with its stream_open on
// topic.
func (p *joinProc) awaitStream(topic string) *receivedStream {
	p.t.Helper()
	rs := &receivedStream{open: p.awaitStreamOpen(topic)}
	rs.saved = rs.open["path"] != nil
	p.awaitChunks(rs, 1<<62)
	return rs
}

// A "callstate join" process reads streams sent by a Room as they arrive:
// stream_open, stream_chunk lines whose content is the stream's bytes, and
// stream_end; aborted streams end with the reason, unregistered topics
// still arrive whole as data lines, and streams can be saved to files.
func TestJoinStreams(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	bin := buildBinary(t)
	room := srv.RoomName(t)
	bob := startJoin(t, bin, "bob", "-url", srv.URL(), "-api-key", srv.APIKey(), "-api-secret", srv.APISecret(),
		"-room", room, "-identity", "bob")
	bob.await("joined", nil)
	alice := srv.Join(t, room, "alice", nil)
	bob.await("participant_joined", func(m map[string]any) bool { return identityOf(m) == "alice" })
	ctx := t.Context()

	// Bad registrations, each answered with a typed error.
	missing := filepath.Join(t.TempDir(), "missing")
	for i, c := range []struct {
		fields, code string
	}{
		{`"cmd":"stream_register","kind":"bytes"`, "invalid_argument"},
		{`"cmd":"stream_register","topic":"files"`, "invalid_argument"},
		{`"cmd":"stream_register","topic":"files","kind":"video"`, "invalid_argument"},
		{`"cmd":"stream_register","topic":"files","kind":"bytes","save_to":1`, "bad_command"},
		{`"cmd":"stream_register","topic":"files","kind":"bytes","save_to":"` + missing + `"`, "invalid_argument"},
		{`"cmd":"stream_register","topic":"lk.chat","kind":"text"`, "invalid_argument"},
		{`"cmd":"stream_unregister","topic":"files","kind":"bytes"`, "invalid_argument"},
		{`"cmd":"stream_unregister","topic":"files","kind":"bytes","save_to":"/tmp"`, "bad_command"},
		{`"cmd":"stream_register","topic":"files","kind":"bytes","to":["x"]`, "bad_command"},
	} {
		id := fmt.Sprintf("e%d", i)
		bob.send(fmt.Sprintf(`{"id":%q,%s}`, id, c.fields))
		m := bob.answer(id)
		assert.Equal(t, "error", m["type"], c.fields)
		assert.Equal(t, c.code, m["code"], c.fields)
		assert.NotEmpty(t, m["error"], c.fields)
	}
	bob.ok(1, `{"id":1,"cmd":"stream_register","topic":"files","kind":"bytes"}`)
	bob.send(`{"id":2,"cmd":"stream_register","topic":"files","kind":"bytes"}`)
	assert.Equal(t, "invalid_argument", bob.answer(2)["code"], "registered twice")
	bob.ok(3, `{"id":3,"cmd":"stream_register","topic":"files","kind":"text"}`)
	bob.ok(4, `{"id":4,"cmd":"stream_register","topic":"","kind":"text"}`)

	t.Log("300 KiB of random bytes, sent whole")
	data := make([]byte, 300<<10)
	_, _ = rand.Read(data)
	info, err := alice.SendBytes(ctx, data, &callstate.StreamOptions{Topic: "files", Name: "blob.bin", Attributes: map[string]string{"k": "v"}})
	require.NoError(t, err)
	rs := bob.awaitStream("files")
	assert.Equal(t, info.ID, rs.open["stream_id"])
	assert.Equal(t, "alice", rs.open["from"])
	st := rs.open["stream"].(map[string]any)
	assert.Equal(t, info.ID, st["id"])
	assert.Equal(t, "blob.bin", st["name"])
	assert.Equal(t, false, st["text"])
	assert.EqualValues(t, len(data), st["size"])
	assert.Equal(t, map[string]any{"k": "v"}, st["attributes"])
	t.Logf("%d bytes in %d stream_chunk lines", len(rs.data), len(rs.chunks))
	assert.Greater(t, len(rs.chunks), 1, "the stream arrives in several chunks")
	assert.True(t, bytes.Equal(data, rs.data), "byte-exact: %d bytes of %d", len(rs.data), len(data))
	assert.EqualValues(t, len(data), rs.end["size"])
	assert.NotContains(t, rs.end, "error")

	t.Log("a text stream written in parts, each awaited on the other side")
	w, err := alice.StreamText(ctx, &callstate.StreamOptions{Topic: "files"})
	require.NoError(t, err)
	open := bob.awaitStreamOpen("files")
	assert.Equal(t, true, open["stream"].(map[string]any)["text"])
	assert.NotContains(t, open["stream"], "size", "a writer announces no size")
	rs = &receivedStream{open: open}
	parts := []string{"héllo ", "wörld — ", strings.Repeat("ünïcödé ✓ ", 3000)}
	for _, part := range parts {
		_, err := w.WriteString(part)
		require.NoError(t, err)
		got := bob.awaitChunks(rs, len(part))
		assert.Equal(t, part, string(got), "each part arrives before the next is written")
	}
	require.NoError(t, w.Close())
	bob.awaitChunks(rs, 1<<62)
	assert.Equal(t, strings.Join(parts, ""), string(rs.data))
	assert.EqualValues(t, len(rs.data), rs.end["size"])
	assert.NotContains(t, rs.end, "error")

	t.Log("a text stream without a topic")
	_, err = alice.SendText(ctx, "no topic", nil)
	require.NoError(t, err)
	rs = bob.awaitStream("")
	assert.Equal(t, "no topic", string(rs.data))

	t.Log("an aborted stream")
	bw, err := alice.StreamBytes(ctx, &callstate.StreamOptions{Topic: "files", Name: "take.bin"})
	require.NoError(t, err)
	_, err = bw.Write(data[:1000])
	require.NoError(t, err)
	rs = &receivedStream{open: bob.awaitStreamOpen("files")}
	bob.awaitChunks(rs, 1000)
	require.NoError(t, bw.CloseWithError(errors.New("camera unplugged")))
	bob.awaitChunks(rs, 1<<62)
	assert.True(t, bytes.Equal(data[:1000], rs.data))
	assert.Equal(t, "stream_aborted", rs.end["code"])
	assert.Contains(t, rs.end["error"], "camera unplugged")
	assert.EqualValues(t, 1000, rs.end["size"])

	t.Log("unregistered topics arrive whole as data lines")
	_, err = alice.SendBytes(ctx, data[:5000], &callstate.StreamOptions{Topic: "other"})
	require.NoError(t, err)
	d := bob.await("data", func(m map[string]any) bool { return m["topic"] == "other" })
	assert.Equal(t, base64.StdEncoding.EncodeToString(data[:5000]), d["payload"])
	bob.ok(5, `{"id":5,"cmd":"stream_unregister","topic":"files","kind":"bytes"}`)
	_, err = alice.SendBytes(ctx, data[:7000], &callstate.StreamOptions{Topic: "files"})
	require.NoError(t, err)
	d = bob.await("data", func(m map[string]any) bool { return m["topic"] == "files" })
	assert.Equal(t, base64.StdEncoding.EncodeToString(data[:7000]), d["payload"])
	assert.EqualValues(t, 7000, d["size"])

	t.Log("saved to a directory, under a name the sender cannot turn into a path")
	dir := t.TempDir()
	bob.ok(6, fmt.Sprintf(`{"id":6,"cmd":"stream_register","topic":"saved","kind":"bytes","save_to":%q}`, dir))
	_, err = alice.SendBytes(ctx, data, &callstate.StreamOptions{Topic: "saved", Name: "../../up/.hidden report.pdf"})
	require.NoError(t, err)
	rs = bob.awaitStream("saved")
	path, _ := rs.end["path"].(string)
	assert.Equal(t, rs.open["path"], path)
	assert.Equal(t, dir, filepath.Dir(path))
	assert.True(t, strings.HasPrefix(filepath.Base(path), "hidden_report-"), path)
	assert.Equal(t, ".pdf", filepath.Ext(path))
	assert.Greater(t, len(rs.chunks), 1, "progress lines, without content")
	assert.EqualValues(t, len(data), rs.bytes)
	assert.EqualValues(t, len(data), rs.end["size"])
	saved, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, saved), "the file is the stream: %d bytes of %d", len(saved), len(data))

	t.Log("leaving during a stream: its stream_end comes before the room's last lines")
	bob.ok(7, `{"id":7,"cmd":"stream_register","topic":"files","kind":"bytes"}`)
	bw, err = alice.StreamBytes(ctx, &callstate.StreamOptions{Topic: "files"})
	require.NoError(t, err)
	_, err = bw.Write(data[:100])
	require.NoError(t, err)
	rs = &receivedStream{open: bob.awaitStreamOpen("files")}
	bob.awaitChunks(rs, 100)
	bob.ok(8, `{"id":8,"cmd":"leave"}`)
	bob.awaitChunks(rs, 1<<62)
	assert.Equal(t, "closed", rs.end["code"])
	var after []string
	for m := range bob.lines {
		after = append(after, m["type"].(string))
	}
	assert.Equal(t, []string{"connection_state", "disconnected"}, after)
	assert.Equal(t, exitOK, bob.wait(), "a data race in the command (built with -race) exits 66")
	_ = bw.CloseWithError(errors.New("gone"))
}
