package chunk

import (
	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the lkpb messages the Encoder writes by hand. They must
// match internal/lkpb/livekit.proto; the tests check the encodings against
// proto.Unmarshal.
const (
	fieldPacketKind         protowire.Number = 1  // DataPacket.kind
	fieldPacketUser         protowire.Number = 2  // DataPacket.user
	fieldPacketDestinations protowire.Number = 5  // DataPacket.destination_identities
	fieldPacketHeader       protowire.Number = 13 // DataPacket.stream_header
	fieldPacketChunk        protowire.Number = 14 // DataPacket.stream_chunk
	fieldPacketTrailer      protowire.Number = 15 // DataPacket.stream_trailer
	fieldPacketSequence     protowire.Number = 16 // DataPacket.sequence

	fieldUserPayload protowire.Number = 2 // UserPacket.payload
	fieldUserTopic   protowire.Number = 4 // UserPacket.topic

	fieldHeaderStreamID    protowire.Number = 1  // DataStream.Header.stream_id
	fieldHeaderTimestamp   protowire.Number = 2  // DataStream.Header.timestamp
	fieldHeaderTopic       protowire.Number = 3  // DataStream.Header.topic
	fieldHeaderMimeType    protowire.Number = 4  // DataStream.Header.mime_type
	fieldHeaderTotalLength protowire.Number = 5  // DataStream.Header.total_length
	fieldHeaderAttributes  protowire.Number = 8  // DataStream.Header.attributes
	fieldHeaderText        protowire.Number = 9  // DataStream.Header.text_header
	fieldHeaderByte        protowire.Number = 10 // DataStream.Header.byte_header

	fieldByteHeaderName protowire.Number = 1 // DataStream.ByteHeader.name

	fieldMapKey   protowire.Number = 1 // map entry key
	fieldMapValue protowire.Number = 2 // map entry value

	fieldChunkStreamID protowire.Number = 1 // DataStream.Chunk.stream_id
	fieldChunkIndex    protowire.Number = 2 // DataStream.Chunk.chunk_index
	fieldChunkContent  protowire.Number = 3 // DataStream.Chunk.content

	fieldTrailerStreamID protowire.Number = 1 // DataStream.Trailer.stream_id
	fieldTrailerReason   protowire.Number = 2 // DataStream.Trailer.reason

	kindLossy = 1 // DataPacket.Kind LOSSY; RELIABLE is 0 and is not written
)

// sizeLen returns the encoded size of a length-delimited field of n bytes.
func sizeLen(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

// sizeString returns the encoded size of a string field, 0 when s is empty
// (proto3 leaves empty strings out).
func sizeString(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return sizeLen(num, len(s))
}

// sizeVarint returns the encoded size of a varint field, 0 when v is 0.
func sizeVarint(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

// appendLen appends the tag and length of a length-delimited field.
func appendLen(b []byte, num protowire.Number, n int) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(n))
}

// appendString appends a string field unless s is empty.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendVarint appends a varint field unless v is 0.
func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// destinationsSize returns the encoded size of DataPacket's
// destination_identities.
func destinationsSize(dests []string) int {
	n := 0
	for _, d := range dests {
		n += sizeLen(fieldPacketDestinations, len(d))
	}
	return n
}

// packetShape describes the parts of a DataPacket around its value: the
// fields that are the same for every packet of a message, and the sequence
// number, which is not.
type packetShape struct {
	lossy     bool
	dests     []string
	destsSize int
	seq       uint32
}

// size returns the encoded size of a DataPacket whose value field num holds
// valueLen bytes, as the server forwards it (before it stamps the sender's
// identity and sid, which the caller's limits account for). LiveKit's
// server copies the destination identities of a packet holding a
// UserPacket into the UserPacket's legacy destination_identities field
// (6), which has a one-byte tag like DataPacket's field 5: the forwarded
// UserPacket is destsSize bytes longer than the one sent. Stream packets
// get no such copy.
func (s *packetShape) size(num protowire.Number, valueLen int) int {
	if num == fieldPacketUser {
		valueLen += s.destsSize
	}
	n := sizeLen(num, valueLen) + s.destsSize + sizeVarint(fieldPacketSequence, uint64(s.seq))
	if s.lossy {
		n += sizeVarint(fieldPacketKind, kindLossy)
	}
	return n
}

// appendHead appends the fields of a DataPacket that come before the body of
// its value field num, ending with the value's tag and length. The body is
// the last thing in the packet. This is the order proto.Marshal writes:
// plain fields by number, then the oneof.
func (s *packetShape) appendHead(b []byte, num protowire.Number, valueLen int) []byte {
	if s.lossy {
		b = appendVarint(b, fieldPacketKind, kindLossy)
	}
	for _, d := range s.dests {
		b = protowire.AppendTag(b, fieldPacketDestinations, protowire.BytesType)
		b = protowire.AppendString(b, d)
	}
	b = appendVarint(b, fieldPacketSequence, uint64(s.seq))
	return appendLen(b, num, valueLen)
}

// userSize returns the encoded size of a UserPacket with a payload of n
// bytes and the topic.
func userSize(n int, topic string) int {
	s := sizeString(fieldUserTopic, topic)
	if n > 0 {
		s += sizeLen(fieldUserPayload, n)
	}
	return s
}
