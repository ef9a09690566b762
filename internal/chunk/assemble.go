package chunk

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/callstate/callstate/internal/lkpb"
)

// Received is a whole message that arrived.
type Received struct {
	// SenderIdentity is the identity of the sending participant, as the
	// server stamped it; empty for a message sent with the server API or by
	// a hidden participant. It never comes from a claim the sender can
	// make. LiveKit's server lets an agent send a text stream header that
	// names another participant; such a stream is the agent's, and when no
	// other packet of the agent has told its identity yet, SenderIdentity
	// is empty and SenderSID names the agent, for the caller to resolve
	// from the participants it knows.
	SenderIdentity string
	// SenderSID is the session id of the sending participant, as the server
	// stamped it; empty for a message sent with the server API.
	SenderSID string
	// Topic is the message topic; empty for none.
	Topic string
	// Payload is the message content. It may alias the byte slices of the
	// packets passed to Accept.
	Payload []byte
	// Reliable reports whether the message came by reliable delivery.
	Reliable bool
	// Via is how the message travelled.
	Via Via
	// Destinations are the destination identities the sender named, as far
	// as the server passes them on.
	Destinations []string
	// StreamID is the data stream id, for ViaStream.
	StreamID string
	// MimeType is the data stream's MIME type, for ViaStream.
	MimeType string
	// Name is the byte stream's name, for ViaStream.
	Name string
	// Text reports a text stream: the payload is meant as UTF-8 text.
	Text bool
	// Attributes are the data stream's attributes (those of its header and
	// its trailer), for ViaStream.
	Attributes map[string]string
	// Timestamp is when the sender started the data stream, by its clock;
	// zero when unknown.
	Timestamp time.Time
	// Compressed reports a data stream whose content travelled compressed.
	Compressed bool
}

// Per-item memory, beyond the bytes of the content, charged against the
// buffering limits for fragmented lossy messages: it covers the bookkeeping
// of a message under reassembly and of each fragment it holds. Data streams
// are charged their content bytes alone, so that no stream within
// MaxMessageSize and the byte budgets is refused however its sender cuts it
// into chunks; their bookkeeping is bounded instead by coalescing small
// chunks (see streamMsg.add) and by the limits on how many streams there
// are.
const (
	partialOverhead = 256
	partOverhead    = 64
)

// Chunks shorter than coalesceBelow, and chunks that pin a much larger
// buffer, are copied into a buffer shared with the chunks around them
// rather than kept as parts of their own: a stream of 1-byte chunks then
// costs about its length in memory, not a slice header and an allocation
// per byte. Coalescing buffers grow with the stream up to maxCoalesce.
const (
	coalesceBelow = 1024
	minCoalesce   = 256
	maxCoalesce   = 16 << 10
)

// maxSenders is how many senders an Assembler remembers. A sender with
// nothing under reassembly is only a memory of recently ended messages and
// of its decompression budget; when a new sender would exceed the count,
// those are forgotten first. Senders with messages under reassembly are
// bounded by MaxPartialTotal.
const maxSenders = 1024

// inflateWindow is the time in which a decompression budget refills from
// empty to full.
const inflateWindow = 10 * time.Second

// How many ended messages and streams each sender remembers, so that late
// packets of those are recognized rather than taken for new messages.
const (
	recentFrags   = 32
	recentStreams = 16
)

// Assembler turns received DataPackets into whole messages. It is safe for
// concurrent use; the reliable and lossy data channels may feed it from
// their own goroutines. Packets of one channel must be passed in the order
// they arrived.
//
// The zero Assembler is not usable; call NewAssembler.
type Assembler struct {
	cfg Config

	mu        sync.Mutex
	senders   map[senderKey]*sender
	partial   int // messages under reassembly
	buffered  int // bytes they hold
	lastSweep time.Time
	inflate   bucket // decompressed bytes all senders may still produce

	st recvStats
}

// recvStats are the Assembler's counters.
type recvStats struct {
	plain, fragments, reassembled, chunks, streams, aborted,
	dropped, malformed, limit, duplicates, ignored, bytes, compressed atomic.Uint64
}

// senderKey names a sender. The server stamps the session id of the
// sending participant on every packet and no participant can change it,
// so the sid alone names the sender when there is one: a participant that
// claims another's identity (LiveKit lets agents do that on text stream
// headers) still fills only its own slots and budgets. Packets without a
// sid (the server API's) are told apart by their identity.
type senderKey struct {
	sid, identity string
}

func keyOf(r *Received) senderKey {
	if r.SenderSID != "" {
		return senderKey{sid: r.SenderSID}
	}
	return senderKey{identity: r.SenderIdentity}
}

// sender holds the messages of one sender under reassembly.
type sender struct {
	// identity is the sender's identity as stamped on a packet whose
	// identity the server always overwrites, "" until one arrived.
	identity string
	known    bool

	lossy    map[uint32]*fragMsg
	streams  map[string]*streamMsg
	buffered int
	last     time.Time
	inflate  bucket // decompressed bytes this sender may still produce

	doneFrags   [recentFrags]doneFrag
	doneFragsAt int
	doneStreams [recentStreams]doneStream
	doneStrAt   int
}

type doneFrag struct {
	id        uint32
	set, full bool // full: delivered, rather than dropped
}

type doneStream struct {
	id   string
	full bool
}

// fragMsg is a lossy message under reassembly.
type fragMsg struct {
	id           uint32
	total, count int
	got, bytes   int
	seen         []uint64 // bitmap of the fragment indexes received
	parts        []fragPart
	base         Received
	last         time.Time
	held         int
}

type fragPart struct {
	index uint16
	data  []byte
}

// streamMsg is a data stream under reassembly.
type streamMsg struct {
	base        Received
	total       int // -1 when unknown
	compression string
	next        uint64 // expected chunk index
	// parts hold the content in order. The last part may be a coalescing
	// buffer that owns its array and has room for more.
	parts [][]byte
	tail  bool // the last part is a coalescing buffer
	bytes int
	last  time.Time
	held  int
}

// add appends content to the stream, coalescing it with its neighbours
// when it is small or pins a much larger buffer.
func (st *streamMsg) add(content []byte) {
	st.bytes += len(content)
	if len(content) >= coalesceBelow && cap(content) <= len(content)+len(content)/4 {
		st.parts = append(st.parts, content)
		st.tail = false
		return
	}
	if st.tail {
		last := &st.parts[len(st.parts)-1]
		if cap(*last)-len(*last) >= len(content) {
			*last = append(*last, content...)
			return
		}
	}
	n := max(len(content), min(max(minCoalesce, st.bytes), maxCoalesce))
	buf := make([]byte, 0, n)
	st.parts = append(st.parts, append(buf, content...))
	st.tail = true
}

// bucket is a budget of bytes that refills linearly, from empty to size in
// inflateWindow.
type bucket struct {
	avail int
	at    time.Time
	init  bool
}

// refill brings b up to date at now and returns what it holds.
func (b *bucket) refill(now time.Time, size int) int {
	if !b.init {
		b.avail, b.at, b.init = size, now, true
		return b.avail
	}
	if d := now.Sub(b.at); d > 0 {
		add := int64(size) * int64(min(d, inflateWindow)) / int64(inflateWindow)
		b.avail = int(min(int64(size), int64(b.avail)+add))
		b.at = now
	} else if d < 0 {
		b.at = now // the clock went back: start again from now
	}
	return b.avail
}

// NewAssembler returns an Assembler with the limits of cfg (zero fields take
// their defaults).
func NewAssembler(cfg Config) *Assembler {
	return &Assembler{cfg: cfg.withDefaults(), senders: make(map[senderKey]*sender)}
}

// pending is a message that is complete, to be put together outside the
// lock: from fragments, from chunks, or already in r.Payload when both are
// nil.
type pending struct {
	r           Received
	frags       []fragPart
	chunks      [][]byte
	size        int
	compression string
	total       int // of a compressed stream: its length decompressed, -1 for unknown
	// inflate is the decompressed size reserved from the budgets of s and
	// of the Assembler for a compressed stream; what decompression does
	// not use goes back.
	inflate int
	// inflateFree is the part of inflate not charged (see inflateFree).
	inflateFree int
	s           *sender
}

// Accept takes one received DataPacket and returns the message it
// completes, if any. now is the time of arrival; it drives the timeouts.
//
// Plain user packets come back at once; fragments and stream packets are
// held until their message is whole. Accept keeps references to pkt's byte
// slices, so the caller must not change pkt afterwards. Packets that carry
// no user packet or data stream are ignored and counted.
//
// Accept also drops timed-out messages now and then (see Expire), so that
// memory stays bounded even if Expire is never called.
func (a *Assembler) Accept(now time.Time, pkt *lkpb.DataPacket) (Received, bool) {
	a.mu.Lock()
	if now.Sub(a.lastSweep) >= time.Second || now.Before(a.lastSweep) {
		a.expire(now)
	}
	p, ok := a.accept(now, pkt)
	a.mu.Unlock()
	if !ok {
		return Received{}, false
	}
	return a.finish(&p)
}

// trusted reports whether the server has overwritten the sender identity
// stamped on pkt. LiveKit's server overwrites it on every packet except a
// text stream header from an agent that names another participant, which
// it passes on with TextHeader.generated set: the agent speaks on the named
// participant's behalf, as in transcriptions. A header with generated set
// is therefore not taken at its word, whoever sent it.
func trusted(pkt *lkpb.DataPacket) bool {
	return !pkt.GetStreamHeader().GetTextHeader().GetGenerated()
}

// accept does the work of Accept under the lock. It returns a complete
// message, still in parts.
func (a *Assembler) accept(now time.Time, pkt *lkpb.DataPacket) (pending, bool) {
	if pkt == nil {
		a.st.ignored.Add(1)
		return pending{}, false
	}
	base := Received{
		SenderIdentity: pkt.GetParticipantIdentity(),
		SenderSID:      pkt.GetParticipantSid(),
		Reliable:       pkt.GetKind() == lkpb.DataPacket_RELIABLE,
		Destinations:   pkt.GetDestinationIdentities(),
	}
	if u := pkt.GetUser(); u != nil {
		// The legacy fields, for packets from older servers.
		if base.SenderIdentity == "" {
			base.SenderIdentity = u.GetParticipantIdentity()
		}
		if base.SenderSID == "" {
			base.SenderSID = u.GetParticipantSid()
		}
		if len(base.Destinations) == 0 {
			base.Destinations = u.GetDestinationIdentities()
		}
	}
	if trusted(pkt) {
		if s := a.senders[keyOf(&base)]; s != nil {
			s.learn(base.SenderIdentity)
		}
	}
	switch v := pkt.GetValue().(type) {
	case *lkpb.DataPacket_User:
		u := v.User
		if u == nil {
			break
		}
		if u.GetTopic() == FragmentTopic {
			return a.acceptFragment(now, u, base)
		}
		if len(u.GetPayload()) > a.cfg.MaxMessageSize {
			a.st.limit.Add(1)
			return pending{}, false
		}
		base.Topic = u.GetTopic()
		base.Payload = u.GetPayload()
		base.Via = ViaPlain
		a.st.plain.Add(1)
		a.st.bytes.Add(uint64(len(base.Payload)))
		return pending{r: base}, true
	case *lkpb.DataPacket_StreamHeader:
		if v.StreamHeader != nil {
			return a.acceptHeader(now, v.StreamHeader, base, trusted(pkt))
		}
	case *lkpb.DataPacket_StreamChunk:
		if v.StreamChunk != nil {
			a.acceptChunk(now, v.StreamChunk, base)
			return pending{}, false
		}
	case *lkpb.DataPacket_StreamTrailer:
		if v.StreamTrailer != nil {
			return a.acceptTrailer(now, v.StreamTrailer, base)
		}
	}
	a.st.ignored.Add(1)
	return pending{}, false
}

// senderOf returns the state of the sender of base, creating it. trust
// says whether base.SenderIdentity is the server's word.
func (a *Assembler) senderOf(base *Received, trust bool, now time.Time) *sender {
	k := keyOf(base)
	s := a.senders[k]
	if s == nil {
		if len(a.senders) >= maxSenders {
			a.forgetIdle()
		}
		s = &sender{lossy: make(map[uint32]*fragMsg), streams: make(map[string]*streamMsg)}
		a.senders[k] = s
	}
	if trust {
		s.learn(base.SenderIdentity)
	}
	s.last = now
	return s
}

// learn records the identity the server stamped for s.
func (s *sender) learn(identity string) {
	s.identity, s.known = identity, true
}

// forgetIdle forgets the senders with nothing under reassembly.
func (a *Assembler) forgetIdle() {
	for k, s := range a.senders {
		if len(s.lossy) == 0 && len(s.streams) == 0 {
			delete(a.senders, k)
		}
	}
}

// sender returns the state of the sender of base, nil when there is none.
func (a *Assembler) sender(base *Received) *sender {
	return a.senders[keyOf(base)]
}

// reserve charges n bytes to s and to the total, unless that would exceed
// a limit.
func (a *Assembler) reserve(s *sender, n int) bool {
	if s.buffered+n > a.cfg.MaxBufferedPerSender || a.buffered+n > a.cfg.MaxBufferedTotal {
		return false
	}
	s.buffered += n
	a.buffered += n
	return true
}

// release gives back n bytes charged to s.
func (a *Assembler) release(s *sender, n int) {
	s.buffered -= n
	a.buffered -= n
}

// fragDone reports whether message id of s ended recently, and whether it
// was delivered.
func (s *sender) fragDone(id uint32) (found, full bool) {
	for _, d := range s.doneFrags {
		if d.set && d.id == id {
			return true, d.full
		}
	}
	return false, false
}

func (s *sender) markFrag(id uint32, full bool) {
	s.doneFrags[s.doneFragsAt] = doneFrag{id: id, set: true, full: full}
	s.doneFragsAt = (s.doneFragsAt + 1) % recentFrags
}

// streamDone reports whether stream id of s ended recently, and whether it
// was delivered.
func (s *sender) streamDone(id string) (found, full bool) {
	for _, d := range s.doneStreams {
		if d.id == id && id != "" {
			return true, d.full
		}
	}
	return false, false
}

func (s *sender) markStream(id string, full bool) {
	s.doneStreams[s.doneStrAt] = doneStream{id: id, full: full}
	s.doneStrAt = (s.doneStrAt + 1) % recentStreams
}

// acceptFragment handles a UserPacket on FragmentTopic.
func (a *Assembler) acceptFragment(now time.Time, u *lkpb.UserPacket, base Received) (pending, bool) {
	a.st.fragments.Add(1)
	h, data, err := ParseFragment(u.GetPayload())
	if err != nil {
		a.st.malformed.Add(1)
		return pending{}, false
	}
	if int64(h.Total) > int64(a.cfg.MaxMessageSize) {
		a.st.limit.Add(1)
		return pending{}, false
	}
	s := a.senderOf(&base, true, now)
	if found, full := s.fragDone(h.MessageID); found {
		if full {
			a.st.duplicates.Add(1)
		} else {
			a.st.ignored.Add(1)
		}
		return pending{}, false
	}
	base.Via = ViaFragments
	m := s.lossy[h.MessageID]
	if m == nil {
		if h.Count == 1 {
			if len(data) != int(h.Total) {
				a.st.malformed.Add(1)
				return pending{}, false
			}
			s.markFrag(h.MessageID, true)
			base.Topic = h.Topic
			base.Payload = data
			return pending{r: base}, true
		}
		if len(s.lossy) >= a.cfg.MaxLossyPerSender {
			var oldest *fragMsg
			for _, o := range s.lossy {
				if oldest == nil || o.last.Before(oldest.last) {
					oldest = o
				}
			}
			a.dropFrag(s, oldest, false)
			a.st.dropped.Add(1)
		}
		if a.partial >= a.cfg.MaxPartialTotal {
			a.st.limit.Add(1)
			return pending{}, false
		}
		words := (int(h.Count) + 63) / 64
		fixed := partialOverhead + 8*words
		if !a.reserve(s, fixed) {
			a.st.limit.Add(1)
			s.markFrag(h.MessageID, false)
			return pending{}, false
		}
		m = &fragMsg{
			id:    h.MessageID,
			total: int(h.Total),
			count: int(h.Count),
			seen:  make([]uint64, words),
			base:  base,
			held:  fixed,
		}
		s.lossy[h.MessageID] = m
		a.partial++
	} else if m.total != int(h.Total) || m.count != int(h.Count) {
		a.st.malformed.Add(1)
		return pending{}, false
	}
	m.last = now
	word, bit := h.Index/64, uint64(1)<<(h.Index%64)
	if m.seen[word]&bit != 0 {
		a.st.duplicates.Add(1)
		return pending{}, false
	}
	// Each fragment still missing after this one needs a byte at least.
	missing := m.count - m.got - 1
	if m.bytes+len(data)+missing > m.total || (missing == 0 && m.bytes+len(data) != m.total) {
		a.st.malformed.Add(1)
		a.dropFrag(s, m, false)
		return pending{}, false
	}
	cost, compact := retention(data, cap(u.GetPayload()))
	if !a.reserve(s, cost) {
		a.st.limit.Add(1)
		a.dropFrag(s, m, false)
		return pending{}, false
	}
	if compact {
		data = slices.Clone(data)
	}
	m.held += cost
	m.seen[word] |= bit
	m.parts = append(m.parts, fragPart{index: h.Index, data: data})
	m.got++
	m.bytes += len(data)
	if h.Index == 0 {
		m.base.Topic = h.Topic
	}
	if m.got < m.count {
		return pending{}, false
	}
	a.dropFrag(s, m, true)
	return pending{r: m.base, frags: m.parts, size: m.bytes}, true
}

// retention returns the memory to charge for keeping b, a fragment or chunk
// whose backing array holds pinned bytes from where the packet's field
// starts, and whether to keep a copy of b instead: when b is a small part of
// a larger buffer, a copy frees the rest.
func retention(b []byte, pinned int) (cost int, compact bool) {
	if pinned > len(b)+len(b)/4+partOverhead {
		return len(b) + partOverhead, true
	}
	return pinned + partOverhead, false
}

// dropFrag ends lossy message m of s, delivered (full) or not.
func (a *Assembler) dropFrag(s *sender, m *fragMsg, full bool) {
	delete(s.lossy, m.id)
	a.partial--
	a.release(s, m.held)
	s.markFrag(m.id, full)
}

// dropStream ends stream st of s, delivered (full) or not.
func (a *Assembler) dropStream(s *sender, st *streamMsg, full bool) {
	delete(s.streams, st.base.StreamID)
	a.partial--
	a.release(s, st.held)
	s.markStream(st.base.StreamID, full)
}

// finish puts a complete message together and counts it.
func (a *Assembler) finish(p *pending) (Received, bool) {
	r := p.r
	switch {
	case p.frags != nil:
		slices.SortFunc(p.frags, func(x, y fragPart) int { return int(x.index) - int(y.index) })
		r.Payload = make([]byte, 0, p.size)
		for _, f := range p.frags {
			r.Payload = append(r.Payload, f.data...)
		}
	case p.compression != "":
		out, err := decompress(p.chunks, p.compression, p.inflate)
		// The bytes produced were paid for; the rest of the reservation
		// goes back.
		a.mu.Lock()
		back := max(p.inflate-p.inflateFree, 0) - max(min(len(out), p.inflate)-p.inflateFree, 0)
		p.s.inflate.avail += back
		a.inflate.avail += back
		a.mu.Unlock()
		if err == nil && p.total >= 0 && len(out) != p.total {
			err = errCompressedLength
		}
		if err != nil {
			if err == errTooLarge {
				a.st.limit.Add(1)
			} else {
				a.st.malformed.Add(1)
			}
			return Received{}, false
		}
		r.Payload = out
		r.Compressed = true
	case p.chunks == nil:
	case len(p.chunks) == 1:
		r.Payload = p.chunks[0]
	default:
		r.Payload = make([]byte, 0, p.size)
		for _, c := range p.chunks {
			r.Payload = append(r.Payload, c...)
		}
	}
	if r.Text && !utf8.Valid(r.Payload) {
		// A text stream must be UTF-8 (livekit-client decodes it as
		// such); one that is not is not delivered as text.
		a.st.malformed.Add(1)
		return Received{}, false
	}
	switch r.Via {
	case ViaFragments:
		a.st.reassembled.Add(1)
		a.st.bytes.Add(uint64(len(r.Payload)))
	case ViaStream:
		a.st.streams.Add(1)
		a.st.bytes.Add(uint64(len(r.Payload)))
		if r.Compressed {
			a.st.compressed.Add(1)
		}
	}
	return r, true
}

// Expire drops the messages under reassembly that have waited too long for
// their next packet (Config.LossyTimeout for fragments, StreamTimeout for
// streams) and returns how many it dropped. Call it from a timer, about
// once a second.
func (a *Assembler) Expire(now time.Time) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.expire(now)
}

func (a *Assembler) expire(now time.Time) int {
	a.lastSweep = now
	n := 0
	for id, s := range a.senders {
		for _, m := range s.lossy {
			if now.Sub(m.last) >= a.cfg.LossyTimeout {
				a.dropFrag(s, m, false)
				n++
			}
		}
		for _, st := range s.streams {
			if now.Sub(st.last) >= a.cfg.StreamTimeout {
				a.dropStream(s, st, false)
				n++
			}
		}
		if len(s.lossy) == 0 && len(s.streams) == 0 && now.Sub(s.last) >= a.cfg.StreamTimeout {
			delete(a.senders, id)
		}
	}
	a.st.dropped.Add(uint64(n))
	return n
}

// Forget drops every message under reassembly from the sender with the
// identity, and everything remembered about it. Call it when the
// participant leaves. The identity is matched against what the server
// stamped on the sender's packets, so no other participant's claim makes
// Forget drop its messages, nor keeps them from being dropped.
func (a *Assembler) Forget(identity string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for k, s := range a.senders {
		if !(k.sid == "" && k.identity == identity) && !(k.sid != "" && s.known && s.identity == identity) {
			continue
		}
		n += len(s.lossy) + len(s.streams)
		for _, m := range s.lossy {
			a.dropFrag(s, m, false)
		}
		for _, st := range s.streams {
			a.dropStream(s, st, false)
		}
		delete(a.senders, k)
	}
	a.st.dropped.Add(uint64(n))
}

// Stats returns the Assembler's counters; the send fields are zero.
func (a *Assembler) Stats() Stats {
	a.mu.Lock()
	partial, buffered := a.partial, a.buffered
	a.mu.Unlock()
	return Stats{
		PlainReceived:       a.st.plain.Load(),
		FragmentsReceived:   a.st.fragments.Load(),
		MessagesReassembled: a.st.reassembled.Load(),
		ChunksReceived:      a.st.chunks.Load(),
		StreamsReceived:     a.st.streams.Load(),
		StreamsAborted:      a.st.aborted.Load(),
		CompressedReceived:  a.st.compressed.Load(),
		DroppedIncomplete:   a.st.dropped.Load(),
		RejectedMalformed:   a.st.malformed.Load(),
		RejectedLimit:       a.st.limit.Load(),
		Duplicates:          a.st.duplicates.Load(),
		Ignored:             a.st.ignored.Load(),
		BytesReceived:       a.st.bytes.Load(),
		Partial:             partial,
		Buffered:            buffered,
	}
}

// cloneAttributes returns attrs without the reserved attributes that
// describe the transport of a stream, nil when nothing is left.
func cloneAttributes(attrs map[string]string) map[string]string {
	if len(attrs) == 0 {
		return nil
	}
	c := maps.Clone(attrs)
	delete(c, attrInlinePayload)
	delete(c, attrCompression)
	if len(c) == 0 {
		return nil
	}
	return c
}
