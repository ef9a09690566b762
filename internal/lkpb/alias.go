package lkpb

import (
	"errors"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// UnmarshalDataPacketAliased decodes b into p as proto.Unmarshal does,
// except that the bytes fields of the packets that carry payloads (a
// UserPacket's payload and nonce, a stream chunk's content) are slices of
// b, not copies of it: p keeps b alive, and b must not change afterwards.
//
// protobuf-go always copies bytes fields and has no option to alias them;
// on the receive path that copy is the second one of every payload (pion
// already copied the SCTP message into a buffer of its own for the
// message). The packets this decodes by hand are the hot ones (user packets
// and stream chunks, with LiveKit's fields); anything else (stream headers
// and trailers, unknown or repeated fields, unexpected wire types) goes to
// proto.Unmarshal, so the result and the errors are always those of
// proto.Unmarshal.
func UnmarshalDataPacketAliased(b []byte, p *DataPacket) error {
	p.Reset()
	if fastDataPacket(b, p) {
		return nil
	}
	p.Reset()
	return proto.Unmarshal(b, p)
}

// errSlow stops the fast path: the input needs proto.Unmarshal.
var errSlow = errors.New("lkpb: slow path")

// fastDataPacket decodes b into p if it takes only what the fast path
// knows, and reports whether it did.
func fastDataPacket(b []byte, p *DataPacket) bool {
	var seen uint32 // bit per field number < 32, to refuse repeats
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num >= 32 {
			return false
		}
		b = b[n:]
		if num != 5 { // destination_identities repeats by design
			if seen&(1<<num) != 0 {
				return false
			}
			seen |= 1 << num
		}
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			p.Kind = DataPacket_Kind(int32(v))
			b = b[n:]
		case num == 16 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			p.Sequence = uint32(v)
			b = b[n:]
		case typ != protowire.BytesType:
			return false
		default:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return false
			}
			b = b[n:]
			switch num {
			case 4:
				s, ok := str(v)
				if !ok {
					return false
				}
				p.ParticipantIdentity = s
			case 5:
				s, ok := str(v)
				if !ok {
					return false
				}
				p.DestinationIdentities = append(p.DestinationIdentities, s)
			case 17:
				s, ok := str(v)
				if !ok {
					return false
				}
				p.ParticipantSid = s
			case 2:
				if p.Value != nil {
					return false // another oneof member came first
				}
				u := &UserPacket{}
				if fastUserPacket(v, u) != nil {
					return false
				}
				p.Value = &DataPacket_User{User: u}
			case 14:
				if p.Value != nil {
					return false
				}
				c := &DataStream_Chunk{}
				if fastChunk(v, c) != nil {
					return false
				}
				p.Value = &DataPacket_StreamChunk{StreamChunk: c}
			default:
				return false
			}
		}
	}
	return true
}

func fastUserPacket(b []byte, u *UserPacket) error {
	var seen uint32
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num >= 32 {
			return errSlow
		}
		b = b[n:]
		if num != 3 && num != 6 {
			if seen&(1<<num) != 0 {
				return errSlow
			}
			seen |= 1 << num
		}
		if num == 9 || num == 10 {
			if typ != protowire.VarintType {
				return errSlow
			}
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errSlow
			}
			b = b[n:]
			if num == 9 {
				u.StartTime = &v
			} else {
				u.EndTime = &v
			}
			continue
		}
		if typ != protowire.BytesType {
			return errSlow
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errSlow
		}
		b = b[n:]
		switch num {
		case 2:
			u.Payload = v
		case 11:
			u.Nonce = v
		case 1, 3, 4, 5, 6, 8:
			s, ok := str(v)
			if !ok {
				return errSlow
			}
			switch num {
			case 1:
				u.ParticipantSid = s
			case 3:
				u.DestinationSids = append(u.DestinationSids, s)
			case 4:
				u.Topic = &s
			case 5:
				u.ParticipantIdentity = s
			case 6:
				u.DestinationIdentities = append(u.DestinationIdentities, s)
			case 8:
				u.Id = &s
			}
		default:
			return errSlow
		}
	}
	return nil
}

func fastChunk(b []byte, c *DataStream_Chunk) error {
	var seen uint32
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num >= 32 {
			return errSlow
		}
		b = b[n:]
		if seen&(1<<num) != 0 {
			return errSlow
		}
		seen |= 1 << num
		switch {
		case (num == 2 || num == 4) && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errSlow
			}
			b = b[n:]
			if num == 2 {
				c.ChunkIndex = v
			} else {
				c.Version = int32(v)
			}
		case (num == 1 || num == 3) && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errSlow
			}
			b = b[n:]
			if num == 3 {
				c.Content = v
				continue
			}
			s, ok := str(v)
			if !ok {
				return errSlow
			}
			c.StreamId = s
		default:
			return errSlow
		}
	}
	return nil
}

// str returns v as a string if it is valid UTF-8, which proto3 requires of
// string fields (proto.Unmarshal refuses the message otherwise).
func str(v []byte) (string, bool) {
	if !utf8.Valid(v) {
		return "", false
	}
	return string(v), true
}
