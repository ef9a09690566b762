package callstate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/callstate/callstate/internal/datatrack"
	"github.com/callstate/callstate/internal/lkpb"
	"github.com/callstate/callstate/internal/rtc"
)

// Data tracks are LiveKit's named lossy tracks of frames: a participant
// publishes a track, others subscribe to it, and each frame is cut into
// packets that travel on a data channel of their own (`_data_track`,
// unordered, never retransmitted). A frame arrives whole or not at all.
// livekit-client (2.23: LocalParticipant.publishDataTrack,
// RemoteDataTrack.subscribe) and LiveKit's Rust and Python SDKs speak them.
//
// Data tracks are also how a LiveKit browser app receives a large lossy
// message from a callstate participant: PublishData's lossy messages over
// one packet travel as callstate's own fragments, which only callstate
// reassembles; a data track's frames are reassembled by livekit-client.

// Errors of data tracks, besides ErrNotPermitted, ErrInvalidArgument,
// ErrTooLarge, ErrNotFound and ErrClosed.
var (
	// ErrDuplicateName matches a data track refused because the
	// participant already publishes one of that name.
	ErrDuplicateName = errors.New("callstate: duplicate name")
	// ErrInvalidHandle matches a data track refused for its handle (the
	// number packets carry), which the Room chooses.
	ErrInvalidHandle = errors.New("callstate: invalid data track handle")
	// ErrUnpublished matches a push to, or a subscription of, a data track
	// that is no longer published.
	ErrUnpublished = errors.New("callstate: data track unpublished")
)

// MaxDataTrackName is the longest data track name, in bytes.
const MaxDataTrackName = 256

// presenceTrack is the data track a Room publishes to be announced at
// once (see JoinOptions.NoPresenceTrack). Names with the prefix are
// callstate's: not shown among a participant's DataTracks, not publishable.
const (
	presenceTrack     = "_callstate.presence"
	reservedTrackName = "_callstate"
)

// DataTrackInfo describes a published data track.
type DataTrackInfo struct {
	// SID is the server's id of the track.
	SID string
	// Name is the publisher's name for it, unique among its tracks.
	Name string
	// Encrypted is true when the publisher encrypts the frames end to end.
	Encrypted bool
}

func dataTracksFromInfo(in []*lkpb.DataTrackInfo) []DataTrackInfo {
	var out []DataTrackInfo
	for _, t := range in {
		if strings.HasPrefix(t.GetName(), reservedTrackName) {
			continue
		}
		out = append(out, DataTrackInfo{SID: t.GetSid(), Name: t.GetName(), Encrypted: t.GetEncryption() != lkpb.Encryption_NONE})
	}
	return out
}

// DataTrackPublished reports a data track that a remote participant
// published (also for each track of a participant that joins with tracks).
type DataTrackPublished struct {
	// Time is when the Room observed the change.
	Time time.Time
	// Participant is the publisher, as it stands after the change.
	Participant Participant
	// Track is the track published.
	Track DataTrackInfo
}

// DataTrackUnpublished reports a data track that a remote participant
// unpublished (also for each track of a participant that leaves).
type DataTrackUnpublished struct {
	// Time is when the Room observed the change.
	Time time.Time
	// Participant is the publisher, as it stands after the change.
	Participant Participant
	// Track is the track unpublished.
	Track DataTrackInfo
}

// When returns the event's time.
func (e DataTrackPublished) When() time.Time { return e.Time }
func (DataTrackPublished) isEvent()          {}

// When returns the event's time.
func (e DataTrackUnpublished) When() time.Time { return e.Time }
func (DataTrackUnpublished) isEvent()          {}

// emitDataTrackChangesLocked emits the events of the tracks old and p
// differ by. r.mu held.
func (r *Room) emitDataTrackChangesLocked(now time.Time, old, p Participant) {
	for _, t := range old.DataTracks {
		if !slices.ContainsFunc(p.DataTracks, func(n DataTrackInfo) bool { return n.SID == t.SID }) {
			r.emitLocked(DataTrackUnpublished{Time: now, Participant: p, Track: t})
			r.dt.unpublished(t.SID)
		}
	}
	for _, t := range p.DataTracks {
		if !slices.ContainsFunc(old.DataTracks, func(o DataTrackInfo) bool { return o.SID == t.SID }) {
			r.emitLocked(DataTrackPublished{Time: now, Participant: p, Track: t})
		}
	}
}

// ---- publishing ----

// DataTrackOptions configures PublishDataTrack. The zero value (or nil)
// means the defaults.
type DataTrackOptions struct {
	// MaxPacketSize is the largest packet the track sends, in bytes: zero
	// means 1,400 (what fits one network packet, the limit all of
	// callstate's lossy data keeps), up to 16,000 (what LiveKit's own
	// clients send, which SCTP fragments). A frame is at most 128 packets
	// (livekit-client drops longer ones), so the packet size sets the
	// largest frame: 176,128 bytes with the default and a user timestamp,
	// about 2 MB at 16,000.
	MaxPacketSize int
}

// FrameOptions configures one Push. The zero value (or nil) sends the
// frame without extensions.
type FrameOptions struct {
	// UserTimestamp is carried with the frame to its receivers (LiveKit's
	// user timestamp extension), for example the capture time in
	// microseconds since the Unix epoch; zero sends none.
	UserTimestamp uint64
}

// LocalDataTrack is a data track this participant publishes.
type LocalDataTrack struct {
	r      *Room
	info   DataTrackInfo
	handle uint16
	turn   chan struct{} // one Push at a time: the packetizer's state

	mu          sync.Mutex
	pk          *datatrack.Packetizer
	unpublished bool
	frames      uint64
	packets     uint64
}

// Info returns the track's sid and name. The sid changes when the Room
// rejoins as a new session and publishes the track again.
func (t *LocalDataTrack) Info() DataTrackInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.info
}

// MaxFrameSize is the largest frame Push accepts with a user timestamp.
func (t *LocalDataTrack) MaxFrameSize() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pk.MaxFrame(datatrack.FrameOptions{HasUserTimestamp: true})
}

// Push sends one frame to the track's subscribers. The frame is cut into
// packets that are handed to the `_data_track` data channel, waiting while
// that channel's send buffer is full (ctx bounds the wait); that channel's
// buffer is its own, so a Push never delays reliable data or PublishData.
// A frame travels whole or not at all: receivers drop a frame that misses
// a packet. Push returns a *SizeError (ErrTooLarge) for a frame over
// MaxFrameSize, before sending anything, and ErrUnpublished after
// Unpublish.
func (t *LocalDataTrack) Push(ctx context.Context, frame []byte, opts *FrameOptions) error {
	var o FrameOptions
	if opts != nil {
		o = *opts
	}
	r := t.r
	if err := r.checkOpen(); err != nil {
		return err
	}
	if err := r.acquire(ctx, "Push", t.turn); err != nil {
		return err
	}
	defer func() { <-t.turn }()
	t.mu.Lock()
	pk, gone := t.pk, t.unpublished
	t.mu.Unlock()
	if gone {
		return fmt.Errorf("%w: %q", ErrUnpublished, t.info.Name)
	}
	fo := datatrack.FrameOptions{UserTimestamp: o.UserTimestamp, HasUserTimestamp: o.UserTimestamp != 0}
	var n uint64
	err := pk.Packetize(frame, fo, func(pkt []byte) error {
		n++
		if f := r.opts.dataTrackSendFilter; f != nil && !f(pkt) {
			return nil
		}
		return r.transport().SendDataTrack(ctx, pkt)
	})
	t.mu.Lock()
	t.packets += n
	if err == nil {
		t.frames++
	}
	t.mu.Unlock()
	var fe *datatrack.FrameSizeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		return &SizeError{What: "data track frame", Size: fe.Size, Limit: fe.Limit}
	case errors.Is(err, rtc.ErrClosed):
		return r.endError()
	case ctx.Err() != nil:
		return fmt.Errorf("callstate: Push: %w", ctx.Err())
	}
	if cerr := r.checkOpen(); cerr != nil {
		return cerr
	}
	return fmt.Errorf("callstate: Push: %w", err)
}

// LocalDataTrackStats counts what a LocalDataTrack sent.
type LocalDataTrackStats struct {
	// Frames and Packets are the frames pushed whole and the packets sent.
	Frames, Packets uint64
}

// Stats returns the track's counters.
func (t *LocalDataTrack) Stats() LocalDataTrackStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return LocalDataTrackStats{Frames: t.frames, Packets: t.packets}
}

// dtAnswer is the server's answer to a publish or unpublish request.
type dtAnswer struct {
	info *lkpb.DataTrackInfo
	resp *lkpb.RequestResponse
}

// dataTracks is a Room's data track state. Its mutex is its own: packets
// are routed on the data channel's reader without taking r.mu.
type dataTracks struct {
	mu          sync.Mutex
	nextHandle  uint16
	local       map[uint16]*LocalDataTrack // by handle
	publishing  map[uint16]chan dtAnswer
	unpublishig map[uint16]chan dtAnswer
	subs        map[string]*RemoteDataTrackSubscription // by track sid
	handles     map[uint16]string                       // subscriber handle -> track sid
	handlesSeen chan struct{}                           // closed and replaced when handles change
	unrouted    uint64                                  // packets for no subscription
}

func newDataTracks() *dataTracks {
	return &dataTracks{
		local:       map[uint16]*LocalDataTrack{},
		publishing:  map[uint16]chan dtAnswer{},
		unpublishig: map[uint16]chan dtAnswer{},
		subs:        map[string]*RemoteDataTrackSubscription{},
		handles:     map[uint16]string{},
		handlesSeen: make(chan struct{}),
	}
}

// PublishDataTrack publishes a data track named name (1 to 256 bytes,
// unique among this participant's tracks) and returns it once the server
// has accepted it. Errors: a *PermissionError without the canPublishData
// grant (ErrNotPermitted), a *RequestError matching ErrDuplicateName,
// ErrInvalidArgument (an invalid name) or ErrInvalidHandle for the
// server's refusals, ErrReceiveOnly for a receive-only Room.
//
// Publishing a data track makes the server count the participant as a
// publisher, whose joins, updates and leave it announces at once rather
// than on its 3 s ticker (see JoinOptions.NoPresenceTrack).
func (r *Room) PublishDataTrack(ctx context.Context, name string, opts *DataTrackOptions) (*LocalDataTrack, error) {
	if strings.HasPrefix(name, reservedTrackName) {
		return nil, fmt.Errorf("%w: PublishDataTrack: the name prefix %q is reserved by callstate", ErrInvalidArgument, reservedTrackName)
	}
	return r.publishDataTrack(ctx, name, 0, opts)
}

// publishDataTrack publishes with the given handle, or a free one when 0.
func (r *Room) publishDataTrack(ctx context.Context, name string, handle uint16, opts *DataTrackOptions) (*LocalDataTrack, error) {
	const op = "PublishDataTrack"
	var o DataTrackOptions
	if opts != nil {
		o = *opts
	}
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	if name == "" || len(name) > MaxDataTrackName {
		return nil, &RequestError{Op: op, Reason: "INVALID_NAME", Message: fmt.Sprintf("a name is 1 to %d bytes", MaxDataTrackName), Kind: ErrInvalidArgument}
	}
	r.mu.Lock()
	canPublish := r.local.Permissions.CanPublishData
	r.mu.Unlock()
	if !canPublish {
		return nil, &PermissionError{Op: op, Grant: "canPublishData"}
	}
	if !r.transport().Publishing() {
		return nil, fmt.Errorf("%w: %s", ErrReceiveOnly, op)
	}
	d := r.dt
	d.mu.Lock()
	if handle == 0 {
		for range 1 << 16 {
			d.nextHandle++
			if d.nextHandle == 0 {
				continue
			}
			if _, used := d.local[d.nextHandle]; used {
				continue
			}
			if _, used := d.publishing[d.nextHandle]; used {
				continue
			}
			handle = d.nextHandle
			break
		}
	}
	pk, err := datatrack.NewPacketizer(max(handle, 1), o.MaxPacketSize)
	if err != nil {
		d.mu.Unlock()
		return nil, fmt.Errorf("%w: %s: MaxPacketSize %d: want 0 or %d to %d", ErrInvalidArgument, op, o.MaxPacketSize, datatrack.HeaderSize+32, datatrack.MaxPacketLimit)
	}
	if _, busy := d.publishing[handle]; busy || handle == 0 && len(d.local) >= 1<<16-1 {
		d.mu.Unlock()
		return nil, &RequestError{Op: op, Reason: "DUPLICATE_HANDLE", Message: "no free handle", Kind: ErrInvalidHandle}
	}
	ch := make(chan dtAnswer, 1)
	d.publishing[handle] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.publishing, handle)
		d.mu.Unlock()
	}()
	req := &lkpb.SignalRequest{Message: &lkpb.SignalRequest_PublishDataTrackRequest{PublishDataTrackRequest: &lkpb.PublishDataTrackRequest{PubHandle: uint32(handle), Name: name}}}
	if err := r.signal().Send(ctx, req); err != nil {
		if cerr := r.checkOpen(); cerr != nil {
			return nil, cerr
		}
		return nil, fmt.Errorf("callstate: %s: %w", op, err)
	}
	var a dtAnswer
	select {
	case a = <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("callstate: %s: no answer from the server: %w", op, ctx.Err())
	case <-r.closing:
		return nil, r.endError()
	}
	if a.resp != nil {
		return nil, dataTrackRequestError(op, a.resp)
	}
	t := &LocalDataTrack{
		r:      r,
		info:   DataTrackInfo{SID: a.info.GetSid(), Name: a.info.GetName()},
		handle: handle,
		turn:   make(chan struct{}, 1),
		pk:     pk,
	}
	d.mu.Lock()
	d.local[handle] = t
	d.mu.Unlock()
	return t, nil
}

func dataTrackRequestError(op string, resp *lkpb.RequestResponse) error {
	var kind error
	switch resp.GetReason() {
	case lkpb.RequestResponse_NOT_ALLOWED:
		return &PermissionError{Op: op, Grant: "canPublishData", Message: resp.GetMessage()}
	case lkpb.RequestResponse_DUPLICATE_NAME:
		kind = ErrDuplicateName
	case lkpb.RequestResponse_INVALID_NAME, lkpb.RequestResponse_INVALID_REQUEST:
		kind = ErrInvalidArgument
	case lkpb.RequestResponse_INVALID_HANDLE, lkpb.RequestResponse_DUPLICATE_HANDLE:
		kind = ErrInvalidHandle
	case lkpb.RequestResponse_NOT_FOUND:
		kind = ErrNotFound
	default:
		return requestError(op, resp)
	}
	return &RequestError{Op: op, Reason: resp.GetReason().String(), Message: resp.GetMessage(), Kind: kind}
}

// Unpublish unpublishes the track and waits for the server's answer; its
// subscribers' subscriptions end. Later Pushes return ErrUnpublished.
func (t *LocalDataTrack) Unpublish(ctx context.Context) error {
	const op = "Unpublish"
	r, d := t.r, t.r.dt
	if err := r.checkOpen(); err != nil {
		return err
	}
	t.mu.Lock()
	gone := t.unpublished
	t.mu.Unlock()
	if gone {
		return nil
	}
	ch := make(chan dtAnswer, 1)
	d.mu.Lock()
	d.unpublishig[t.handle] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.unpublishig, t.handle)
		d.mu.Unlock()
	}()
	req := &lkpb.SignalRequest{Message: &lkpb.SignalRequest_UnpublishDataTrackRequest{UnpublishDataTrackRequest: &lkpb.UnpublishDataTrackRequest{PubHandle: uint32(t.handle)}}}
	if err := r.signal().Send(ctx, req); err != nil {
		if cerr := r.checkOpen(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("callstate: %s: %w", op, err)
	}
	select {
	case a := <-ch:
		if a.resp != nil && a.resp.GetReason() != lkpb.RequestResponse_NOT_FOUND {
			return dataTrackRequestError(op, a.resp)
		}
	case <-ctx.Done():
		return fmt.Errorf("callstate: %s: no answer from the server: %w", op, ctx.Err())
	case <-r.closing:
		return r.endError()
	}
	d.mu.Lock()
	if d.local[t.handle] == t {
		delete(d.local, t.handle)
	}
	d.mu.Unlock()
	t.mu.Lock()
	t.unpublished = true
	t.mu.Unlock()
	return nil
}

// handleDataTrackSignal handles the server's data track messages; it
// reports whether msg was one.
func (r *Room) handleDataTrackSignal(msg *lkpb.SignalResponse) bool {
	d := r.dt
	switch m := msg.GetMessage().(type) {
	case *lkpb.SignalResponse_PublishDataTrackResponse:
		info := m.PublishDataTrackResponse.GetInfo()
		d.mu.Lock()
		ch := d.publishing[uint16(info.GetPubHandle())]
		d.mu.Unlock()
		if ch != nil {
			select {
			case ch <- dtAnswer{info: info}:
			default:
			}
		}
	case *lkpb.SignalResponse_UnpublishDataTrackResponse:
		h := uint16(m.UnpublishDataTrackResponse.GetInfo().GetPubHandle())
		d.mu.Lock()
		ch := d.unpublishig[h]
		t := d.local[h]
		if t != nil && t.info.SID == m.UnpublishDataTrackResponse.GetInfo().GetSid() {
			// Also the server's own unpublish, unasked.
			delete(d.local, h)
		} else {
			t = nil
		}
		d.mu.Unlock()
		if t != nil {
			t.mu.Lock()
			t.unpublished = true
			t.mu.Unlock()
		}
		if ch != nil {
			select {
			case ch <- dtAnswer{info: m.UnpublishDataTrackResponse.GetInfo()}:
			default:
			}
		}
	case *lkpb.SignalResponse_DataTrackSubscriberHandles:
		handles := map[uint16]string{}
		for h, t := range m.DataTrackSubscriberHandles.GetSubHandles() {
			handles[uint16(h)] = t.GetTrackSid()
		}
		d.mu.Lock()
		d.handles = handles
		close(d.handlesSeen)
		d.handlesSeen = make(chan struct{})
		d.mu.Unlock()
	case *lkpb.SignalResponse_RequestResponse:
		resp := m.RequestResponse
		var h uint16
		var table map[uint16]chan dtAnswer
		switch q := resp.GetRequest().(type) {
		case *lkpb.RequestResponse_PublishDataTrack:
			h, table = uint16(q.PublishDataTrack.GetPubHandle()), d.publishing
		case *lkpb.RequestResponse_UnpublishDataTrack:
			h, table = uint16(q.UnpublishDataTrack.GetPubHandle()), d.unpublishig
		default:
			return false
		}
		d.mu.Lock()
		ch := table[h]
		d.mu.Unlock()
		if ch != nil {
			select {
			case ch <- dtAnswer{resp: resp}:
			default:
			}
		}
	default:
		return false
	}
	return true
}

// ---- subscribing ----

// DataTrackSubscribeOptions configures SubscribeDataTrack. The zero value
// (or nil) means the defaults.
type DataTrackSubscribeOptions struct {
	// Buffer is how many frames wait for the reader; when it is full the
	// oldest is dropped and counted. Zero means 64.
	Buffer int
	// MaxFrameSize is the largest frame reassembled, in bytes; larger ones
	// are dropped and counted. Zero means 4 MiB.
	MaxFrameSize int
	// DeliverEncrypted hands out frames that carry LiveKit's E2EE extension
	// with their ciphertext (DataTrackFrame.Encrypted set), for a caller
	// that decrypts them itself. By default they are counted and dropped:
	// callstate does not decrypt, and never hands ciphertext out as if it
	// were the frame.
	DeliverEncrypted bool
}

// DataTrackFrame is a frame received on a data track.
type DataTrackFrame struct {
	// Payload is the frame; the receiver owns it.
	Payload []byte
	// UserTimestamp is the publisher's user timestamp, zero when it sent
	// none.
	UserTimestamp uint64
	// Timestamp is the packets' 90 kHz timestamp.
	Timestamp uint32
	// Received is when the frame was complete.
	Received time.Time
	// Encrypted is set (only with DeliverEncrypted) when Payload is
	// ciphertext; KeyIndex and IV are those of LiveKit's E2EE extension.
	Encrypted bool
	KeyIndex  uint8
	IV        [datatrack.IVSize]byte
}

// DataTrackSubscriptionStats counts what a subscription received.
type DataTrackSubscriptionStats struct {
	// Frames is the frames delivered to the buffer.
	Frames uint64
	// Overflowed is the frames dropped because the buffer was full (the
	// oldest go first).
	Overflowed uint64
	// Incomplete is the frames dropped because a packet was missing, or
	// because they were over MaxFrameSize.
	Incomplete uint64
	// Encrypted is the E2EE frames dropped (see DeliverEncrypted).
	Encrypted uint64
	// Malformed is the packets that could not be read.
	Malformed uint64
}

// RemoteDataTrackSubscription is a subscription to a remote data track.
// Frames arrive on C, or through Next.
type RemoteDataTrackSubscription struct {
	r        *Room
	info     DataTrackInfo
	identity string
	opts     DataTrackSubscribeOptions
	c        chan DataTrackFrame
	done     chan struct{}

	mu         sync.Mutex
	dp         *datatrack.Depacketizer
	closed     bool
	err        error // why it ended
	stats      DataTrackSubscriptionStats
	recvFilter func([]byte) bool
}

// C returns the channel frames arrive on; it is closed when the
// subscription ends (Unsubscribe, the track unpublished, the Room ended).
func (s *RemoteDataTrackSubscription) C() <-chan DataTrackFrame { return s.c }

// Track returns the subscribed track.
func (s *RemoteDataTrackSubscription) Track() DataTrackInfo { return s.info }

// Publisher returns the identity of the track's publisher.
func (s *RemoteDataTrackSubscription) Publisher() string { return s.identity }

// Next returns the next frame, waiting until one arrives, ctx is done or
// the subscription ends (an error matching ErrUnpublished or ErrClosed).
func (s *RemoteDataTrackSubscription) Next(ctx context.Context) (DataTrackFrame, error) {
	select {
	case f, ok := <-s.c:
		if ok {
			return f, nil
		}
		return DataTrackFrame{}, s.Err()
	case <-ctx.Done():
		return DataTrackFrame{}, ctx.Err()
	}
}

// Err returns why the subscription ended, or nil while it runs.
func (s *RemoteDataTrackSubscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Stats returns the subscription's counters.
func (s *RemoteDataTrackSubscription) Stats() DataTrackSubscriptionStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	ds := s.dp.Stats()
	st.Incomplete = ds.Dropped
	st.Malformed = ds.Malformed
	return st
}

// SubscribeDataTrack subscribes to the data track that the participant
// identity publishes under track (its name or its sid), and returns once
// the server has confirmed the subscription. Errors: ErrUnknownParticipant,
// ErrNotFound for a track the participant does not publish, a
// *PermissionError without the canSubscribe grant.
func (r *Room) SubscribeDataTrack(ctx context.Context, identity, track string, opts *DataTrackSubscribeOptions) (*RemoteDataTrackSubscription, error) {
	const op = "SubscribeDataTrack"
	var o DataTrackSubscribeOptions
	if opts != nil {
		o = *opts
	}
	if o.Buffer <= 0 {
		o.Buffer = 64
	}
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	p, ok := r.remotes[identity]
	canSub := r.local.Permissions.CanSubscribe
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q not in the room", ErrUnknownParticipant, identity)
	}
	if !canSub {
		return nil, &PermissionError{Op: op, Grant: "canSubscribe"}
	}
	i := slices.IndexFunc(p.DataTracks, func(t DataTrackInfo) bool { return t.SID == track || t.Name == track })
	if i < 0 {
		return nil, fmt.Errorf("%w: %s: %q publishes no data track %q", ErrNotFound, op, identity, track)
	}
	info := p.DataTracks[i]
	s := &RemoteDataTrackSubscription{
		r: r, info: info, identity: identity, opts: o,
		c:          make(chan DataTrackFrame, o.Buffer),
		done:       make(chan struct{}),
		dp:         datatrack.NewDepacketizer(datatrack.Limits{MaxFrame: o.MaxFrameSize}),
		recvFilter: r.opts.dataTrackRecvFilter,
	}
	d := r.dt
	d.mu.Lock()
	if old := d.subs[info.SID]; old != nil {
		d.mu.Unlock()
		return nil, fmt.Errorf("%w: %s: already subscribed to %q", ErrInvalidArgument, op, info.Name)
	}
	d.subs[info.SID] = s
	d.mu.Unlock()
	if err := r.sendDataSubscription(ctx, info.SID, true); err != nil {
		d.remove(s)
		if cerr := r.checkOpen(); cerr != nil {
			return nil, cerr
		}
		return nil, fmt.Errorf("callstate: %s: %w", op, err)
	}
	// Confirmed when the server's handle table lists the track.
	for {
		d.mu.Lock()
		seen := d.handlesSeen
		found := slices.Contains(valuesOf(d.handles), info.SID)
		d.mu.Unlock()
		if found {
			return s, nil
		}
		select {
		case <-seen:
		case <-ctx.Done():
			_ = s.Unsubscribe(context.Background())
			return nil, fmt.Errorf("callstate: %s: no answer from the server: %w", op, ctx.Err())
		case <-s.done:
			return nil, s.Err()
		case <-r.closing:
			return nil, r.endError()
		}
	}
}

func valuesOf(m map[uint16]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func (r *Room) sendDataSubscription(ctx context.Context, sid string, subscribe bool) error {
	return r.signal().Send(ctx, &lkpb.SignalRequest{Message: &lkpb.SignalRequest_UpdateDataSubscription{UpdateDataSubscription: &lkpb.UpdateDataSubscription{
		Updates: []*lkpb.UpdateDataSubscription_Update{{TrackSid: sid, Subscribe: subscribe}},
	}}})
}

// Unsubscribe ends the subscription: C is closed, frames still buffered
// stay readable.
func (s *RemoteDataTrackSubscription) Unsubscribe(ctx context.Context) error {
	r := s.r
	if !r.dt.remove(s) {
		return nil
	}
	s.end(nil)
	if r.checkOpen() != nil {
		return nil
	}
	if err := r.sendDataSubscription(ctx, s.info.SID, false); err != nil {
		return fmt.Errorf("callstate: Unsubscribe: %w", err)
	}
	return nil
}

// remove forgets s; it reports whether s was current.
func (d *dataTracks) remove(s *RemoteDataTrackSubscription) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.subs[s.info.SID] != s {
		return false
	}
	delete(d.subs, s.info.SID)
	return true
}

// unpublished ends the subscription of a track that is gone.
func (d *dataTracks) unpublished(sid string) {
	d.mu.Lock()
	s := d.subs[sid]
	delete(d.subs, sid)
	d.mu.Unlock()
	if s != nil {
		s.end(fmt.Errorf("%w: %q", ErrUnpublished, s.info.Name))
	}
}

// closeAll ends every subscription and local track (the Room ended).
func (d *dataTracks) closeAll(err error) {
	d.mu.Lock()
	subs := d.subs
	d.subs = map[string]*RemoteDataTrackSubscription{}
	d.mu.Unlock()
	for _, s := range subs {
		s.end(err)
	}
}

func (s *RemoteDataTrackSubscription) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed, s.err = true, err
	if err == nil {
		s.err = fmt.Errorf("%w: unsubscribed from %q", ErrClosed, s.info.Name)
	}
	close(s.c)
	close(s.done)
}

// onDataTrack routes a packet from the `_data_track` channel to its
// subscription, by the handle the server gave it. It runs on the
// channel's reader.
func (r *Room) onDataTrack(pkt []byte) {
	if len(pkt) < datatrack.HeaderSize {
		return
	}
	h := uint16(pkt[2])<<8 | uint16(pkt[3])
	d := r.dt
	d.mu.Lock()
	s := d.subs[d.handles[h]]
	if s == nil {
		d.unrouted++
	}
	d.mu.Unlock()
	if s != nil {
		s.push(pkt)
	}
}

func (s *RemoteDataTrackSubscription) push(pkt []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if s.recvFilter != nil && !s.recvFilter(pkt) {
		return
	}
	f, ok, _ := s.dp.Push(pkt)
	if !ok {
		return
	}
	if f.E2EE != nil && !s.opts.DeliverEncrypted {
		s.stats.Encrypted++
		return
	}
	out := DataTrackFrame{Payload: f.Payload, UserTimestamp: f.UserTimestamp, Timestamp: f.Timestamp, Received: time.Now()}
	if f.E2EE != nil {
		out.Encrypted, out.KeyIndex, out.IV = true, f.E2EE.KeyIndex, f.E2EE.IV
	}
	for {
		select {
		case s.c <- out:
			s.stats.Frames++
			return
		default:
		}
		// Full: drop the oldest. The reader may take one meanwhile, so
		// try again rather than assume a slot.
		select {
		case <-s.c:
			s.stats.Overflowed++
		default:
		}
	}
}

// ---- resuming and rejoining ----

// dataTrackSyncState adds the Room's data tracks to the SyncState of a
// resume: the tracks it publishes and its subscriptions, so that the
// server keeps both.
func (r *Room) dataTrackSyncState(st *lkpb.SyncState) {
	d := r.dt
	d.mu.Lock()
	defer d.mu.Unlock()
	for h, t := range d.local {
		st.PublishDataTracks = append(st.PublishDataTracks, &lkpb.PublishDataTrackResponse{Info: &lkpb.DataTrackInfo{PubHandle: uint32(h), Sid: t.info.SID, Name: t.info.Name}})
	}
	if len(d.subs) > 0 {
		ds := &lkpb.UpdateDataSubscription{}
		for sid := range d.subs {
			ds.Updates = append(ds.Updates, &lkpb.UpdateDataSubscription_Update{TrackSid: sid, Subscribe: true})
		}
		st.DataSubscription = ds
	}
}

// dataTracksReconnected is the hook the reconnection code calls once the
// Room is connected again. After a resume (rejoined false) it asks the
// server again for every subscription, which is harmless when the server
// kept them and restores them when it did not; the server answers with a
// new handle table. After a rejoin (a new session, rejoined true) it also
// publishes the local tracks again, under the same handles (their sids are
// new). Remote tracks keep their sids across our rejoin (the publishers'
// sessions did not change), so subscriptions are asked for by sid in both
// cases; one whose track is gone ends with ErrUnpublished when the
// participant update says so. With rejoined it waits for the server's
// answers to the publications: call it off the signalling read loop.
func (r *Room) dataTracksReconnected(ctx context.Context, rejoined bool) {
	d := r.dt
	d.mu.Lock()
	d.handles = map[uint16]string{}
	subs := make([]*RemoteDataTrackSubscription, 0, len(d.subs))
	for _, s := range d.subs {
		subs = append(subs, s)
	}
	var locals []*LocalDataTrack
	if rejoined {
		for _, t := range d.local {
			locals = append(locals, t)
		}
	}
	d.mu.Unlock()
	for _, t := range locals {
		nt, err := r.publishDataTrack(ctx, t.info.Name, t.handle, &DataTrackOptions{MaxPacketSize: t.pk.MaxPacket()})
		if err != nil {
			r.opts.Logger.Warn("callstate: publishing a data track again", "track", t.info.Name, "err", err)
			continue
		}
		d.mu.Lock()
		d.local[t.handle] = t // in place of nt: pushes go on through t
		d.mu.Unlock()
		t.mu.Lock()
		t.info.SID = nt.info.SID
		t.mu.Unlock()
	}
	for _, s := range subs {
		if err := r.sendDataSubscription(ctx, s.info.SID, true); err != nil {
			r.opts.Logger.Debug("callstate: subscribing to a data track again", "track", s.info.Name, "err", err)
		}
		s.mu.Lock()
		s.dp.Reset()
		s.mu.Unlock()
	}
}
