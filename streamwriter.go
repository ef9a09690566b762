package callstate

import (
	"context"
	"errors"
	"fmt"
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
}

// openStream sends a stream's header. When whole is not nil it is the
// stream's entire content, sent inside the header when every recipient
// understands that and it fits.
func (r *Room) openStream(ctx context.Context, op string, text bool, o StreamOptions, whole []byte) (*StreamWriter, error) {
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
	if whole != nil && size+len(whole)+8 <= maxStreamHeader && r.allUnderstand(o.To, 2) {
		h.InlineContent = whole
		w.inlined, w.done = true, true
		w.err = errors.New("callstate: the stream was sent whole")
		w.sent = int64(len(whole))
	}
	if err := r.sendPacket(ctx, op, pkt); err != nil {
		return nil, err
	}
	if w.inlined {
		w.report()
	}
	return w, nil
}

// allUnderstand reports whether every recipient of a send to dests (all
// remote participants when dests is empty) speaks client protocol v or
// later.
func (r *Room) allUnderstand(dests []string, v int32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(dests) == 0 {
		for _, p := range r.remotes {
			if p.clientProtocol < v {
				return false
			}
		}
		return true
	}
	for _, d := range dests {
		if r.remotes[d].clientProtocol < v {
			return false
		}
	}
	return true
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
	if w.info.Size >= 0 && w.sent+int64(len(w.carry))+int64(len(p)) > w.info.Size {
		return 0, fmt.Errorf("%w: %s: more than the announced %d bytes", ErrInvalidArgument, w.op, w.info.Size)
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
	w.sent += int64(len(b))
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
