package chunk

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
)

// fragments encodes a lossy message and returns its decoded fragments from
// identity.
func fragments(t testing.TB, e *Encoder, identity string, n int, seed uint64) ([]*lkpb.DataPacket, []byte) {
	t.Helper()
	msg := payload(n, seed)
	pkts, info := encodeAll(t, e, Message{Topic: "lossy", Payload: msg}, nil)
	require.Equal(t, ViaFragments, info.Via)
	return decode(t, identity, pkts), msg
}

// fragmentPacket builds a fragment packet by hand.
func fragmentPacket(identity string, h FragmentHeader, data []byte) *lkpb.DataPacket {
	p := AppendFragmentHeader(nil, &h)
	p = append(p, data...)
	return &lkpb.DataPacket{
		Kind:                lkpb.DataPacket_LOSSY,
		ParticipantIdentity: identity,
		Value:               &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: p, Topic: proto.String(FragmentTopic)}},
	}
}

func TestPlainReceive(t *testing.T) {
	a := NewAssembler(Config{})
	r, ok := a.Accept(t0, &lkpb.DataPacket{
		Kind:                  lkpb.DataPacket_LOSSY,
		ParticipantIdentity:   "alice",
		ParticipantSid:        "PA_1",
		DestinationIdentities: []string{"me"},
		Value:                 &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: []byte("hi"), Topic: proto.String("t")}},
	})
	require.True(t, ok)
	assert.Equal(t, Received{
		SenderIdentity: "alice", SenderSID: "PA_1", Topic: "t", Payload: []byte("hi"),
		Via: ViaPlain, Destinations: []string{"me"},
	}, r)

	// Legacy fields of the user packet fill in for missing packet fields.
	r, ok = a.Accept(t0, &lkpb.DataPacket{
		Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{
			Payload: []byte("x"), ParticipantIdentity: "bob", ParticipantSid: "PA_2", DestinationIdentities: []string{"c"},
		}},
	})
	require.True(t, ok)
	assert.Equal(t, "bob", r.SenderIdentity)
	assert.Equal(t, "PA_2", r.SenderSID)
	assert.Equal(t, []string{"c"}, r.Destinations)
	assert.True(t, r.Reliable)
	assert.Empty(t, r.Topic)

	// Server API packets have no sender.
	r, ok = a.Accept(t0, &lkpb.DataPacket{Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{Payload: []byte("s")}}})
	require.True(t, ok)
	assert.Empty(t, r.SenderIdentity)

	for _, p := range []*lkpb.DataPacket{nil, {}, {Value: &lkpb.DataPacket_User{}}, {Value: &lkpb.DataPacket_StreamChunk{}}} {
		_, ok = a.Accept(t0, p)
		assert.False(t, ok)
	}
	st := a.Stats()
	assert.Equal(t, uint64(3), st.PlainReceived)
	assert.Equal(t, uint64(4), st.Ignored)
	assert.Equal(t, uint64(4), st.BytesReceived)
}

func TestFragmentsReorderedAndDuplicated(t *testing.T) {
	e := NewEncoder(Config{})
	a := NewAssembler(Config{})
	dps, msg := fragments(t, e, "alice", 20000, 1)
	require.Greater(t, len(dps), 10)
	rng := rand.New(rand.NewPCG(1, 2))
	order := slices.Clone(dps)
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	// Duplicate a few, before the message completes.
	order = slices.Insert(order, 3, order[0], order[1])
	var got []Received
	for i, p := range order {
		r, ok := a.Accept(t0.Add(time.Duration(i)*time.Millisecond), p)
		if ok {
			got = append(got, r)
			require.Equal(t, len(order)-1, i, "delivered with the last fragment")
		}
	}
	require.Len(t, got, 1)
	assert.Equal(t, msg, got[0].Payload)
	assert.Equal(t, "lossy", got[0].Topic)
	assert.Equal(t, ViaFragments, got[0].Via)
	assert.Equal(t, "alice", got[0].SenderIdentity)

	// Duplicates after completion are recognized too and start nothing.
	assert.Empty(t, feed(a, t0, dps[:3]))
	st := a.Stats()
	assert.Equal(t, uint64(5), st.Duplicates)
	assert.Equal(t, uint64(1), st.MessagesReassembled)
	assert.Equal(t, uint64(len(order)+3), st.FragmentsReceived)
	assert.Zero(t, st.Partial)
	assert.Zero(t, st.Buffered)
	checkInvariants(t, a)
}

func TestFragmentMissingDroppedWhole(t *testing.T) {
	e := NewEncoder(Config{})
	a := NewAssembler(Config{})
	dps, _ := fragments(t, e, "alice", 10000, 2)
	missing := len(dps) / 2
	got := feed(a, t0, append(slices.Clone(dps[:missing]), dps[missing+1:]...))
	require.Empty(t, got)
	st := a.Stats()
	assert.Equal(t, 1, st.Partial)
	assert.Greater(t, st.Buffered, 10000-1400)

	// Not yet timed out.
	assert.Zero(t, a.Expire(t0.Add(DefaultLossyTimeout-time.Millisecond)))
	assert.Equal(t, 1, a.Expire(t0.Add(DefaultLossyTimeout)))
	st = a.Stats()
	assert.Equal(t, uint64(1), st.DroppedIncomplete)
	assert.Zero(t, st.Partial)
	assert.Zero(t, st.Buffered)
	assert.Zero(t, st.MessagesReassembled)

	// The missing fragment arriving late delivers nothing and holds nothing.
	_, ok := a.Accept(t0.Add(DefaultLossyTimeout), dps[missing])
	assert.False(t, ok)
	assert.Zero(t, a.Stats().Partial)
	assert.Equal(t, uint64(1), a.Stats().Ignored)
}

func TestFragmentTimeoutCountsFromLastFragment(t *testing.T) {
	e := NewEncoder(Config{})
	a := NewAssembler(Config{})
	dps, msg := fragments(t, e, "alice", 5000, 3)
	step := DefaultLossyTimeout / 2
	var got []Received
	for i, p := range dps {
		now := t0.Add(time.Duration(i) * step)
		a.Expire(now)
		if r, ok := a.Accept(now, p); ok {
			got = append(got, r)
		}
	}
	require.Len(t, got, 1, "a slow but steady message completes")
	assert.Equal(t, msg, got[0].Payload)
}

func TestAcceptSweepsWithoutExpire(t *testing.T) {
	e := NewEncoder(Config{})
	a := NewAssembler(Config{})
	dps, _ := fragments(t, e, "alice", 5000, 4)
	feed(a, t0, dps[:1])
	require.Equal(t, 1, a.Stats().Partial)
	_, ok := a.Accept(t0.Add(time.Minute), &lkpb.DataPacket{Value: &lkpb.DataPacket_User{User: &lkpb.UserPacket{}}})
	require.True(t, ok)
	assert.Zero(t, a.Stats().Partial)
	assert.Equal(t, uint64(1), a.Stats().DroppedIncomplete)
}

func TestInterleavedSendersAndMessages(t *testing.T) {
	e := NewEncoder(Config{})
	a := NewAssembler(Config{})
	var all []*lkpb.DataPacket
	want := map[string][]byte{}
	for s := range 3 {
		for m := range 3 {
			id := fmt.Sprintf("p%d", s)
			dps, msg := fragments(t, e, id, 3000+1000*m, uint64(10*s+m))
			all = append(all, dps...)
			want[fmt.Sprintf("%s/%d", id, len(msg))] = msg
		}
	}
	rand.New(rand.NewPCG(5, 6)).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	got := feed(a, t0, all)
	require.Len(t, got, 9)
	for _, r := range got {
		assert.Equal(t, want[fmt.Sprintf("%s/%d", r.SenderIdentity, len(r.Payload))], r.Payload)
	}
	checkInvariants(t, a)
}

func TestFragmentRejections(t *testing.T) {
	cfg := Config{MaxMessageSize: 10000}
	a := NewAssembler(cfg)
	accept := func(p *lkpb.DataPacket) {
		t.Helper()
		_, ok := a.Accept(t0, p)
		require.False(t, ok)
	}
	// Over the message size limit.
	accept(fragmentPacket("x", FragmentHeader{MessageID: 1, Total: 10001, Count: 2}, []byte{1}))
	assert.Equal(t, uint64(1), a.Stats().RejectedLimit)
	// Absurd: 60000 fragments of a 100-byte message; version 2; truncated.
	accept(fragmentPacket("x", FragmentHeader{MessageID: 2, Total: 100, Count: 60000}, []byte{1}))
	bad := fragmentPacket("x", FragmentHeader{MessageID: 3, Total: 100, Count: 2}, []byte{1})
	bad.GetUser().Payload[0] = 2
	accept(bad)
	bad = fragmentPacket("x", FragmentHeader{MessageID: 3, Total: 100, Count: 2}, []byte{1})
	bad.GetUser().Payload = bad.GetUser().Payload[:10]
	accept(bad)
	assert.Equal(t, uint64(3), a.Stats().RejectedMalformed)
	assert.Zero(t, a.Stats().Partial)

	// A fragment contradicting its message's count is refused, the message
	// kept.
	accept(fragmentPacket("x", FragmentHeader{MessageID: 4, Total: 100, Count: 3}, make([]byte, 40)))
	accept(fragmentPacket("x", FragmentHeader{MessageID: 4, Total: 100, Count: 4, Index: 1}, make([]byte, 40)))
	assert.Equal(t, uint64(4), a.Stats().RejectedMalformed)
	assert.Equal(t, 1, a.Stats().Partial)
	// A fragment with more bytes than the message has room for drops it.
	accept(fragmentPacket("x", FragmentHeader{MessageID: 4, Total: 100, Count: 3, Index: 1}, make([]byte, 60)))
	assert.Equal(t, uint64(5), a.Stats().RejectedMalformed)
	assert.Zero(t, a.Stats().Partial)
	// So does a last fragment that leaves the message short.
	accept(fragmentPacket("x", FragmentHeader{MessageID: 5, Total: 100, Count: 2}, make([]byte, 40)))
	accept(fragmentPacket("x", FragmentHeader{MessageID: 5, Total: 100, Count: 2, Index: 1}, make([]byte, 40)))
	assert.Equal(t, uint64(6), a.Stats().RejectedMalformed)
	// A single fragment of the wrong length.
	accept(fragmentPacket("x", FragmentHeader{MessageID: 6, Total: 100, Count: 1}, make([]byte, 40)))
	assert.Equal(t, uint64(7), a.Stats().RejectedMalformed)
	assert.Zero(t, a.Stats().Partial)
	assert.Zero(t, a.Stats().Buffered)
	checkInvariants(t, a)

	// A single-fragment message is delivered at once.
	r, ok := a.Accept(t0, fragmentPacket("x", FragmentHeader{MessageID: 7, Total: 3, Count: 1, Topic: "tp"}, []byte("abc")))
	require.True(t, ok)
	assert.Equal(t, "tp", r.Topic)
	assert.Equal(t, []byte("abc"), r.Payload)
}

func TestFloodOfFirstFragments(t *testing.T) {
	cfg := Config{MaxMessageSize: 1 << 20}
	a := NewAssembler(cfg)
	big := make([]byte, 1300)
	for i := range 10000 {
		_, ok := a.Accept(t0, fragmentPacket("flood", FragmentHeader{MessageID: uint32(i), Total: 1 << 20, Count: 1000}, big))
		require.False(t, ok)
		if i%500 == 0 {
			checkInvariants(t, a)
		}
	}
	st := a.Stats()
	assert.Equal(t, DefaultMaxLossyPerSender, st.Partial)
	assert.LessOrEqual(t, st.Buffered, DefaultMaxLossyPerSender*(partialOverhead+16*8+2048+partOverhead))
	assert.Equal(t, uint64(10000-DefaultMaxLossyPerSender), st.DroppedIncomplete)

	// Another sender is unaffected.
	e := NewEncoder(cfg)
	dps, msg := fragments(t, e, "good", 8000, 9)
	got := feed(a, t0, dps)
	require.Len(t, got, 1)
	assert.Equal(t, msg, got[0].Payload)
}

func TestBufferedBytesLimits(t *testing.T) {
	cfg := Config{MaxMessageSize: 100000, MaxBufferedPerSender: 50000, MaxBufferedTotal: 120000, MaxPartialTotal: 6}
	e := NewEncoder(cfg)
	a := NewAssembler(cfg)

	// One message of a sender exceeding its byte budget is dropped.
	dps, _ := fragments(t, e, "a", 80000, 1)
	require.Empty(t, feed(a, t0, dps[:len(dps)-1]))
	st := a.Stats()
	assert.Equal(t, uint64(1), st.RejectedLimit)
	assert.Zero(t, st.Partial)
	checkInvariants(t, a)

	// Partial messages of several senders fill the total budget.
	for i := range 4 {
		dps, _ := fragments(t, e, fmt.Sprintf("s%d", i), 40000, uint64(i))
		feed(a, t0, dps[:len(dps)-1])
		checkInvariants(t, a)
	}
	st = a.Stats()
	assert.Equal(t, uint64(3), st.RejectedLimit, "the third and fourth sender exceed the total")
	assert.Equal(t, 2, st.Partial)
	assert.LessOrEqual(t, st.Buffered, 120000)

	// The partial-message cap.
	for i := range 10 {
		feed(a, t0, []*lkpb.DataPacket{fragmentPacket(fmt.Sprintf("m%d", i), FragmentHeader{MessageID: 1, Total: 100, Count: 2}, []byte{1})})
	}
	st = a.Stats()
	assert.Equal(t, 6, st.Partial)
	assert.Equal(t, uint64(3+6), st.RejectedLimit)
	checkInvariants(t, a)
}

func TestForget(t *testing.T) {
	e := NewEncoder(Config{})
	a := NewAssembler(Config{})
	dps, _ := fragments(t, e, "gone", 5000, 1)
	feed(a, t0, dps[:2])
	spkts, _ := encodeAll(t, e, Message{Payload: payload(40000, 1), Reliable: true}, nil)
	sdps := decode(t, "gone", spkts)
	feed(a, t0, sdps[:2])
	other, _ := fragments(t, e, "stays", 5000, 2)
	feed(a, t0, other[:1])
	require.Equal(t, 3, a.Stats().Partial)

	a.Forget("gone")
	a.Forget("unknown")
	st := a.Stats()
	assert.Equal(t, 1, st.Partial)
	assert.Equal(t, uint64(2), st.DroppedIncomplete)
	checkInvariants(t, a)
	got := feed(a, t0, other[1:])
	require.Len(t, got, 1)
}

func TestExpireRemovesIdleSenders(t *testing.T) {
	a := NewAssembler(Config{})
	e := NewEncoder(Config{})
	dps, _ := fragments(t, e, "x", 5000, 1)
	feed(a, t0, dps)
	a.Expire(t0.Add(DefaultStreamTimeout - time.Second))
	a.mu.Lock()
	require.Len(t, a.senders, 1, "kept while its recent messages matter")
	a.mu.Unlock()
	a.Expire(t0.Add(DefaultStreamTimeout))
	a.mu.Lock()
	require.Empty(t, a.senders)
	a.mu.Unlock()
}

func TestConcurrentUse(t *testing.T) {
	e := NewEncoder(Config{})
	a := NewAssembler(Config{})
	const senders = 4
	var (
		mu    sync.Mutex
		wires = map[bool][][]byte{} // by reliability
		seq   = counter()
		wg    sync.WaitGroup
		seqMu sync.Mutex
	)
	next := func() uint32 { seqMu.Lock(); defer seqMu.Unlock(); return seq() }
	for i := range senders {
		wg.Go(func() {
			for j := range 20 {
				reliable := j%2 == 0
				_, err := e.Encode(Message{Payload: payload(20000+i*100+j, uint64(i*100+j)), Reliable: reliable}, next, func(p []byte) error {
					mu.Lock()
					wires[reliable] = append(wires[reliable], append([]byte(nil), p...))
					mu.Unlock()
					return nil
				})
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()

	// Reliable packets were emitted in sequence order, each message whole.
	rel := decode(t, "s", wires[true])
	for i := 1; i < len(rel); i++ {
		require.Greater(t, rel[i].Sequence, rel[i-1].Sequence)
	}

	var got sync.Map
	var n sync.WaitGroup
	for _, reliable := range []bool{true, false} {
		dps := decode(t, "s", wires[reliable])
		n.Go(func() {
			for _, p := range dps {
				if r, ok := a.Accept(t0, p); ok {
					got.Store(len(r.Payload), r.Payload)
				}
				a.Stats()
			}
		})
	}
	n.Go(func() {
		for range 100 {
			a.Expire(t0)
		}
	})
	n.Wait()
	count := 0
	got.Range(func(k, v any) bool {
		count++
		size := k.(int)
		i, j := (size-20000)/100, (size-20000)%100
		assert.Equal(t, payload(size, uint64(i*100+j)), v.([]byte))
		return true
	})
	assert.Equal(t, senders*20, count)
	checkInvariants(t, a)
}
