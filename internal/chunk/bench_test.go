package chunk

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
)

var benchSizes = []int{1 << 10, 64 << 10, 1 << 20}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

// BenchmarkEncodeLossy measures encoding alone: the packets go to an emit
// that drops them.
func BenchmarkEncodeLossy(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			e := NewEncoder(Config{})
			m := Message{Topic: "bench", Payload: payload(n, 1), Destinations: []string{"alice", "bob"}}
			emit := func([]byte) error { return nil }
			info, err := e.Encode(m, nil, emit)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := e.Encode(m, nil, emit); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(info.Packets), "packets/op")
		})
	}
}

// BenchmarkEncodeReliable measures encoding a reliable message, streamed
// when over the packet limit.
func BenchmarkEncodeReliable(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			e := NewEncoder(Config{})
			m := Message{Topic: "bench", Payload: payload(n, 1), Reliable: true}
			emit := func([]byte) error { return nil }
			seq := counter()
			info, _ := e.Encode(m, seq, emit)
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := e.Encode(m, seq, emit); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(info.Packets), "packets/op")
		})
	}
}

// BenchmarkAssembleLossy measures reassembly alone, from decoded packets.
func BenchmarkAssembleLossy(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			e := NewEncoder(Config{})
			var dps []*lkpb.DataPacket
			_, err := e.Encode(Message{Topic: "bench", Payload: payload(n, 1)}, nil, func(p []byte) error {
				var dp lkpb.DataPacket
				if err := proto.Unmarshal(p, &dp); err != nil {
					return err
				}
				dp.ParticipantIdentity = "alice"
				dps = append(dps, &dp)
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			a := NewAssembler(Config{})
			id := uint32(0)
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				// A new message id each time, written into the headers.
				id++
				for _, dp := range dps {
					p := dp.GetUser().GetPayload()
					p[1], p[2], p[3], p[4] = byte(id>>24), byte(id>>16), byte(id>>8), byte(id)
				}
				delivered := false
				for _, dp := range dps {
					if _, ok := a.Accept(t0, dp); ok {
						delivered = true
					}
				}
				if !delivered {
					b.Fatal("not delivered")
				}
			}
			b.ReportMetric(float64(len(dps)), "packets/op")
		})
	}
}

// BenchmarkRoundTripLossy measures the whole path: encoding, decoding each
// packet with proto.Unmarshal as the Room does, and reassembly.
func BenchmarkRoundTripLossy(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			e := NewEncoder(Config{})
			a := NewAssembler(Config{})
			m := Message{Topic: "bench", Payload: payload(n, 1)}
			delivered := 0
			emit := func(p []byte) error {
				dp := new(lkpb.DataPacket)
				if err := proto.Unmarshal(p, dp); err != nil {
					return err
				}
				dp.ParticipantIdentity = "alice"
				if _, ok := a.Accept(t0, dp); ok {
					delivered++
				}
				return nil
			}
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := e.Encode(m, nil, emit); err != nil {
					b.Fatal(err)
				}
			}
			if delivered != b.N {
				b.Fatalf("delivered %d of %d", delivered, b.N)
			}
		})
	}
}

// BenchmarkRoundTripReliable is BenchmarkRoundTripLossy for reliable
// messages (plain or streamed).
func BenchmarkRoundTripReliable(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			e := NewEncoder(Config{})
			a := NewAssembler(Config{})
			m := Message{Topic: "bench", Payload: payload(n, 1), Reliable: true}
			seq := counter()
			delivered := 0
			emit := func(p []byte) error {
				dp := new(lkpb.DataPacket)
				if err := proto.Unmarshal(p, dp); err != nil {
					return err
				}
				dp.ParticipantIdentity = "alice"
				if _, ok := a.Accept(t0, dp); ok {
					delivered++
				}
				return nil
			}
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := e.Encode(m, seq, emit); err != nil {
					b.Fatal(err)
				}
			}
			if delivered != b.N {
				b.Fatalf("delivered %d of %d", delivered, b.N)
			}
		})
	}
}
