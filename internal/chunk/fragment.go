package chunk

import (
	"encoding/binary"
	"errors"
	"math"
	"unicode/utf8"
)

// FragmentTopic is the topic of the UserPackets that carry fragments of
// lossy messages. Messages may not be sent on it.
const FragmentTopic = "_callstate.frag"

// FragmentVersion is the version of the fragment format this package writes
// and reads.
const FragmentVersion = 1

const (
	// fragmentHeaderLen is the length of the fixed part of a fragment
	// header.
	fragmentHeaderLen = 13
	// maxFragments is the largest fragment count the format can express.
	maxFragments = math.MaxUint16
	// maxTopicLen is the longest topic a first fragment can carry.
	maxTopicLen = math.MaxUint16
)

// Errors returned by ParseFragment.
var (
	errFragmentShort   = errors.New("callstate: fragment header truncated")
	errFragmentVersion = errors.New("callstate: unknown fragment version")
	errFragmentCount   = errors.New("callstate: fragment index or count out of range")
	errFragmentEmpty   = errors.New("callstate: empty fragment of a non-empty message")
	errFragmentLength  = errors.New("callstate: fragment longer than its message")
	errFragmentTopic   = errors.New("callstate: fragment topic is not valid UTF-8")
)

// FragmentHeader is the header at the start of a fragment's payload. See the
// package documentation for its encoding.
type FragmentHeader struct {
	// MessageID identifies the message among the sender's messages.
	MessageID uint32
	// Total is the length of the whole message payload in bytes.
	Total uint32
	// Index is the fragment's position, from 0.
	Index uint16
	// Count is the number of fragments of the message, at least 1.
	Count uint16
	// Topic is the message topic. Only fragment 0 carries it; in the others
	// it is empty.
	Topic string
}

// headerLen returns the encoded length of h.
func (h *FragmentHeader) headerLen() int {
	if h.Index == 0 {
		return fragmentHeaderLen + 2 + len(h.Topic)
	}
	return fragmentHeaderLen
}

// AppendFragmentHeader appends the encoding of h to dst and returns the
// extended slice. The topic is written only for fragment 0 and must be at
// most 65535 bytes long.
func AppendFragmentHeader(dst []byte, h *FragmentHeader) []byte {
	dst = append(dst, FragmentVersion)
	dst = binary.BigEndian.AppendUint32(dst, h.MessageID)
	dst = binary.BigEndian.AppendUint32(dst, h.Total)
	dst = binary.BigEndian.AppendUint16(dst, h.Index)
	dst = binary.BigEndian.AppendUint16(dst, h.Count)
	if h.Index == 0 {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(h.Topic)))
		dst = append(dst, h.Topic...)
	}
	return dst
}

// ParseFragment parses the payload of a UserPacket on FragmentTopic. It
// returns the header and the fragment's slice of the message payload, which
// aliases p. It checks that the header is well formed and consistent with
// itself (version, index below count, a count the total length allows, a
// non-empty slice); checks against limits and other fragments are the
// Assembler's.
func ParseFragment(p []byte) (FragmentHeader, []byte, error) {
	var h FragmentHeader
	if len(p) < 1 {
		return h, nil, errFragmentShort
	}
	if p[0] != FragmentVersion {
		return h, nil, errFragmentVersion
	}
	if len(p) < fragmentHeaderLen {
		return h, nil, errFragmentShort
	}
	h.MessageID = binary.BigEndian.Uint32(p[1:])
	h.Total = binary.BigEndian.Uint32(p[5:])
	h.Index = binary.BigEndian.Uint16(p[9:])
	h.Count = binary.BigEndian.Uint16(p[11:])
	p = p[fragmentHeaderLen:]
	if h.Count == 0 || h.Index >= h.Count {
		return h, nil, errFragmentCount
	}
	// Every fragment but those of an empty message carries a byte at least,
	// so a message cannot have more fragments than bytes.
	if uint32(h.Count) > max(h.Total, 1) {
		return h, nil, errFragmentCount
	}
	if h.Index == 0 {
		if len(p) < 2 {
			return h, nil, errFragmentShort
		}
		n := int(binary.BigEndian.Uint16(p))
		p = p[2:]
		if len(p) < n {
			return h, nil, errFragmentShort
		}
		if !utf8.Valid(p[:n]) {
			return h, nil, errFragmentTopic
		}
		h.Topic = string(p[:n])
		p = p[n:]
	}
	if len(p) == 0 && h.Total > 0 {
		return h, nil, errFragmentEmpty
	}
	if uint64(len(p)) > uint64(h.Total) {
		return h, nil, errFragmentLength
	}
	return h, p, nil
}
