package callstate_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
	"github.com/callstate/callstate/internal/lkpb"
)

// readResult is what a stream handler saw.
type readResult struct {
	info      callstate.StreamInfo
	from      string
	data      []byte
	err       error
	firstRecv int64 // BytesReceived at the first Read's return
}

func byteSink(t testing.TB, r *callstate.Room, topic string) <-chan readResult {
	t.Helper()
	out := make(chan readResult, 4)
	require.NoError(t, r.RegisterByteStreamHandler(topic, func(br *callstate.ByteStreamReader) {
		res := readResult{info: br.Info(), from: br.From(), firstRecv: -1}
		buf := make([]byte, 32<<10)
		for {
			n, err := br.Read(buf)
			if res.firstRecv < 0 && n > 0 {
				res.firstRecv = br.BytesReceived()
			}
			res.data = append(res.data, buf[:n]...)
			if err != nil {
				if err != io.EOF {
					res.err = err
				}
				break
			}
		}
		out <- res
	}))
	return out
}

func awaitRead(t testing.TB, c <-chan readResult) readResult {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(60 * time.Second):
		t.Fatal("no stream read")
		return readResult{}
	}
}

func TestStreamWriterToReader(t *testing.T) {
	_, _, a, b := rpcPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := byteSink(t, b, "files")

	const size = 3 << 20 // over StreamBufferSize: the reader reads before the end
	content := randomBytes(size, 7)
	var mu sync.Mutex
	var progress []int64
	w, err := a.StreamBytes(ctx, &callstate.StreamOptions{
		Topic:      "files",
		To:         []string{"b"},
		Attributes: map[string]string{"k": "v"},
		Name:       "data.bin",
		MimeType:   "application/x-test",
		OnProgress: func(sent, total int64) {
			mu.Lock()
			progress = append(progress, sent)
			mu.Unlock()
			assert.Equal(t, int64(-1), total)
		},
	})
	require.NoError(t, err)
	for p := content; len(p) > 0; {
		n := min(len(p), 100_000)
		_, err := w.Write(p[:n])
		require.NoError(t, err)
		p = p[n:]
	}
	require.NoError(t, w.Close())
	require.NoError(t, w.Close(), "a second Close")
	_, err = w.Write([]byte("x"))
	assert.Error(t, err, "write after Close")

	res := awaitRead(t, got)
	require.NoError(t, res.err)
	assert.Equal(t, sha256.Sum256(content), sha256.Sum256(res.data))
	assert.Equal(t, "a", res.from)
	assert.Equal(t, w.Info().ID, res.info.ID)
	assert.Equal(t, "files", res.info.Topic)
	assert.Equal(t, "data.bin", res.info.Name)
	assert.Equal(t, "application/x-test", res.info.MimeType)
	assert.Equal(t, map[string]string{"k": "v"}, res.info.Attributes)
	assert.Equal(t, int64(-1), res.info.Size)
	assert.False(t, res.info.Text)
	assert.Less(t, res.firstRecv, int64(size), "the first read came before the whole stream")
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, progress)
	assert.Equal(t, int64(size), progress[len(progress)-1])
	assert.IsIncreasing(t, progress)
}

func TestSendTextBytesFile(t *testing.T) {
	_, _, a, b := rpcPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	texts := make(chan readResult, 4)
	require.NoError(t, b.RegisterTextStreamHandler("notes", func(tr *callstate.TextStreamReader) {
		s, err := tr.ReadAll()
		texts <- readResult{info: tr.Info(), from: tr.From(), data: []byte(s), err: err}
	}))
	files := byteSink(t, b, "uploads")

	// Short text travels in the header; long text in chunks, cut at
	// character boundaries.
	for _, text := range []string{"héllo", strings.Repeat("日本語", 20_000)} {
		info, err := a.SendText(ctx, text, &callstate.StreamOptions{Topic: "notes", Attributes: map[string]string{"n": "1"}})
		require.NoError(t, err)
		res := awaitRead(t, texts)
		require.NoError(t, res.err)
		assert.Equal(t, text, string(res.data))
		assert.Equal(t, info.ID, res.info.ID)
		assert.True(t, res.info.Text)
		assert.Equal(t, "text/plain", res.info.MimeType)
		assert.Equal(t, int64(len(text)), res.info.Size)
		assert.Equal(t, "1", res.info.Attributes["n"])
	}

	data := randomBytes(200_000, 3)
	_, err := a.SendBytes(ctx, data, &callstate.StreamOptions{Topic: "uploads", Name: "blob"})
	require.NoError(t, err)
	res := awaitRead(t, files)
	require.NoError(t, res.err)
	assert.Equal(t, data, res.data)
	assert.Equal(t, int64(len(data)), res.info.Size)
	assert.Equal(t, "application/octet-stream", res.info.MimeType)

	path := filepath.Join(t.TempDir(), "report.json")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	var last int64
	info, err := a.SendFile(ctx, path, &callstate.StreamOptions{Topic: "uploads", OnProgress: func(sent, total int64) {
		last = sent
		assert.Equal(t, int64(len(data)), total)
	}})
	require.NoError(t, err)
	assert.Equal(t, int64(len(data)), last)
	res = awaitRead(t, files)
	require.NoError(t, res.err)
	assert.Equal(t, data, res.data)
	assert.Equal(t, "report.json", res.info.Name)
	assert.Equal(t, "application/json", res.info.MimeType)
	assert.Equal(t, info.ID, res.info.ID)

	_, err = a.SendFile(ctx, filepath.Join(t.TempDir(), "missing"), nil)
	assert.ErrorIs(t, err, os.ErrNotExist)
	_, err = a.SendText(ctx, "x", &callstate.StreamOptions{Topic: "lk.rpc_request"})
	assert.ErrorIs(t, err, callstate.ErrInvalidArgument)
	assert.ErrorIs(t, b.RegisterTextStreamHandler(callstate.ChatTopic, func(*callstate.TextStreamReader) {}), callstate.ErrInvalidArgument)
	_, err = a.SendBytes(ctx, nil, &callstate.StreamOptions{To: []string{"nobody"}})
	assert.ErrorIs(t, err, callstate.ErrUnknownParticipant)
}

func TestStreamInlineHeader(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	var mu sync.Mutex
	inline := 0
	b := srv.Join(t, room, "b", callstate.WithRawHook(nil, func(src string, raw []byte) {
		var p lkpb.DataPacket
		if src == "data" && proto.Unmarshal(raw, &p) == nil && p.GetStreamHeader().InlineContent != nil {
			mu.Lock()
			inline++
			mu.Unlock()
		}
	}))
	a := srv.Join(t, room, "a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := a.WaitForParticipant(ctx, "b")
	require.NoError(t, err)
	got := byteSink(t, b, "small")
	_, err = a.SendBytes(ctx, []byte("tiny"), &callstate.StreamOptions{Topic: "small"})
	require.NoError(t, err)
	res := awaitRead(t, got)
	require.NoError(t, res.err)
	assert.Equal(t, "tiny", string(res.data))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, 1, inline, "callstate speaks client protocol 2: the content travels in the header")
}

func TestStreamWriterTextAndAbort(t *testing.T) {
	_, _, a, b := rpcPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	texts := make(chan readResult, 4)
	require.NoError(t, b.RegisterTextStreamHandler("live", func(tr *callstate.TextStreamReader) {
		s, err := tr.ReadAll()
		texts <- readResult{info: tr.Info(), data: []byte(s), err: err}
	}))

	// A character split between two writes.
	w, err := a.StreamText(ctx, &callstate.StreamOptions{Topic: "live"})
	require.NoError(t, err)
	euro := []byte("€") // 3 bytes
	_, err = w.Write(append([]byte("price: 5"), euro[:1]...))
	require.NoError(t, err)
	_, err = w.Write(euro[1:])
	require.NoError(t, err)
	_, err = w.WriteString(" only")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	res := awaitRead(t, texts)
	require.NoError(t, res.err)
	assert.Equal(t, "price: 5€ only", string(res.data))

	// An abort reaches the reader with its reason.
	w, err = a.StreamText(ctx, &callstate.StreamOptions{Topic: "live"})
	require.NoError(t, err)
	_, err = w.WriteString("partial")
	require.NoError(t, err)
	require.NoError(t, w.CloseWithError(errors.New("producer failed")))
	res = awaitRead(t, texts)
	assert.ErrorIs(t, res.err, callstate.ErrStreamAborted)
	assert.ErrorContains(t, res.err, "producer failed")

	// Invalid text is refused before anything is sent.
	_, err = a.SendText(ctx, "\xff", &callstate.StreamOptions{Topic: "live"})
	assert.ErrorIs(t, err, callstate.ErrInvalidArgument)

	// An announced size binds the writer.
	w, err = a.StreamBytes(ctx, &callstate.StreamOptions{Topic: "x", Size: 3})
	require.NoError(t, err)
	_, err = w.Write([]byte("abcd"))
	assert.ErrorIs(t, err, callstate.ErrInvalidArgument)
	_, err = w.Write([]byte("ab"))
	require.NoError(t, err)
	assert.ErrorIs(t, w.Close(), callstate.ErrInvalidArgument)
}

// A reader that reads nothing loses its stream after StreamStallLimit, and
// the Room's other data flows again.
func TestStreamSlowReader(t *testing.T) {
	_, _, a, b := rpcPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	release := make(chan struct{})
	errc := make(chan error, 1)
	require.NoError(t, b.RegisterByteStreamHandler("slow", func(br *callstate.ByteStreamReader) {
		<-release
		_, err := io.Copy(io.Discard, br)
		errc <- err
	}))
	data := b.Subscribe(nil)
	_, err := a.SendBytes(ctx, randomBytes(4<<20, 1), &callstate.StreamOptions{Topic: "slow"})
	require.NoError(t, err)
	require.NoError(t, a.PublishData(ctx, []byte("after"), &callstate.PublishOptions{Topic: "t"}))
	_, err = calltest.AwaitEvent(ctx, data, 30*time.Second, func(e callstate.DataReceived) bool {
		return string(e.Data.Payload) == "after"
	})
	require.NoError(t, err, "data after the stalled stream arrives")
	close(release)
	assert.ErrorIs(t, <-errc, callstate.ErrStreamTooSlow)
	assert.Equal(t, uint64(1), b.Stats().Data.StreamsTooSlow)
}

// Streams on a topic without a handler arrive whole, as before.
func TestStreamWithoutHandler(t *testing.T) {
	_, _, a, b := rpcPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data := b.Subscribe(nil)
	info, err := a.SendBytes(ctx, []byte("whole"), &callstate.StreamOptions{Topic: "nohandler", Name: "n"})
	require.NoError(t, err)
	ev, err := calltest.AwaitEvent(ctx, data, 20*time.Second, func(e callstate.DataReceived) bool { return e.Data.Topic == "nohandler" })
	require.NoError(t, err)
	assert.Equal(t, "whole", string(ev.Data.Payload))
	require.NotNil(t, ev.Data.Stream)
	assert.Equal(t, info.ID, ev.Data.Stream.ID)
	assert.Equal(t, "n", ev.Data.Stream.Name)
}

func TestChat(t *testing.T) {
	_, _, a, b := rpcPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub := b.Subscribe(nil)
	sent, err := a.SendChatMessage(ctx, "hello chat", &callstate.ChatOptions{Legacy: true})
	require.NoError(t, err)
	var stream, legacy callstate.ChatMessage
	for stream.ID == "" || legacy.ID == "" {
		m, err := calltest.AwaitEvent(ctx, sub, 20*time.Second, func(callstate.ChatMessage) bool { return true })
		require.NoError(t, err)
		if m.Legacy {
			legacy = m
		} else {
			stream = m
		}
	}
	for _, m := range []callstate.ChatMessage{stream, legacy} {
		assert.Equal(t, "a", m.From)
		assert.Equal(t, "hello chat", m.Text)
		assert.Equal(t, sent.ID, m.ID)
		assert.WithinDuration(t, sent.Timestamp, m.Timestamp, time.Second)
	}
}
