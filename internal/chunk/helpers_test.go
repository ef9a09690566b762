package chunk

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
)

// t0 is the base time of the tests.
var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// counter returns a sequence function counting from 1.
func counter() func() uint32 {
	var n uint32
	return func() uint32 { n++; return n }
}

// encodeAll encodes m and returns copies of the packets it emits.
func encodeAll(t testing.TB, e *Encoder, m Message, seq func() uint32) ([][]byte, Info) {
	t.Helper()
	var pkts [][]byte
	info, err := e.Encode(m, seq, func(p []byte) error {
		pkts = append(pkts, append([]byte(nil), p...))
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, len(pkts), info.Packets)
	return pkts, info
}

// decode unmarshals pkts as the server would forward them from identity.
func decode(t testing.TB, identity string, pkts [][]byte) []*lkpb.DataPacket {
	t.Helper()
	out := make([]*lkpb.DataPacket, len(pkts))
	for i, p := range pkts {
		var dp lkpb.DataPacket
		require.NoError(t, proto.Unmarshal(p, &dp))
		dp.ParticipantIdentity = identity
		dp.ParticipantSid = "PA_" + identity
		out[i] = &dp
	}
	return out
}

// feed passes pkts to a at now and returns the messages delivered.
func feed(a *Assembler, now time.Time, pkts []*lkpb.DataPacket) []Received {
	var out []Received
	for _, p := range pkts {
		if r, ok := a.Accept(now, p); ok {
			out = append(out, r)
		}
	}
	return out
}

// payload returns n deterministic pseudo-random bytes.
func payload(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// requirePayload checks that got holds the bytes of want (nil and empty
// are alike).
func requirePayload(t testing.TB, want, got []byte) {
	t.Helper()
	require.Equal(t, len(want), len(got))
	require.True(t, bytes.Equal(want, got), "payloads differ")
}

// checkInvariants recomputes the Assembler's bookkeeping and compares it
// with its running totals and limits.
func checkInvariants(t testing.TB, a *Assembler) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	partial, buffered := 0, 0
	for id, s := range a.senders {
		held := 0
		for _, m := range s.lossy {
			held += m.held
			require.LessOrEqual(t, m.bytes, m.total)
			require.LessOrEqual(t, m.got, m.count)
		}
		for _, st := range s.streams {
			held += st.held
			require.LessOrEqual(t, st.bytes, a.cfg.MaxMessageSize)
		}
		require.Equal(t, s.buffered, held, "sender %q", id)
		require.LessOrEqual(t, s.buffered, a.cfg.MaxBufferedPerSender)
		require.LessOrEqual(t, len(s.lossy), a.cfg.MaxLossyPerSender)
		require.LessOrEqual(t, len(s.streams), a.cfg.MaxStreamsPerSender)
		partial += len(s.lossy) + len(s.streams)
		buffered += held
	}
	require.Equal(t, a.partial, partial)
	require.Equal(t, a.buffered, buffered)
	require.LessOrEqual(t, a.partial, a.cfg.MaxPartialTotal)
	require.LessOrEqual(t, a.buffered, a.cfg.MaxBufferedTotal)
}
