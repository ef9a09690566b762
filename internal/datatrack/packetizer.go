package datatrack

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// DefaultMaxPacket is the largest packet a Packetizer writes unless told
// otherwise: what fits one network packet after DTLS, SCTP and IP headers,
// the promise the rest of callstate's lossy data keeps.
const DefaultMaxPacket = 1400

// MaxPacketLimit is the largest packet size a Packetizer accepts: LiveKit's
// own clients write packets of up to 16,000 bytes (SCTP fragments them).
const MaxPacketLimit = 16000

// MaxPacketsPerFrame is the most packets a frame may be cut into:
// livekit-client (2.23) drops a frame whose reassembly holds more than 128
// packets, so a longer frame would never reach a browser.
const MaxPacketsPerFrame = 128

// ClockRate is the packet timestamp's rate.
const ClockRate = 90000

// ErrPacketSize is returned by NewPacketizer for a packet size out of range.
var ErrPacketSize = errors.New("datatrack: packet size out of range")

// FrameSizeError is returned for a frame that does not fit
// MaxPacketsPerFrame packets.
type FrameSizeError struct {
	Size, Limit int
}

func (e *FrameSizeError) Error() string {
	return fmt.Sprintf("datatrack: frame of %d bytes over the limit of %d bytes", e.Size, e.Limit)
}

// FrameOptions are a frame's extensions.
type FrameOptions struct {
	UserTimestamp    uint64
	HasUserTimestamp bool
	E2EE             *E2EE
}

// Packetizer cuts the frames of one track into packets. It is not safe for
// concurrent use.
type Packetizer struct {
	handle    uint16
	maxPacket int
	seq       uint16
	frame     uint16
	base      uint32 // random, as RTP timestamps start
	start     time.Time
	buf       []byte
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewPacketizer returns a packetizer for the track with the given handle
// whose packets are at most maxPacket bytes (0 for DefaultMaxPacket).
func NewPacketizer(handle uint16, maxPacket int) (*Packetizer, error) {
	if maxPacket == 0 {
		maxPacket = DefaultMaxPacket
	}
	if maxPacket < HeaderSize+32 || maxPacket > MaxPacketLimit {
		return nil, fmt.Errorf("%w: %d (want %d to %d)", ErrPacketSize, maxPacket, HeaderSize+32, MaxPacketLimit)
	}
	if handle == 0 {
		return nil, ErrHandle
	}
	return &Packetizer{handle: handle, maxPacket: maxPacket, base: rand.Uint32(), start: time.Now()}, nil
}

// MaxPacket is the packet size limit.
func (p *Packetizer) MaxPacket() int { return p.maxPacket }

// MaxFrame is the largest frame with these options that fits.
func (p *Packetizer) MaxFrame(o FrameOptions) int {
	return MaxPacketsPerFrame * (p.maxPacket - p.header(o).Len())
}

func (p *Packetizer) header(o FrameOptions) Header {
	return Header{Handle: p.handle, UserTimestamp: o.UserTimestamp, HasUserTimestamp: o.HasUserTimestamp, E2EE: o.E2EE}
}

// Packets returns how many packets a frame of n bytes with these options
// takes, or a *FrameSizeError.
func (p *Packetizer) Packets(n int, o FrameOptions) (int, error) {
	per := p.maxPacket - p.header(o).Len()
	count := max(1, (n+per-1)/per)
	if count > MaxPacketsPerFrame {
		return 0, &FrameSizeError{Size: n, Limit: MaxPacketsPerFrame * per}
	}
	return count, nil
}

// Packetize cuts frame into packets and hands each to emit, in order, in a
// buffer that is reused after emit returns. An empty frame is one packet
// with no payload. The frame number and sequence numbers are used even when
// emit fails, so that a receiver never merges two frames. It returns a
// *FrameSizeError, before emitting anything, for a frame too large.
func (p *Packetizer) Packetize(frame []byte, o FrameOptions, emit func(pkt []byte) error) error {
	count, err := p.Packets(len(frame), o)
	if err != nil {
		return err
	}
	h := p.header(o)
	per := p.maxPacket - h.Len()
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	h.Frame = p.frame
	p.frame++
	h.Timestamp = p.base + uint32(now().Sub(p.start)*ClockRate/time.Second)
	first := p.seq
	p.seq += uint16(count)
	for i := range count {
		h.Start, h.Final = i == 0, i == count-1
		h.Sequence = first + uint16(i)
		end := min(len(frame), (i+1)*per)
		p.buf = h.Append(p.buf[:0], frame[i*per:end])
		if err := emit(p.buf); err != nil {
			return err
		}
	}
	return nil
}
