package callstate

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
	"github.com/callstate/callstate/internal/rtc"
)

// Keeping reliable packets until the server has them.
//
// A reliable packet handed to the transport is not yet at the server: it
// may sit in the SCTP send buffer when the network fails, or reach a
// server that is then killed before forwarding it. So the Room keeps every
// reliable packet it sends (retained) until both: the server's SCTP stack
// acknowledged it (the channel's buffered amount fell below it), and the
// server was seen alive retainAcked after it was sent (it acknowledged a
// packet sent that much later), since a killed server may have
// acknowledged a packet it never forwarded. Time alone is no proof: a
// killed room node goes unnoticed for about 12 s, during which packets
// acknowledged just before the kill would otherwise be forgotten and never
// replayed. Under byte pressure (MaxQueuedBytes) acknowledged packets go
// first; unacknowledged ones are never dropped (the SCTP send buffer
// bounds them).
//
// After a resume or an ICE restart the Room sends again those whose
// sequence number is above the server's last_message_seq (the server drops
// a sequenced packet it already saw, and receivers a repeat by sender sid
// and sequence). After a rejoin (new sid, sequence numbers from 1) it sends
// every retained packet again, renumbered; receivers drop the ones they
// already had by sender identity and message id (msgID, in
// UserPacket.nonce).
const retainAcked = 2 * time.Second

type retainedPacket struct {
	seq uint32
	pkt []byte
	end uint64 // r.sentBytes once it was written
	at  time.Time
}

// newEpoch returns a Room's random message-id epoch.
func newEpoch() [8]byte {
	var e [8]byte
	_, _ = rand.Read(e[:])
	return e
}

// stamp gives a plain reliable packet (a UserPacket) its message id, and
// returns a copy of the packet (the encoder reuses its buffer) with its
// sequence number.
//
// The id is spliced into the encoded packet rather than decoded and
// encoded again: a nonce field is appended to the UserPacket, whose length
// prefix grows by the field's size, so that stamping costs one copy of the
// packet, which keeping it needs anyway. (Decoding and encoding every
// packet again took about a third of a fast sender's CPU in the Room.) A
// nonce the packet already carried is overridden, as protobuf keeps the
// last value of a field that occurs twice.
func (r *Room) stamp(pkt []byte) ([]byte, uint32, error) {
	var (
		seq             uint32
		userAt, userEnd = -1, -1 // the user field: its tag's offset, its value's end
		userVal         []byte
	)
	for b := pkt; len(b) > 0; {
		at := len(pkt) - len(b)
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, 0, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, 0, protowire.ParseError(m)
		}
		switch {
		case num == fieldPacketUser && typ == protowire.BytesType:
			// A oneof member that occurs twice: the last one counts, as in
			// proto.Unmarshal (the packets stamped here come from our own
			// encoder and have one).
			v, _ := protowire.ConsumeBytes(b[n:])
			userAt, userEnd, userVal = at, at+n+m, v
		case num == fieldPacketSequence && typ == protowire.VarintType:
			v, _ := protowire.ConsumeVarint(b[n:])
			seq = uint32(v)
		}
		// A known field of another wire type is an unknown field to
		// protobuf, and kept as such.
		b = b[n+m:]
	}
	if userAt < 0 {
		return append([]byte(nil), pkt...), seq, nil
	}
	r.msgCounter++
	var nonce [msgIDLen]byte
	copy(nonce[:], r.msgEpoch[:])
	binary.BigEndian.PutUint64(nonce[8:], r.msgCounter)
	field := protowire.SizeTag(fieldUserNonce) + protowire.SizeBytes(msgIDLen)
	userLen := len(userVal) + field
	out := make([]byte, 0, len(pkt)+field+protowire.SizeVarint(uint64(userLen)))
	out = append(out, pkt[:userAt]...)
	out = protowire.AppendTag(out, fieldPacketUser, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(userLen))
	out = append(out, userVal...)
	out = protowire.AppendTag(out, fieldUserNonce, protowire.BytesType)
	out = protowire.AppendBytes(out, nonce[:])
	out = append(out, pkt[userEnd:]...)
	return out, seq, nil
}

// Field numbers stamp reads and writes (LiveKit's DataPacket and
// UserPacket).
const (
	fieldPacketUser     protowire.Number = 2  // DataPacket.user
	fieldPacketSequence protowire.Number = 16 // DataPacket.sequence
	fieldUserNonce      protowire.Number = 11 // UserPacket.nonce
)

// sendReliable keeps pkt, then writes it. The caller holds sendSem.
func (r *Room) sendReliable(ctx context.Context, pkt []byte) error {
	b, seq, err := r.stamp(pkt)
	if err != nil {
		return fmt.Errorf("callstate: encoding a packet: %w", err)
	}
	tr := r.transport()
	r.retainMu.Lock()
	r.trimLocked(tr)
	r.sentBytes += uint64(len(b))
	r.retained = append(r.retained, retainedPacket{seq: seq, pkt: b, end: r.sentBytes, at: time.Now()})
	r.retainedBytes += len(b)
	r.retainMu.Unlock()
	err = tr.Send(ctx, true, b)
	if err == nil {
		return nil
	}
	if errors.Is(err, rtc.ErrClosed) && r.checkOpen() == nil {
		// The transport was replaced by a rejoin in progress: the packet
		// is kept, and the rejoin sends it.
		return nil
	}
	// Not written: forget it (it is the last one kept).
	r.retainMu.Lock()
	if n := len(r.retained); n > 0 && r.retained[n-1].seq == seq {
		r.retainedBytes -= len(r.retained[n-1].pkt)
		r.retained = r.retained[:n-1]
		r.sentBytes -= uint64(len(b))
	}
	r.retainMu.Unlock()
	return err
}

// trimLocked forgets the retained packets the server surely has. The
// caller holds retainMu.
func (r *Room) trimLocked(tr *rtc.Transport) {
	buffered := tr.ReliableBuffered()
	acked := uint64(0)
	if r.sentBytes > buffered {
		acked = r.sentBytes - buffered
	}
	// alive: the send time of the newest packet the server acknowledged,
	// so the server was alive (and forwarding) at least until then.
	alive := r.aliveAt
	for j := len(r.retained) - 1; j >= 0; j-- {
		if r.retained[j].end <= acked {
			if r.retained[j].at.After(alive) {
				alive = r.retained[j].at
			}
			break
		}
	}
	r.aliveAt = alive
	i := 0
	for ; i < len(r.retained); i++ {
		p := r.retained[i]
		if p.end > acked || (alive.Sub(p.at) < retainAcked && r.retainedBytes <= r.opts.MaxQueuedBytes) {
			break
		}
		r.retainedBytes -= len(p.pkt)
		r.retained[i] = retainedPacket{}
	}
	r.retained = r.retained[i:]
	if len(r.retained) == 0 {
		r.retained = nil
	}
}

// replay sends the retained packets the server may not have again, in
// order, before any new send (it holds sendSem, and the gate is still
// closed). After a rejoin every retained packet goes again, renumbered for
// the new session.
func (r *Room) replay(rejoin bool, lastSeq uint32) {
	if err := r.acquire(r.life, "replay", r.sendSem); err != nil {
		return
	}
	defer func() { <-r.sendSem }()
	tr := r.transport()
	r.retainMu.Lock()
	old := r.retained
	if rejoin {
		r.retained, r.retainedBytes, r.sentBytes = nil, 0, 0
		r.aliveAt = time.Time{}
		r.seq.Store(0)
	}
	r.retainMu.Unlock()
	sent := 0
	for _, p := range old {
		if !rejoin && p.seq <= lastSeq {
			continue
		}
		b := p.pkt
		seq := p.seq
		if rejoin {
			var dp lkpb.DataPacket
			if err := proto.Unmarshal(p.pkt, &dp); err != nil {
				continue
			}
			seq = r.nextSeq()
			dp.Sequence = seq
			var err error
			if b, err = proto.Marshal(&dp); err != nil {
				continue
			}
		}
		r.retainMu.Lock()
		r.sentBytes += uint64(len(b))
		if rejoin {
			r.retained = append(r.retained, retainedPacket{seq: seq, pkt: b, end: r.sentBytes, at: time.Now()})
			r.retainedBytes += len(b)
		}
		r.retainMu.Unlock()
		if err := tr.Send(r.life, true, b); err != nil {
			r.opts.Logger.Warn("callstate: sending a reliable packet again", "err", err)
			return
		}
		sent++
	}
	if sent > 0 {
		r.opts.Logger.Info("callstate: reliable packets sent again", "count", sent, "rejoin", rejoin)
	}
}

// closeGate makes sends wait (reliable) or drop (lossy) until openGate.
func (r *Room) closeGate() {
	r.gateMu.Lock()
	defer r.gateMu.Unlock()
	select {
	case <-r.gate:
		r.gate = make(chan struct{})
	default:
	}
}

func (r *Room) openGate() {
	r.gateMu.Lock()
	defer r.gateMu.Unlock()
	select {
	case <-r.gate:
	default:
		close(r.gate)
	}
}

func (r *Room) gateOpen() bool {
	r.gateMu.Lock()
	g := r.gate
	r.gateMu.Unlock()
	select {
	case <-g:
		return true
	default:
		return false
	}
}

// awaitGate waits, while the Room recovers, for sends to reopen; the
// payload bytes waiting are bounded by MaxQueuedBytes.
func (r *Room) awaitGate(ctx context.Context, op string, n int) error {
	r.gateMu.Lock()
	g := r.gate
	select {
	case <-g:
		r.gateMu.Unlock()
		return nil
	default:
	}
	if r.queued+n > r.opts.MaxQueuedBytes {
		q := r.queued
		r.gateMu.Unlock()
		return fmt.Errorf("%w: %s: %d bytes already waiting (JoinOptions.MaxQueuedBytes %d)", ErrBackpressure, op, q, r.opts.MaxQueuedBytes)
	}
	r.queued += n
	r.gateMu.Unlock()
	defer func() {
		r.gateMu.Lock()
		r.queued -= n
		r.gateMu.Unlock()
	}()
	select {
	case <-g:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("callstate: %s: waiting for the connection to come back: %w", op, ctx.Err())
	case <-r.closing:
		return r.endError()
	}
}
