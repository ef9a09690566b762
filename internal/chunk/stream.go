package chunk

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"io"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
)

// Reserved stream header attributes with which newer LiveKit clients
// describe how a stream travels. They are removed from the attributes
// delivered.
const (
	// attrInlinePayload holds the whole content of a single-packet stream:
	// the text itself for an uncompressed text stream, base64 otherwise.
	attrInlinePayload = "lk.inline_payload"
	// attrCompression names the compression of the content.
	attrCompression = "lk.compression"
)

// Compressions of stream content.
const (
	compressionGzip    = "gzip"        // one or more gzip members
	compressionDeflate = "deflate-raw" // a raw deflate stream
)

var (
	errTooLarge    = errors.New("callstate: decompressed stream over the size limit")
	errCompression = errors.New("callstate: unknown stream compression")
	// errCompressedLength reports decompressed content whose length is not
	// the stream's total length.
	errCompressedLength = errors.New("callstate: decompressed stream length mismatch")
)

// compressionOf returns the compression of the stream h starts.
func compressionOf(h *lkpb.DataStream_Header) (string, error) {
	if v, ok := h.GetAttributes()[attrCompression]; ok {
		switch v {
		case compressionGzip, compressionDeflate:
			return v, nil
		}
		return "", errCompression
	}
	switch h.GetCompression() {
	case lkpb.DataStream_NONE:
		return "", nil
	case lkpb.DataStream_DEFLATE_RAW:
		return compressionDeflate, nil
	}
	return "", errCompression
}

// acceptHeader handles a stream header: it starts a stream, or delivers a
// single-packet stream at once.
func (a *Assembler) acceptHeader(now time.Time, h *lkpb.DataStream_Header, base Received) (pending, bool) {
	id := h.GetStreamId()
	if id == "" {
		a.st.malformed.Add(1)
		return pending{}, false
	}
	s := a.senderOf(base.SenderIdentity, now)
	if found, _ := s.streamDone(id); found || s.streams[id] != nil {
		a.st.duplicates.Add(1)
		return pending{}, false
	}
	comp, err := compressionOf(h)
	if err != nil {
		a.st.malformed.Add(1)
		s.markStream(id, false)
		return pending{}, false
	}
	// A total length of 0 means unknown, as it does to livekit-client,
	// which sends 0 for streams whose size it does not know.
	total := -1
	if n := h.GetTotalLength(); n > 0 {
		if n > uint64(a.cfg.MaxMessageSize) {
			a.st.limit.Add(1)
			s.markStream(id, false)
			return pending{}, false
		}
		total = int(n)
	}
	base.Via = ViaStream
	base.Topic = h.GetTopic()
	base.StreamID = id
	base.MimeType = h.GetMimeType()
	base.Text = h.GetTextHeader() != nil
	base.Name = h.GetByteHeader().GetName()
	base.Attributes = cloneAttributes(h.GetAttributes())
	if ts := h.GetTimestamp(); ts != 0 {
		base.Timestamp = time.UnixMilli(ts)
	}

	if content, inline, err := inlineContent(h, base.Text, comp); inline {
		s.markStream(id, err == nil)
		switch {
		case err != nil:
			a.st.malformed.Add(1)
			return pending{}, false
		case len(content) > a.cfg.MaxMessageSize:
			a.st.limit.Add(1)
			return pending{}, false
		case comp == "" && total >= 0 && len(content) != total:
			a.st.malformed.Add(1)
			return pending{}, false
		}
		return pending{r: base, chunks: [][]byte{content}, size: len(content), compression: comp, total: total}, true
	}

	if len(s.streams) >= a.cfg.MaxStreamsPerSender || a.partial >= a.cfg.MaxPartialTotal {
		a.st.limit.Add(1)
		s.markStream(id, false)
		return pending{}, false
	}
	fixed := partialOverhead + 2*proto.Size(h)
	if !a.reserve(s, fixed) {
		a.st.limit.Add(1)
		s.markStream(id, false)
		return pending{}, false
	}
	s.streams[id] = &streamMsg{
		base:        base,
		total:       total,
		compression: comp,
		last:        now,
		held:        fixed,
	}
	a.partial++
	return pending{}, false
}

// inlineContent returns the content a single-packet stream header carries,
// and whether it carries any.
func inlineContent(h *lkpb.DataStream_Header, text bool, comp string) ([]byte, bool, error) {
	if h.InlineContent != nil {
		return h.InlineContent, true, nil
	}
	v, ok := h.GetAttributes()[attrInlinePayload]
	if !ok {
		return nil, false, nil
	}
	if text && comp == "" {
		return []byte(v), true, nil
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(v)
	}
	return b, true, err
}

// acceptChunk handles a stream chunk.
func (a *Assembler) acceptChunk(now time.Time, c *lkpb.DataStream_Chunk, base Received) {
	a.st.chunks.Add(1)
	s := a.senders[base.SenderIdentity]
	var st *streamMsg
	if s != nil {
		st = s.streams[c.GetStreamId()]
	}
	if st == nil {
		a.st.ignored.Add(1)
		return
	}
	s.last = now
	switch idx := c.GetChunkIndex(); {
	case idx < st.next:
		a.st.duplicates.Add(1)
		return
	case idx > st.next:
		// A chunk is missing; reliable delivery should make that impossible.
		a.st.malformed.Add(1)
		a.dropStream(s, st, false)
		return
	}
	st.next++
	st.last = now
	content := c.GetContent()
	if len(content) == 0 {
		return
	}
	if st.compression == "" && st.total >= 0 && st.bytes+len(content) > st.total {
		a.st.malformed.Add(1)
		a.dropStream(s, st, false)
		return
	}
	cost, compact := retention(content, cap(content))
	if st.bytes+len(content) > a.cfg.MaxMessageSize || !a.reserve(s, cost) {
		a.st.limit.Add(1)
		a.dropStream(s, st, false)
		return
	}
	if compact {
		content = slices.Clone(content)
	}
	st.held += cost
	st.bytes += len(content)
	st.parts = append(st.parts, content)
}

// acceptTrailer handles a stream trailer: it delivers the stream, or drops
// it when the trailer carries a reason.
func (a *Assembler) acceptTrailer(t *lkpb.DataStream_Trailer, base Received) (pending, bool) {
	s := a.senders[base.SenderIdentity]
	var st *streamMsg
	if s != nil {
		st = s.streams[t.GetStreamId()]
	}
	if st == nil {
		a.st.ignored.Add(1)
		return pending{}, false
	}
	if t.GetReason() != "" {
		a.st.aborted.Add(1)
		a.dropStream(s, st, false)
		return pending{}, false
	}
	if st.compression == "" && st.total >= 0 && st.bytes != st.total {
		a.st.malformed.Add(1)
		a.dropStream(s, st, false)
		return pending{}, false
	}
	a.dropStream(s, st, true)
	r := st.base
	if len(t.GetAttributes()) > 0 {
		attrs := cloneAttributes(t.GetAttributes())
		if r.Attributes == nil {
			r.Attributes = attrs
		} else {
			for k, v := range attrs {
				r.Attributes[k] = v
			}
		}
	}
	return pending{r: r, chunks: st.parts, size: st.bytes, compression: st.compression, total: st.total}, true
}

// decompress returns the decompressed concatenation of parts, refusing to
// produce more than limit bytes.
func decompress(parts [][]byte, comp string, limit int) ([]byte, error) {
	readers := make([]io.Reader, len(parts))
	empty := true
	for i, p := range parts {
		readers[i] = bytes.NewReader(p)
		empty = empty && len(p) == 0
	}
	if empty {
		return []byte{}, nil
	}
	src := io.MultiReader(readers...)
	var r io.Reader
	switch comp {
	case compressionGzip:
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, err
		}
		r = zr
	case compressionDeflate:
		r = flate.NewReader(src)
	default:
		return nil, errCompression
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(out) > limit {
		return nil, errTooLarge
	}
	return out, nil
}
