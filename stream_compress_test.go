package callstate_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
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

// jsonText returns n bytes of JSON-like records: compressible as real
// application data is, not as a repeated string is.
func jsonText(n int, seed uint64) string {
	r := rand.New(rand.NewPCG(seed, seed))
	words := []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"}
	b := []byte("[")
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, `{"id":%d,"name":"user-%d-%x","score":%.3f,"tags":["%s","%s"],"region":"%s"},`,
			i, i, r.Uint32(), r.Float64()*100, words[r.IntN(8)], words[r.IntN(8)], words[r.IntN(8)])
	}
	return string(b[:n])
}

// wireStream is what a sender put on the wire for one stream.
type wireStream struct {
	header  *lkpb.DataStream_Header
	packets int
	bytes   int // of every packet of the stream: header, chunks, trailer
}

// wireLog records the stream packets a Room sends, by stream id.
type wireLog struct {
	mu      sync.Mutex
	streams map[string]*wireStream
}

func (l *wireLog) filter(reliable bool, raw []byte) bool {
	var p lkpb.DataPacket
	if !reliable || proto.Unmarshal(raw, &p) != nil {
		return true
	}
	var id string
	switch v := p.GetValue().(type) {
	case *lkpb.DataPacket_StreamHeader:
		id = v.StreamHeader.GetStreamId()
	case *lkpb.DataPacket_StreamChunk:
		id = v.StreamChunk.GetStreamId()
	case *lkpb.DataPacket_StreamTrailer:
		id = v.StreamTrailer.GetStreamId()
	default:
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.streams == nil {
		l.streams = map[string]*wireStream{}
	}
	s := l.streams[id]
	if s == nil {
		s = &wireStream{}
		l.streams[id] = s
	}
	if h := p.GetStreamHeader(); h != nil {
		s.header = h
	}
	s.packets++
	s.bytes += len(raw)
	return true
}

func (l *wireLog) stream(t testing.TB, id string) wireStream {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.streams[id]
	require.NotNil(t, s, "stream %s was sent", id)
	require.NotNil(t, s.header, "stream %s has a header", id)
	return *s
}

// compressPair joins a, whose sends are logged, and b.
func compressPair(t testing.TB, bOpts *callstate.JoinOptions) (log *wireLog, a, b *callstate.Room) {
	t.Helper()
	log = &wireLog{}
	_, _, a, b = joinPair(t, callstate.WithSendFilter(nil, log.filter), bOpts)
	return log, a, b
}

func textSink(t testing.TB, r *callstate.Room, topic string) <-chan readResult {
	t.Helper()
	out := make(chan readResult, 4)
	require.NoError(t, r.RegisterTextStreamHandler(topic, func(tr *callstate.TextStreamReader) {
		s, err := tr.ReadAll()
		out <- readResult{info: tr.Info(), from: tr.From(), data: []byte(s), err: err}
	}))
	return out
}

// Compressible content goes compressed between callstate participants,
// inline and chunked, to handlers and whole, and arrives byte-exact.
func TestCompressedStreams(t *testing.T) {
	log, a, b := compressPair(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	pb, ok := a.Participant("b")
	require.True(t, ok)
	assert.True(t, pb.DeflateStreams, "b advertises raw deflate")
	texts := textSink(t, b, "text")
	files := byteSink(t, b, "bytes")
	whole := b.Subscribe(nil)

	compressed := func(id string, size int) wireStream {
		t.Helper()
		s := log.stream(t, id)
		assert.Equal(t, lkpb.DataStream_DEFLATE_RAW, s.header.GetCompression())
		assert.Equal(t, uint64(size), s.header.GetTotalLength(), "the size before compression")
		assert.Less(t, s.bytes, size/2, "fewer bytes on the wire")
		return s
	}

	t.Run("InlineText", func(t *testing.T) {
		text := jsonText(8000, 1)
		info, err := a.SendText(ctx, text, &callstate.StreamOptions{Topic: "text"})
		require.NoError(t, err)
		s := compressed(info.ID, len(text))
		assert.Equal(t, 1, s.packets, "a single packet")
		assert.NotNil(t, s.header.InlineContent)
		assert.True(t, info.Compressed)
		res := awaitRead(t, texts)
		require.NoError(t, res.err)
		assert.Equal(t, text, string(res.data))
		assert.Equal(t, int64(len(text)), res.info.Size)
		assert.True(t, res.info.Compressed)
	})

	t.Run("TinyTextStaysPlain", func(t *testing.T) {
		info, err := a.SendText(ctx, "hi", &callstate.StreamOptions{Topic: "text"})
		require.NoError(t, err)
		s := log.stream(t, info.ID)
		assert.Equal(t, lkpb.DataStream_NONE, s.header.GetCompression(), "compression would make it longer")
		assert.Equal(t, "hi", string(s.header.InlineContent))
		assert.False(t, info.Compressed)
		res := awaitRead(t, texts)
		require.NoError(t, res.err)
		assert.Equal(t, "hi", string(res.data))
		assert.False(t, res.info.Compressed)
	})

	t.Run("ChunkedText", func(t *testing.T) {
		text := jsonText(1<<20, 2)
		var mu sync.Mutex
		var progress []int64
		info, err := a.SendText(ctx, text, &callstate.StreamOptions{Topic: "text", OnProgress: func(sent, total int64) {
			mu.Lock()
			progress = append(progress, sent)
			mu.Unlock()
			assert.Equal(t, int64(len(text)), total)
		}})
		require.NoError(t, err)
		s := compressed(info.ID, len(text))
		assert.Greater(t, s.packets, 3, "header, chunks, trailer")
		assert.Nil(t, s.header.InlineContent)
		res := awaitRead(t, texts)
		require.NoError(t, res.err)
		assert.Equal(t, text, string(res.data))
		mu.Lock()
		defer mu.Unlock()
		require.NotEmpty(t, progress)
		assert.Equal(t, int64(len(text)), progress[len(progress)-1], "progress counts the text, not the compressed bytes")
		assert.IsNonDecreasing(t, progress)
	})

	t.Run("Bytes", func(t *testing.T) {
		data := []byte(jsonText(200_000, 3))
		info, err := a.SendBytes(ctx, data, &callstate.StreamOptions{Topic: "bytes"})
		require.NoError(t, err)
		compressed(info.ID, len(data))
		res := awaitRead(t, files)
		require.NoError(t, res.err)
		assert.Equal(t, data, res.data)
	})

	t.Run("File", func(t *testing.T) {
		data := []byte(jsonText(3<<20, 4))
		path := filepath.Join(t.TempDir(), "records.json")
		require.NoError(t, os.WriteFile(path, data, 0o600))
		var last int64
		info, err := a.SendFile(ctx, path, &callstate.StreamOptions{Topic: "bytes", OnProgress: func(sent, total int64) {
			assert.GreaterOrEqual(t, sent, last)
			last = sent
			assert.Equal(t, int64(len(data)), total)
		}})
		require.NoError(t, err)
		assert.Equal(t, int64(len(data)), last)
		compressed(info.ID, len(data))
		res := awaitRead(t, files)
		require.NoError(t, res.err)
		assert.Equal(t, data, res.data)
		assert.Equal(t, "records.json", res.info.Name)
		assert.Equal(t, int64(len(data)), res.info.Size)
		assert.True(t, res.info.Compressed)
		assert.True(t, info.Compressed)
	})

	// Without a handler the stream is delivered whole, inflated.
	t.Run("Whole", func(t *testing.T) {
		for _, n := range []int{8000, 1 << 20} {
			text := jsonText(n, uint64(n))
			info, err := a.SendText(ctx, text, &callstate.StreamOptions{Topic: "whole"})
			require.NoError(t, err)
			compressed(info.ID, len(text))
			ev, err := calltest.AwaitEvent(ctx, whole, 30*time.Second, func(e callstate.DataReceived) bool { return e.Data.Topic == "whole" })
			require.NoError(t, err)
			assert.Equal(t, text, string(ev.Data.Payload))
			require.NotNil(t, ev.Data.Stream)
			assert.Equal(t, info.ID, ev.Data.Stream.ID)
			assert.True(t, ev.Data.Stream.Compressed)
		}
	})

	t.Run("NoCompression", func(t *testing.T) {
		text := jsonText(1<<20, 5)
		info, err := a.SendText(ctx, text, &callstate.StreamOptions{Topic: "text", NoCompression: true})
		require.NoError(t, err)
		s := log.stream(t, info.ID)
		assert.Equal(t, lkpb.DataStream_NONE, s.header.GetCompression())
		assert.Greater(t, s.bytes, len(text))
		assert.False(t, info.Compressed)
		res := awaitRead(t, texts)
		require.NoError(t, res.err)
		assert.Equal(t, text, string(res.data))
		assert.False(t, res.info.Compressed)
	})

	// Writers send each write as it comes: never compressed.
	t.Run("WriterStaysPlain", func(t *testing.T) {
		w, err := a.StreamText(ctx, &callstate.StreamOptions{Topic: "text"})
		require.NoError(t, err)
		text := jsonText(50_000, 6)
		_, err = w.WriteString(text)
		require.NoError(t, err)
		require.NoError(t, w.Close())
		assert.Equal(t, lkpb.DataStream_NONE, log.stream(t, w.Info().ID).header.GetCompression())
		res := awaitRead(t, texts)
		require.NoError(t, res.err)
		assert.Equal(t, text, string(res.data))
	})

	st := a.Stats().Data
	assert.Equal(t, uint64(6), st.CompressedStreamsSent, "inline text, chunked text, bytes, file, two whole")
	assert.Equal(t, uint64(6), b.Stats().Data.CompressedStreamsReceived)
}

// One recipient that cannot inflate keeps a broadcast uncompressed; a send
// to the others alone is compressed. The capability also travels through
// /rtc, the two-PeerConnection path's query parameter.
func TestNoCompressionForARecipientWithoutTheCapability(t *testing.T) {
	log, a, b := compressPair(t, &callstate.JoinOptions{TwoPeerConnections: true})
	srv := calltest.Shared(t)
	c := srv.Join(t, a.Name(), "c", callstate.WithoutCapabilities(nil))
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	pc, err := a.WaitForParticipant(ctx, "c")
	require.NoError(t, err)
	assert.False(t, pc.DeflateStreams)
	pb, _ := a.Participant("b")
	assert.True(t, pb.DeflateStreams, "advertised through /rtc's capabilities parameter")
	require.False(t, b.SinglePC())

	bTexts, cTexts := textSink(t, b, "text"), textSink(t, c, "text")
	text := jsonText(100_000, 7)

	info, err := a.SendText(ctx, text, &callstate.StreamOptions{Topic: "text"})
	require.NoError(t, err)
	assert.Equal(t, lkpb.DataStream_NONE, log.stream(t, info.ID).header.GetCompression(), "c is among the recipients")
	for _, got := range []<-chan readResult{bTexts, cTexts} {
		res := awaitRead(t, got)
		require.NoError(t, res.err)
		assert.Equal(t, text, string(res.data))
	}

	info, err = a.SendText(ctx, text, &callstate.StreamOptions{Topic: "text", To: []string{"c"}})
	require.NoError(t, err)
	assert.Equal(t, lkpb.DataStream_NONE, log.stream(t, info.ID).header.GetCompression())
	res := awaitRead(t, cTexts)
	require.NoError(t, res.err)
	assert.Equal(t, text, string(res.data))

	info, err = a.SendText(ctx, text, &callstate.StreamOptions{Topic: "text", To: []string{"b"}})
	require.NoError(t, err)
	assert.Equal(t, lkpb.DataStream_DEFLATE_RAW, log.stream(t, info.ID).header.GetCompression(), "b alone can inflate")
	res = awaitRead(t, bTexts)
	require.NoError(t, res.err)
	assert.Equal(t, text, string(res.data))
}

// BenchmarkSendCompressibleText sends 1 MiB of JSON from one callstate
// participant to another, compressed and not, each until the receiver's
// handler has read it all; it reports the bytes on the wire per send.
func BenchmarkSendCompressibleText(b *testing.B) {
	text := jsonText(1<<20, 8)
	for _, noCompression := range []bool{false, true} {
		name := "deflate"
		if noCompression {
			name = "plain"
		}
		b.Run(name, func(b *testing.B) {
			log, a, rb := compressPair(b, nil)
			texts := textSink(b, rb, "bench")
			ctx := context.Background()
			wire := 0
			b.SetBytes(int64(len(text)))
			b.ResetTimer()
			for range b.N {
				info, err := a.SendText(ctx, text, &callstate.StreamOptions{Topic: "bench", NoCompression: noCompression})
				if err != nil {
					b.Fatal(err)
				}
				res := <-texts
				if res.err != nil || len(res.data) != len(text) {
					b.Fatalf("received %d bytes, %v", len(res.data), res.err)
				}
				wire += log.stream(b, info.ID).bytes
			}
			b.ReportMetric(float64(wire)/float64(b.N), "wire-bytes/op")
		})
	}
}
