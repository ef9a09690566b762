package chunk

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"io"
	"time"

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
	CompressionGzip    = "gzip"        // one or more gzip members
	CompressionDeflate = "deflate-raw" // a raw deflate stream
)

var (
	errTooLarge    = errors.New("callstate: decompressed stream over the size limit")
	errCompression = errors.New("callstate: unknown stream compression")
	// errCompressedLength reports decompressed content whose length is not
	// the stream's total length.
	errCompressedLength = errors.New("callstate: decompressed stream length mismatch")
)

// CompressionOf returns the compression of the stream h starts, "" for
// none: the lk.compression attribute of older clients, else the header's
// compression field. An unknown one is an error: livekit-client drops such
// a stream too.
func CompressionOf(h *lkpb.DataStream_Header) (string, error) {
	if v, ok := h.GetAttributes()[attrCompression]; ok {
		switch v {
		case CompressionGzip, CompressionDeflate:
			return v, nil
		}
		return "", errCompression
	}
	switch h.GetCompression() {
	case lkpb.DataStream_NONE:
		return "", nil
	case lkpb.DataStream_DEFLATE_RAW:
		return CompressionDeflate, nil
	}
	return "", errCompression
}

// acceptHeader handles a stream header: it starts a stream, or delivers a
// single-packet stream at once. trust says whether the sender identity on
// the header is the server's word (see trusted).
func (a *Assembler) acceptHeader(now time.Time, h *lkpb.DataStream_Header, base Received, trust bool) (pending, bool) {
	id := h.GetStreamId()
	if id == "" {
		a.st.malformed.Add(1)
		return pending{}, false
	}
	s := a.senderOf(&base, trust, now)
	if !trust {
		// The sender may have named someone else: attribute the stream to
		// the sender the sid says, by the identity the server stamped on
		// its other packets, empty when none came yet (see
		// Received.SenderIdentity).
		base.SenderIdentity = s.identity
	}
	if found, _ := s.streamDone(id); found || s.streams[id] != nil {
		a.st.duplicates.Add(1)
		return pending{}, false
	}
	comp, err := CompressionOf(h)
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
		p := pending{r: base, chunks: [][]byte{content}, size: len(content), compression: comp, total: total, s: s}
		if comp != "" && !a.reserveInflate(now, &p) {
			return pending{}, false
		}
		return p, true
	}

	// Memory is charged as content arrives: a header costs its own packet
	// and a streamMsg, bounded by the counts checked here.
	if len(s.streams) >= a.cfg.MaxStreamsPerSender || a.partial >= a.cfg.MaxPartialTotal {
		a.st.limit.Add(1)
		s.markStream(id, false)
		return pending{}, false
	}
	s.streams[id] = &streamMsg{
		base:        base,
		total:       total,
		compression: comp,
		last:        now,
	}
	a.partial++
	return pending{}, false
}

// inflateFree is the expansion a compressed stream gets without charge:
// up to inflateFree bytes decompressed for each compressed byte received.
// Ordinary content stays under it (JSON and text compress 3–6× with
// deflate's default levels, logs rarely beyond 8×), so that a sender of
// compressed text is bounded by the network, as one of plain text is;
// what a bomb makes beyond it (deflate reaches 1,032:1) is charged.
const inflateFree = 8

// reserveInflate reserves from the decompression budgets of p's sender and
// of the Assembler what p may decompress to beyond inflateFree times its
// compressed size, and reports whether there is enough. A stream of known
// length may decompress to that length; one of unknown length to
// MaxMessageSize, or what the budgets allow, and is refused if it
// decompresses to more.
func (a *Assembler) reserveInflate(now time.Time, p *pending) bool {
	free := inflateFree * p.size
	budget := min(p.s.inflate.refill(now, a.cfg.MaxDecompressedPerSender),
		a.inflate.refill(now, a.cfg.MaxDecompressedTotal))
	n := min(a.cfg.MaxMessageSize, free+max(budget, 0))
	if n <= 0 || (p.total >= 0 && n < p.total) {
		a.st.limit.Add(1)
		return false
	}
	if p.total >= 0 {
		n = p.total
	}
	p.inflate, p.inflateFree = n, free
	charged := max(n-free, 0)
	p.s.inflate.avail -= charged
	a.inflate.avail -= charged
	return true
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
	s := a.sender(&base)
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
	if st.bytes+len(content) > a.cfg.MaxMessageSize || !a.reserve(s, len(content)) {
		a.st.limit.Add(1)
		a.dropStream(s, st, false)
		return
	}
	st.held += len(content)
	st.add(content)
}

// acceptTrailer handles a stream trailer: it delivers the stream, or drops
// it when the trailer carries a reason.
func (a *Assembler) acceptTrailer(now time.Time, t *lkpb.DataStream_Trailer, base Received) (pending, bool) {
	s := a.sender(&base)
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
	// The server stamps the trailer with the sender's own identity, even
	// when the header named someone else.
	r.SenderIdentity = base.SenderIdentity
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
	p := pending{r: r, chunks: st.parts, size: st.bytes, compression: st.compression, total: st.total, s: s}
	if p.compression != "" && !a.reserveInflate(now, &p) {
		return pending{}, false
	}
	return p, true
}

// decompress returns the decompressed concatenation of parts, refusing to
// produce more than limit bytes. With errTooLarge it also returns what it
// produced, limit+1 bytes, so that the caller can count them.
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
	case CompressionGzip:
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, err
		}
		r = zr
	case CompressionDeflate:
		r = flate.NewReader(src)
	default:
		return nil, errCompression
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return out, err
	}
	if len(out) > limit {
		return out, errTooLarge
	}
	return out, nil
}
