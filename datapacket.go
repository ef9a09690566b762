package callstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"encoding/binary"

	"github.com/callstate/callstate/internal/chunk"
	"github.com/callstate/callstate/internal/lkpb"
	"github.com/callstate/callstate/internal/rtc"
	"google.golang.org/protobuf/proto"
)

// DataKind is the delivery kind of a data packet.
type DataKind int

const (
	// Reliable data arrives once, whole and in order (SCTP reliable,
	// ordered). Payloads over one packet travel as a LiveKit data stream.
	Reliable DataKind = iota
	// Lossy data may be lost but is never retransmitted late (SCTP
	// unordered, no retransmits). Payloads over one network packet are
	// split into fragments; a message missing any fragment is dropped
	// whole and counted, never delivered in part.
	Lossy
)

// String returns "reliable" or "lossy".
func (k DataKind) String() string {
	if k == Lossy {
		return "lossy"
	}
	return "reliable"
}

// Data is a received data message.
type Data struct {
	// From is the sender's identity, as the server stamped it. It is
	// empty for the server API (FromServer), for a hidden participant
	// (the server keeps its identity secret, but not its sid), and for a
	// text stream from an agent whose header named another participant
	// (LiveKit allows it) when the Room does not know the agent yet.
	From string
	// FromSID is the sender's participant sid, as the server stamped it;
	// empty only for the server API.
	FromSID string
	// FromServer is true for a message the server API sent (RoomService
	// SendData and SendAppMessage): no participant sent it.
	FromServer bool
	// Topic is the topic the sender gave, if any.
	Topic string
	// Payload is the message.
	Payload []byte
	// Kind is how the message travelled.
	Kind DataKind
	// Stream describes the LiveKit data stream that carried the message, or
	// is nil for a message that came as a packet or as fragments.
	Stream *StreamInfo
}

func dataFromReceived(m chunk.Received) Data {
	d := Data{
		From:       m.SenderIdentity,
		FromSID:    m.SenderSID,
		FromServer: m.SenderIdentity == "" && m.SenderSID == "",
		Topic:      m.Topic,
		Payload:    m.Payload,
		Kind:       Lossy,
	}
	if m.Reliable {
		d.Kind = Reliable
	}
	if m.StreamID != "" {
		d.Stream = &StreamInfo{
			ID:         m.StreamID,
			Topic:      m.Topic,
			MimeType:   m.MimeType,
			Name:       m.Name,
			Text:       m.Text,
			Attributes: maps.Clone(m.Attributes),
			Size:       int64(len(m.Payload)),
			Timestamp:  m.Timestamp,
			Compressed: m.Compressed,
		}
	}
	return d
}

// PublishOptions configures PublishData; nil or the zero value sends a
// reliable packet without a topic to everyone else in the room.
type PublishOptions struct {
	// Kind is how the message travels; the default is Reliable.
	Kind DataKind
	// Topic is the message's topic, if any. Topics starting with
	// "callstate." or "_callstate." are reserved.
	Topic string
	// To addresses the message to the participants with these identities
	// only; empty means everyone else in the room. The identities must be
	// in the room as the Room knows it (LiveKit may announce a participant
	// who joined a moment ago only a few seconds later: see
	// WaitForParticipant); others are refused with ErrUnknownParticipant.
	To []string
}

// dataOptions are a packet's delivery options as the server API sends them.
type dataOptions struct {
	kind  DataKind
	topic string
	to    []string
}

// PublishData sends payload to the other participants (LiveKit's data
// packets), as opts says (nil: reliable, to everyone, without a topic).
//
// Any payload up to the Room's maximum message size
// (JoinOptions.MaxMessageSize) is carried: reliable payloads larger than one
// packet travel as a LiveKit data stream, lossy ones as fragments that each
// fit one network packet. It returns once the whole message is handed to the
// transport, blocking while the transport's send buffer is full; ctx bounds
// the wait. Lossy sends never wait for a reliable transfer in progress, and
// reliable ones never for lossy ones.
//
// It refuses, before sending anything: a payload over the maximum size
// (ErrTooLarge), a token without the canPublishData grant
// (ErrNotPermitted), a recipient that is not in the room
// (ErrUnknownParticipant), a topic reserved by callstate
// (ErrInvalidArgument), and a receive-only Room (ErrReceiveOnly).
func (r *Room) PublishData(ctx context.Context, payload []byte, opts *PublishOptions) error {
	var o PublishOptions
	if opts != nil {
		o = *opts
	}
	if isReservedTopic(o.Topic) {
		return fmt.Errorf("%w: topic %q is reserved by callstate", ErrInvalidArgument, o.Topic)
	}
	return r.send(ctx, "PublishData", chunk.Message{
		Topic:        o.Topic,
		Payload:      payload,
		Destinations: o.To,
		Reliable:     o.Kind != Lossy,
	})
}

// isReservedTopic reports topics that callstate's own messages use (app
// messages, fragments, and those of later versions).
func isReservedTopic(t string) bool {
	return strings.HasPrefix(t, "callstate.") || strings.HasPrefix(t, "_callstate.")
}

func (r *Room) send(ctx context.Context, op string, m chunk.Message) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	what := "reliable payload"
	if !m.Reliable {
		what = "lossy payload"
	}
	if len(m.Payload) > r.opts.MaxMessageSize {
		return &SizeError{What: what, Size: len(m.Payload), Limit: r.opts.MaxMessageSize}
	}
	if err := r.preflight(op, m.Destinations); err != nil {
		return err
	}
	// While the Room recovers its connection, reliable sends wait (bounded
	// in bytes and by ctx) and lossy ones are dropped and counted: lossy
	// data is for what is worth nothing late.
	if m.Reliable {
		if err := r.awaitGate(ctx, op, len(m.Payload)); err != nil {
			return err
		}
	} else if !r.gateOpen() {
		r.lossyDropped.Add(1)
		return nil
	}
	// Sends of one kind are serialised: reliable sequence numbers must
	// reach the server in order, and an encoder reuses its buffer. Each
	// kind has its own encoder and turn, so that a lossy message never
	// waits behind a reliable transfer of megabytes.
	enc, sem := r.enc, r.sendSem
	if !m.Reliable {
		enc, sem = r.lossyEnc, r.lossySem
	}
	if err := r.acquire(ctx, op, sem); err != nil {
		return err
	}
	defer func() { <-sem }()
	_, err := enc.Encode(m, r.nextSeq, func(pkt []byte) error {
		if f := r.opts.sendFilter; f != nil && !f(m.Reliable, pkt) {
			if !m.Reliable {
				r.lossyDropped.Add(1)
			}
			return nil
		}
		if !m.Reliable {
			err := r.transport().Send(ctx, false, pkt)
			if errors.Is(err, rtc.ErrClosed) && r.checkOpen() == nil {
				// A transport replaced by a rejoin.
				r.lossyDropped.Add(1)
				return nil
			}
			return err
		}
		return r.sendReliable(ctx, pkt)
	})
	if err == nil {
		return nil
	}
	var le *chunk.LimitError
	switch {
	case errors.As(err, &le):
		return &SizeError{What: le.What, Size: le.Size, Limit: le.Limit}
	case errors.Is(err, chunk.ErrReservedTopic), errors.Is(err, chunk.ErrInvalidString),
		errors.Is(err, chunk.ErrLossyStream), errors.Is(err, chunk.ErrInvalidText):
		return fmt.Errorf("%w: %s: %v", ErrInvalidArgument, op, err)
	case errors.Is(err, rtc.ErrClosed):
		return r.endError()
	case ctx.Err() != nil:
		return fmt.Errorf("callstate: %s: %w", op, ctx.Err())
	}
	if cerr := r.checkOpen(); cerr != nil {
		return cerr
	}
	return fmt.Errorf("callstate: %s: %w", op, err)
}

// preflight refuses a send that cannot succeed: without the canPublishData
// grant, to a recipient not in the room, or from a receive-only Room.
func (r *Room) preflight(op string, dests []string) error {
	r.mu.Lock()
	canPublish := r.local.Permissions.CanPublishData
	var unknown []string
	for _, id := range dests {
		if _, ok := r.remotes[id]; !ok {
			unknown = append(unknown, id)
		}
	}
	r.mu.Unlock()
	if !canPublish {
		return &PermissionError{Op: op, Grant: "canPublishData"}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return fmt.Errorf("%w: %q not in the room", ErrUnknownParticipant, unknown)
	}
	if !r.transport().Publishing() {
		return fmt.Errorf("%w: %s", ErrReceiveOnly, op)
	}
	return nil
}

// sendPacket sends one reliable DataPacket built by the caller (RPC
// packets, stream packets), numbered in turn with the Room's other reliable
// packets. It blocks while the transport's buffer is full; ctx bounds the
// wait.
func (r *Room) sendPacket(ctx context.Context, op string, pkt *lkpb.DataPacket) error {
	// While the Room recovers its connection, the packet waits as every
	// reliable send does (see send).
	if err := r.awaitGate(ctx, op, proto.Size(pkt)); err != nil {
		return err
	}
	if err := r.acquire(ctx, op, r.sendSem); err != nil {
		return err
	}
	defer func() { <-r.sendSem }()
	pkt.Sequence = r.nextSeq()
	b, err := proto.Marshal(pkt)
	if err != nil {
		return fmt.Errorf("callstate: %s: %w", op, err)
	}
	if f := r.opts.sendFilter; f != nil && !f(true, b) {
		return nil
	}
	if err := r.sendReliable(ctx, b); err != nil {
		switch {
		case errors.Is(err, rtc.ErrClosed):
			return r.endError()
		case ctx.Err() != nil:
			return fmt.Errorf("callstate: %s: %w", op, ctx.Err())
		}
		if cerr := r.checkOpen(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("callstate: %s: %w", op, err)
	}
	return nil
}

func (r *Room) nextSeq() uint32 { return r.seq.Add(1) }

// DataStats are counters of the packetization engine. Counters only grow.
type DataStats struct {
	// PacketsSent and BytesSent count the data packets handed to the
	// transport and their encoded size.
	PacketsSent, BytesSent uint64
	// FragmentedSent counts lossy messages sent as fragments, and
	// FragmentsSent their fragments.
	FragmentedSent, FragmentsSent uint64
	// StreamsSent counts reliable messages sent as data streams, and
	// ChunksSent their chunks.
	StreamsSent, ChunksSent uint64
	// FragmentsReceived counts lossy fragments received.
	FragmentsReceived uint64
	// MessagesReassembled counts messages delivered whole from fragments.
	MessagesReassembled uint64
	// StreamsReceived counts data streams delivered whole; StreamsAborted
	// those their sender ended with an error.
	StreamsReceived, StreamsAborted uint64
	// CompressedStreamsSent counts the data streams SendText, SendBytes,
	// SendFile and SendChatMessage sent compressed (see
	// StreamOptions.NoCompression); CompressedStreamsReceived the
	// compressed streams received, delivered whole or handed to a stream
	// handler.
	CompressedStreamsSent, CompressedStreamsReceived uint64
	// DroppedIncomplete counts partly received messages discarded whole
	// because a fragment or chunk did not arrive in time (or their sender
	// left).
	DroppedIncomplete uint64
	// RejectedMalformed counts packets refused as malformed (text streams
	// that are not UTF-8 among them); RejectedLimit those refused by a
	// size, memory or decompression limit.
	RejectedMalformed, RejectedLimit uint64
	// Duplicates counts duplicate fragments and chunks ignored.
	Duplicates uint64
	// Partial and Buffered are the messages under reassembly now and the
	// bytes they hold.
	Partial, Buffered int
	// StreamsRefused counts streams for a handler refused because
	// MaxOpenStreams were being read; StreamsTooSlow those ended for a
	// reader that made no room for StreamStallLimit.
	StreamsRefused, StreamsTooSlow uint64
	// RpcBusy counts RPC requests refused because MaxRpcHandlers were
	// running; RpcDropped those dropped unanswered because too many
	// refusals were being sent.
	RpcBusy, RpcDropped uint64
}

func dataStatsFrom(s chunk.Stats) DataStats {
	return DataStats{
		PacketsSent:         s.PacketsSent,
		BytesSent:           s.BytesSent,
		FragmentedSent:      s.FragmentedSent,
		FragmentsSent:       s.FragmentsSent,
		StreamsSent:         s.StreamsSent,
		ChunksSent:          s.ChunksSent,
		FragmentsReceived:   s.FragmentsReceived,
		MessagesReassembled: s.MessagesReassembled,
		StreamsReceived:     s.StreamsReceived,
		StreamsAborted:      s.StreamsAborted,

		CompressedStreamsReceived: s.CompressedReceived,

		DroppedIncomplete: s.DroppedIncomplete,
		RejectedMalformed: s.RejectedMalformed,
		RejectedLimit:     s.RejectedLimit,
		Duplicates:        s.Duplicates,
		Partial:           s.Partial,
		Buffered:          s.Buffered,
	}
}

// MaxLossyPacketSize is the largest lossy data packet, as an SCTP message,
// that callstate lets travel: one network packet. Lossy messages larger
// than one packet are split into fragments that each fit.
const MaxLossyPacketSize = 1400

// maxLossyPacket is the largest lossy packet the local participant may send
// so that the packet is still within MaxLossyPacketSize after the server
// has stamped the sender's identity and sid into it (DataPacket fields 4
// and 17, and the legacy UserPacket fields 5 and 1).
func maxLossyPacket(identity, sid string) int {
	stamp := 2*(len(identity)+3) + 2*(len(sid)+3) + 8
	return MaxLossyPacketSize - stamp
}

// expireEvery is how often partly received messages are checked for
// expiry.
const expireEvery = 250 * time.Millisecond

// expireLoop expires partly received messages every expireEvery until the
// Room ends. It runs on a timer's callbacks, not on a goroutine of its own,
// so that an idle Room costs no goroutine for it; the caller has added one
// to r.wg, which is released exactly once: by the end of r.life when the
// timer is pending, else by the callback that finds the Room ending.
func (r *Room) expireLoop() {
	var mu sync.Mutex
	var t *time.Timer
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(expireEvery, func() {
		select {
		case <-r.closing:
			r.wg.Done()
			return
		default:
		}
		now := time.Now()
		r.asm.Expire(now)
		r.expireStreams(now)
		mu.Lock()
		t.Reset(expireEvery)
		mu.Unlock()
	})
	context.AfterFunc(r.life, func() {
		mu.Lock()
		stopped := t.Stop()
		mu.Unlock()
		if stopped {
			r.wg.Done()
		}
	})
}

// onData runs on pion's data channel goroutines.
func (r *Room) onData(reliable bool, b []byte) {
	if r.opts.rawHook != nil {
		r.opts.rawHook("data", b)
	}
	// b is pion's copy of the SCTP message, allocated for this message
	// alone: the payload may alias it instead of being copied once more.
	pkt := &lkpb.DataPacket{}
	if err := lkpb.UnmarshalDataPacketAliased(b, pkt); err != nil {
		r.mu.Lock()
		r.malform++
		r.mu.Unlock()
		return
	}
	if !r.firstDelivery(pkt) || !r.firstMessage(pkt) {
		return
	}
	// RPC and chat packets, and streams that a handler reads as they
	// arrive, do not go through the Assembler.
	if r.onPrimitive(pkt) {
		return
	}
	msg, ok := r.asm.Accept(time.Now(), pkt)
	if !ok {
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.unlock()
	if r.ended {
		return
	}
	if msg.SenderIdentity == "" && msg.SenderSID != "" {
		// A stream whose header named someone else (LiveKit lets agents do
		// that), from a sender none of whose own packets came yet: name it
		// by the sid the server stamped, if the participant is known.
		msg.SenderIdentity = r.identityOfSIDLocked(msg.SenderSID)
	}
	if r.onTopicLocked(now, msg) {
		return
	}
	if msg.Topic == AppMessageTopic {
		if !json.Valid(msg.Payload) {
			r.malform++
			return
		}
		r.emitLocked(AppMessage{Time: now, From: msg.SenderIdentity, FromSID: msg.SenderSID,
			FromServer: msg.SenderIdentity == "" && msg.SenderSID == "", Data: json.RawMessage(msg.Payload)})
		return
	}
	r.emitLocked(DataReceived{Time: now, Data: dataFromReceived(msg)})
}

// identityOfSIDLocked returns the identity of the remote participant with
// the sid, "" when there is none (a hidden participant, or one the server
// has not announced yet). The caller holds r.mu.
func (r *Room) identityOfSIDLocked(sid string) string {
	for _, p := range r.remotes {
		if p.SID == sid {
			return p.Identity
		}
	}
	return ""
}

// msgID is a reliable message's id as it travels in UserPacket.nonce: the
// sending Room's random epoch and a counter. It survives a rejoin (the new
// session's sid and sequence numbers do not), so receivers deduplicate by
// sender identity and id the packets a rejoined sender sends again.
// livekit-client ignores the nonce of packets it receives (it is meant for
// de-duplication), so LiveKit's own clients read these packets as usual.
type msgID struct {
	epoch [8]byte
	n     uint64
}

// msgIDLen is the length of a nonce that carries a msgID.
const msgIDLen = 16

func parseMsgID(b []byte) (msgID, bool) {
	if len(b) != msgIDLen {
		return msgID{}, false
	}
	var id msgID
	copy(id.epoch[:], b[:8])
	id.n = binary.BigEndian.Uint64(b[8:])
	return id, true
}

// firstMessage reports whether pkt is not a packet already delivered from
// its sender identity by message id (see msgID), recording it; packets
// without an id pass. A sender's ids grow in the order it sends, and
// reliable delivery keeps that order, so the last id per identity is all
// the state needed; a new epoch is a new Room of that identity.
func (r *Room) firstMessage(pkt *lkpb.DataPacket) bool {
	u := pkt.GetUser()
	if u == nil || pkt.GetKind() != lkpb.DataPacket_RELIABLE {
		return true
	}
	id, ok := parseMsgID(u.GetNonce())
	from := pkt.GetParticipantIdentity()
	if !ok || from == "" {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	last, seen := r.lastMsg[from]
	if seen && last.epoch == id.epoch && id.n <= last.n {
		r.dupes++
		return false
	}
	if !seen && len(r.lastMsg) >= 2*r.opts.MaxParticipants {
		// Bounded: forget an arbitrary sender (at worst a repeat of one
		// of its packets after a rejoin gets through).
		for k := range r.lastMsg {
			delete(r.lastMsg, k)
			break
		}
	}
	r.lastMsg[from] = id
	return true
}

// firstDelivery reports whether pkt is not a repeat of a reliable packet
// already received: senders number their reliable packets, and a packet
// whose number is not above the last one seen from its sender (as a session
// resumed after a network cut may send again) is dropped and counted.
// Packets without a number (the server API's, lossy ones) always pass.
func (r *Room) firstDelivery(pkt *lkpb.DataPacket) bool {
	seq, sid := pkt.GetSequence(), pkt.GetParticipantSid()
	if seq == 0 || sid == "" || pkt.GetKind() != lkpb.DataPacket_RELIABLE {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq <= r.lastSeq[sid] {
		r.dupes++
		return false
	}
	r.lastSeq[sid] = seq
	return true
}
