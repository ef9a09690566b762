package callstate_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
	"github.com/callstate/callstate/internal/lkpb"
)

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// lossyWire records the largest lossy SCTP message sent and received.
type lossyWire struct {
	mu             sync.Mutex
	maxSent, sent  int
	maxRecv, recvd int
}

func (w *lossyWire) send(reliable bool, pkt []byte) bool {
	if !reliable {
		w.mu.Lock()
		w.sent++
		w.maxSent = max(w.maxSent, len(pkt))
		w.mu.Unlock()
	}
	return true
}

func (w *lossyWire) recv(source string, b []byte) {
	if source != "data" {
		return
	}
	var pkt lkpb.DataPacket
	if proto.Unmarshal(b, &pkt) == nil && pkt.GetKind() == lkpb.DataPacket_LOSSY {
		w.mu.Lock()
		w.recvd++
		w.maxRecv = max(w.maxRecv, len(b))
		w.mu.Unlock()
	}
}

func TestLossyPayloadsArriveWholeWithinOnePacket(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	// Long identities and several recipients: the server stamps the
	// sender's identity and sid into every forwarded packet, twice, and
	// copies the destination identities into it once more.
	long := func(name string) string { return name + "-" + strings.Repeat("x", 120-len(name)-1) }
	var sent lossyWire
	a := srv.Join(t, room, long("sender"), callstate.WithSendFilter(nil, sent.send))
	recipients := []string{long("bob"), long("carol"), long("dave")}
	wires := make([]*lossyWire, len(recipients))
	var b *callstate.Room
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	for i, id := range recipients {
		wires[i] = &lossyWire{}
		r := srv.Join(t, room, id, callstate.WithRawHook(nil, wires[i].recv))
		if i == 0 {
			b = r
		}
		_, err := a.WaitForParticipant(ctx, id)
		require.NoError(t, err)
	}
	sub := b.Subscribe(nil)

	for i, n := range []int{100, 1400, 10 << 10, 200 << 10} {
		msg := randomBytes(n, uint64(i))
		// Lossy delivery may lose a message (whole), and LiveKit drops
		// lossy packets it cannot forward in time, which a loaded machine
		// provokes: several attempts are allowed, but whatever arrives
		// must be whole.
		var got []byte
		for attempt := 0; attempt < 8 && got == nil; attempt++ {
			topic := fmt.Sprintf("size-%d-%d", n, attempt)
			require.NoError(t, a.PublishData(ctx, msg, &callstate.PublishOptions{Kind: callstate.Lossy, Topic: topic, To: recipients}))
			e, err := calltest.AwaitEvent(ctx, sub, 3*time.Second, func(e callstate.DataReceived) bool { return e.Data.Topic == topic })
			if err != nil {
				t.Logf("lossy %d bytes, attempt %d: %v (receiver stats %+v)", n, attempt, err, b.Stats().Data)
			}
			if err == nil {
				assert.Equal(t, callstate.Lossy, e.Data.Kind)
				got = e.Data.Payload
			}
		}
		require.NotNil(t, got, "lossy %d bytes never arrived", n)
		require.True(t, bytes.Equal(msg, got), "lossy %d bytes arrived altered", n)
	}
	sent.mu.Lock()
	assert.Greater(t, sent.sent, 150, "large lossy messages were fragmented")
	assert.LessOrEqual(t, sent.maxSent, callstate.MaxLossyPacketSize)
	sent.mu.Unlock()
	for i, w := range wires {
		w.mu.Lock()
		assert.Greater(t, w.recvd, 150, "recipient %d", i)
		assert.LessOrEqual(t, w.maxRecv, callstate.MaxLossyPacketSize, "forwarded lossy packets, stamped and with their destinations copied by the server, still fit one packet (recipient %d)", i)
		assert.Greater(t, w.maxRecv, 1300, "fragments use the room they have")
		w.mu.Unlock()
	}
	st := b.Stats().Data
	assert.GreaterOrEqual(t, st.MessagesReassembled, uint64(2))
}

func TestReliablePayloadsArriveByteExact(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", nil)
	b := srv.Join(t, room, "bob", nil)
	sub := b.Subscribe(nil)
	ctx := ctxT(t)
	for i, n := range []int{1 << 10, 15 << 10, 64000, 100 << 10, 8 << 20} {
		msg := randomBytes(n, uint64(100+i))
		require.NoError(t, a.PublishData(ctx, msg, &callstate.PublishOptions{Topic: "bulk"}))
		e := calltest.Await(t, sub, fromIs("alice"))
		require.Equal(t, len(msg), len(e.Data.Payload))
		require.True(t, bytes.Equal(msg, e.Data.Payload), "reliable %d bytes", n)
		assert.Equal(t, "bulk", e.Data.Topic)
		assert.Equal(t, callstate.Reliable, e.Data.Kind)
		// Up to the SCTP maximum message size (65,535 for LiveKit's
		// server) a payload is one packet; beyond, a data stream.
		if n > 64000 {
			require.NotNil(t, e.Data.Stream, "%d bytes travel as a data stream", n)
		} else {
			require.Nil(t, e.Data.Stream, "%d bytes travel as one packet", n)
		}
	}
	sa := a.Stats().Data
	assert.EqualValues(t, 2, sa.StreamsSent)
	assert.EqualValues(t, 2, b.Stats().Data.StreamsReceived)
}

func TestLostFragmentDropsTheWholeMessage(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	var lossy atomic.Int32
	drop := func(reliable bool, pkt []byte) bool {
		if reliable {
			return true
		}
		// Drop the third lossy packet sent: a fragment of the first
		// message.
		return lossy.Add(1) != 3
	}
	a := srv.Join(t, room, "alice", callstate.WithSendFilter(nil, drop))
	b := srv.Join(t, room, "bob", &callstate.JoinOptions{LossyReassemblyTimeout: 300 * time.Millisecond})
	sub := b.Subscribe(nil)
	ctx := ctxT(t)

	broken := randomBytes(20<<10, 1)
	require.NoError(t, a.PublishData(ctx, broken, &callstate.PublishOptions{Kind: callstate.Lossy, Topic: "broken"}))
	require.NoError(t, a.PublishData(ctx, []byte("after"), &callstate.PublishOptions{Topic: "after"}))
	e := calltest.Await(t, sub, fromIs("alice"))
	assert.Equal(t, "after", e.Data.Topic, "the broken message is never delivered, not even in part")
	assert.Eventually(t, func() bool { return b.Stats().Data.DroppedIncomplete == 1 }, 10*time.Second, 20*time.Millisecond,
		"the incomplete message is dropped whole and counted")
	assert.Zero(t, b.Stats().Data.MessagesReassembled)
	assert.Zero(t, b.Stats().Data.Partial)
}
