package callstate

import (
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/callstate/callstate/internal/lkpb"
	"google.golang.org/protobuf/proto"
)

// streamChunkSize is the most content bytes in one chunk callstate sends:
// livekit-client's chunk size less room for the packet's other fields, so
// that every packet stays within the 15,000 bytes LiveKit's clients
// expect.
const streamChunkSize = 14000

// maxStreamHeader bounds the encoded header packet, which must travel in
// one packet: topic, attributes, name and destinations together.
const maxStreamHeader = 15000

// StreamWriter is an open data stream: an io.WriteCloser whose writes
// are sent as stream chunks. Write blocks while the transport's send
// buffer is full, which applies the network's pace to the producer.
// Methods are safe for concurrent use; writes are sent in the order they
// are made.
type StreamWriter struct {
	r        *Room
	ctx      context.Context
	op       string
	info     StreamInfo
	dests    []string
	text     bool
	progress func(sent, total int64)

	mu      sync.Mutex
	index   uint64
	sent    int64
	carry   []byte // the start of a character split by a text write
	done    bool
	err     error // why writes fail
	inlined bool  // sent whole in the header

	// z compresses the content of a one-shot send (SendText, SendBytes,
	// SendFile) whose recipients all inflate raw deflate; nil otherwise.
	z *deflater
	// hdr is the header packet while a compressed SendText or SendBytes
	// holds it back, until it knows whether the content goes inside it.
	hdr *lkpb.DataPacket
}

// streamDeflateLevel is the compression level of data streams:
// flate.BestSpeed. The transport carries about 10 MB/s, so compression
// must be faster than that to pay. Measured on this project's 2-core
// machine with 1 MiB of JSON records: level 1 gives 3.7x at ~80 MB/s,
// level 2 4.3x at the same speed, level 6 4.7x at ~35 MB/s; on
// incompressible content (media, archives, which SendFile often carries)
// level 1 passes at ~225 MB/s (its blocks go out stored) while levels 2-9
// spend 50 MB/s and gain nothing. Level 1 loses little on text and costs
// least where compression cannot help.
const streamDeflateLevel = flate.BestSpeed

// deflaters keeps flate.Writers between sends: one holds several hundred
// KiB of tables, which a bot sending many small texts would otherwise
// allocate for each.
var deflaters = sync.Pool{New: func() any {
	zw, _ := flate.NewWriter(io.Discard, streamDeflateLevel)
	return zw
}}

// deflater compresses a stream's content into chunks. Its Write receives
// the flate.Writer's output and runs under the StreamWriter's mu.
type deflater struct {
	w   *StreamWriter
	zw  *flate.Writer
	buf []byte // compressed bytes not yet sent
	fed int64  // content bytes given to zw
	// inlineRoom, while w.hdr is held back, is the most compressed bytes
	// the header may carry; whole is the content, which the header carries
	// uncompressed when compression does not make it smaller.
	inlineRoom int
	whole      []byte
}

// Write takes compressed bytes: it sends every full chunk, after the
// header when the content turns out too long to travel inside it.
func (d *deflater) Write(p []byte) (int, error) {
	w := d.w
	d.buf = append(d.buf, p...)
	if w.hdr != nil {
		if len(d.buf) <= d.inlineRoom {
			return len(p), nil
		}
		if err := w.sendHeaderLocked(); err != nil {
			return 0, err
		}
	}
	off := 0
	for len(d.buf)-off >= streamChunkSize {
		if err := w.chunkLocked(d.buf[off : off+streamChunkSize]); err != nil {
			return 0, err
		}
		off += streamChunkSize
	}
	d.buf = d.buf[:copy(d.buf, d.buf[off:])]
	return len(p), nil
}

// release returns the flate.Writer to the pool.
func (d *deflater) release() {
	if d.zw != nil {
		d.zw.Reset(io.Discard)
		deflaters.Put(d.zw)
		d.zw = nil
	}
	d.buf, d.whole = nil, nil
}

// canDeflate reports whether p can receive a compressed stream: it speaks
// client protocol 2 (data streams v2, of which compression is part) and
// advertised the capability, as livekit-client requires both.
func canDeflate(p Participant) bool { return p.clientProtocol >= 2 && p.DeflateStreams }

// everyRecipient reports whether ok holds for every recipient of a send
// to dests: the named participants, or every remote participant when dests
// is empty (true for an empty room, as nobody is left out), as
// livekit-client decides. A destination not in remotes fails.
func everyRecipient(remotes map[string]Participant, dests []string, ok func(Participant) bool) bool {
	if len(dests) == 0 {
		for _, p := range remotes {
			if !ok(p) {
				return false
			}
		}
		return true
	}
	for _, d := range dests {
		p, known := remotes[d]
		if !known || !ok(p) {
			return false
		}
	}
	return true
}

// openStream sends a stream's header. When whole is not nil it is the
// stream's entire content, sent inside the header when every recipient
// understands that and it fits. oneShot is true for the sends that know
// the whole content (SendText, SendBytes, SendFile), which compress it
// when every recipient can inflate it and o allows; a compressed send
// with whole holds the header back until Close, as only then is it known
// whether the compressed content fits inside.
func (r *Room) openStream(ctx context.Context, op string, text bool, o StreamOptions, whole []byte, oneShot bool) (*StreamWriter, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	if err := checkStreamTopic(op, o.Topic); err != nil {
		return nil, err
	}
	if o.Size < 0 {
		return nil, fmt.Errorf("%w: %s: negative Size", ErrInvalidArgument, op)
	}
	if text && whole != nil && !utf8.Valid(whole) {
		return nil, fmt.Errorf("%w: %s: the text is not UTF-8", ErrInvalidArgument, op)
	}
	if err := r.preflight(op, o.To); err != nil {
		return nil, err
	}
	mimeType := o.MimeType
	switch {
	case mimeType != "":
	case text:
		mimeType = "text/plain"
	default:
		mimeType = "application/octet-stream"
	}
	w := &StreamWriter{
		r:     r,
		ctx:   ctx,
		op:    op,
		dests: o.To,
		text:  text,
		info: StreamInfo{
			ID:         newStreamID(),
			Topic:      o.Topic,
			MimeType:   mimeType,
			Text:       text,
			Attributes: maps.Clone(o.Attributes),
			Size:       -1,
			Timestamp:  time.Now(),
		},
		progress: o.OnProgress,
	}
	if w.info.Attributes == nil {
		w.info.Attributes = map[string]string{}
	}
	if o.Size > 0 || whole != nil {
		w.info.Size = o.Size
	}
	h := &lkpb.DataStream_Header{
		StreamId:   w.info.ID,
		Timestamp:  w.info.Timestamp.UnixMilli(),
		Topic:      o.Topic,
		MimeType:   mimeType,
		Attributes: o.Attributes,
	}
	if w.info.Size >= 0 {
		n := uint64(w.info.Size)
		h.TotalLength = &n
	}
	if text {
		h.ContentHeader = &lkpb.DataStream_Header_TextHeader{TextHeader: &lkpb.DataStream_TextHeader{}}
	} else {
		w.info.Name = o.Name
		h.ContentHeader = &lkpb.DataStream_Header_ByteHeader{ByteHeader: &lkpb.DataStream_ByteHeader{Name: o.Name}}
	}
	pkt := &lkpb.DataPacket{DestinationIdentities: o.To, Value: &lkpb.DataPacket_StreamHeader{StreamHeader: h}}
	size := proto.Size(pkt) + 8 // and the sequence number
	if size > maxStreamHeader {
		return nil, &SizeError{What: "data stream header with its topic, attributes, name and destinations", Size: size, Limit: maxStreamHeader}
	}
	if oneShot && !o.NoCompression && w.info.Size > 0 && r.allRecipients(o.To, canDeflate) {
		h.Compression = lkpb.DataStream_DEFLATE_RAW
		w.info.Compressed = true
		w.z = &deflater{w: w, zw: deflaters.Get().(*flate.Writer)}
		w.z.zw.Reset(w.z)
		if whole != nil {
			// Room for the inline field's tag and length too.
			w.z.inlineRoom = maxStreamHeader - (proto.Size(pkt) + 8) - 8
			w.z.whole = whole
			w.hdr = pkt
			return w, nil
		}
	} else if whole != nil && size+len(whole)+8 <= maxStreamHeader && r.allRecipients(o.To, speaksV2) {
		h.InlineContent = whole
	}
	if err := w.sendHeader(pkt); err != nil {
		w.releaseLocked()
		return nil, err
	}
	if h.InlineContent != nil {
		w.sentWholeLocked()
	}
	return w, nil
}

// errSentWhole is why a stream sent inside its header takes no writes.
var errSentWhole = errors.New("callstate: the stream was sent whole")

// sendHeader sends the stream's header packet, counting it among the
// compressed streams sent when it announces compression.
func (w *StreamWriter) sendHeader(pkt *lkpb.DataPacket) error {
	if err := w.r.sendPacket(w.ctx, w.op, pkt); err != nil {
		return err
	}
	if pkt.GetStreamHeader().GetCompression() == lkpb.DataStream_DEFLATE_RAW {
		w.r.streams.compressedSent.Add(1)
	}
	return nil
}

// sentWholeLocked ends a stream whose header carried its whole content.
func (w *StreamWriter) sentWholeLocked() {
	w.inlined, w.done, w.err = true, true, errSentWhole
	w.sent = w.info.Size
	w.report()
}

// speaksV2 reports whether p understands single-packet streams with their
// content in the header (client protocol 2).
func speaksV2(p Participant) bool { return p.clientProtocol >= 2 }

// allRecipients reports whether ok holds for every recipient of a send to
// dests (see everyRecipient).
func (r *Room) allRecipients(dests []string, ok func(Participant) bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return everyRecipient(r.remotes, dests, ok)
}

// sendHeaderLocked sends the header a compressed send held back, without
// content inside.
func (w *StreamWriter) sendHeaderLocked() error {
	pkt := w.hdr
	w.hdr = nil
	w.z.whole = nil
	return w.sendHeader(pkt)
}

// releaseLocked gives back what compression held.
func (w *StreamWriter) releaseLocked() {
	if w.z != nil {
		w.z.release()
	}
}

// Info describes the stream.
func (w *StreamWriter) Info() StreamInfo {
	i := w.info
	i.Attributes = maps.Clone(i.Attributes)
	return i
}

// Write sends p as the next part of the stream. A text stream's parts must
// be UTF-8; a character cut between two writes is sent whole with the
// second. Writing more than the announced Size fails. On an error other
// than a full stream the stream is aborted.
func (w *StreamWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return 0, w.err
	}
	given := w.sent + int64(len(w.carry)) // the content taken so far
	if w.z != nil {
		given = w.z.fed
	}
	if w.info.Size >= 0 && given+int64(len(p)) > w.info.Size {
		return 0, fmt.Errorf("%w: %s: more than the announced %d bytes", ErrInvalidArgument, w.op, w.info.Size)
	}
	if w.z != nil {
		// A one-shot send: the content was checked whole (text) and its
		// size is known.
		if _, err := w.z.zw.Write(p); err != nil {
			w.abortLocked(err)
			return 0, err
		}
		w.z.fed += int64(len(p))
		return len(p), nil
	}
	written := 0
	data := p
	if w.text {
		if len(w.carry) > 0 {
			data = append(w.carry, p...)
			w.carry = nil
		}
		cut := len(data)
		// Hold back the start of a character that the next write ends.
		for i := len(data) - 1; i >= 0 && i >= len(data)-utf8.UTFMax; i-- {
			if utf8.RuneStart(data[i]) {
				if !utf8.FullRune(data[i:]) {
					cut = i
				}
				break
			}
		}
		if !utf8.Valid(data[:cut]) {
			err := fmt.Errorf("%w: %s: the text is not UTF-8", ErrInvalidArgument, w.op)
			w.abortLocked(err)
			return 0, err
		}
		w.carry = append([]byte(nil), data[cut:]...)
		data = data[:cut]
	}
	for len(data) > 0 {
		n := min(len(data), streamChunkSize)
		if w.text && n < len(data) {
			for n > 0 && !utf8.RuneStart(data[n]) {
				n--
			}
		}
		if err := w.chunkLocked(data[:n]); err != nil {
			w.abortLocked(err)
			return written, err
		}
		data = data[n:]
		written += n
	}
	return len(p), nil
}

// WriteString is Write of s.
func (w *StreamWriter) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

func (w *StreamWriter) chunkLocked(b []byte) error {
	err := w.r.sendPacket(w.ctx, w.op, &lkpb.DataPacket{
		DestinationIdentities: w.dests,
		Value: &lkpb.DataPacket_StreamChunk{StreamChunk: &lkpb.DataStream_Chunk{
			StreamId:   w.info.ID,
			ChunkIndex: w.index,
			Content:    b,
		}},
	})
	if err != nil {
		return err
	}
	w.index++
	if w.z != nil {
		// Progress counts content, of which this chunk compresses what
		// was given to the compressor so far (or a part of it).
		w.sent = w.z.fed
	} else {
		w.sent += int64(len(b))
	}
	w.report()
	return nil
}

func (w *StreamWriter) report() {
	if w.progress != nil {
		w.progress(w.sent, w.info.Size)
	}
}

// Close ends the stream. It fails, and aborts the stream, when fewer bytes
// than the announced Size were written or a text stream ends inside a
// character. Closing again returns the first result.
func (w *StreamWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		if w.inlined {
			return nil
		}
		if errors.Is(w.err, errWriterClosed) {
			return nil
		}
		return w.err
	}
	if w.z != nil {
		return w.closeDeflatedLocked()
	}
	if len(w.carry) > 0 {
		err := fmt.Errorf("%w: %s: the text ends inside a character", ErrInvalidArgument, w.op)
		w.abortLocked(err)
		return err
	}
	if w.info.Size >= 0 && w.sent != w.info.Size {
		err := fmt.Errorf("%w: %s: %d bytes written of the announced %d", ErrInvalidArgument, w.op, w.sent, w.info.Size)
		w.abortLocked(err)
		return err
	}
	w.done, w.err = true, errWriterClosed
	return w.trailerLocked(w.ctx, "")
}

var errWriterClosed = errors.New("callstate: data stream closed")

// closeDeflatedLocked ends a compressed stream: the compressor's last
// bytes go inside the held-back header when they fit (or the content
// itself, when compression did not make it smaller), as chunks otherwise,
// then the trailer.
func (w *StreamWriter) closeDeflatedLocked() error {
	d := w.z
	if d.fed != w.info.Size {
		err := fmt.Errorf("%w: %s: %d bytes written of the announced %d", ErrInvalidArgument, w.op, d.fed, w.info.Size)
		w.abortLocked(err)
		return err
	}
	if err := d.zw.Close(); err != nil {
		w.abortLocked(err)
		return err
	}
	if w.hdr != nil {
		pkt := w.hdr
		h := pkt.GetStreamHeader()
		if len(d.buf) < len(d.whole) {
			h.InlineContent = d.buf
		} else {
			h.InlineContent = d.whole
			h.Compression = lkpb.DataStream_NONE
			w.info.Compressed = false
		}
		w.hdr = nil
		err := w.sendHeader(pkt)
		w.releaseLocked()
		if err != nil {
			w.done, w.err = true, err
			return err
		}
		w.sentWholeLocked()
		return nil
	}
	if len(d.buf) > 0 {
		if err := w.chunkLocked(d.buf); err != nil {
			w.abortLocked(err)
			return err
		}
	}
	if w.sent != w.info.Size {
		w.sent = w.info.Size
		w.report()
	}
	w.releaseLocked()
	w.done, w.err = true, errWriterClosed
	return w.trailerLocked(w.ctx, "")
}

// CloseWithError aborts the stream: receivers see it end with err's text as
// the reason (nil: "aborted"). It returns the error of sending the
// trailer, or nil if the stream had already ended.
func (w *StreamWriter) CloseWithError(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil
	}
	if err == nil {
		err = errors.New("aborted")
	}
	return w.abortLocked(err)
}

// abortLocked ends the stream with err as its reason, making a last
// attempt to tell the receivers even when ctx has ended.
func (w *StreamWriter) abortLocked(err error) error {
	w.done, w.err = true, err
	w.releaseLocked()
	if w.hdr != nil {
		// Nothing was sent: there is no stream to end.
		w.hdr = nil
		return nil
	}
	ctx := w.ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(w.r.life, time.Second)
		defer cancel()
	}
	reason := err.Error()
	if reason == "" {
		reason = "aborted"
	}
	return w.trailerLocked(ctx, truncateUTF8(reason, 1024))
}

func (w *StreamWriter) trailerLocked(ctx context.Context, reason string) error {
	return w.r.sendPacket(ctx, w.op, &lkpb.DataPacket{
		DestinationIdentities: w.dests,
		Value: &lkpb.DataPacket_StreamTrailer{StreamTrailer: &lkpb.DataStream_Trailer{
			StreamId: w.info.ID,
			Reason:   reason,
		}},
	})
}
