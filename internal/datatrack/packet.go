// Package datatrack is LiveKit's data track packet format: the packetizer
// that cuts a frame into packets and the depacketizer that puts frames back
// together. It is pure: no WebRTC, no clock of its own beyond what the
// caller gives it.
//
// A packet is a 12-byte header, optional extensions, then payload:
//
//	byte 0:    version (3 bits, 0), start of frame, final of frame,
//	           extensions flag, 2 reserved bits
//	byte 1:    reserved
//	bytes 2-3: track handle (big endian; the publisher's, rewritten by the
//	           server to the subscriber's on the way)
//	bytes 4-5: sequence number, one per packet of the track
//	bytes 6-7: frame number, one per frame
//	bytes 8-11: timestamp, 90 kHz
//
// With the extensions flag, a 16-bit word count w follows; (w+1)*4 bytes,
// counted from the word count itself, hold the extensions: items of a 1-byte
// id, a 1-byte length and the value, padded with zeros to the 4-byte
// boundary. Id 1 is E2EE (key index + 12-byte IV), id 2 the user timestamp
// (u64). Unknown items are skipped, as LiveKit's clients do.
package datatrack

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HeaderSize is the fixed part of a packet's header.
const HeaderSize = 12

// Version is the only packet version this package reads and writes.
const Version = 0

// Extension ids.
const (
	ExtE2EE          = 1
	ExtUserTimestamp = 2
)

// IVSize is the length of the E2EE extension's initialisation vector.
const IVSize = 12

const (
	flagStart = 1 << 4
	flagFinal = 1 << 3
	flagExt   = 1 << 2
)

// Errors of Parse. They match with errors.Is.
var (
	ErrShort     = errors.New("datatrack: packet shorter than its header")
	ErrVersion   = errors.New("datatrack: unsupported packet version")
	ErrExtension = errors.New("datatrack: malformed extensions")
	ErrHandle    = errors.New("datatrack: handle 0 is reserved")
)

// E2EE is the E2EE extension: the frame's payload is encrypted.
type E2EE struct {
	KeyIndex uint8
	IV       [IVSize]byte
}

// Header is a packet's header with its extensions.
type Header struct {
	Start, Final bool
	Handle       uint16
	Sequence     uint16
	Frame        uint16
	Timestamp    uint32
	// UserTimestamp is the user timestamp extension, when HasUserTimestamp.
	UserTimestamp    uint64
	HasUserTimestamp bool
	// E2EE is the E2EE extension, or nil.
	E2EE *E2EE
}

// extLen is the length of the extension items, before padding.
func (h Header) extLen() int {
	n := 0
	if h.E2EE != nil {
		n += 2 + 1 + IVSize
	}
	if h.HasUserTimestamp {
		n += 2 + 8
	}
	return n
}

// Len is the encoded length of the header.
func (h Header) Len() int {
	e := h.extLen()
	if e == 0 {
		return HeaderSize
	}
	return HeaderSize + (2+e+3)/4*4
}

// Append appends the header followed by payload to dst.
func (h *Header) Append(dst, payload []byte) []byte {
	var b [HeaderSize]byte
	b[0] = Version << 5
	if h.Start {
		b[0] |= flagStart
	}
	if h.Final {
		b[0] |= flagFinal
	}
	e := h.extLen()
	if e > 0 {
		b[0] |= flagExt
	}
	binary.BigEndian.PutUint16(b[2:], h.Handle)
	binary.BigEndian.PutUint16(b[4:], h.Sequence)
	binary.BigEndian.PutUint16(b[6:], h.Frame)
	binary.BigEndian.PutUint32(b[8:], h.Timestamp)
	dst = append(dst, b[:]...)
	if e > 0 {
		words := (2 + e + 3) / 4
		dst = binary.BigEndian.AppendUint16(dst, uint16(words-1))
		// E2EE first, as LiveKit's clients write it.
		if h.E2EE != nil {
			dst = append(dst, ExtE2EE, 1+IVSize, h.E2EE.KeyIndex)
			dst = append(dst, h.E2EE.IV[:]...)
		}
		if h.HasUserTimestamp {
			dst = append(dst, ExtUserTimestamp, 8)
			dst = binary.BigEndian.AppendUint64(dst, h.UserTimestamp)
		}
		for range words*4 - 2 - e {
			dst = append(dst, 0)
		}
	}
	return append(dst, payload...)
}

// Parse reads a packet. The payload aliases b.
func Parse(b []byte) (Header, []byte, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, nil, fmt.Errorf("%w: %d bytes", ErrShort, len(b))
	}
	if v := b[0] >> 5; v != Version {
		return h, nil, fmt.Errorf("%w: %d", ErrVersion, v)
	}
	h.Start = b[0]&flagStart != 0
	h.Final = b[0]&flagFinal != 0
	h.Handle = binary.BigEndian.Uint16(b[2:])
	h.Sequence = binary.BigEndian.Uint16(b[4:])
	h.Frame = binary.BigEndian.Uint16(b[6:])
	h.Timestamp = binary.BigEndian.Uint32(b[8:])
	if h.Handle == 0 {
		return h, nil, ErrHandle
	}
	if b[0]&flagExt == 0 {
		return h, b[HeaderSize:], nil
	}
	if len(b) < HeaderSize+2 {
		return h, nil, fmt.Errorf("%w: no extension length", ErrExtension)
	}
	end := HeaderSize + (int(binary.BigEndian.Uint16(b[HeaderSize:]))+1)*4
	if end > len(b) {
		return h, nil, fmt.Errorf("%w: extensions run past the packet", ErrExtension)
	}
	ext := b[HeaderSize+2 : end]
	for len(ext) >= 2 {
		id, n := ext[0], int(ext[1])
		ext = ext[2:]
		if id == 0 {
			// Padding: LiveKit's clients skip a zero id and its length
			// byte; the rest is zeros too.
			continue
		}
		if n > len(ext) {
			return h, nil, fmt.Errorf("%w: extension %d longer than its block", ErrExtension, id)
		}
		v := ext[:n]
		ext = ext[n:]
		switch id {
		case ExtE2EE:
			if n < 1+IVSize {
				return h, nil, fmt.Errorf("%w: E2EE extension of %d bytes", ErrExtension, n)
			}
			e := &E2EE{KeyIndex: v[0]}
			copy(e.IV[:], v[1:1+IVSize])
			h.E2EE = e
		case ExtUserTimestamp:
			if n < 8 {
				return h, nil, fmt.Errorf("%w: user timestamp of %d bytes", ErrExtension, n)
			}
			h.UserTimestamp, h.HasUserTimestamp = binary.BigEndian.Uint64(v), true
		}
	}
	return h, b[end:], nil
}
