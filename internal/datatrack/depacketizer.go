package datatrack

// Frame is a reassembled frame.
type Frame struct {
	Payload []byte
	// Number is the frame number; Timestamp the 90 kHz packet timestamp.
	Number    uint16
	Timestamp uint32
	// UserTimestamp is the publisher's user timestamp, when
	// HasUserTimestamp.
	UserTimestamp    uint64
	HasUserTimestamp bool
	// E2EE is set when the payload is encrypted.
	E2EE *E2EE
}

// Limits bound a Depacketizer's memory.
type Limits struct {
	// MaxFrame is the largest frame, in payload bytes, that is
	// reassembled; a larger one is dropped. 0 means DefaultMaxFrame.
	MaxFrame int
	// MaxPartials is how many frames may be incomplete at once; when a
	// packet of one more arrives, the oldest is dropped. 0 means
	// DefaultMaxPartials.
	MaxPartials int
}

// Defaults of Limits. Four partial frames let packets of consecutive
// frames cross on the unordered channel without a frame being dropped;
// livekit-client keeps one.
const (
	DefaultMaxFrame    = 4 << 20
	DefaultMaxPartials = 4
	// maxPieces bounds one partial frame's packets, whatever their size:
	// LiveKit's packets are 16,000 bytes at most, so a frame of
	// DefaultMaxFrame needs about 270.
	maxPieces = 4096
	// recentDone remembers frames just completed or dropped, so that a
	// late or duplicated packet of one does not open a partial frame that
	// would be counted as dropped.
	recentDone = 16
)

// DepacketizerStats counts what a Depacketizer did.
type DepacketizerStats struct {
	// Frames is the frames delivered.
	Frames uint64
	// Dropped is the frames dropped incomplete: a packet was lost, or the
	// frame was over MaxFrame, or more than MaxPartials frames were
	// incomplete at once.
	Dropped uint64
	// Malformed is the packets that could not be parsed.
	Malformed uint64
	// Late is the packets of frames already delivered or dropped.
	Late uint64
}

type partial struct {
	number    uint16
	haveStart bool
	startSeq  uint16
	haveFinal bool
	finalSeq  uint16
	bytes     int
	pieces    map[uint16][]byte
	hdr       Header // of the start packet, or the first seen
	tooLarge  bool
}

// Depacketizer reassembles the frames of one track. A frame is delivered
// whole, once all of its packets (in any order) have arrived, or dropped
// whole. It is not safe for concurrent use.
type Depacketizer struct {
	lim      Limits
	partials []*partial // oldest first
	done     [recentDone]uint16
	nDone    int
	stats    DepacketizerStats
}

// NewDepacketizer returns a depacketizer with these limits.
func NewDepacketizer(lim Limits) *Depacketizer {
	if lim.MaxFrame <= 0 {
		lim.MaxFrame = DefaultMaxFrame
	}
	if lim.MaxPartials <= 0 {
		lim.MaxPartials = DefaultMaxPartials
	}
	// expire compares frame numbers in 16-bit serial order.
	lim.MaxPartials = min(lim.MaxPartials, 1024)
	return &Depacketizer{lim: lim}
}

// Stats returns the counters.
func (d *Depacketizer) Stats() DepacketizerStats { return d.stats }

// Reset drops the partial frames without counting them (the track was
// resubscribed, or its publisher restarted).
func (d *Depacketizer) Reset() {
	d.partials = nil
	d.nDone = 0
}

func (d *Depacketizer) isDone(n uint16) bool {
	for i := range min(d.nDone, recentDone) {
		if d.done[i] == n {
			return true
		}
	}
	return false
}

func (d *Depacketizer) markDone(n uint16) {
	d.done[d.nDone%recentDone] = n
	d.nDone++
	if d.nDone >= 2*recentDone {
		d.nDone -= recentDone
	}
}

// Push adds a packet. It returns a frame when the packet completed one.
// The frame's payload is a new buffer, except for a single-packet frame,
// whose payload aliases pkt. A packet that cannot be parsed is counted and
// its error returned.
func (d *Depacketizer) Push(pkt []byte) (Frame, bool, error) {
	h, payload, err := Parse(pkt)
	if err != nil {
		d.stats.Malformed++
		return Frame{}, false, err
	}
	if d.isDone(h.Frame) {
		d.stats.Late++
		return Frame{}, false, nil
	}
	d.expire(h.Frame)
	if h.Start && h.Final {
		if len(payload) > d.lim.MaxFrame {
			d.stats.Dropped++
			d.markDone(h.Frame)
			return Frame{}, false, nil
		}
		d.markDone(h.Frame)
		d.stats.Frames++
		return frameOf(&h, payload), true, nil
	}
	p := d.find(h.Frame)
	if p == nil {
		p = &partial{number: h.Frame, pieces: map[uint16][]byte{}, hdr: h}
		if len(d.partials) >= d.lim.MaxPartials {
			d.drop(0)
		}
		d.partials = append(d.partials, p)
	}
	if _, dup := p.pieces[h.Sequence]; dup {
		d.stats.Late++
		return Frame{}, false, nil
	}
	switch {
	case p.tooLarge:
	case p.bytes+len(payload) > d.lim.MaxFrame, len(p.pieces) >= maxPieces:
		// Keep the partial, empty, until the frame ends, so that its
		// other packets are not taken for a new frame.
		p.tooLarge = true
		p.pieces = map[uint16][]byte{}
	default:
		p.pieces[h.Sequence] = payload
		p.bytes += len(payload)
	}
	if h.Start {
		p.haveStart, p.startSeq, p.hdr = true, h.Sequence, h
	}
	if h.Final {
		p.haveFinal, p.finalSeq = true, h.Sequence
	}
	if !p.haveStart || !p.haveFinal {
		return Frame{}, false, nil
	}
	want := int(p.finalSeq-p.startSeq) + 1
	if p.tooLarge {
		d.drop(d.index(p))
		return Frame{}, false, nil
	}
	if len(p.pieces) < want {
		return Frame{}, false, nil
	}
	// Every sequence number from start to final is present (pieces holds
	// only distinct ones, and no more than want of them can lie in the
	// range... unless some lie outside it, which a broken sender causes).
	buf := make([]byte, 0, p.bytes)
	for i := range want {
		b, ok := p.pieces[p.startSeq+uint16(i)]
		if !ok {
			d.drop(d.index(p))
			return Frame{}, false, nil
		}
		buf = append(buf, b...)
	}
	d.remove(d.index(p))
	d.markDone(p.number)
	d.stats.Frames++
	return frameOf(&p.hdr, buf), true, nil
}

func frameOf(h *Header, payload []byte) Frame {
	return Frame{
		Payload: payload, Number: h.Frame, Timestamp: h.Timestamp,
		UserTimestamp: h.UserTimestamp, HasUserTimestamp: h.HasUserTimestamp, E2EE: h.E2EE,
	}
}

func (d *Depacketizer) find(n uint16) *partial {
	for _, p := range d.partials {
		if p.number == n {
			return p
		}
	}
	return nil
}

func (d *Depacketizer) index(p *partial) int {
	for i, q := range d.partials {
		if q == p {
			return i
		}
	}
	return -1
}

// expire drops the partial frames that frame n has left MaxPartials
// frames or more behind (in 16-bit serial order): their missing packets
// are lost, not late. Without it, a frame missing a packet would wait for
// MaxPartials more multi-packet frames.
func (d *Depacketizer) expire(n uint16) {
	for i := 0; i < len(d.partials); {
		if age := int16(n - d.partials[i].number); age >= int16(d.lim.MaxPartials) {
			d.drop(i)
			continue
		}
		i++
	}
}

// drop drops the partial frame at i, counting it.
func (d *Depacketizer) drop(i int) {
	d.stats.Dropped++
	d.markDone(d.partials[i].number)
	d.remove(i)
}

func (d *Depacketizer) remove(i int) {
	copy(d.partials[i:], d.partials[i+1:])
	d.partials[len(d.partials)-1] = nil
	d.partials = d.partials[:len(d.partials)-1]
}

// Partials is how many frames are incomplete.
func (d *Depacketizer) Partials() int { return len(d.partials) }
