package chunk

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
)

// requireWire checks that got decodes into want and that proto.Marshal
// (deterministic) writes want with the same bytes.
func requireWire(t *testing.T, want *lkpb.DataPacket, got []byte) {
	t.Helper()
	var dp lkpb.DataPacket
	require.NoError(t, proto.Unmarshal(got, &dp))
	require.True(t, proto.Equal(want, &dp), "decoded %v\nwant %v", &dp, want)
	ref, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
	require.NoError(t, err)
	require.Equal(t, ref, got)
}

func TestEncodePlainWire(t *testing.T) {
	e := NewEncoder(Config{})
	dests := []string{"alice", "bob"}
	for _, tc := range []struct {
		name string
		m    Message
		want *lkpb.DataPacket
	}{
		{
			name: "lossy",
			m:    Message{Topic: "cursor", Payload: []byte("xy"), Destinations: dests},
			want: &lkpb.DataPacket{
				Kind:                  lkpb.DataPacket_LOSSY,
				DestinationIdentities: dests,
				Value:                 &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: []byte("xy"), Topic: proto.String("cursor")}},
			},
		},
		{
			name: "reliable",
			m:    Message{Topic: "chat", Payload: []byte("hello"), Reliable: true},
			want: &lkpb.DataPacket{
				Sequence: 1,
				Value:    &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: []byte("hello"), Topic: proto.String("chat")}},
			},
		},
		{
			name: "empty without topic",
			m:    Message{Reliable: true},
			want: &lkpb.DataPacket{Sequence: 1, Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkts, info := encodeAll(t, e, tc.m, counter())
			require.Len(t, pkts, 1)
			assert.Equal(t, ViaPlain, info.Via)
			assert.Equal(t, len(pkts[0]), info.Bytes)
			requireWire(t, tc.want, pkts[0])
		})
	}
}

func TestEncodeFragmentWire(t *testing.T) {
	e := NewEncoder(Config{})
	dests := []string{"alice"}
	msg := payload(3000, 1)
	pkts, info := encodeAll(t, e, Message{Topic: "big", Payload: msg, Destinations: dests}, counter())
	require.Equal(t, ViaFragments, info.Via)
	require.Len(t, pkts, 3)
	var joined []byte
	for i, p := range pkts {
		var dp lkpb.DataPacket
		require.NoError(t, proto.Unmarshal(p, &dp))
		h, data, err := ParseFragment(dp.GetUser().GetPayload())
		require.NoError(t, err)
		assert.Equal(t, FragmentHeader{MessageID: info.MessageID, Total: 3000, Index: uint16(i), Count: 3, Topic: map[bool]string{true: "big"}[i == 0]}, h)
		joined = append(joined, data...)
		requireWire(t, &lkpb.DataPacket{
			Kind:                  lkpb.DataPacket_LOSSY,
			DestinationIdentities: dests,
			Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{
				Payload: dp.GetUser().GetPayload(),
				Topic:   proto.String(FragmentTopic),
			}},
		}, p)
		assert.Zero(t, dp.Sequence, "lossy packets carry no sequence")
		if i < 2 {
			assert.Equal(t, 1400, len(forwarded(t, p, "", "")), "full fragments fill the packet as forwarded")
		}
	}
	assert.Equal(t, msg, joined)
}

func TestEncodeStreamWire(t *testing.T) {
	e := NewEncoder(Config{})
	e.now = func() time.Time { return t0 }
	dests := []string{"alice", "bob"}
	msg := payload(40000, 2)
	attrs := map[string]string{"b": "2", "a": "", "": "z"}
	pkts, info := encodeAll(t, e, Message{
		Topic: "files", Payload: msg, Destinations: dests, Reliable: true,
		Name: "f.bin", MimeType: "application/x-test", Attributes: attrs,
	}, counter())
	require.Equal(t, ViaStream, info.Via)
	require.Len(t, pkts, 5) // header, 3 chunks, trailer
	assert.Len(t, info.StreamID, 36)

	requireWire(t, &lkpb.DataPacket{
		DestinationIdentities: dests,
		Sequence:              1,
		Value: &lkpb.DataPacket_StreamHeader{StreamHeader: &lkpb.DataStream_Header{
			StreamId:      info.StreamID,
			Timestamp:     t0.UnixMilli(),
			Topic:         "files",
			MimeType:      "application/x-test",
			TotalLength:   proto.Uint64(40000),
			Attributes:    attrs,
			ContentHeader: &lkpb.DataStream_Header_ByteHeader{ByteHeader: &lkpb.DataStream_ByteHeader{Name: "f.bin"}},
		}},
	}, pkts[0])
	off := 0
	for i, p := range pkts[1:4] {
		var dp lkpb.DataPacket
		require.NoError(t, proto.Unmarshal(p, &dp))
		content := dp.GetStreamChunk().GetContent()
		require.NotEmpty(t, content)
		require.Equal(t, msg[off:off+len(content)], content)
		off += len(content)
		requireWire(t, &lkpb.DataPacket{
			DestinationIdentities: dests,
			Sequence:              uint32(i + 2),
			Value: &lkpb.DataPacket_StreamChunk{StreamChunk: &lkpb.DataStream_Chunk{
				StreamId: info.StreamID, ChunkIndex: uint64(i), Content: content,
			}},
		}, p)
		assert.LessOrEqual(t, len(p), DefaultMaxReliablePacket)
	}
	assert.Equal(t, len(msg), off)
	requireWire(t, &lkpb.DataPacket{
		DestinationIdentities: dests,
		Sequence:              5,
		Value:                 &lkpb.DataPacket_StreamTrailer{StreamTrailer: &lkpb.DataStream_Trailer{StreamId: info.StreamID}},
	}, pkts[4])
}

func TestEncodeTextStreamHeader(t *testing.T) {
	e := NewEncoder(Config{})
	pkts, info := encodeAll(t, e, Message{Payload: []byte("hi"), Reliable: true, Stream: true, Text: true, Name: "ignored"}, nil)
	require.Len(t, pkts, 3)
	var dp lkpb.DataPacket
	require.NoError(t, proto.Unmarshal(pkts[0], &dp))
	h := dp.GetStreamHeader()
	require.NotNil(t, h.GetTextHeader())
	assert.Equal(t, "text/plain", h.GetMimeType())
	assert.Equal(t, info.StreamID, h.GetStreamId())
	assert.Zero(t, dp.Sequence, "nil seq writes no sequence")
}

func TestEncodeLossyPacketsFit(t *testing.T) {
	// Every destination takes room twice in a forwarded packet: the server
	// copies the destinations into the UserPacket.
	manyDests := make([]string, 8)
	for i := range manyDests {
		manyDests[i] = strings.Repeat("d", 40) + string(rune('a'+i))
	}
	for _, tc := range []struct {
		name  string
		topic string
		dests []string
	}{
		{"bare", "", nil},
		{"long topic", strings.Repeat("t", 300), nil},
		{"many destinations", "x", manyDests},
		{"both", strings.Repeat("t", 200), manyDests},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEncoder(Config{})
			a := NewAssembler(Config{})
			for _, n := range []int{0, 1, 100, 1399, 1400, 1401, 5000, 10 << 10, 200 << 10} {
				msg := payload(n, uint64(n))
				pkts, _ := encodeAll(t, e, Message{Topic: tc.topic, Payload: msg, Destinations: tc.dests}, nil)
				for _, p := range pkts {
					require.LessOrEqual(t, len(forwarded(t, p, "", "")), 1400)
				}
				got := feed(a, t0, decode(t, "s", pkts))
				require.Len(t, got, 1, "size %d", n)
				requirePayload(t, msg, got[0].Payload)
				require.Equal(t, tc.topic, got[0].Topic)
				require.Equal(t, tc.dests, got[0].Destinations)
				require.False(t, got[0].Reliable)
			}
			checkInvariants(t, a)
			assert.Zero(t, a.Stats().Partial)
		})
	}
}

// forwarded returns p as LiveKit's server forwards it from a participant
// with the identity and sid: stamped with both, in the packet and in the
// legacy fields of a UserPacket, into which it also copies the
// destination identities.
func forwarded(t testing.TB, p []byte, identity, sid string) []byte {
	t.Helper()
	var dp lkpb.DataPacket
	require.NoError(t, proto.Unmarshal(p, &dp))
	dp.ParticipantIdentity, dp.ParticipantSid = identity, sid
	if u := dp.GetUser(); u != nil {
		u.ParticipantIdentity, u.ParticipantSid = identity, sid
		u.DestinationIdentities = dp.DestinationIdentities
	}
	b, err := proto.Marshal(&dp)
	require.NoError(t, err)
	return b
}

// plainSize returns the encoded size of m as one plain packet, as the
// server forwards it (without the sender's stamps).
func plainSize(m Message, seq uint32) int {
	if !m.Reliable {
		seq = 0
	}
	dp := &lkpb.DataPacket{DestinationIdentities: m.Destinations, Sequence: seq,
		Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: m.Payload, DestinationIdentities: m.Destinations}}}
	if m.Topic != "" {
		dp.GetUser().Topic = proto.String(m.Topic)
	}
	if !m.Reliable {
		dp.Kind = lkpb.DataPacket_LOSSY
	}
	return proto.Size(dp)
}

func TestEncodeBoundaries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		reliable bool
		limit    int
		over     Via
	}{
		{"lossy", false, 1400, ViaFragments},
		{"reliable", true, 15000, ViaStream},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Message{Topic: "edge", Destinations: []string{"p1"}, Reliable: tc.reliable}
			n := tc.limit
			for {
				m.Payload = payload(n, 7)
				if plainSize(m, 1) <= tc.limit {
					break
				}
				n--
			}
			require.Equal(t, tc.limit, plainSize(m, 1), "a payload fills the packet exactly")

			e := NewEncoder(Config{})
			a := NewAssembler(Config{})
			pkts, info := encodeAll(t, e, m, counter())
			require.Equal(t, ViaPlain, info.Via)
			require.Len(t, pkts, 1)
			require.Len(t, forwarded(t, pkts[0], "", ""), tc.limit, "the packet fills the limit as forwarded")
			require.Less(t, len(pkts[0]), tc.limit, "and is smaller as sent, by the copy of its destinations")
			got := feed(a, t0, decode(t, "s", pkts))
			require.Len(t, got, 1)
			require.Equal(t, m.Payload, got[0].Payload)

			m.Payload = payload(n+1, 7)
			pkts, info = encodeAll(t, e, m, counter())
			require.Equal(t, tc.over, info.Via)
			for _, p := range pkts {
				require.LessOrEqual(t, len(forwarded(t, p, "", "")), tc.limit)
			}
			got = feed(a, t0, decode(t, "s", pkts))
			require.Len(t, got, 1)
			require.Equal(t, m.Payload, got[0].Payload)
			require.Equal(t, tc.reliable, got[0].Reliable)
		})
	}
}

func TestReliableRoundTrip(t *testing.T) {
	e := NewEncoder(Config{})
	a := NewAssembler(Config{})
	seq := counter()
	var last uint32
	for _, n := range []int{0, 1024, 15 << 10, 100 << 10, 8 << 20} {
		msg := payload(n, uint64(n)+3)
		pkts, info := encodeAll(t, e, Message{Topic: "r", Payload: msg, Reliable: true, Destinations: []string{"x"}}, seq)
		if n > 15000 {
			require.Equal(t, ViaStream, info.Via)
		} else {
			require.Equal(t, ViaPlain, info.Via)
		}
		dps := decode(t, "sender", pkts)
		for i, dp := range dps {
			require.LessOrEqual(t, len(pkts[i]), DefaultMaxReliablePacket)
			require.Greater(t, dp.Sequence, last, "sequence increases")
			last = dp.Sequence
			require.Equal(t, lkpb.DataPacket_RELIABLE, dp.Kind)
		}
		got := feed(a, t0, dps)
		require.Len(t, got, 1)
		r := got[0]
		require.True(t, len(msg) == len(r.Payload) && string(msg) == string(r.Payload), "payload of %d bytes byte-exact", n)
		assert.Equal(t, "r", r.Topic)
		assert.Equal(t, "sender", r.SenderIdentity)
		assert.Equal(t, "PA_sender", r.SenderSID)
		assert.True(t, r.Reliable)
		assert.Equal(t, []string{"x"}, r.Destinations)
		assert.Equal(t, info.Via, r.Via)
		if info.Via == ViaStream {
			assert.Equal(t, info.StreamID, r.StreamID)
			assert.Equal(t, "application/octet-stream", r.MimeType)
		}
	}
	st := a.Stats()
	assert.Equal(t, uint64(2), st.PlainReceived)
	assert.Equal(t, uint64(3), st.StreamsReceived)
	assert.Equal(t, uint64(100<<10+8<<20+1024+15<<10), st.BytesReceived)
	assert.Zero(t, st.Partial)
	assert.Zero(t, st.Buffered)
	es := e.Stats()
	assert.Equal(t, uint64(2), es.PlainSent)
	assert.Equal(t, uint64(3), es.StreamsSent)
	assert.Equal(t, uint64(last), es.PacketsSent)
}

func TestTextStreamCutsAtCharacters(t *testing.T) {
	text := strings.Repeat("héllo wörld ✓ 𝄞 ", 3000) // 1-, 2-, 3- and 4-byte characters
	e := NewEncoder(Config{StreamChunkSize: 1001})
	pkts, info := encodeAll(t, e, Message{Topic: "t", Payload: []byte(text), Reliable: true, Text: true, Attributes: map[string]string{"k": "v"}}, counter())
	require.Equal(t, ViaStream, info.Via)
	dps := decode(t, "s", pkts)
	for _, dp := range dps[1 : len(dps)-1] {
		c := dp.GetStreamChunk().GetContent()
		require.True(t, utf8.Valid(c), "chunk %d is valid UTF-8 on its own", dp.GetStreamChunk().GetChunkIndex())
		require.LessOrEqual(t, len(c), 1001)
	}
	got := feed(NewAssembler(Config{}), t0, dps)
	require.Len(t, got, 1)
	assert.Equal(t, text, string(got[0].Payload))
	assert.True(t, got[0].Text)
	assert.Equal(t, "text/plain", got[0].MimeType)
	assert.Equal(t, map[string]string{"k": "v"}, got[0].Attributes)
	assert.False(t, got[0].Timestamp.IsZero())
}

func TestEncodeErrors(t *testing.T) {
	e := NewEncoder(Config{MaxMessageSize: 1000})
	never := func([]byte) error { t.Fatal("emit called"); return nil }

	_, err := e.Encode(Message{Topic: FragmentTopic}, nil, never)
	require.ErrorIs(t, err, ErrReservedTopic)

	_, err = e.Encode(Message{Payload: make([]byte, 1001), Reliable: true}, nil, never)
	var le *LimitError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, LimitError{What: "data message payload", Size: 1001, Limit: 1000}, *le)
	assert.Equal(t, "callstate: data message payload is 1001 bytes, over the limit of 1000", err.Error())

	for _, m := range []Message{
		{Topic: "\xff"}, {Destinations: []string{"ok", "\xc3"}}, {Reliable: true, Name: "\xff"},
		{Reliable: true, MimeType: "\xff"}, {Attributes: map[string]string{"k": "\xff"}}, {Attributes: map[string]string{"\xff": ""}},
	} {
		_, err = e.Encode(m, nil, never)
		require.ErrorIs(t, err, ErrInvalidString)
	}

	_, err = e.Encode(Message{Stream: true}, nil, never)
	require.ErrorIs(t, err, ErrLossyStream)

	_, err = e.Encode(Message{Payload: []byte{0xff}, Reliable: true, Stream: true, Text: true}, nil, never)
	require.ErrorIs(t, err, ErrInvalidText)

	many := make([]string, 100)
	for i := range many {
		many[i] = strings.Repeat("p", 20)
	}
	_, err = e.Encode(Message{Payload: make([]byte, 500), Destinations: many}, nil, never)
	require.ErrorAs(t, err, &le)
	assert.Equal(t, 1400, le.Limit)
	assert.Greater(t, le.Size, 1400)

	e = NewEncoder(Config{})
	_, err = e.Encode(Message{Payload: make([]byte, 20000), Reliable: true, Destinations: slices.Repeat(many, 8)}, nil, never)
	require.ErrorAs(t, err, &le)
	assert.Equal(t, 15000, le.Limit)

	// 65535 fragments of a few bytes cannot hold the payload.
	e = NewEncoder(Config{MaxLossyPacket: 100})
	_, err = e.Encode(Message{Payload: make([]byte, 4<<20)}, nil, never)
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "lossy message payload", le.What)
}

func TestEncodeEmitError(t *testing.T) {
	boom := errors.New("boom")
	e := NewEncoder(Config{})
	var pkts [][]byte
	calls := 0
	info, err := e.Encode(Message{Payload: payload(50000, 4), Reliable: true}, counter(), func(p []byte) error {
		calls++
		pkts = append(pkts, append([]byte(nil), p...))
		if calls == 3 {
			return boom
		}
		return nil
	})
	require.ErrorIs(t, err, boom)
	assert.Equal(t, 2, info.Packets, "header and one chunk went")
	require.Len(t, pkts, 4, "the failing chunk, then an interrupting trailer")
	dps := decode(t, "s", pkts)
	assert.Equal(t, "interrupted", dps[3].GetStreamTrailer().GetReason())

	a := NewAssembler(Config{})
	require.Empty(t, feed(a, t0, []*lkpb.DataPacket{dps[0], dps[1], dps[3]}))
	st := a.Stats()
	assert.Equal(t, uint64(1), st.StreamsAborted)
	assert.Zero(t, st.Partial)

	_, err = e.Encode(Message{Payload: payload(5000, 4)}, nil, func([]byte) error { return boom })
	require.ErrorIs(t, err, boom)
}

func TestFragmentCountMatchesCapacity(t *testing.T) {
	// A payload that exactly fills 4 fragments takes 4 full packets; one
	// more byte takes a fifth.
	shape := &packetShape{lossy: true}
	cap0 := fragmentCapacity(shape, fragmentHeaderLen+2, 1400)
	capN := fragmentCapacity(shape, fragmentHeaderLen, 1400)
	exact := cap0 + 3*capN
	e := NewEncoder(Config{})
	pkts, _ := encodeAll(t, e, Message{Payload: payload(exact, 5)}, nil)
	require.Len(t, pkts, 4)
	for _, p := range pkts {
		require.Len(t, p, 1400)
	}
	pkts, _ = encodeAll(t, e, Message{Payload: payload(exact+1, 5)}, nil)
	require.Len(t, pkts, 5)
}

func TestStreamID(t *testing.T) {
	id := newStreamID()
	require.Len(t, id, 36)
	assert.Equal(t, byte('4'), id[14])
	assert.Contains(t, "89ab", string(id[19]))
	assert.NotEqual(t, id, newStreamID())
}

func TestUTF8Cut(t *testing.T) {
	p := []byte("a€b") // € is 3 bytes
	assert.Equal(t, 1, utf8Cut(p, 1))
	assert.Equal(t, 1, utf8Cut(p, 2))
	assert.Equal(t, 1, utf8Cut(p, 3))
	assert.Equal(t, 4, utf8Cut(p, 4))
}

func TestViaString(t *testing.T) {
	assert.Equal(t, "plain", ViaPlain.String())
	assert.Equal(t, "fragments", ViaFragments.String())
	assert.Equal(t, "stream", ViaStream.String())
	assert.Equal(t, "unknown", Via(0).String())
}
