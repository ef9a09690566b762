package bench

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/chunk"
	"github.com/callstate/callstate/internal/lkpb"
)

// The sender of the lossy engine measurement, with an identity and a sid
// of typical sizes (LiveKit sids are "PA_" and 12 characters).
const (
	lossySender    = "sender-0001"
	lossySenderSID = "PA_a1b2c3d4e5f6"
)

// lossyMaxPacket is the packet limit a Room gives its Encoder: room for
// the server to stamp the sender's identity and sid (twice each, in the
// DataPacket and in the legacy UserPacket fields) within
// callstate.MaxLossyPacketSize.
func lossyMaxPacket(identity, sid string) int {
	return callstate.MaxLossyPacketSize - (2*(len(identity)+3) + 2*(len(sid)+3) + 8)
}

// lossy measures the lossy packetization engine without a network: each
// message is encoded into fragments, each fragment decoded with
// proto.Unmarshal as a Room decodes what arrives, and passed to an
// Assembler until the message is whole.
func (r *runner) lossy(out io.Writer) error {
	sizes := []int{1 << 10, 64 << 10, 1 << 20}
	budget := time.Second
	if r.quick {
		budget = 150 * time.Millisecond
	}
	fmt.Fprintf(out, "Encoder.Encode -> proto.Unmarshal of each packet -> Assembler.Accept, in one goroutine, %v per size;\n", budget)
	fmt.Fprintf(out, "largest encoded fragment as sent, and as the server forwards it (with the sender's identity and sid); limit %d bytes\n", callstate.MaxLossyPacketSize)
	t := newTable(out, "size", "via", "fragments/msg", "max sent", "max forwarded", "msgs/s", "throughput", "ns/fragment", "allocs/fragment", "bytes/fragment")
	defer t.flush()
	for _, size := range sizes {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		res, err := measureLossy(size, budget)
		if err != nil {
			return fmt.Errorf("%s: %w", sizeName(size), err)
		}
		fragments := float64(res.msgs * res.fragmentsPerMsg)
		t.row(sizeName(size), res.via.String(), fmt.Sprint(res.fragmentsPerMsg), fmt.Sprintf("%d B", res.maxSent), fmt.Sprintf("%d B", res.maxForwarded),
			rate(float64(res.msgs), res.elapsed), mbps(float64(res.msgs*size), res.elapsed),
			fmt.Sprintf("%.0f", float64(res.elapsed.Nanoseconds())/fragments),
			fmt.Sprintf("%.2f", float64(res.allocs)/fragments), fmt.Sprintf("%.0f", float64(res.allocBytes)/fragments))
		if m := max(res.maxSent, res.maxForwarded); m > callstate.MaxLossyPacketSize {
			return fmt.Errorf("%s: a fragment of %d bytes exceeds %d", sizeName(size), m, callstate.MaxLossyPacketSize)
		}
	}
	return nil
}

// lossyResult is the outcome of measureLossy.
type lossyResult struct {
	via             chunk.Via
	fragmentsPerMsg int
	maxSent         int
	maxForwarded    int
	msgs            int
	elapsed         time.Duration
	allocs          uint64
	allocBytes      uint64
}

// measureLossy checks one round trip of a lossy message of size bytes,
// then runs round trips for about budget and counts their allocations.
func measureLossy(size int, budget time.Duration) (lossyResult, error) {
	rng := rand.New(rand.NewPCG(uint64(size), 7))
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	cfg := chunk.Config{MaxLossyPacket: lossyMaxPacket(lossySender, lossySenderSID)}
	enc := chunk.NewEncoder(cfg)
	asm := chunk.NewAssembler(cfg)
	msg := chunk.Message{Topic: "bench", Payload: payload}

	// One checked round trip: sizes as forwarded, byte-exact reassembly.
	var res lossyResult
	var got []byte
	info, err := enc.Encode(msg, nil, func(pkt []byte) error {
		res.maxSent = max(res.maxSent, len(pkt))
		dp := new(lkpb.DataPacket)
		if err := proto.Unmarshal(pkt, dp); err != nil {
			return err
		}
		stampSender(dp)
		res.maxForwarded = max(res.maxForwarded, proto.Size(dp))
		if rcv, ok := asm.Accept(time.Now(), dp); ok {
			got = bytes.Clone(rcv.Payload)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	if !bytes.Equal(got, payload) {
		return res, fmt.Errorf("the message was not reassembled byte-exact (%d bytes, want %d)", len(got), len(payload))
	}
	res.via, res.fragmentsPerMsg = info.Via, info.Packets

	// The timed loop: the receive path as a Room runs it.
	delivered := 0
	emit := func(pkt []byte) error {
		dp := new(lkpb.DataPacket)
		if err := proto.Unmarshal(pkt, dp); err != nil {
			return err
		}
		dp.ParticipantIdentity, dp.ParticipantSid = lossySender, lossySenderSID
		if _, ok := asm.Accept(time.Now(), dp); ok {
			delivered++
		}
		return nil
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	for res.msgs == 0 || time.Since(start) < budget {
		if _, err := enc.Encode(msg, nil, emit); err != nil {
			return res, err
		}
		res.msgs++
	}
	res.elapsed = time.Since(start)
	runtime.ReadMemStats(&after)
	res.allocs = after.Mallocs - before.Mallocs
	res.allocBytes = after.TotalAlloc - before.TotalAlloc
	if delivered != res.msgs {
		return res, fmt.Errorf("%d of %d messages reassembled", delivered, res.msgs)
	}
	return res, nil
}

// stampSender sets the sender fields the server fills in before it forwards
// a packet.
func stampSender(dp *lkpb.DataPacket) {
	dp.ParticipantIdentity, dp.ParticipantSid = lossySender, lossySenderSID
	if u := dp.GetUser(); u != nil {
		u.ParticipantIdentity, u.ParticipantSid = lossySender, lossySenderSID
	}
}
