package callstate

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
)

// FuzzPrimitives feeds arbitrary sequences of data packets (stream
// headers, chunks and trailers, RPC and chat packets) to a Room with stream
// handlers and an RPC method: whatever peers send, the Room must not panic,
// and no stream may hold more than StreamBufferSize for its reader (plus
// the one chunk that may exceed an empty buffer).
func FuzzPrimitives(f *testing.F) {
	pack := func(pkts ...*lkpb.DataPacket) []byte {
		var out []byte
		for _, p := range pkts {
			b, _ := proto.Marshal(p)
			out = binary.AppendUvarint(out, uint64(len(b)))
			out = append(out, b...)
		}
		return out
	}
	n := uint64(5)
	hdr := func(topic string, text bool) *lkpb.DataPacket {
		h := &lkpb.DataStream_Header{StreamId: "s1", Topic: topic, TotalLength: &n}
		if text {
			h.ContentHeader = &lkpb.DataStream_Header_TextHeader{TextHeader: &lkpb.DataStream_TextHeader{}}
		} else {
			h.ContentHeader = &lkpb.DataStream_Header_ByteHeader{ByteHeader: &lkpb.DataStream_ByteHeader{Name: "f"}}
		}
		return &lkpb.DataPacket{ParticipantIdentity: "peer", ParticipantSid: "PA_peer", Value: &lkpb.DataPacket_StreamHeader{StreamHeader: h}}
	}
	chunk := func(i uint64, b string) *lkpb.DataPacket {
		return &lkpb.DataPacket{ParticipantIdentity: "peer", ParticipantSid: "PA_peer", Value: &lkpb.DataPacket_StreamChunk{StreamChunk: &lkpb.DataStream_Chunk{StreamId: "s1", ChunkIndex: i, Content: []byte(b)}}}
	}
	trailer := func(reason string) *lkpb.DataPacket {
		return &lkpb.DataPacket{ParticipantIdentity: "peer", ParticipantSid: "PA_peer", Value: &lkpb.DataPacket_StreamTrailer{StreamTrailer: &lkpb.DataStream_Trailer{StreamId: "s1", Reason: reason}}}
	}
	f.Add(pack(hdr("bytes", false), chunk(0, "hello"), trailer("")))
	f.Add(pack(hdr("text", true), chunk(0, "hé"), chunk(2, "x"), trailer("gone")))
	inline := hdr("bytes", false)
	inline.GetStreamHeader().InlineContent = []byte("inline")
	inline.GetStreamHeader().Compression = lkpb.DataStream_DEFLATE_RAW
	f.Add(pack(inline))
	// Real raw deflate, as SendText and SendBytes send it: inside a text
	// header, cut across chunks of a byte stream, and to a topic without
	// a handler (delivered whole); then one that inflates to more than its
	// header says.
	var z bytes.Buffer
	zw, _ := flate.NewWriter(&z, streamDeflateLevel)
	_, _ = zw.Write([]byte("hello"))
	_ = zw.Close()
	deflated := z.Bytes()
	ztext := hdr("text", true)
	ztext.GetStreamHeader().InlineContent = deflated
	ztext.GetStreamHeader().Compression = lkpb.DataStream_DEFLATE_RAW
	f.Add(pack(ztext))
	zbytes := hdr("bytes", false)
	zbytes.GetStreamHeader().Compression = lkpb.DataStream_DEFLATE_RAW
	f.Add(pack(zbytes, chunk(0, string(deflated[:3])), chunk(1, string(deflated[3:])), trailer("")))
	zwhole := hdr("whole", true)
	zwhole.GetStreamHeader().Compression = lkpb.DataStream_DEFLATE_RAW
	f.Add(pack(zwhole, chunk(0, string(deflated)), trailer("")))
	z.Reset()
	zw.Reset(&z)
	_, _ = zw.Write(make([]byte, 1<<16))
	_ = zw.Close()
	zbig := hdr("bytes", false)
	zbig.GetStreamHeader().InlineContent = z.Bytes()
	zbig.GetStreamHeader().Compression = lkpb.DataStream_DEFLATE_RAW
	f.Add(pack(zbig))
	f.Add(pack(&lkpb.DataPacket{ParticipantIdentity: "peer", Value: &lkpb.DataPacket_RpcRequest{RpcRequest: &lkpb.RpcRequest{Id: "r", Method: "m", Version: 1}}},
		&lkpb.DataPacket{ParticipantIdentity: "peer", Value: &lkpb.DataPacket_RpcResponse{RpcResponse: &lkpb.RpcResponse{RequestId: "r"}}},
		&lkpb.DataPacket{ParticipantIdentity: "peer", Value: &lkpb.DataPacket_ChatMessage{ChatMessage: &lkpb.ChatMessage{Id: "c", Message: "hi"}}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newOfflineRoom(t)
		read := func(rd io.Reader) { _, _ = io.Copy(io.Discard, rd) }
		_ = r.RegisterByteStreamHandler("bytes", func(br *ByteStreamReader) { read(br) })
		_ = r.RegisterTextStreamHandler("text", func(tr *TextStreamReader) { _, _ = tr.ReadAll() })
		_ = r.RegisterRpcMethod("m", func(context.Context, RpcInvocation) (string, error) { return "ok", nil })
		for len(data) > 0 {
			l, k := binary.Uvarint(data)
			if k <= 0 || l > uint64(len(data)-k) {
				r.onData(true, data)
				break
			}
			r.onData(true, data[k:k+int(l)])
			data = data[k+int(l):]
		}
		r.streams.mu.Lock()
		defer r.streams.mu.Unlock()
		for _, s := range r.streams.open {
			s.mu.Lock()
			if s.buffered > StreamBufferSize+(64<<10) {
				t.Errorf("a stream buffers %d bytes", s.buffered)
			}
			s.mu.Unlock()
		}
	})
}
