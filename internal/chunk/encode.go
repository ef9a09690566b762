package chunk

import (
	"crypto/rand"
	"encoding/binary"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"
)

// Message is an application message to send. MimeType, Name and
// Attributes travel only in data streams: a message that goes as one plain
// packet or as fragments carries its topic and payload alone.
type Message struct {
	// Topic is the message topic; empty for none. It may not be
	// FragmentTopic.
	Topic string
	// Payload is the message content. The Encoder does not keep it.
	Payload []byte
	// Destinations are the identities of the participants to deliver to;
	// empty for everyone.
	Destinations []string
	// Reliable selects reliable, ordered delivery; otherwise the message is
	// lossy.
	Reliable bool
	// Stream sends a reliable message as a data stream even when it would
	// fit one packet, so that it reaches livekit-client's stream handlers.
	Stream bool
	// Text marks the payload as UTF-8 text: when streamed, the message goes
	// as a text stream (registerTextStreamHandler in livekit-client) and its
	// chunks are cut at character boundaries. Otherwise it goes as a byte
	// stream.
	Text bool
	// MimeType is the stream's MIME type. Default: "text/plain" for text,
	// "application/octet-stream" for bytes.
	MimeType string
	// Name is the byte stream's name (a file name, say). Text streams have
	// none.
	Name string
	// Attributes are the stream's attributes.
	Attributes map[string]string
}

// Via says how a message travelled.
type Via uint8

// How a message travelled.
const (
	// ViaPlain is one plain UserPacket.
	ViaPlain Via = iota + 1
	// ViaFragments is lossy fragments on FragmentTopic.
	ViaFragments
	// ViaStream is a LiveKit data stream.
	ViaStream
)

// String returns "plain", "fragments" or "stream".
func (v Via) String() string {
	switch v {
	case ViaPlain:
		return "plain"
	case ViaFragments:
		return "fragments"
	case ViaStream:
		return "stream"
	}
	return "unknown"
}

// Info says how Encode sent a message.
type Info struct {
	// Via is how the message travelled.
	Via Via
	// Packets is how many packets emit accepted: 1 for a plain packet, the
	// fragment count, or the stream's header, chunks and trailer.
	Packets int
	// Bytes is the total size of those packets.
	Bytes int
	// MessageID is the fragment message id, for ViaFragments.
	MessageID uint32
	// StreamID is the stream id, for ViaStream.
	StreamID string
}

// Encoder turns messages into encoded DataPackets. It is safe for concurrent
// use: lossy and reliable messages are encoded independently, and the
// reliable messages are encoded one at a time, holding a lock while emit
// runs, so that their packets (and sequence numbers) are never interleaved.
// A caller that must be able to give up waiting for that lock should
// serialize its reliable sends itself with a context-aware mechanism.
type Encoder struct {
	cfg Config
	now func() time.Time

	lossyMu  sync.Mutex
	lossyBuf []byte
	nextID   uint32

	reliableMu  sync.Mutex
	reliableBuf []byte

	stats sendStats
}

// sendStats are the Encoder's counters.
type sendStats struct {
	plain, fragmented, fragments, streams, chunks, packets, bytes atomic.Uint64
}

// NewEncoder returns an Encoder with the limits of cfg (zero fields take
// their defaults).
func NewEncoder(cfg Config) *Encoder {
	var id [4]byte
	_, _ = rand.Read(id[:])
	return &Encoder{
		cfg:    cfg.withDefaults(),
		now:    time.Now,
		nextID: binary.BigEndian.Uint32(id[:]),
	}
}

// Encode sends m: it encodes the packets m needs and hands each to emit, in
// order, and returns how it went.
//
// emit must send the packet (it may block, for backpressure) or copy it
// before it returns: the Encoder reuses the buffer afterwards. pion's
// DataChannel.Send copies the data (sctp.Stream.WriteSCTP copies the
// payload into its chunks before returning), so emit may pass pkt to it
// directly. An error from emit stops Encode, which returns that error
// unchanged. When that happens in the middle of a stream, Encode calls emit
// once more with a trailer whose reason is "interrupted", so that receivers
// release the stream at once; the error of that call is ignored.
//
// seq is called once for each reliable packet and must return increasing
// numbers from 1, shared by all reliable packets of the sender (it becomes
// DataPacket.sequence); it may be nil for no sequence numbers. Lossy packets
// carry none.
//
// Packets holding a UserPacket (plain packets and fragments) are sized as
// the server forwards them: it copies their destination identities into the
// UserPacket, so with destinations the packets sent are smaller than
// MaxLossyPacket and MaxReliablePacket by the size of that copy.
//
// Encode returns a *LimitError when the payload exceeds MaxMessageSize or
// when the topic and destinations leave no room for content in a packet,
// ErrReservedTopic, ErrInvalidString, ErrLossyStream or ErrInvalidText; it
// emits nothing then.
func (e *Encoder) Encode(m Message, seq func() uint32, emit func(pkt []byte) error) (Info, error) {
	if m.Topic == FragmentTopic {
		return Info{}, ErrReservedTopic
	}
	if !validStrings(&m) {
		return Info{}, ErrInvalidString
	}
	if len(m.Payload) > e.cfg.MaxMessageSize {
		return Info{}, &LimitError{What: "data message payload", Size: len(m.Payload), Limit: e.cfg.MaxMessageSize}
	}
	if !m.Reliable {
		if m.Stream {
			return Info{}, ErrLossyStream
		}
		e.lossyMu.Lock()
		defer e.lossyMu.Unlock()
		return e.encodeLossy(&m, emit)
	}
	e.reliableMu.Lock()
	defer e.reliableMu.Unlock()
	return e.encodeReliable(&m, seq, emit)
}

// validStrings reports whether the strings of m that travel as protobuf
// strings are valid UTF-8.
func validStrings(m *Message) bool {
	if !utf8.ValidString(m.Topic) || !utf8.ValidString(m.MimeType) || !utf8.ValidString(m.Name) {
		return false
	}
	for _, d := range m.Destinations {
		if !utf8.ValidString(d) {
			return false
		}
	}
	for k, v := range m.Attributes {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

// emit hands pkt to the caller's emit and counts it.
func (e *Encoder) emit(emit func([]byte) error, pkt []byte, info *Info) error {
	if err := emit(pkt); err != nil {
		return err
	}
	info.Packets++
	info.Bytes += len(pkt)
	e.stats.packets.Add(1)
	e.stats.bytes.Add(uint64(len(pkt)))
	return nil
}

// buffer returns *buf emptied, allocated with capacity n the first time.
func buffer(buf *[]byte, n int) []byte {
	if cap(*buf) < n {
		*buf = make([]byte, 0, n)
	}
	return (*buf)[:0]
}

// appendUserPacket appends a DataPacket holding a UserPacket with the
// payload and topic.
func appendUserPacket(b []byte, shape *packetShape, payload []byte, topic string) []byte {
	n := userSize(len(payload), topic)
	b = shape.appendHead(b, fieldPacketUser, n)
	if len(payload) > 0 {
		b = appendLen(b, fieldUserPayload, len(payload))
		b = append(b, payload...)
	}
	return appendString(b, fieldUserTopic, topic)
}

// encodeLossy sends a lossy message as one plain packet or as fragments.
// The caller holds lossyMu.
func (e *Encoder) encodeLossy(m *Message, emit func([]byte) error) (Info, error) {
	limit := e.cfg.MaxLossyPacket
	shape := packetShape{lossy: true, dests: m.Destinations, destsSize: destinationsSize(m.Destinations)}
	info := Info{Via: ViaPlain}
	if shape.size(fieldPacketUser, userSize(len(m.Payload), m.Topic)) <= limit {
		b := appendUserPacket(buffer(&e.lossyBuf, limit), &shape, m.Payload, m.Topic)
		if err := e.emit(emit, b, &info); err != nil {
			return info, err
		}
		e.stats.plain.Add(1)
		return info, nil
	}

	if len(m.Topic) > maxTopicLen {
		return Info{}, &LimitError{What: "lossy message topic", Size: len(m.Topic), Limit: maxTopicLen}
	}
	total := len(m.Payload)
	first := FragmentHeader{Index: 0, Topic: m.Topic}
	rest := FragmentHeader{Index: 1}
	cap0 := fragmentCapacity(&shape, first.headerLen(), limit)
	capN := fragmentCapacity(&shape, rest.headerLen(), limit)
	if cap0 < 1 || capN < 1 {
		overhead := shape.size(fieldPacketUser, userSize(first.headerLen()+1, FragmentTopic))
		return Info{}, &LimitError{What: "lossy packet with its topic and destinations", Size: overhead, Limit: limit}
	}
	count := 1
	if total > cap0 {
		count += (total - cap0 + capN - 1) / capN
	}
	if count > maxFragments {
		most := cap0 + (maxFragments-1)*capN
		return Info{}, &LimitError{What: "lossy message payload", Size: total, Limit: most}
	}

	e.nextID++
	h := FragmentHeader{MessageID: e.nextID, Total: uint32(total), Count: uint16(count), Topic: m.Topic}
	info = Info{Via: ViaFragments, MessageID: h.MessageID}
	off := 0
	for i := range count {
		h.Index = uint16(i)
		n := capN
		if i == 0 {
			n = cap0
		}
		n = min(n, total-off)
		hl := h.headerLen()
		b := buffer(&e.lossyBuf, limit)
		b = shape.appendHead(b, fieldPacketUser, userSize(hl+n, FragmentTopic))
		b = appendLen(b, fieldUserPayload, hl+n)
		b = AppendFragmentHeader(b, &h)
		b = append(b, m.Payload[off:off+n]...)
		b = appendString(b, fieldUserTopic, FragmentTopic)
		if err := e.emit(emit, b, &info); err != nil {
			return info, err
		}
		e.stats.fragments.Add(1)
		off += n
	}
	e.stats.fragmented.Add(1)
	return info, nil
}

// fragmentCapacity returns how many payload bytes a lossy fragment whose
// header is hl bytes long can carry in a packet of at most limit bytes.
func fragmentCapacity(shape *packetShape, hl, limit int) int {
	size := func(n int) int {
		return shape.size(fieldPacketUser, userSize(hl+n, FragmentTopic))
	}
	// size(n) grows by at least 1 per byte of n, so this start is an upper
	// bound; the loop then runs at most a few times, as varints shrink.
	n := limit - size(0)
	for n > 0 && size(n) > limit {
		n--
	}
	return n
}

// encodeReliable sends a reliable message as one plain packet or as a data
// stream. The caller holds reliableMu.
func (e *Encoder) encodeReliable(m *Message, seq func() uint32, emit func([]byte) error) (Info, error) {
	limit := e.cfg.MaxReliablePacket
	shape := packetShape{dests: m.Destinations, destsSize: destinationsSize(m.Destinations)}
	next := func() uint32 {
		if seq == nil {
			return 0
		}
		return seq()
	}
	shape.seq = next()
	plain := shape.size(fieldPacketUser, userSize(len(m.Payload), m.Topic))
	if e.cfg.ReserveForwardedDestinations {
		plain += shape.destsSize
	}
	if !m.Stream && plain <= limit {
		info := Info{Via: ViaPlain}
		// The buffer grows to the largest plain packet sent, not to the
		// limit: with the limit at the SCTP message size (64 KiB), a Room
		// that sends small messages would otherwise hold 64 KiB for them.
		b := appendUserPacket(buffer(&e.reliableBuf, plain), &shape, m.Payload, m.Topic)
		if err := e.emit(emit, b, &info); err != nil {
			return info, err
		}
		e.stats.plain.Add(1)
		return info, nil
	}
	if m.Text && !utf8.Valid(m.Payload) {
		return Info{}, ErrInvalidText
	}
	return e.encodeStream(m, &shape, next, emit)
}

// streamHeader holds what a stream header packet says.
type streamHeader struct {
	id, topic, mime, name string
	timestamp             int64
	total                 uint64
	text                  bool
	attrKeys              []string
	attrs                 map[string]string
}

// size returns the encoded size of the DataStream.Header.
func (h *streamHeader) size() int {
	n := sizeString(fieldHeaderStreamID, h.id) +
		sizeVarint(fieldHeaderTimestamp, uint64(h.timestamp)) +
		sizeString(fieldHeaderTopic, h.topic) +
		sizeString(fieldHeaderMimeType, h.mime) +
		protowire.SizeTag(fieldHeaderTotalLength) + protowire.SizeVarint(h.total)
	for _, k := range h.attrKeys {
		n += sizeLen(fieldHeaderAttributes, mapEntrySize(k, h.attrs[k]))
	}
	if h.text {
		n += sizeLen(fieldHeaderText, 0)
	} else {
		n += sizeLen(fieldHeaderByte, sizeString(fieldByteHeaderName, h.name))
	}
	return n
}

// mapEntrySize returns the encoded size of a map<string, string> entry.
// proto.Marshal writes both fields of an entry even when empty.
func mapEntrySize(k, v string) int {
	return sizeLen(fieldMapKey, len(k)) + sizeLen(fieldMapValue, len(v))
}

// append appends the encoded DataStream.Header.
func (h *streamHeader) append(b []byte) []byte {
	b = appendString(b, fieldHeaderStreamID, h.id)
	b = appendVarint(b, fieldHeaderTimestamp, uint64(h.timestamp))
	b = appendString(b, fieldHeaderTopic, h.topic)
	b = appendString(b, fieldHeaderMimeType, h.mime)
	b = protowire.AppendTag(b, fieldHeaderTotalLength, protowire.VarintType)
	b = protowire.AppendVarint(b, h.total)
	for _, k := range h.attrKeys {
		v := h.attrs[k]
		b = appendLen(b, fieldHeaderAttributes, mapEntrySize(k, v))
		b = appendLen(b, fieldMapKey, len(k))
		b = append(b, k...)
		b = appendLen(b, fieldMapValue, len(v))
		b = append(b, v...)
	}
	if h.text {
		return appendLen(b, fieldHeaderText, 0)
	}
	b = appendLen(b, fieldHeaderByte, sizeString(fieldByteHeaderName, h.name))
	return appendString(b, fieldByteHeaderName, h.name)
}

// chunkSize returns the encoded size of a DataStream.Chunk.
func chunkSize(id string, index uint64, n int) int {
	s := sizeString(fieldChunkStreamID, id) + sizeVarint(fieldChunkIndex, index)
	if n > 0 {
		s += sizeLen(fieldChunkContent, n)
	}
	return s
}

// trailerSize returns the encoded size of a DataStream.Trailer.
func trailerSize(id, reason string) int {
	return sizeString(fieldTrailerStreamID, id) + sizeString(fieldTrailerReason, reason)
}

// encodeStream sends a reliable message as a data stream. shape.seq holds
// the sequence number of the header packet.
func (e *Encoder) encodeStream(m *Message, shape *packetShape, next func() uint32, emit func([]byte) error) (Info, error) {
	limit := e.cfg.MaxReliablePacket
	h := streamHeader{
		id:        newStreamID(),
		topic:     m.Topic,
		mime:      m.MimeType,
		name:      m.Name,
		timestamp: e.now().UnixMilli(),
		total:     uint64(len(m.Payload)),
		text:      m.Text,
		attrs:     m.Attributes,
	}
	if h.mime == "" {
		h.mime = "application/octet-stream"
		if m.Text {
			h.mime = "text/plain"
		}
	}
	if m.Text {
		h.name = ""
	}
	if len(m.Attributes) > 0 {
		h.attrKeys = slices.Sorted(maps.Keys(m.Attributes))
	}
	hs := h.size()
	if size := shape.size(fieldPacketHeader, hs); size > limit {
		return Info{}, &LimitError{What: "data stream header with its topic, attributes and destinations", Size: size, Limit: limit}
	}
	// Every chunk must have room for a character at least, whatever its
	// index and sequence number.
	worst := *shape
	worst.seq = math.MaxUint32
	if room := chunkCapacity(&worst, h.id, uint64(len(m.Payload)), limit); room < utf8.UTFMax {
		size := worst.size(fieldPacketChunk, chunkSize(h.id, uint64(len(m.Payload)), utf8.UTFMax))
		return Info{}, &LimitError{What: "data stream chunk with its destinations", Size: size, Limit: limit}
	}

	info := Info{Via: ViaStream, StreamID: h.id}
	b := buffer(&e.reliableBuf, limit)
	b = shape.appendHead(b, fieldPacketHeader, hs)
	b = h.append(b)
	if err := e.emit(emit, b, &info); err != nil {
		return info, err
	}

	p := m.Payload
	for index := uint64(0); len(p) > 0; index++ {
		shape.seq = next()
		n := chunkCapacity(shape, h.id, index, limit)
		n = min(n, e.cfg.StreamChunkSize, len(p))
		if m.Text && n < len(p) {
			n = utf8Cut(p, n)
		}
		b := buffer(&e.reliableBuf, limit)
		b = shape.appendHead(b, fieldPacketChunk, chunkSize(h.id, index, n))
		b = appendString(b, fieldChunkStreamID, h.id)
		b = appendVarint(b, fieldChunkIndex, index)
		b = appendLen(b, fieldChunkContent, n)
		b = append(b, p[:n]...)
		if err := e.emit(emit, b, &info); err != nil {
			e.interrupt(shape, h.id, next, emit)
			return info, err
		}
		e.stats.chunks.Add(1)
		p = p[n:]
	}

	shape.seq = next()
	if err := e.emit(emit, appendTrailer(buffer(&e.reliableBuf, limit), shape, h.id, ""), &info); err != nil {
		return info, err
	}
	e.stats.streams.Add(1)
	return info, nil
}

// interrupt makes a last attempt to tell receivers that a stream ended
// early.
func (e *Encoder) interrupt(shape *packetShape, id string, next func() uint32, emit func([]byte) error) {
	shape.seq = next()
	_ = emit(appendTrailer(buffer(&e.reliableBuf, e.cfg.MaxReliablePacket), shape, id, "interrupted"))
}

// appendTrailer appends a DataPacket holding a stream trailer.
func appendTrailer(b []byte, shape *packetShape, id, reason string) []byte {
	b = shape.appendHead(b, fieldPacketTrailer, trailerSize(id, reason))
	b = appendString(b, fieldTrailerStreamID, id)
	return appendString(b, fieldTrailerReason, reason)
}

// chunkCapacity returns how many content bytes chunk index of stream id can
// carry in a packet of at most limit bytes.
func chunkCapacity(shape *packetShape, id string, index uint64, limit int) int {
	size := func(n int) int {
		return shape.size(fieldPacketChunk, chunkSize(id, index, n))
	}
	n := limit - size(0)
	for n > 0 && size(n) > limit {
		n--
	}
	return n
}

// utf8Cut returns where to cut p at most n bytes in so that no UTF-8
// character is split, or n when p[:n] holds no character boundary to back
// off to.
func utf8Cut(p []byte, n int) int {
	for i := n; i > 0 && i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(p[i]) {
			return i
		}
	}
	return n
}

// newStreamID returns a random version 4 UUID, the form livekit-client
// uses for stream ids.
func newStreamID() string { return uuid.NewString() }

// Stats returns the Encoder's counters; the receive fields are zero.
func (e *Encoder) Stats() Stats {
	return Stats{
		PlainSent:      e.stats.plain.Load(),
		FragmentedSent: e.stats.fragmented.Load(),
		FragmentsSent:  e.stats.fragments.Load(),
		StreamsSent:    e.stats.streams.Load(),
		ChunksSent:     e.stats.chunks.Load(),
		PacketsSent:    e.stats.packets.Load(),
		BytesSent:      e.stats.bytes.Load(),
	}
}
