package chunk

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
)

// stamped is a sender as the server stamps it: every packet carries the
// sender's sid, and its identity unless the packet says otherwise.
type stamped struct{ identity, sid string }

func (p stamped) stamp(dp *lkpb.DataPacket) *lkpb.DataPacket {
	if dp.ParticipantIdentity == "" {
		dp.ParticipantIdentity = p.identity
	}
	dp.ParticipantSid = p.sid
	return dp
}

// forgedHeader is a text stream header sent by agent naming victim, as
// LiveKit's server forwards it: the named identity kept, generated set, the
// agent's own sid.
func (p stamped) forgedHeader(victim, id string, inline []byte) *lkpb.DataPacket {
	return p.stamp(&lkpb.DataPacket{
		ParticipantIdentity: victim,
		Value: &lkpb.DataPacket_StreamHeader{StreamHeader: &lkpb.DataStream_Header{
			StreamId: id, Topic: "lk.transcription", InlineContent: inline,
			ContentHeader: &lkpb.DataStream_Header_TextHeader{TextHeader: &lkpb.DataStream_TextHeader{Generated: true}},
		}},
	})
}

func TestForgedStreamHeaderIsAttributedToItsSender(t *testing.T) {
	agent := stamped{"agent", "PA_agent"}

	// A single-packet stream naming alice, from an agent the Assembler has
	// never heard from: its sid names the sender, its identity is not
	// known yet, and it is not alice.
	a := NewAssembler(Config{})
	r, ok := a.Accept(t0, agent.forgedHeader("alice", "s1", []byte("hi")))
	require.True(t, ok)
	assert.Empty(t, r.SenderIdentity)
	assert.Equal(t, "PA_agent", r.SenderSID)
	assert.Equal(t, "hi", string(r.Payload))

	// Once a packet of the agent has come, its stamped identity is known.
	_, ok = a.Accept(t0, agent.stamp(&lkpb.DataPacket{Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: []byte("x")}}}))
	require.True(t, ok)
	r, ok = a.Accept(t0, agent.forgedHeader("alice", "s2", []byte("hi")))
	require.True(t, ok)
	assert.Equal(t, "agent", r.SenderIdentity)

	// A stream in chunks: the trailer, which the server stamps with the
	// real sender, names it.
	a = NewAssembler(Config{})
	pkts := []*lkpb.DataPacket{agent.forgedHeader("alice", "s3", nil)}
	for _, p := range (foreign{"", "s3"}).chunked([]byte("hello there"), 3) {
		pkts = append(pkts, agent.stamp(p))
	}
	pkts = append(pkts, agent.stamp((foreign{"", "s3"}).trailer("", nil)))
	got := feed(a, t0, pkts)
	require.Len(t, got, 1)
	assert.Equal(t, "agent", got[0].SenderIdentity)
	assert.Equal(t, "hello there", string(got[0].Payload))
	checkInvariants(t, a)

	// A header without generated is the server's word.
	a = NewAssembler(Config{})
	r, ok = a.Accept(t0, agent.stamp(&lkpb.DataPacket{Value: &lkpb.DataPacket_StreamHeader{StreamHeader: &lkpb.DataStream_Header{
		StreamId: "s4", InlineContent: []byte("x"), ContentHeader: textHeader,
	}}}))
	require.True(t, ok)
	assert.Equal(t, "agent", r.SenderIdentity)
}

func TestForgedHeadersDoNotUseAnothersBudget(t *testing.T) {
	agent := stamped{"agent", "PA_agent"}
	a := NewAssembler(Config{})
	// Unfinished headers naming alice, more than one sender may have.
	for i := range 3 * DefaultMaxStreamsPerSender {
		_, ok := a.Accept(t0, agent.forgedHeader("alice", fmt.Sprint("forged-", i), nil))
		require.False(t, ok)
	}
	st := a.Stats()
	assert.Equal(t, DefaultMaxStreamsPerSender, st.Partial, "the agent fills its own slots only")

	// alice's own 40 KB message, streamed, still arrives and is hers.
	e := NewEncoder(Config{})
	msg := payload(40000, 3)
	pkts, info := encodeAll(t, e, Message{Topic: "big", Payload: msg, Reliable: true}, counter())
	require.Equal(t, ViaStream, info.Via)
	got := feed(a, t0, decode(t, "alice", pkts))
	require.Len(t, got, 1)
	assert.Equal(t, "alice", got[0].SenderIdentity)
	assert.Equal(t, "PA_alice", got[0].SenderSID)
	requirePayload(t, msg, got[0].Payload)
	checkInvariants(t, a)

	// Forget("alice") leaves the agent's streams, which only claimed her
	// name, alone; Forget("agent") drops them, since the agent's stamped
	// identity is known from any packet of its own.
	a.Forget("alice")
	assert.Equal(t, DefaultMaxStreamsPerSender, a.Stats().Partial)
	_, ok := a.Accept(t0, agent.stamp(&lkpb.DataPacket{Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: []byte("x")}}}))
	require.True(t, ok)
	a.Forget("agent")
	assert.Zero(t, a.Stats().Partial)
	checkInvariants(t, a)
}

func TestStreamOfOneByteChunks(t *testing.T) {
	// 480,000 bytes of text in 1-byte chunks, with the default limits:
	// charged by bytes, coalesced in memory.
	a := NewAssembler(Config{})
	text := []byte(strings.Repeat("abcdefghij", 48000))
	f := foreign{"web", "tiny"}
	pkts := []*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{TotalLength: proto.Uint64(uint64(len(text))), ContentHeader: textHeader})}
	pkts = append(pkts, f.chunked(text, 1)...)
	require.Empty(t, feed(a, t0, pkts))
	st := a.Stats()
	assert.Zero(t, st.RejectedLimit)
	assert.Equal(t, len(text), st.Buffered, "charged its bytes")
	a.mu.Lock()
	held := 0
	sm := a.senders[senderKey{identity: "web"}].streams["tiny"]
	for _, p := range sm.parts {
		held += cap(p)
	}
	nparts := len(sm.parts)
	a.mu.Unlock()
	assert.LessOrEqual(t, held, len(text)+maxCoalesce, "memory held is about the bytes")
	assert.Less(t, nparts, len(text)/maxCoalesce*2, "chunks are coalesced")
	got := feed(a, t0, []*lkpb.DataPacket{f.trailer("", nil)})
	require.Len(t, got, 1)
	requirePayload(t, text, got[0].Payload)
	assert.True(t, got[0].Text)
	checkInvariants(t, a)
}

func TestStreamsFillTheWholeByteBudget(t *testing.T) {
	// A sender may have MaxBufferedPerSender bytes of streams under
	// reassembly, whatever their chunk sizes: two streams of the largest
	// size, one in 1-byte chunks and one in chunks of 1500.
	cfg := Config{MaxMessageSize: 200000}
	a := NewAssembler(cfg)
	one, two := payload(200000, 1), payload(200000, 2)
	f1, f2 := foreign{"web", "one"}, foreign{"web", "two"}
	c1, c2 := f1.chunked(one, 1), f2.chunked(two, 1500)
	pkts := []*lkpb.DataPacket{f1.header(&lkpb.DataStream_Header{}), f2.header(&lkpb.DataStream_Header{})}
	for i := range max(len(c1), len(c2)) {
		if i < len(c1) {
			pkts = append(pkts, c1[i])
		}
		if i < len(c2) {
			pkts = append(pkts, c2[i])
		}
	}
	require.Empty(t, feed(a, t0, pkts))
	assert.Equal(t, 2*200000, a.Stats().Buffered)
	got := feed(a, t0, []*lkpb.DataPacket{f1.trailer("", nil), f2.trailer("", nil)})
	require.Len(t, got, 2)
	requirePayload(t, one, got[0].Payload)
	requirePayload(t, two, got[1].Payload)
	assert.Zero(t, a.Stats().RejectedLimit)

	// One byte more than the budget is refused.
	a = NewAssembler(cfg)
	f3 := foreign{"web", "three"}
	pkts = []*lkpb.DataPacket{f1.header(&lkpb.DataStream_Header{}), f2.header(&lkpb.DataStream_Header{}), f3.header(&lkpb.DataStream_Header{})}
	pkts = append(pkts, f1.chunked(one, 15000)...)
	pkts = append(pkts, f2.chunked(two, 15000)...)
	pkts = append(pkts, f3.chunk(0, []byte{1}))
	require.Empty(t, feed(a, t0, pkts))
	assert.Equal(t, uint64(1), a.Stats().RejectedLimit)
	checkInvariants(t, a)
}

func TestDecompressionBudget(t *testing.T) {
	const max = 1 << 20
	cfg := Config{MaxMessageSize: max}
	bomb := deflate(t, make([]byte, max)) // about 1 KB
	send := func(a *Assembler, now time.Time, from stamped, id string, known bool) bool {
		h := &lkpb.DataStream_Header{StreamId: id, Compression: lkpb.DataStream_DEFLATE_RAW, InlineContent: bomb}
		if known {
			h.TotalLength = proto.Uint64(max)
		}
		r, ok := a.Accept(now, from.stamp(&lkpb.DataPacket{Value: &lkpb.DataPacket_StreamHeader{StreamHeader: h}}))
		if ok {
			require.Len(t, r.Payload, max)
		}
		return ok
	}
	for _, known := range []bool{true, false} {
		t.Run(fmt.Sprint("known length ", known), func(t *testing.T) {
			a := NewAssembler(cfg)
			bad := stamped{"bad", "PA_bad"}
			n := 0
			for i := range 20 {
				if send(a, t0, bad, fmt.Sprint(i), known) {
					n++
				}
			}
			assert.Equal(t, 2, n, "one sender decompresses 2 × MaxMessageSize at once")
			assert.Equal(t, uint64(18), a.Stats().RejectedLimit)

			// The budget refills over 10 s.
			assert.False(t, send(a, t0.Add(inflateWindow/4), bad, "a", known))
			later := t0.Add(inflateWindow)
			assert.True(t, send(a, later, bad, "b", known))

			// The Room-wide budget bounds all senders together.
			total := 0
			for s := range 10 {
				for i := range 3 {
					if send(a, later, stamped{fmt.Sprint("s", s), fmt.Sprint("PA_s", s)}, fmt.Sprint(i), known) {
						total++
					}
				}
			}
			assert.Equal(t, 8-1, total, "8 × MaxMessageSize for all, of which 1 was used")
			checkInvariants(t, a)
		})
	}

	// A stream of unknown length that decompresses to more than what is
	// left is refused, and what is left is not lost for the next stream.
	a := NewAssembler(cfg)
	bad := stamped{"bad", "PA_bad"}
	require.True(t, send(a, t0, bad, "1", false))
	small := deflate(t, make([]byte, max/2))
	r, ok := a.Accept(t0, bad.stamp(&lkpb.DataPacket{Value: &lkpb.DataPacket_StreamHeader{StreamHeader: &lkpb.DataStream_Header{
		StreamId: "2", Compression: lkpb.DataStream_DEFLATE_RAW, InlineContent: small,
	}}}))
	require.True(t, ok)
	require.Len(t, r.Payload, max/2)
	assert.False(t, send(a, t0, bad, "3", false), "only half of the budget is left")
	_, ok = a.Accept(t0, bad.stamp(&lkpb.DataPacket{Value: &lkpb.DataPacket_StreamHeader{StreamHeader: &lkpb.DataStream_Header{
		StreamId: "4", Compression: lkpb.DataStream_DEFLATE_RAW, InlineContent: deflate(t, make([]byte, max/4)),
	}}}))
	assert.False(t, ok, "the refused stream consumed what it produced")
}

func TestInvalidUTF8TextStreamIsRefused(t *testing.T) {
	a := NewAssembler(Config{})
	bad := []byte("ok \xff\xfe")
	f := foreign{"web", "t"}
	pkts := []*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{ContentHeader: textHeader})}
	pkts = append(pkts, f.chunked(bad, 2)...)
	pkts = append(pkts, f.trailer("", nil))
	assert.Empty(t, feed(a, t0, pkts), "not delivered as text")
	assert.Equal(t, uint64(1), a.Stats().RejectedMalformed)
	_, ok := a.Accept(t0, (foreign{"web", "i"}).header(&lkpb.DataStream_Header{ContentHeader: textHeader, InlineContent: bad}))
	assert.False(t, ok)
	assert.Equal(t, uint64(2), a.Stats().RejectedMalformed)

	// The same bytes as a byte stream are fine.
	f = foreign{"web", "b"}
	pkts = []*lkpb.DataPacket{f.header(&lkpb.DataStream_Header{ContentHeader: byteHeader("x")})}
	pkts = append(pkts, f.chunked(bad, 2)...)
	pkts = append(pkts, f.trailer("", nil))
	got := feed(a, t0, pkts)
	require.Len(t, got, 1)
	assert.Equal(t, bad, got[0].Payload)
}

func TestSendersAreBounded(t *testing.T) {
	a := NewAssembler(Config{})
	for i := range 5 * maxSenders {
		p := stamped{fmt.Sprint("p", i), fmt.Sprint("PA_", i)}
		_, ok := a.Accept(t0, p.stamp(&lkpb.DataPacket{Value: &lkpb.DataPacket_StreamHeader{StreamHeader: &lkpb.DataStream_Header{
			StreamId: "s", InlineContent: []byte("x"),
		}}}))
		require.True(t, ok)
		a.mu.Lock()
		n := len(a.senders)
		a.mu.Unlock()
		require.LessOrEqual(t, n, maxSenders)
	}
}

// TestOrdinaryCompressedContentIsNotBudgeted: content that expands less
// than inflateFree times is bounded by the network, not by the
// decompression budget, so that a sender of compressed text is not refused
// where the same text sent plain would pass.
func TestOrdinaryCompressedContentIsNotBudgeted(t *testing.T) {
	const max = 1 << 20
	a := NewAssembler(Config{MaxMessageSize: max})
	rng := rand.New(rand.NewPCG(1, 2))
	text := make([]byte, max/4)
	for i := range text {
		text[i] = "0123456789abcdef"[rng.IntN(16)] // about 2:1
	}
	compressed := deflate(t, text)
	require.Less(t, len(text), inflateFree*len(compressed))
	from := stamped{"text", "PA_text"}
	for i := range 40 { // 10 MiB at once: five times the budget of one sender
		h := &lkpb.DataStream_Header{StreamId: fmt.Sprint(i), Compression: lkpb.DataStream_DEFLATE_RAW,
			InlineContent: compressed, TotalLength: proto.Uint64(uint64(len(text)))}
		r, ok := a.Accept(t0, from.stamp(&lkpb.DataPacket{Value: &lkpb.DataPacket_StreamHeader{StreamHeader: h}}))
		require.True(t, ok, "message %d refused", i)
		require.Equal(t, text, r.Payload)
	}
	assert.Zero(t, a.Stats().RejectedLimit)
	checkInvariants(t, a)
}
