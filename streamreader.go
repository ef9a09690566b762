package callstate

import (
	"compress/flate"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/callstate/callstate/internal/chunk"
	"github.com/callstate/callstate/internal/lkpb"
)

// Limits of the streams read by handlers.
const (
	// StreamBufferSize is how many bytes of one stream wait for its
	// reader. When a chunk arrives and the buffer is full, the Room's
	// receive path waits for the reader to make room, at most
	// StreamStallLimit each time: while it waits, no other data of the
	// Room is received (LiveKit's data travels on one SCTP association,
	// where waiting is the only backpressure there is), which slows the
	// sender to the reader's pace. A reader that makes no room within
	// StreamStallLimit loses the stream (ErrStreamTooSlow, counted in
	// DataStats.StreamsTooSlow), so that one stalled reader never holds
	// up the Room for longer than that.
	StreamBufferSize = 1 << 20
	// StreamStallLimit is the longest the receive path waits for a
	// stream's reader to make room in its buffer.
	StreamStallLimit = time.Second
	// MaxOpenStreams is how many streams handlers may be reading at once
	// in one Room: the memory of streams in progress stays within
	// MaxOpenStreams × StreamBufferSize. Further streams are refused
	// (counted in DataStats.StreamsRefused) until one ends.
	MaxOpenStreams = 16
	// StreamIdleTimeout ends a stream for its reader (ErrStreamIncomplete)
	// when no packet of it arrived for that long.
	StreamIdleTimeout = 30 * time.Second
)

// ByteStreamHandler reads a byte stream; see RegisterByteStreamHandler.
type ByteStreamHandler func(r *ByteStreamReader)

// TextStreamHandler reads a text stream; see RegisterTextStreamHandler.
type TextStreamHandler func(r *TextStreamReader)

// streamState is a Room's bookkeeping of streams read by handlers. Its
// mutex may be taken while r.mu is held, never the other way round.
type streamState struct {
	mu      sync.Mutex
	bytes   map[string]ByteStreamHandler
	texts   map[string]TextStreamHandler
	open    map[streamKey]*inStream
	refused atomic.Uint64
	tooSlow atomic.Uint64
	// compressedSent and compressedRead count the compressed streams sent
	// and those handed to a handler.
	compressedSent, compressedRead atomic.Uint64
}

func (s *streamState) init() {
	s.bytes = map[string]ByteStreamHandler{}
	s.texts = map[string]TextStreamHandler{}
	s.open = map[streamKey]*inStream{}
}

type streamKey struct{ sid, id string }

// checkHandlerTopic refuses topics that callstate answers itself.
func checkHandlerTopic(op, topic string) error {
	switch topic {
	case rpcRequestTopic, rpcResponseTopic, ChatTopic:
		return fmt.Errorf("%w: %s: callstate handles topic %q itself", ErrInvalidArgument, op, topic)
	}
	return nil
}

// RegisterByteStreamHandler makes handler read the byte streams on topic
// as they arrive (livekit-client's sendFile, sendBytes and streamBytes,
// callstate's SendFile, SendBytes and StreamBytes), replacing the topic's
// handler if any. Each stream gets its own goroutine and reader; the
// stream is discarded when handler returns, read to its end or not.
// Memory stays bounded however large the stream: see StreamBufferSize for
// how a slow reader holds up the sender, and for how long.
//
// Byte streams on a topic without a handler are delivered whole as
// DataReceived events, up to the Room's maximum message size, as before.
func (r *Room) RegisterByteStreamHandler(topic string, handler ByteStreamHandler) error {
	if err := checkHandlerTopic("RegisterByteStreamHandler", topic); err != nil {
		return err
	}
	if handler == nil {
		return fmt.Errorf("%w: RegisterByteStreamHandler: nil handler", ErrInvalidArgument)
	}
	r.streams.mu.Lock()
	r.streams.bytes[topic] = handler
	r.streams.mu.Unlock()
	return nil
}

// UnregisterByteStreamHandler removes topic's byte stream handler; streams
// being read go on.
func (r *Room) UnregisterByteStreamHandler(topic string) {
	r.streams.mu.Lock()
	delete(r.streams.bytes, topic)
	r.streams.mu.Unlock()
}

// RegisterTextStreamHandler makes handler read the text streams on topic
// as they arrive (livekit-client's sendText and streamText, callstate's
// SendText and StreamText); see RegisterByteStreamHandler. The lk.chat
// topic is callstate's (see ChatMessage), as are LiveKit's RPC topics.
func (r *Room) RegisterTextStreamHandler(topic string, handler TextStreamHandler) error {
	if err := checkHandlerTopic("RegisterTextStreamHandler", topic); err != nil {
		return err
	}
	if handler == nil {
		return fmt.Errorf("%w: RegisterTextStreamHandler: nil handler", ErrInvalidArgument)
	}
	r.streams.mu.Lock()
	r.streams.texts[topic] = handler
	r.streams.mu.Unlock()
	return nil
}

// UnregisterTextStreamHandler removes topic's text stream handler.
func (r *Room) UnregisterTextStreamHandler(topic string) {
	r.streams.mu.Lock()
	delete(r.streams.texts, topic)
	r.streams.mu.Unlock()
}

// inStream is a stream being read by a handler.
type inStream struct {
	key     streamKey
	tooSlow *atomic.Uint64
	info    StreamInfo
	from    string
	closing <-chan struct{}

	mu       sync.Mutex
	chunks   [][]byte
	buffered int
	received int64 // content bytes received, as they travel
	next     uint64
	eof      bool
	err      error // the end, after what is buffered
	gone     bool  // the reader is done: drop what comes
	last     time.Time

	readable chan struct{} // signalled when data or the end arrives
	space    chan struct{} // signalled when the reader takes data
}

func signal1(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push adds content for the reader, waiting at most StreamStallLimit for
// room (see StreamBufferSize). It reports false when the stream ended for
// its reader.
func (s *inStream) push(b []byte, now time.Time) bool {
	s.mu.Lock()
	var timer *time.Timer
	for !s.gone && s.err == nil && s.buffered > 0 && s.buffered+len(b) > StreamBufferSize {
		s.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(StreamStallLimit)
			defer timer.Stop()
		}
		select {
		case <-s.space:
		case <-timer.C:
			s.tooSlow.Add(1)
			s.end(ErrStreamTooSlow)
			return false
		case <-s.closing:
			return false
		}
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	if s.gone || s.err != nil {
		return false
	}
	s.chunks = append(s.chunks, b)
	s.buffered += len(b)
	s.received += int64(len(b))
	s.last = now
	signal1(s.readable)
	return true
}

// end ends the stream with err, after what is buffered.
func (s *inStream) end(err error) {
	s.mu.Lock()
	if s.err == nil && !s.eof {
		s.err = err
	}
	s.mu.Unlock()
	signal1(s.readable)
}

// Read reads the stream's content as it travels (compressed, perhaps).
func (s *inStream) Read(p []byte) (int, error) {
	for {
		s.mu.Lock()
		if len(s.chunks) > 0 {
			n := copy(p, s.chunks[0])
			if n == len(s.chunks[0]) {
				s.chunks[0] = nil
				s.chunks = s.chunks[1:]
			} else {
				s.chunks[0] = s.chunks[0][n:]
			}
			s.buffered -= n
			s.mu.Unlock()
			signal1(s.space)
			return n, nil
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return 0, err
		}
		if s.eof {
			s.mu.Unlock()
			return 0, io.EOF
		}
		s.mu.Unlock()
		select {
		case <-s.readable:
		case <-s.closing:
			s.end(ErrClosed)
		}
	}
}

// streamReader is what ByteStreamReader and TextStreamReader share.
type streamReader struct {
	s    *inStream
	src  io.Reader // the content, decompressed
	got  int64     // content bytes read, decompressed
	done func()
	once *sync.Once
}

// Read reads the stream's next bytes, blocking until some arrive. It
// returns io.EOF at the stream's end, and ErrStreamAborted,
// ErrStreamTooSlow, ErrStreamIncomplete or ErrClosed (wrapped) when the
// stream ended otherwise.
func (r *streamReader) Read(p []byte) (int, error) {
	n, err := r.src.Read(p)
	r.got += int64(n)
	if size := r.s.info.Size; size >= 0 {
		switch {
		case r.got > size:
			return n, fmt.Errorf("%w: more than the announced %d bytes", ErrStreamIncomplete, size)
		case err == io.EOF && r.got < size:
			return n, fmt.Errorf("%w: %d bytes of the announced %d", ErrStreamIncomplete, r.got, size)
		}
	}
	if err != nil && err != io.EOF && !isStreamEnd(err) {
		err = fmt.Errorf("%w: %w", ErrStreamIncomplete, err)
	}
	return n, err
}

func isStreamEnd(err error) bool {
	return errors.Is(err, ErrStreamAborted) || errors.Is(err, ErrStreamTooSlow) ||
		errors.Is(err, ErrStreamIncomplete) || errors.Is(err, ErrClosed)
}

// Info describes the stream, as its header said. Attributes are a private
// copy.
func (r *streamReader) Info() StreamInfo {
	i := r.s.info
	i.Attributes = maps.Clone(i.Attributes)
	return i
}

// From is the sender's identity, as the server stamped it.
func (r *streamReader) From() string { return r.s.from }

// BytesReceived is how many bytes of the stream have arrived so far, read
// or not: with Info().Size, the transfer's progress. For a compressed
// stream (Info().Compressed) they are compressed bytes, fewer than Size
// counts.
func (r *streamReader) BytesReceived() int64 {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	return r.s.received
}

// Close discards the rest of the stream; the handler's return does it too.
func (r *streamReader) Close() error {
	r.once.Do(r.done)
	return nil
}

// ByteStreamReader reads a byte stream as it arrives: an io.ReadCloser
// with the stream's description.
type ByteStreamReader struct{ streamReader }

// TextStreamReader reads a text stream as it arrives: an io.ReadCloser of
// its UTF-8 bytes with the stream's description.
type TextStreamReader struct {
	streamReader
	limit int
}

// ReadAll reads the rest of the text, at most the Room's maximum message
// size (ErrTooLarge beyond), and checks that it is UTF-8.
func (r *TextStreamReader) ReadAll() (string, error) {
	var b strings.Builder
	n, err := io.Copy(&b, io.LimitReader(r, int64(r.limit)+1))
	if err != nil {
		return b.String(), err
	}
	if n > int64(r.limit) {
		return "", &SizeError{What: "text stream", Size: int(n), Limit: r.limit}
	}
	if !utf8.ValidString(b.String()) {
		return "", fmt.Errorf("%w: the text stream is not UTF-8", ErrStreamIncomplete)
	}
	return b.String(), nil
}

// Attributes that newer LiveKit clients use to describe how a stream
// travels; they are not the application's.
const (
	attrInlinePayload = "lk.inline_payload"
	attrCompression   = "lk.compression"
)

// onStreamPacket routes a stream packet to a handler's reader, and reports
// whether it did; other stream packets go to the Assembler. It does not run
// under r.mu.
func (r *Room) onStreamPacket(pkt *lkpb.DataPacket) bool {
	now := time.Now()
	sid := pkt.GetParticipantSid()
	switch v := pkt.GetValue().(type) {
	case *lkpb.DataPacket_StreamHeader:
		return r.onStreamHeader(now, pkt, v.StreamHeader)
	case *lkpb.DataPacket_StreamChunk:
		c := v.StreamChunk
		s := r.openStreamFor(streamKey{sid, c.GetStreamId()})
		if s == nil {
			return false
		}
		s.mu.Lock()
		ok := c.GetChunkIndex() == s.next
		s.next++
		s.mu.Unlock()
		if !ok {
			r.countMalformed()
			r.endStream(s, fmt.Errorf("%w: chunk %d missing", ErrStreamIncomplete, c.GetChunkIndex()))
			return true
		}
		if len(c.GetContent()) > 0 && !s.push(c.GetContent(), now) {
			r.forgetStream(s)
		}
		return true
	case *lkpb.DataPacket_StreamTrailer:
		t := v.StreamTrailer
		s := r.openStreamFor(streamKey{sid, t.GetStreamId()})
		if s == nil {
			return false
		}
		if reason := t.GetReason(); reason != "" {
			r.endStream(s, fmt.Errorf("%w: %s", ErrStreamAborted, reason))
			return true
		}
		s.mu.Lock()
		s.eof = true
		s.mu.Unlock()
		signal1(s.readable)
		r.forgetStream(s)
		return true
	}
	return false
}

func (r *Room) openStreamFor(k streamKey) *inStream {
	r.streams.mu.Lock()
	defer r.streams.mu.Unlock()
	return r.streams.open[k]
}

func (r *Room) forgetStream(s *inStream) {
	r.streams.mu.Lock()
	if r.streams.open[s.key] == s {
		delete(r.streams.open, s.key)
	}
	r.streams.mu.Unlock()
}

func (r *Room) endStream(s *inStream, err error) {
	s.end(err)
	r.forgetStream(s)
}

func (r *Room) onStreamHeader(now time.Time, pkt *lkpb.DataPacket, h *lkpb.DataStream_Header) bool {
	text := h.GetTextHeader() != nil
	r.streams.mu.Lock()
	var bh ByteStreamHandler
	var th TextStreamHandler
	if text {
		th = r.streams.texts[h.GetTopic()]
	} else {
		bh = r.streams.bytes[h.GetTopic()]
	}
	if bh == nil && th == nil {
		r.streams.mu.Unlock()
		return false
	}
	key := streamKey{pkt.GetParticipantSid(), h.GetStreamId()}
	if key.id == "" || r.streams.open[key] != nil {
		r.streams.mu.Unlock()
		r.countMalformed()
		return true
	}
	if len(r.streams.open) >= MaxOpenStreams {
		r.streams.mu.Unlock()
		r.streams.refused.Add(1)
		return true
	}
	comp, err := chunk.CompressionOf(h)
	if err != nil {
		r.streams.mu.Unlock()
		r.countMalformed()
		return true
	}
	attrs := maps.Clone(h.GetAttributes())
	delete(attrs, attrInlinePayload)
	delete(attrs, attrCompression)
	if attrs == nil {
		attrs = map[string]string{}
	}
	s := &inStream{
		key: key,
		info: StreamInfo{
			ID:         key.id,
			Topic:      h.GetTopic(),
			MimeType:   h.GetMimeType(),
			Name:       h.GetByteHeader().GetName(),
			Text:       text,
			Attributes: attrs,
			Size:       -1,
			Compressed: comp != "",
		},
		closing:  r.closing,
		tooSlow:  &r.streams.tooSlow,
		last:     now,
		readable: make(chan struct{}, 1),
		space:    make(chan struct{}, 1),
	}
	if ts := h.GetTimestamp(); ts != 0 {
		s.info.Timestamp = time.UnixMilli(ts)
	}
	if n := h.GetTotalLength(); n > 0 {
		s.info.Size = int64(min(n, 1<<62))
	}
	// The inline content of a single-packet stream.
	inline, hasInline := h.InlineContent, h.InlineContent != nil
	if v, ok := h.GetAttributes()[attrInlinePayload]; ok && !hasInline {
		hasInline = true
		if text && comp == "" {
			inline = []byte(v)
		} else {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				b, err = base64.RawStdEncoding.DecodeString(v)
			}
			if err != nil {
				r.streams.mu.Unlock()
				r.countMalformed()
				return true
			}
			inline = b
		}
	}
	if hasInline {
		if s.info.Size < 0 && comp == "" {
			s.info.Size = int64(len(inline))
		}
		if len(inline) > 0 {
			s.chunks = [][]byte{inline}
			s.buffered = len(inline)
			s.received = int64(len(inline))
		}
		s.eof = true
	} else {
		r.streams.open[key] = s
	}
	r.streams.mu.Unlock()

	// The sender: the server stamps its identity, except on a text header
	// an agent sends in another's name (TextHeader.generated), which is
	// named by the sid the server stamped.
	s.from = pkt.GetParticipantIdentity()
	if h.GetTextHeader().GetGenerated() || s.from == "" {
		r.mu.Lock()
		s.from = r.identityOfSIDLocked(pkt.GetParticipantSid())
		r.mu.Unlock()
	}

	var src io.Reader = s
	if comp != "" {
		r.streams.compressedRead.Add(1)
	}
	switch comp {
	case chunk.CompressionDeflate:
		src = flate.NewReader(s)
	case chunk.CompressionGzip:
		src = &lazyGzip{src: s}
	}
	sr := streamReader{s: s, src: src, once: new(sync.Once)}
	sr.done = func() {
		s.mu.Lock()
		s.gone = true
		s.chunks, s.buffered = nil, 0
		s.mu.Unlock()
		signal1(s.space)
		r.forgetStream(s)
	}
	go func() {
		if th != nil {
			tr := &TextStreamReader{streamReader: sr, limit: r.opts.MaxMessageSize}
			defer tr.Close()
			th(tr)
			return
		}
		br := &ByteStreamReader{streamReader: sr}
		defer br.Close()
		bh(br)
	}()
	return true
}

// lazyGzip opens its gzip reader at the first Read, so that the header is
// not read on the receive path.
type lazyGzip struct {
	src io.Reader
	zr  *gzip.Reader
	err error
}

func (g *lazyGzip) Read(p []byte) (int, error) {
	if g.zr == nil && g.err == nil {
		g.zr, g.err = gzip.NewReader(g.src)
	}
	if g.err != nil {
		return 0, g.err
	}
	return g.zr.Read(p)
}

// streamsGoneLocked ends the streams of a participant who left; r.mu is
// held.
func (r *Room) streamsGoneLocked(sid string) {
	r.streams.mu.Lock()
	var gone []*inStream
	for k, s := range r.streams.open {
		if k.sid == sid {
			gone = append(gone, s)
			delete(r.streams.open, k)
		}
	}
	r.streams.mu.Unlock()
	for _, s := range gone {
		s.end(fmt.Errorf("%w: the sender left", ErrStreamAborted))
	}
}

// expireStreams ends streams idle for StreamIdleTimeout.
func (r *Room) expireStreams(now time.Time) {
	r.streams.mu.Lock()
	var idle []*inStream
	for k, s := range r.streams.open {
		s.mu.Lock()
		if now.Sub(s.last) > StreamIdleTimeout {
			idle = append(idle, s)
			delete(r.streams.open, k)
		}
		s.mu.Unlock()
	}
	r.streams.mu.Unlock()
	for _, s := range idle {
		s.end(fmt.Errorf("%w: idle for %v", ErrStreamIncomplete, StreamIdleTimeout))
	}
}
