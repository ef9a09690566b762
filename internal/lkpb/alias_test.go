package lkpb

import (
	"bytes"
	"testing"
	"unsafe"

	"google.golang.org/protobuf/proto"
)

func mustMarshal(tb testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func userPacket(n int) *DataPacket {
	topic, id := "t", "msg-1"
	start := uint64(7)
	return &DataPacket{
		Kind:                  DataPacket_RELIABLE,
		ParticipantIdentity:   "alice",
		ParticipantSid:        "PA_alice",
		DestinationIdentities: []string{"bob", "carol"},
		Sequence:              42,
		Value: &DataPacket_User{User: &UserPacket{
			ParticipantSid:        "PA_alice",
			ParticipantIdentity:   "alice",
			Payload:               bytes.Repeat([]byte{0xab}, n),
			Topic:                 &topic,
			Id:                    &id,
			StartTime:             &start,
			DestinationIdentities: []string{"bob"},
			Nonce:                 []byte{1, 2, 3},
		}},
	}
}

// within reports whether s lies inside b's memory.
func within(s, b []byte) bool {
	if len(s) == 0 {
		return false
	}
	p, lo := uintptr(unsafe.Pointer(&s[0])), uintptr(unsafe.Pointer(&b[0]))
	return p >= lo && p < lo+uintptr(len(b))
}

func TestAliasedDecodeMatchesProtoAndAliases(t *testing.T) {
	chunk := &DataPacket{Kind: DataPacket_RELIABLE, Sequence: 3, Value: &DataPacket_StreamChunk{StreamChunk: &DataStream_Chunk{
		StreamId: "s1", ChunkIndex: 9, Content: []byte("chunk content"), Version: 2,
	}}}
	for name, m := range map[string]*DataPacket{"user": userPacket(1000), "chunk": chunk} {
		b := mustMarshal(t, m)
		var got DataPacket
		if err := UnmarshalDataPacketAliased(b, &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !proto.Equal(m, &got) {
			t.Fatalf("%s: decoded %v, want %v", name, &got, m)
		}
		var payload []byte
		if u := got.GetUser(); u != nil {
			payload = u.GetPayload()
		} else {
			payload = got.GetStreamChunk().GetContent()
		}
		if !within(payload, b) {
			t.Fatalf("%s: the payload was copied, not aliased", name)
		}
	}
}

func TestAliasedDecodeFallsBackToProto(t *testing.T) {
	total := uint64(5)
	header := &DataPacket{Value: &DataPacket_StreamHeader{StreamHeader: &DataStream_Header{StreamId: "s", TotalLength: &total}}}
	withUnknown := mustMarshal(t, userPacket(10))
	withUnknown = protoAppendUnknown(withUnknown)
	for name, b := range map[string][]byte{
		"header":  mustMarshal(t, header),
		"unknown": withUnknown,
		"twice":   append(mustMarshal(t, userPacket(3)), mustMarshal(t, userPacket(4))...),
	} {
		var want, got DataPacket
		werr := proto.Unmarshal(b, &want)
		gerr := UnmarshalDataPacketAliased(b, &got)
		if (werr == nil) != (gerr == nil) || !proto.Equal(&want, &got) {
			t.Fatalf("%s: got %v (%v), want %v (%v)", name, &got, gerr, &want, werr)
		}
	}
	// Invalid UTF-8 in a string is refused as proto.Unmarshal refuses it.
	bad := mustMarshal(t, &DataPacket{ParticipantIdentity: "ok"})
	bad[len(bad)-1] = 0xff
	var p DataPacket
	if err := UnmarshalDataPacketAliased(bad, &p); err == nil {
		t.Fatal("invalid UTF-8 accepted")
	}
}

// protoAppendUnknown appends field 99 (varint 1), which DataPacket does not
// define.
func protoAppendUnknown(b []byte) []byte { return append(b, 0x98, 0x06, 0x01) }

func FuzzAliasedDecode(f *testing.F) {
	f.Add(mustMarshal(f, userPacket(10)))
	f.Add(mustMarshal(f, &DataPacket{Value: &DataPacket_StreamChunk{StreamChunk: &DataStream_Chunk{StreamId: "x", Content: []byte("y")}}}))
	f.Add([]byte{0x12, 0x02, 0x12, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		var want, got DataPacket
		werr := proto.Unmarshal(b, &want)
		gerr := UnmarshalDataPacketAliased(b, &got)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("proto: %v, aliased: %v", werr, gerr)
		}
		if werr == nil && !proto.Equal(&want, &got) {
			t.Fatalf("decoded %v, want %v", &got, &want)
		}
	})
}

func BenchmarkDecodeDataPacket(b *testing.B) {
	for _, n := range []int{1 << 10, 15 << 10, 64000} {
		pkt := mustMarshal(b, userPacket(n))
		b.Run("proto/"+itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var p DataPacket
				if err := proto.Unmarshal(pkt, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("aliased/"+itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var p DataPacket
				if err := UnmarshalDataPacketAliased(pkt, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}
