package chunk

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
)

// foreign builds the packets of a data stream as another client would send
// them.
type foreign struct {
	identity string
	id       string
}

func (f foreign) header(h *lkpb.DataStream_Header) *lkpb.DataPacket {
	if h.StreamId == "" {
		h.StreamId = f.id
	}
	return &lkpb.DataPacket{ParticipantIdentity: f.identity, Value: &lkpb.DataPacket_StreamHeader{StreamHeader: h}}
}

func (f foreign) chunk(index uint64, content []byte) *lkpb.DataPacket {
	return &lkpb.DataPacket{ParticipantIdentity: f.identity, Value: &lkpb.DataPacket_StreamChunk{
		StreamChunk: &lkpb.DataStream_Chunk{StreamId: f.id, ChunkIndex: index, Content: content}}}
}

func (f foreign) trailer(reason string, attrs map[string]string) *lkpb.DataPacket {
	return &lkpb.DataPacket{ParticipantIdentity: f.identity, Value: &lkpb.DataPacket_StreamTrailer{
		StreamTrailer: &lkpb.DataStream_Trailer{StreamId: f.id, Reason: reason, Attributes: attrs}}}
}

// chunked splits b into chunks of the given sizes, cycling through them.
func (f foreign) chunked(b []byte, sizes ...int) []*lkpb.DataPacket {
	var out []*lkpb.DataPacket
	for i := 0; len(b) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(b))
		out = append(out, f.chunk(uint64(i), b[:n]))
		b = b[n:]
	}
	return out
}

func byteHeader(name string) *lkpb.DataStream_Header_ByteHeader {
	return &lkpb.DataStream_Header_ByteHeader{ByteHeader: &lkpb.DataStream_ByteHeader{Name: name}}
}

var textHeader = &lkpb.DataStream_Header_TextHeader{TextHeader: &lkpb.DataStream_TextHeader{}}

func TestForeignByteStream(t *testing.T) {
	a := NewAssembler(Config{})
	f := foreign{"web", "s1"}
	msg := payload(50000, 1)
	pkts := []*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{
		Topic: "files", MimeType: "image/png", TotalLength: proto.Uint64(50000), Timestamp: t0.UnixMilli(),
		Attributes: map[string]string{"a": "1"}, ContentHeader: byteHeader("pic.png"),
	})}
	pkts = append(pkts, f.chunked(msg, 1, 7, 15000, 333, 16000)...)
	got := feed(a, t0, pkts)
	require.Empty(t, got, "nothing before the trailer")
	require.Equal(t, 1, a.Stats().Partial)
	got = feed(a, t0, []*lkpb.DataPacket{f.trailer("", map[string]string{"b": "2", "a": "3"})})
	require.Len(t, got, 1)
	r := got[0]
	assert.Equal(t, msg, r.Payload)
	assert.Equal(t, Received{
		SenderIdentity: "web", Topic: "files", Payload: r.Payload, Reliable: true, Via: ViaStream,
		StreamID: "s1", MimeType: "image/png", Name: "pic.png",
		Attributes: map[string]string{"a": "3", "b": "2"}, Timestamp: r.Timestamp,
	}, r)
	assert.True(t, t0.Equal(r.Timestamp))
	st := a.Stats()
	assert.Equal(t, uint64(1), st.StreamsReceived)
	assert.Equal(t, uint64(len(pkts)-1), st.ChunksReceived)
	assert.Zero(t, st.Partial)
	assert.Zero(t, st.Buffered)
}

func TestForeignTextStreamWithoutLength(t *testing.T) {
	a := NewAssembler(Config{})
	f := foreign{"web", "t1"}
	text := []byte("hello, wörld")
	pkts := []*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{Topic: "chat", MimeType: "text/plain", ContentHeader: textHeader})}
	pkts = append(pkts, f.chunked(text, 5)...)
	pkts = append(pkts, f.chunk(3, nil)) // empty chunks are skipped
	pkts = append(pkts, f.trailer("", nil))
	got := feed(a, t0, pkts)
	require.Len(t, got, 1)
	assert.Equal(t, text, got[0].Payload)
	assert.True(t, got[0].Text)
	assert.Nil(t, got[0].Attributes)
	assert.True(t, got[0].Timestamp.IsZero())
}

func TestEmptyStream(t *testing.T) {
	e := NewEncoder(Config{})
	pkts, info := encodeAll(t, e, Message{Topic: "e", Reliable: true, Stream: true}, nil)
	require.Equal(t, ViaStream, info.Via)
	require.Len(t, pkts, 2, "header and trailer")
	got := feed(NewAssembler(Config{}), t0, decode(t, "s", pkts))
	require.Len(t, got, 1)
	assert.Empty(t, got[0].Payload)
	assert.Equal(t, "e", got[0].Topic)
}

func TestStreamAbort(t *testing.T) {
	a := NewAssembler(Config{})
	f := foreign{"web", "s"}
	pkts := []*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{TotalLength: proto.Uint64(10), ContentHeader: byteHeader("")}), f.chunk(0, []byte("12345"))}
	pkts = append(pkts, f.trailer("error: disk full", nil))
	pkts = append(pkts, f.chunk(1, []byte("67890")), f.trailer("", nil)) // late: ignored
	require.Empty(t, feed(a, t0, pkts))
	st := a.Stats()
	assert.Equal(t, uint64(1), st.StreamsAborted)
	assert.Equal(t, uint64(2), st.Ignored)
	assert.Zero(t, st.StreamsReceived)
	assert.Zero(t, st.Partial)
	assert.Zero(t, st.Buffered)
}

func TestStreamInconsistencies(t *testing.T) {
	for _, tc := range []struct {
		name  string
		total uint64
		pkts  func(f foreign) []*lkpb.DataPacket
		check func(t *testing.T, st Stats)
	}{
		{"short", 10, func(f foreign) []*lkpb.DataPacket {
			return []*lkpb.DataPacket{f.chunk(0, []byte("123")), f.trailer("", nil)}
		}, func(t *testing.T, st Stats) { assert.Equal(t, uint64(1), st.RejectedMalformed) }},
		{"long", 3, func(f foreign) []*lkpb.DataPacket {
			return []*lkpb.DataPacket{f.chunk(0, []byte("123")), f.chunk(1, []byte("4")), f.trailer("", nil)}
		}, func(t *testing.T, st Stats) {
			assert.Equal(t, uint64(1), st.RejectedMalformed)
			assert.Equal(t, uint64(1), st.Ignored, "the trailer of the dropped stream")
		}},
		{"gap", 6, func(f foreign) []*lkpb.DataPacket {
			return []*lkpb.DataPacket{f.chunk(0, []byte("123")), f.chunk(2, []byte("456")), f.trailer("", nil)}
		}, func(t *testing.T, st Stats) { assert.Equal(t, uint64(1), st.RejectedMalformed) }},
		{"duplicate header and chunk", 3, func(f foreign) []*lkpb.DataPacket {
			return []*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{}), f.chunk(0, []byte("123")), f.chunk(0, []byte("123"))}
		}, func(t *testing.T, st Stats) {
			assert.Equal(t, uint64(2), st.Duplicates)
			assert.Equal(t, 1, st.Partial)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAssembler(Config{})
			f := foreign{"web", "s"}
			pkts := append([]*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{TotalLength: proto.Uint64(tc.total)})}, tc.pkts(f)...)
			require.Empty(t, feed(a, t0, pkts))
			tc.check(t, a.Stats())
			checkInvariants(t, a)
		})
	}
}

func TestStreamLimits(t *testing.T) {
	cfg := Config{MaxMessageSize: 1000}
	a := NewAssembler(cfg)
	// A header claiming too much.
	f := foreign{"web", "big"}
	require.Empty(t, feed(a, t0, []*lkpb.DataPacket{
		f.header(&lkpb.DataStream_Header{TotalLength: proto.Uint64(1001)}),
		f.chunk(0, []byte("x")),
	}))
	st := a.Stats()
	assert.Equal(t, uint64(1), st.RejectedLimit)
	assert.Equal(t, uint64(1), st.Ignored)
	assert.Zero(t, st.Partial)

	// A stream without a length that grows too large.
	f = foreign{"web", "grow"}
	require.Empty(t, feed(a, t0, append([]*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{})}, f.chunked(make([]byte, 1500), 100)...)))
	st = a.Stats()
	assert.Equal(t, uint64(2), st.RejectedLimit)
	assert.Zero(t, st.Partial)

	// Too many streams from one sender.
	for i := range DefaultMaxStreamsPerSender + 2 {
		f := foreign{"many", fmt.Sprint(i)}
		feed(a, t0, []*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{}), f.chunk(0, []byte("x"))})
	}
	st = a.Stats()
	assert.Equal(t, uint64(4), st.RejectedLimit)
	assert.Equal(t, DefaultMaxStreamsPerSender, st.Partial)
	checkInvariants(t, a)

	// Streams time out after StreamTimeout since their last packet.
	assert.Zero(t, a.Expire(t0.Add(DefaultStreamTimeout-1)))
	assert.Equal(t, DefaultMaxStreamsPerSender, a.Expire(t0.Add(DefaultStreamTimeout)))
	assert.Zero(t, a.Stats().Buffered)
}

func TestInlineStreams(t *testing.T) {
	a := NewAssembler(Config{})
	f := foreign{"web", "i1"}
	r, ok := a.Accept(t0, f.header(&lkpb.DataStream_Header{
		Topic: "t", TotalLength: proto.Uint64(5), InlineContent: []byte("hello"), ContentHeader: textHeader,
	}))
	require.True(t, ok)
	assert.Equal(t, []byte("hello"), r.Payload)
	assert.True(t, r.Text)
	assert.Equal(t, "i1", r.StreamID)
	// A trailer that follows is ignored.
	_, ok = a.Accept(t0, f.trailer("", nil))
	require.False(t, ok)
	assert.Zero(t, a.Stats().Partial)

	// Inline content in the reserved attribute: raw text, base64 bytes.
	f = foreign{"web", "i2"}
	r, ok = a.Accept(t0, f.header(&lkpb.DataStream_Header{
		Attributes: map[string]string{attrInlinePayload: "hi ✓", "k": "v"}, ContentHeader: textHeader,
	}))
	require.True(t, ok)
	assert.Equal(t, "hi ✓", string(r.Payload))
	assert.Equal(t, map[string]string{"k": "v"}, r.Attributes)
	f = foreign{"web", "i3"}
	r, ok = a.Accept(t0, f.header(&lkpb.DataStream_Header{
		Attributes: map[string]string{attrInlinePayload: base64.StdEncoding.EncodeToString([]byte{0, 1, 2})}, ContentHeader: byteHeader("b"),
	}))
	require.True(t, ok)
	assert.Equal(t, []byte{0, 1, 2}, r.Payload)
	assert.Nil(t, r.Attributes)

	// Inline content that contradicts the length, or is not base64.
	f = foreign{"web", "i4"}
	_, ok = a.Accept(t0, f.header(&lkpb.DataStream_Header{TotalLength: proto.Uint64(4), InlineContent: []byte("hello")}))
	require.False(t, ok)
	f = foreign{"web", "i5"}
	_, ok = a.Accept(t0, f.header(&lkpb.DataStream_Header{Attributes: map[string]string{attrInlinePayload: "!!"}, ContentHeader: byteHeader("b")}))
	require.False(t, ok)
	st := a.Stats()
	assert.Equal(t, uint64(2), st.RejectedMalformed)
	assert.Equal(t, uint64(3), st.StreamsReceived)
}

func deflate(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestSpeed)
	require.NoError(t, err)
	_, err = w.Write(b)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func gzipMembers(t *testing.T, parts ...[]byte) []byte {
	var buf bytes.Buffer
	for _, p := range parts {
		w := gzip.NewWriter(&buf)
		_, err := w.Write(p)
		require.NoError(t, err)
		require.NoError(t, w.Close())
	}
	return buf.Bytes()
}

func TestCompressedStreams(t *testing.T) {
	text := bytes.Repeat([]byte("compress me please "), 5000)
	a := NewAssembler(Config{})

	// deflate-raw named by the attribute, chunked.
	f := foreign{"web", "c1"}
	z := deflate(t, text)
	pkts := []*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{
		TotalLength: proto.Uint64(uint64(len(text))), ContentHeader: textHeader,
		Attributes: map[string]string{attrCompression: CompressionDeflate},
	})}
	pkts = append(pkts, f.chunked(z, 50)...)
	pkts = append(pkts, f.trailer("", nil))
	got := feed(a, t0, pkts)
	require.Len(t, got, 1)
	assert.Equal(t, text, got[0].Payload)
	assert.Nil(t, got[0].Attributes)

	// deflate-raw named by the header field, inline.
	f = foreign{"web", "c2"}
	got = feed(a, t0, []*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{
		Compression: lkpb.DataStream_DEFLATE_RAW, InlineContent: z, ContentHeader: textHeader,
	})})
	require.Len(t, got, 1)
	assert.Equal(t, text, got[0].Payload)

	// gzip members, chunked; and inline in the attribute as base64.
	f = foreign{"web", "c3"}
	gz := gzipMembers(t, text[:100], text[100:])
	pkts = []*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{
		ContentHeader: byteHeader("x"), Attributes: map[string]string{attrCompression: CompressionGzip},
	})}
	pkts = append(pkts, f.chunked(gz, 1000)...)
	pkts = append(pkts, f.trailer("", nil))
	got = feed(a, t0, pkts)
	require.Len(t, got, 1)
	assert.Equal(t, text, got[0].Payload)
	f = foreign{"web", "c4"}
	got = feed(a, t0, []*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{
		ContentHeader: textHeader, Attributes: map[string]string{
			attrCompression: CompressionGzip, attrInlinePayload: base64.StdEncoding.EncodeToString(gz),
		},
	})})
	require.Len(t, got, 1)
	assert.Equal(t, text, got[0].Payload)

	// Unknown compression, corrupt data, and a bomb over the size limit.
	f = foreign{"web", "c5"}
	feed(a, t0, []*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{Attributes: map[string]string{attrCompression: "zstd"}})})
	f = foreign{"web", "c6"}
	feed(a, t0, []*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{Compression: lkpb.DataStream_DEFLATE_RAW, InlineContent: []byte("garbage")})})
	st := a.Stats()
	assert.Equal(t, uint64(2), st.RejectedMalformed)
	small := NewAssembler(Config{MaxMessageSize: 1000})
	f = foreign{"web", "c7"}
	got = feed(small, t0, []*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{
		Compression: lkpb.DataStream_DEFLATE_RAW, InlineContent: deflate(t, make([]byte, 1001)),
	})})
	require.Empty(t, got)
	assert.Equal(t, uint64(1), small.Stats().RejectedLimit)
}

func TestZeroTotalLengthMeansUnknown(t *testing.T) {
	// livekit-client sends total_length 0 for byte streams of unknown size.
	a := NewAssembler(Config{})
	f := foreign{"web", "z"}
	pkts := []*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{TotalLength: proto.Uint64(0), ContentHeader: byteHeader("")})}
	pkts = append(pkts, f.chunked([]byte("some bytes"), 4)...)
	pkts = append(pkts, f.trailer("", nil))
	got := feed(a, t0, pkts)
	require.Len(t, got, 1)
	assert.Equal(t, "some bytes", string(got[0].Payload))
}

func TestChunksOfALargerBufferAreCopied(t *testing.T) {
	// Chunks that are small windows on one large buffer are charged for
	// their length and copied, not charged for the whole buffer they pin.
	a := NewAssembler(Config{MaxBufferedPerSender: 20000})
	big := payload(100000, 9)
	f := foreign{"web", "w"}
	pkts := append([]*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{TotalLength: proto.Uint64(10000)})}, f.chunked(big[:10000], 1000)...)
	require.Empty(t, feed(a, t0, pkts))
	st := a.Stats()
	assert.Equal(t, 1, st.Partial)
	assert.Less(t, st.Buffered, 20000)
	a.mu.Lock()
	held := 0
	for _, p := range a.senders[senderKey{identity: "web"}].streams["w"].parts {
		held += cap(p)
	}
	a.mu.Unlock()
	assert.LessOrEqual(t, held, 10000+maxCoalesce, "copies, not windows on the large buffer")
	got := feed(a, t0, []*lkpb.DataPacket{f.trailer("", nil)})
	require.Len(t, got, 1)
	assert.Equal(t, big[:10000], got[0].Payload)
}
