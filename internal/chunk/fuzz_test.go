package chunk

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
)

// fuzzConfig has small limits, so that fuzzing reaches them.
var fuzzConfig = Config{
	MaxLossyPacket:       200,
	MaxReliablePacket:    300,
	StreamChunkSize:      100,
	MaxMessageSize:       4096,
	MaxLossyPerSender:    3,
	MaxStreamsPerSender:  2,
	MaxPartialTotal:      6,
	MaxBufferedPerSender: 8192,
	MaxBufferedTotal:     16384,
	LossyTimeout:         time.Second,
	StreamTimeout:        5 * time.Second,
}

// script reads a fuzz input as a sequence of small numbers and byte runs.
type script struct{ b []byte }

func (s *script) done() bool { return len(s.b) == 0 }

func (s *script) byte() byte {
	if len(s.b) == 0 {
		return 0
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c
}

func (s *script) u16() uint16 { return uint16(s.byte())<<8 | uint16(s.byte()) }

func (s *script) bytes(n int) []byte {
	n = min(n, len(s.b))
	out := bytes.Clone(s.b[:n])
	s.b = s.b[n:]
	return out
}

func FuzzFragmentDecode(f *testing.F) {
	f.Add(AppendFragmentHeader(nil, &FragmentHeader{MessageID: 1, Total: 3, Count: 1, Topic: "t"}))
	f.Add(append(AppendFragmentHeader(nil, &FragmentHeader{MessageID: 9, Total: 300, Index: 2, Count: 3}), 1, 2))
	f.Fuzz(func(t *testing.T, p []byte) {
		h, data, err := ParseFragment(p)
		if err != nil {
			return
		}
		require.GreaterOrEqual(t, h.Count, uint16(1))
		require.Less(t, h.Index, h.Count)
		require.LessOrEqual(t, uint32(h.Count), max(h.Total, 1))
		require.LessOrEqual(t, len(data), int(h.Total))
		if h.Total > 0 {
			require.NotEmpty(t, data)
		}
		if h.Index != 0 {
			require.Empty(t, h.Topic)
		}
		// The header re-encodes to the bytes it came from.
		require.Equal(t, p, append(AppendFragmentHeader(nil, &h), data...))
	})
}

// victim is the identity forged stream headers name in FuzzAssembler; no
// sender has it.
const victim = "victim"

// FuzzAssembler feeds an Assembler a sequence of packets and events decoded
// from the input and checks that it never panics, never delivers more than
// the size limit, never attributes a message to a claimed identity, and
// never holds more than its limits.
func FuzzAssembler(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 100, 2, 0, 10, 0, 1, 1, 0, 100, 2, 1, 90})
	f.Add([]byte{2, 1, 0, 1, 0, 1, 3, 1, 0, 0, 5, 4, 1, 0, 1})
	f.Add([]byte{7, 0, 12, 0x12, 0x0a, 0x12, 0x03, 'a', 'b', 'c', 0x22, 0x03, 'x', 'y', 'z'})
	f.Fuzz(func(t *testing.T, in []byte) {
		a := NewAssembler(fuzzConfig)
		now := t0
		s := &script{in}
		for !s.done() {
			op := s.byte() % 8
			who := fmt.Sprint("p", s.byte()%3)
			var pkt *lkpb.DataPacket
			switch op {
			case 0: // a fragment, header fields drawn from the input
				h := FragmentHeader{
					MessageID: uint32(s.byte() % 4),
					Total:     uint32(s.u16() % 5000),
					Index:     uint16(s.byte() % 8),
					Count:     uint16(s.byte() % 8),
					Topic:     "t",
				}
				pkt = fragmentPacket(who, h, s.bytes(int(s.byte()%200)))
			case 1: // raw bytes on the fragment topic
				pkt = &lkpb.DataPacket{ParticipantIdentity: who, Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{
					Topic: proto.String(FragmentTopic), Payload: s.bytes(int(s.byte() % 64)),
				}}}
			case 2: // a stream header
				ff := foreign{who, fmt.Sprint(s.byte() % 3)}
				flags := s.byte()
				h := &lkpb.DataStream_Header{ContentHeader: byteHeader("n")}
				if flags&1 != 0 {
					h.TotalLength = proto.Uint64(uint64(s.u16()))
				}
				if flags&2 != 0 {
					h.ContentHeader = textHeader
				}
				if flags&4 != 0 {
					h.InlineContent = s.bytes(int(s.byte()))
				}
				if flags&8 != 0 {
					h.Compression = lkpb.DataStream_DEFLATE_RAW
				}
				if flags&16 != 0 {
					h.Attributes = map[string]string{attrCompression: CompressionGzip}
				}
				pkt = ff.header(h)
				if flags&32 != 0 {
					// An agent's header naming another participant, as
					// the server passes it on.
					h.ContentHeader = &lkpb.DataStream_Header_TextHeader{TextHeader: &lkpb.DataStream_TextHeader{Generated: true}}
					pkt.ParticipantIdentity = victim
				}
			case 3: // a stream chunk
				ff := foreign{who, fmt.Sprint(s.byte() % 3)}
				pkt = ff.chunk(uint64(s.byte()%4), s.bytes(int(s.byte())))
			case 4: // a stream trailer
				ff := foreign{who, fmt.Sprint(s.byte() % 3)}
				reason := ""
				if s.byte()%4 == 0 {
					reason = "error"
				}
				pkt = ff.trailer(reason, nil)
			case 5: // time passes
				now = now.Add(time.Duration(s.byte()) * 50 * time.Millisecond)
				if s.byte()%2 == 0 {
					a.Expire(now)
				}
			case 6:
				a.Forget(who)
			case 7: // any DataPacket the input encodes
				var dp lkpb.DataPacket
				if proto.Unmarshal(s.bytes(int(s.byte())), &dp) != nil {
					continue
				}
				dp.ParticipantIdentity = who
				pkt = &dp
			}
			if pkt != nil {
				// The server stamps a sid on every packet of a
				// participant; p2 stands for senders without one.
				if pkt.ParticipantSid == "" && who != "p2" {
					pkt.ParticipantSid = "S" + who
				}
				if r, ok := a.Accept(now, pkt); ok {
					require.LessOrEqual(t, len(r.Payload), fuzzConfig.MaxMessageSize)
					require.NotEqual(t, victim, r.SenderIdentity, "a message is never attributed to a name its sender claimed")
				}
			}
			checkInvariants(t, a)
		}
		a.Expire(now.Add(time.Hour))
		st := a.Stats()
		require.Zero(t, st.Partial)
		require.Zero(t, st.Buffered)
	})
}

// FuzzStreamReceiver sends a payload as a data stream cut into chunks of the
// sizes the input names, with an optional fault, and checks that the
// stream is delivered byte-exact when intact and never delivered otherwise.
func FuzzStreamReceiver(f *testing.F) {
	f.Add([]byte("hello, world"), []byte{0, 0, 5})
	f.Add(bytes.Repeat([]byte("abc"), 500), []byte{2, 0, 100, 200, 7})
	f.Add([]byte("xy"), []byte{1, 3, 1})
	f.Add(bytes.Repeat([]byte{0}, 3000), []byte{4, 2, 255})
	f.Fuzz(checkStreamReceiver)
}

func checkStreamReceiver(t *testing.T, data, cuts []byte) {
	{
		if len(data) > fuzzConfig.MaxMessageSize {
			return
		}
		s := &script{cuts}
		flags, fault := s.byte(), s.byte()%6
		content := data
		h := &lkpb.DataStream_Header{ContentHeader: byteHeader("f")}
		if flags&1 == 0 {
			h.TotalLength = proto.Uint64(uint64(len(data)))
		}
		if flags&2 != 0 {
			h.Attributes = map[string]string{attrCompression: CompressionDeflate}
			var buf bytes.Buffer
			w, _ := flate.NewWriter(&buf, flate.BestSpeed)
			_, _ = w.Write(data)
			_ = w.Close()
			content = buf.Bytes()
		}
		var sizes []int
		for !s.done() {
			sizes = append(sizes, int(s.byte())+1)
		}
		if len(sizes) == 0 {
			sizes = []int{1000}
		}
		ff := foreign{"web", "s"}
		chunks := ff.chunked(content, sizes...)
		k := int(flags>>2) % max(len(chunks), 1)
		intact := true
		switch fault {
		case 1: // a duplicated chunk is harmless
			if len(chunks) > 0 {
				chunks = slices.Insert(chunks, k, chunks[k])
			}
		case 2: // a lost chunk
			if len(chunks) > 0 {
				if k == len(chunks)-1 && h.GetTotalLength() == 0 {
					return // the loss of the last chunk of a stream of unknown length cannot show
				}
				chunks = slices.Delete(chunks, k, k+1)
				intact = false
			}
		case 3: // swapped chunks
			if k+1 < len(chunks) {
				chunks[k], chunks[k+1] = chunks[k+1], chunks[k]
				intact = false
			}
		}
		pkts := append([]*lkpb.DataPacket{ff.header(h)}, chunks...)
		switch fault {
		case 4: // aborted
			pkts = append(pkts, ff.trailer("interrupted", nil))
			intact = false
		case 5: // never finished
			intact = false
		default:
			pkts = append(pkts, ff.trailer("", nil))
		}

		a := NewAssembler(fuzzConfig)
		got := feed(a, t0, pkts)
		checkInvariants(t, a)
		a.Expire(t0.Add(fuzzConfig.StreamTimeout))
		require.Zero(t, a.Stats().Partial)
		if !intact {
			require.Empty(t, got, "a damaged stream is never delivered")
			return
		}
		if len(content) > fuzzConfig.MaxMessageSize {
			require.Empty(t, got)
			return
		}
		require.Len(t, got, 1)
		requirePayload(t, data, got[0].Payload)
	}
}

// FuzzRoundTrip encodes a message, delivers its packets shuffled and partly
// duplicated, and checks that it comes back whole and byte-exact.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("small"), "topic", uint64(1), false, false)
	f.Add(bytes.Repeat([]byte("x"), 2000), "", uint64(2), false, true)
	f.Add(bytes.Repeat([]byte("é"), 1000), "t", uint64(3), true, true)
	f.Fuzz(checkRoundTrip)
}

func checkRoundTrip(t *testing.T, data []byte, topic string, seed uint64, reliable, text bool) {
	{
		if topic == FragmentTopic || len(topic) > 64 || len(data) > fuzzConfig.MaxMessageSize {
			return
		}
		e := NewEncoder(fuzzConfig)
		m := Message{Topic: topic, Payload: data, Reliable: reliable, Text: text, Destinations: []string{"d"}}
		var pkts [][]byte
		_, err := e.Encode(m, counter(), func(p []byte) error {
			limit := fuzzConfig.MaxLossyPacket
			if reliable {
				limit = fuzzConfig.MaxReliablePacket
			}
			require.LessOrEqual(t, len(p), limit)
			pkts = append(pkts, bytes.Clone(p))
			return nil
		})
		if errors.Is(err, ErrInvalidText) || errors.Is(err, ErrInvalidString) {
			return
		}
		require.NoError(t, err)
		dps := decode(t, "s", pkts)
		if !reliable {
			rng := rand.New(rand.NewPCG(seed, 0))
			rng.Shuffle(len(dps), func(i, j int) { dps[i], dps[j] = dps[j], dps[i] })
			if len(dps) > 1 {
				dps = append(dps, dps[binary.LittleEndian.Uint16([]byte{byte(seed), byte(seed >> 8)})%uint16(len(dps))])
			}
		}
		a := NewAssembler(fuzzConfig)
		got := feed(a, t0, dps)
		require.Len(t, got, 1)
		requirePayload(t, data, got[0].Payload)
		require.Equal(t, topic, got[0].Topic)
		require.Equal(t, reliable, got[0].Reliable)
		checkInvariants(t, a)
	}
}
