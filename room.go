package callstate

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/chunk"
	"github.com/callstate/callstate/internal/lkpb"
	"github.com/callstate/callstate/internal/rtc"
	"github.com/callstate/callstate/internal/signal"
)

// Version is callstate's version, reported to the server on join.
const Version = "0.1.0"

// Room is a joined room, as one participant sees it: Daily calls it the
// call object. It holds the current state of the room (participants, their
// metadata and user data, the room's metadata and session data), sends
// updates and messages, and delivers every change as an Event to its
// subscriptions.
//
// Concurrency: all methods are safe for concurrent use. State accessors
// return snapshots that the Room never modifies afterwards. Methods that
// talk to the server take a context that bounds that call only: cancelling
// it abandons the call, never the connection.
//
// Failure: a Room ends when Close is called, when the server removes the
// participant or closes the room, or when the connection is lost and cannot
// be resumed (see WithResume: a Room whose signalling connection is cut
// reports StateReconnecting and takes its session back when it can). Every
// subscription then receives a Disconnected event and its channel is
// closed; every call in progress or made later returns an error matching
// ErrClosed. Close must still be called to release resources; it is
// idempotent and returns once every goroutine of the Room has ended.
type Room struct {
	opts  *options
	url   string
	sigMu sync.Mutex
	sig   *signal.Client // the current signalling connection; replaced by a resume
	tr    *rtc.Transport
	enc   *chunk.Encoder
	asm   *chunk.Assembler
	seq   atomic.Uint32

	sendSem chan struct{} // one send at a time; acquiring it honours ctx

	mu      sync.Mutex
	token   string
	local   Participant
	remotes map[string]Participant // by identity
	info    RoomInfo
	session *sessionData
	subs    map[*Subscription]struct{}
	state   ConnectionState
	ended   bool // subscriptions closed
	reason  DisconnectReason
	endErr  error
	reqID   uint32
	pending map[uint32]pendingRequest
	malform uint64
	// sigMalformedTotal counts malformed frames of replaced signalling
	// connections; guarded by sigMu.
	sigMalformedTotal uint64
	lastSeq           map[string]uint32 // by sender sid: the last reliable sequence number received
	dupes             uint64
	subReady          chan struct{}
	subOnce           sync.Once

	closeOnce sync.Once
	closing   chan struct{} // closed when the Room starts ending
	life      context.Context
	endLife   context.CancelFunc // cancels life when the Room starts ending
	done      chan struct{}      // closed when the Room has ended
	wg        sync.WaitGroup
}

// pendingRequest is a request waiting for the server's answer; a resumed
// connection sends it again (the server's answer to a repeat is ignored).
type pendingRequest struct {
	answer chan *lkpb.RequestResponse
	req    *lkpb.SignalRequest
}

// State is a consistent snapshot of a Room.
type State struct {
	// Room is the room's name, sid and metadata.
	Room RoomInfo
	// Local is the local participant.
	Local Participant
	// Remote are the other participants, sorted by identity.
	Remote []Participant
	// SessionData is the session data; nil when the room metadata is not a
	// JSON object.
	SessionData map[string]json.RawMessage
	// Connection is the connection state.
	Connection ConnectionState
}

// DisconnectReason says why a Room or a participant left.
type DisconnectReason int32

// Disconnect reasons, as LiveKit reports them.
const (
	ReasonUnknown            = DisconnectReason(lkpb.DisconnectReason_UNKNOWN_REASON)
	ReasonClientInitiated    = DisconnectReason(lkpb.DisconnectReason_CLIENT_INITIATED)
	ReasonDuplicateIdentity  = DisconnectReason(lkpb.DisconnectReason_DUPLICATE_IDENTITY)
	ReasonServerShutdown     = DisconnectReason(lkpb.DisconnectReason_SERVER_SHUTDOWN)
	ReasonParticipantRemoved = DisconnectReason(lkpb.DisconnectReason_PARTICIPANT_REMOVED)
	ReasonRoomDeleted        = DisconnectReason(lkpb.DisconnectReason_ROOM_DELETED)
	ReasonStateMismatch      = DisconnectReason(lkpb.DisconnectReason_STATE_MISMATCH)
	ReasonJoinFailure        = DisconnectReason(lkpb.DisconnectReason_JOIN_FAILURE)
	ReasonSignalClose        = DisconnectReason(lkpb.DisconnectReason_SIGNAL_CLOSE)
	ReasonRoomClosed         = DisconnectReason(lkpb.DisconnectReason_ROOM_CLOSED)
	ReasonConnectionTimeout  = DisconnectReason(lkpb.DisconnectReason_CONNECTION_TIMEOUT)
)

// String returns the reason's name, for example "PARTICIPANT_REMOVED".
func (r DisconnectReason) String() string { return lkpb.DisconnectReason(r).String() }

// Join joins the room that token grants, on the LiveKit server at serverURL
// (ws://, wss://, http:// or https://). ctx bounds the join only; the Room
// lives until Close or until the server ends it.
//
// Join returns once the participant is connected: the state of the room is
// known (participants, metadata, session data), events flow, and, unless
// the participant is receive-only, data can be sent. Errors are *JoinError
// values matching ErrInvalidArgument, ErrBadToken, ErrServerUnreachable or
// ErrJoinRefused.
func Join(ctx context.Context, serverURL, token string, opts ...Option) (*Room, error) {
	o := &options{}
	for _, opt := range opts {
		opt(o)
	}
	o = o.withDefaults()
	if err := checkJoinArgs(serverURL, token); err != nil {
		return nil, err
	}
	var initial *string
	switch {
	case o.hasUserData:
		s, err := marshalUserData(o.userData)
		if err != nil {
			return nil, &JoinError{Kind: ErrInvalidArgument, Message: "initial user data", Err: err}
		}
		initial = &s
	case o.metadata != nil:
		initial = o.metadata
	}
	if initial != nil {
		if err := checkMetadata(*initial); err != nil {
			return nil, &JoinError{Kind: ErrInvalidArgument, Message: "initial metadata", Err: err}
		}
	}
	if len(o.name) > MaxNameSize {
		return nil, &JoinError{Kind: ErrInvalidArgument, Message: "name",
			Err: &SizeError{What: "name", Size: len(o.name), Limit: MaxNameSize}}
	}

	r := newRoom(o, serverURL, token)
	cfg := r.chunkConfig()
	r.asm = chunk.NewAssembler(cfg)

	sigOpts := signal.Options{
		URL:           serverURL,
		Token:         token,
		SDKVersion:    Version,
		AutoSubscribe: o.autoSubscribe,
		HTTPClient:    o.httpClient,
		Handler:       r.handleSignal,
	}
	sigOpts.Raw = r.rawSignalHook()
	if len(o.attributes) > 0 {
		b, _ := json.Marshal(o.attributes)
		sigOpts.Attributes = base64.URLEncoding.EncodeToString(b)
	}
	sig, first, err := signal.Dial(ctx, sigOpts)
	if err != nil {
		return nil, joinError(ctx, err)
	}
	r.sig = sig
	jr := first.GetJoin()
	if jr == nil {
		sig.Close(context.Background(), false)
		if l := first.GetLeave(); l != nil {
			return nil, &JoinError{Kind: ErrJoinRefused, Message: "the server sent leave: " + l.GetReason().String()}
		}
		return nil, &JoinError{Kind: ErrJoinRefused, Message: "the server's first message was not a join response"}
	}
	now := time.Now()
	r.local = participantFromInfo(jr.GetParticipant())
	for _, pi := range jr.GetOtherParticipants() {
		if pi.GetState() == lkpb.ParticipantInfo_DISCONNECTED {
			continue
		}
		p := participantFromInfo(pi)
		r.remotes[p.Identity] = p
	}
	r.info = roomInfoFromProto(jr.GetRoom())
	r.session = newSessionData(r.local.Identity)
	cfg.MaxLossyPacket = maxLossyPacket(r.local.Identity, r.local.SID)
	r.enc = chunk.NewEncoder(cfg)
	r.session.observe(now, r.info.Metadata)

	tr, err := rtc.New(rtc.Config{
		ICEServers:    iceServers(jr.GetIceServers()),
		Loopback:      o.loopback,
		SettingEngine: o.settingEngine,
		Logger:        o.logger,
		SendSignal:    r.sendSignal,
		OnMessage:     r.onData,
		OnState:       r.onTransportState,
	})
	if err != nil {
		sig.Close(context.Background(), true)
		return nil, &JoinError{Kind: ErrJoinRefused, Err: err}
	}
	r.tr = tr
	r.wg.Add(3)
	go r.readLoop()
	go r.expireLoop()
	go r.sessionLoop()

	fail := func(err error) (*Room, error) {
		r.shutdown(ReasonJoinFailure, err, true)
		<-r.done
		return nil, joinError(ctx, err)
	}
	publish := !o.receiveOnly && r.local.Permissions.CanPublishData
	if publish {
		if err := tr.Publish(); err != nil {
			return fail(err)
		}
	}
	for _, ready := range []<-chan struct{}{r.subReady, tr.SubscriberReady()} {
		select {
		case <-ready:
		case <-r.closing:
			return fail(r.endError())
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
	if publish {
		if err := tr.WaitReady(ctx); err != nil {
			if errors.Is(err, rtc.ErrClosed) {
				err = r.endError()
			}
			return fail(err)
		}
	}
	r.mu.Lock()
	r.state = StateConnected
	r.mu.Unlock()
	if initial != nil || o.name != "" {
		upd := &lkpb.UpdateParticipantMetadata{Name: o.name}
		if initial != nil {
			upd.Metadata = *initial
		}
		if err := r.updateSelf(ctx, "Join", upd); err != nil {
			r.shutdown(ReasonJoinFailure, err, true)
			<-r.done
			return nil, err
		}
	}
	return r, nil
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

// newRoom returns a Room before its connection: state, no transport.
func newRoom(o *options, serverURL, token string) *Room {
	r := &Room{
		opts:     o,
		url:      serverURL,
		token:    token,
		remotes:  map[string]Participant{},
		lastSeq:  map[string]uint32{},
		subs:     map[*Subscription]struct{}{},
		pending:  map[uint32]pendingRequest{},
		subReady: make(chan struct{}),
		sendSem:  make(chan struct{}, 1),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
		state:    StateConnecting,
	}
	r.life, r.endLife = context.WithCancel(context.Background())
	return r
}

// chunkConfig returns the packetization limits the options ask for.
func (r *Room) chunkConfig() chunk.Config {
	cfg := chunk.DefaultConfig()
	cfg.MaxMessageSize = r.opts.maxMessage
	if r.opts.lossyTimeout > 0 {
		cfg.LossyTimeout = r.opts.lossyTimeout
	}
	if r.opts.streamTimeout > 0 {
		cfg.StreamTimeout = r.opts.streamTimeout
	}
	return cfg
}

func checkJoinArgs(serverURL, token string) error {
	u, err := url.Parse(serverURL)
	if err != nil {
		return &JoinError{Kind: ErrInvalidArgument, Message: fmt.Sprintf("invalid URL %q", serverURL), Err: err}
	}
	switch u.Scheme {
	case "ws", "wss", "http", "https":
	default:
		return &JoinError{Kind: ErrInvalidArgument, Message: fmt.Sprintf("invalid URL %q: the scheme must be ws, wss, http or https", serverURL)}
	}
	if u.Host == "" {
		return &JoinError{Kind: ErrInvalidArgument, Message: fmt.Sprintf("invalid URL %q: no host", serverURL)}
	}
	if strings.TrimSpace(token) == "" {
		return &JoinError{Kind: ErrBadToken, Message: "empty token"}
	}
	return nil
}

// joinError classifies a failure during Join.
func joinError(ctx context.Context, err error) error {
	var je *JoinError
	if errors.As(err, &je) {
		return err
	}
	var de *signal.DialError
	if errors.As(err, &de) && de.StatusCode != 0 {
		kind := ErrJoinRefused
		if de.StatusCode == 401 {
			kind = ErrBadToken
		}
		return &JoinError{StatusCode: de.StatusCode, Message: de.Body, Kind: kind}
	}
	if errors.Is(err, ErrClosed) {
		return &JoinError{Kind: ErrJoinRefused, Err: err}
	}
	if ctx.Err() != nil {
		return &JoinError{Kind: ErrServerUnreachable, Message: "no connection within the join deadline", Err: ctx.Err()}
	}
	return &JoinError{Kind: ErrServerUnreachable, Err: err}
}

func iceServers(in []*lkpb.ICEServer) []webrtc.ICEServer {
	var out []webrtc.ICEServer
	for _, s := range in {
		out = append(out, webrtc.ICEServer{URLs: s.GetUrls(), Username: s.GetUsername(), Credential: s.GetCredential()})
	}
	return out
}

func (r *Room) sendSignal(req *lkpb.SignalRequest) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.signal().Send(ctx, req)
}

// signal returns the current signalling connection.
func (r *Room) signal() *signal.Client {
	r.sigMu.Lock()
	defer r.sigMu.Unlock()
	return r.sig
}

func (r *Room) readLoop() {
	defer r.wg.Done()
	for {
		err := r.signal().Run()
		if errors.Is(err, signal.ErrClosed) {
			r.shutdown(ReasonSignalClose, nil, false)
			return
		}
		if r.checkOpen() == nil && r.resume(err) {
			continue
		}
		reason := ReasonSignalClose
		if errors.Is(err, signal.ErrTimeout) {
			reason = ReasonConnectionTimeout
		}
		r.shutdown(reason, err, false)
		return
	}
}

func (r *Room) expireLoop() {
	defer r.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.closing:
			return
		case now := <-t.C:
			r.asm.Expire(now)
		}
	}
}

// handleSignal runs on the read loop, in the order frames arrive.
func (r *Room) handleSignal(msg *lkpb.SignalResponse) {
	switch m := msg.GetMessage().(type) {
	case *lkpb.SignalResponse_Offer:
		if err := r.tr.HandleOffer(m.Offer); err != nil {
			r.opts.logger.Warn("callstate: subscriber offer", "err", err)
		}
	case *lkpb.SignalResponse_Answer:
		if err := r.tr.HandleAnswer(m.Answer); err != nil {
			r.opts.logger.Warn("callstate: publisher answer", "err", err)
		}
	case *lkpb.SignalResponse_Trickle:
		if err := r.tr.HandleTrickle(m.Trickle); err != nil {
			r.opts.logger.Debug("callstate: candidate", "err", err)
		}
	case *lkpb.SignalResponse_Update:
		r.mu.Lock()
		r.applyParticipantsLocked(time.Now(), m.Update.GetParticipants())
		r.mu.Unlock()
	case *lkpb.SignalResponse_RoomUpdate:
		r.applyRoom(m.RoomUpdate.GetRoom())
	case *lkpb.SignalResponse_RefreshToken:
		r.mu.Lock()
		r.token = m.RefreshToken
		r.mu.Unlock()
	case *lkpb.SignalResponse_RequestResponse:
		r.mu.Lock()
		p, ok := r.pending[m.RequestResponse.GetRequestId()]
		delete(r.pending, m.RequestResponse.GetRequestId())
		r.mu.Unlock()
		if ok {
			p.answer <- m.RequestResponse
		}
	case *lkpb.SignalResponse_Leave:
		reason := DisconnectReason(m.Leave.GetReason())
		r.shutdown(reason, fmt.Errorf("callstate: the server ended the session: %s", reason), false)
	}
}

func (r *Room) onTransportState(publisher bool, s webrtc.PeerConnectionState) {
	switch s {
	case webrtc.PeerConnectionStateConnected:
		if !publisher {
			r.subOnce.Do(func() { close(r.subReady) })
		}
	case webrtc.PeerConnectionStateFailed:
		// pion calls this on its own goroutine, which closing the
		// PeerConnection waits for: end the Room elsewhere.
		go r.shutdown(ReasonSignalClose, fmt.Errorf("callstate: WebRTC connection failed"), false)
	}
}

// applyParticipantsLocked merges participant infos from the server and
// emits the resulting events; r.mu held.
func (r *Room) applyParticipantsLocked(now time.Time, infos []*lkpb.ParticipantInfo) {
	for _, pi := range infos {
		if pi.GetIdentity() == r.local.Identity {
			if pi.GetState() == lkpb.ParticipantInfo_DISCONNECTED || pi.GetSid() != r.local.SID {
				continue
			}
			if pi.GetVersion() <= r.local.Version {
				continue
			}
			p := participantFromInfo(pi)
			prev := r.local
			r.local = p
			if c := diffParticipants(prev, p); c.Any() {
				r.emitLocked(ParticipantUpdated{at: at{now}, Participant: p, Previous: prev, Changes: c, Local: true})
			}
			continue
		}
		old, known := r.remotes[pi.GetIdentity()]
		if pi.GetState() == lkpb.ParticipantInfo_DISCONNECTED {
			if known && old.SID == pi.GetSid() {
				delete(r.remotes, old.Identity)
				delete(r.lastSeq, old.SID)
				r.asm.Forget(old.Identity)
				r.session.poke() // its lost session-data writes are ours to repair now
				r.emitLocked(ParticipantLeft{at: at{now}, Participant: old, Reason: DisconnectReason(pi.GetDisconnectReason())})
			}
			continue
		}
		p := participantFromInfo(pi)
		switch {
		case !known:
			r.remotes[p.Identity] = p
			r.emitLocked(ParticipantJoined{at: at{now}, Participant: p})
		case old.SID != p.SID:
			// The identity joined again; the old session is gone.
			r.remotes[p.Identity] = p
			delete(r.lastSeq, old.SID)
			r.asm.Forget(old.Identity)
			r.emitLocked(ParticipantLeft{at: at{now}, Participant: old, Reason: ReasonDuplicateIdentity})
			r.emitLocked(ParticipantJoined{at: at{now}, Participant: p})
		case p.Version > old.Version:
			r.remotes[p.Identity] = p
			if c := diffParticipants(old, p); c.Any() {
				r.emitLocked(ParticipantUpdated{at: at{now}, Participant: p, Previous: old, Changes: c})
			}
		}
	}
}

func diffParticipants(a, b Participant) Changes {
	var c Changes
	c.Metadata = a.Metadata != b.Metadata
	if c.Metadata {
		_, oka := a.UserData()
		_, okb := b.UserData()
		c.UserData = oka || okb
	}
	c.Name = a.Name != b.Name
	c.Permissions = a.Permissions != b.Permissions
	for k, v := range b.Attributes {
		old, ok := a.Attributes[k]
		switch {
		case !ok:
			c.AttributesAdded = append(c.AttributesAdded, k)
		case old != v:
			c.AttributesChanged = append(c.AttributesChanged, k)
		}
	}
	for k := range a.Attributes {
		if _, ok := b.Attributes[k]; !ok {
			c.AttributesRemoved = append(c.AttributesRemoved, k)
		}
	}
	sort.Strings(c.AttributesAdded)
	sort.Strings(c.AttributesChanged)
	sort.Strings(c.AttributesRemoved)
	return c
}

func (r *Room) applyRoom(pr *lkpb.Room) {
	if pr == nil {
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.info
	r.info = roomInfoFromProto(pr)
	if prev.Metadata == r.info.Metadata {
		return
	}
	r.emitLocked(RoomMetadataChanged{at: at{now}, Metadata: r.info.Metadata, Previous: prev.Metadata})
	if ev, ok := r.session.observe(now, r.info.Metadata); ok {
		r.emitLocked(ev)
	}
}

// onData runs on pion's data channel goroutines.
func (r *Room) onData(reliable bool, b []byte) {
	if r.opts.rawHook != nil {
		r.opts.rawHook("data", b)
	}
	pkt := &lkpb.DataPacket{}
	if err := proto.Unmarshal(b, pkt); err != nil {
		r.mu.Lock()
		r.malform++
		r.mu.Unlock()
		return
	}
	if !r.firstDelivery(pkt) {
		return
	}
	msg, ok := r.asm.Accept(time.Now(), pkt)
	if !ok {
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return
	}
	if msg.Topic == AppMessageTopic {
		if !json.Valid(msg.Payload) {
			r.malform++
			return
		}
		r.emitLocked(AppMessage{at: at{now}, From: msg.SenderIdentity, Data: json.RawMessage(msg.Payload)})
		return
	}
	r.emitLocked(DataReceived{at: at{now}, Data: dataFromReceived(msg)})
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

// shutdown starts ending the Room once; the work is done by finish on its
// own goroutine so that shutdown may be called from any goroutine, including
// the ones finish waits for.
func (r *Room) shutdown(reason DisconnectReason, err error, leave bool) {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.reason = reason
		r.endErr = err
		r.state = StateDisconnected
		r.mu.Unlock()
		close(r.closing)
		r.endLife()
		go r.finish(leave)
	})
}

func (r *Room) finish(leave bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if sig := r.signal(); sig != nil {
		sig.Close(ctx, leave)
	}
	if r.tr != nil {
		_ = r.tr.Close()
	}
	r.wg.Wait()
	// Session-data writes in progress use the HTTP client until they see
	// closing; wait for them before releasing its connections.
	r.session.sem <- struct{}{}
	if r.opts.ownHTTP {
		r.opts.httpClient.CloseIdleConnections()
	}
	r.mu.Lock()
	for id, p := range r.pending {
		delete(r.pending, id)
		close(p.answer)
	}
	r.ended = true
	now := time.Now()
	ev := Disconnected{at: at{now}, Reason: r.reason, Err: r.endErr}
	for s := range r.subs {
		s.deliverLocked(ConnectionStateChanged{at: at{now}, State: StateDisconnected})
		s.deliverLocked(ev)
		s.closeLocked()
	}
	r.mu.Unlock()
	close(r.done)
}

// endError is the error calls get once the Room is ending.
func (r *Room) endError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.endErr != nil {
		return fmt.Errorf("%w: %w", ErrClosed, r.endErr)
	}
	return ErrClosed
}

// Close leaves the room and releases every resource of the Room: calls in
// progress return ErrClosed, subscriptions receive Disconnected and are
// closed, and no goroutine of the Room remains when Close returns. Close is
// idempotent and safe to call concurrently; it waits at most a few seconds
// for the server to acknowledge the leave.
func (r *Room) Close() error {
	r.flushSessionData(time.Second)
	r.shutdown(ReasonClientInitiated, nil, true)
	<-r.done
	return nil
}

// Done returns a channel closed when the Room has ended.
func (r *Room) Done() <-chan struct{} { return r.done }

// Err returns why the Room ended: nil while it runs and after Close, the
// cause otherwise.
func (r *Room) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.endErr
}

// ConnectionState returns the current connection state.
func (r *Room) ConnectionState() ConnectionState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// Name returns the room's name.
func (r *Room) Name() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info.Name
}

// SID returns the room's server-assigned session id.
func (r *Room) SID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info.SID
}

// Info returns the room's name, sid and metadata as last reported by the
// server.
func (r *Room) Info() RoomInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info
}

// Metadata returns the room's raw metadata string (LiveKit's room metadata,
// of which the session data is the JSON-object view).
func (r *Room) Metadata() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info.Metadata
}

// LocalParticipant returns the local participant's state.
func (r *Room) LocalParticipant() Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.local
}

// RemoteParticipants returns the other participants, sorted by identity.
func (r *Room) RemoteParticipants() []Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.remotesLocked()
}

func (r *Room) remotesLocked() []Participant {
	out := slices.Collect(maps.Values(r.remotes))
	slices.SortFunc(out, func(a, b Participant) int { return strings.Compare(a.Identity, b.Identity) })
	return out
}

// Participant returns the participant with the given identity, local or
// remote.
func (r *Room) Participant(identity string) (Participant, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if identity == r.local.Identity {
		return r.local, true
	}
	p, ok := r.remotes[identity]
	return p, ok
}

// State returns a consistent snapshot of the whole room.
func (r *Room) State() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stateLocked()
}

func (r *Room) stateLocked() State {
	return State{
		Room:        r.info,
		Local:       r.local,
		Remote:      r.remotesLocked(),
		SessionData: r.session.dataLocked(),
		Connection:  r.state,
	}
}

// Stats are counters of a Room's data path.
type Stats struct {
	// Malformed counts packets and frames from the network that could not
	// be decoded and were discarded.
	Malformed uint64
	// Repeated counts reliable packets received again (by their sender's
	// sequence number) and discarded.
	Repeated uint64
	// Data are the packetization engine's counters.
	Data DataStats
}

// Stats returns the Room's counters.
func (r *Room) Stats() Stats {
	r.mu.Lock()
	m, d := r.malform, r.dupes
	r.mu.Unlock()
	return Stats{Malformed: m + r.sigMalformed(), Repeated: d, Data: dataStatsFrom(r.enc.Stats().Add(r.asm.Stats()))}
}

func (r *Room) sigMalformed() uint64 {
	r.sigMu.Lock()
	defer r.sigMu.Unlock()
	n := r.sigMalformedTotal
	if r.sig != nil {
		n += r.sig.Malformed()
	}
	return n
}

// bound returns ctx, also cancelled when the Room starts ending, so that no
// call outlives the Room.
func (r *Room) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(r.life, cancel)
	return ctx, func() { stop(); cancel() }
}

// acquire takes the one-slot semaphore sem, honouring ctx and the Room's
// end; release it with <-sem.
func (r *Room) acquire(ctx context.Context, op string, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("callstate: %s: %w", op, ctx.Err())
	case <-r.closing:
		return r.endError()
	}
}

// checkOpen returns the error for calls on an ending Room.
func (r *Room) checkOpen() error {
	select {
	case <-r.closing:
		return r.endError()
	default:
		return nil
	}
}

// request sends an UpdateParticipantMetadata and waits for the server's
// answer.
func (r *Room) updateSelf(ctx context.Context, op string, upd *lkpb.UpdateParticipantMetadata) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	r.mu.Lock()
	if !r.local.Permissions.CanUpdateMetadata {
		r.mu.Unlock()
		return &PermissionError{Op: op, Grant: "canUpdateOwnMetadata"}
	}
	r.reqID++
	id := r.reqID
	ch := make(chan *lkpb.RequestResponse, 1)
	upd.RequestId = id
	req := &lkpb.SignalRequest{Message: &lkpb.SignalRequest_UpdateMetadata{UpdateMetadata: upd}}
	r.pending[id] = pendingRequest{answer: ch, req: req}
	r.mu.Unlock()
	drop := func() {
		r.mu.Lock()
		delete(r.pending, id)
		r.mu.Unlock()
	}
	err := r.signal().Send(ctx, req)
	// A failed send on a connection that is being resumed is sent again by
	// the resume; the answer is awaited either way.
	if err != nil && (r.opts.resumeWindow < 0 || ctx.Err() != nil) {
		drop()
		if cerr := r.checkOpen(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("callstate: %s: %w", op, err)
	}
	select {
	case resp, ok := <-ch:
		if !ok {
			return r.endError()
		}
		if err := requestError(op, resp); err != nil {
			return err
		}
	case <-ctx.Done():
		drop()
		return fmt.Errorf("callstate: %s: no answer from the server: %w", op, ctx.Err())
	case <-r.closing:
		drop()
		return r.endError()
	}
	// The server applied the update; reflect it locally at once (the
	// server's participant update confirming it may take seconds).
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.local
	p.Attributes = maps.Clone(p.Attributes)
	if upd.Metadata != "" {
		p.Metadata = upd.Metadata
	}
	if upd.Name != "" {
		p.Name = upd.Name
	}
	for k, v := range upd.Attributes {
		if v == "" {
			delete(p.Attributes, k)
		} else {
			p.Attributes[k] = v
		}
	}
	if c := diffParticipants(r.local, p); c.Any() {
		prev := r.local
		r.local = p
		r.emitLocked(ParticipantUpdated{at: at{now}, Participant: p, Previous: prev, Changes: c, Local: true})
	}
	return nil
}

func requestError(op string, resp *lkpb.RequestResponse) error {
	reason := resp.GetReason()
	var kind error
	switch reason {
	case lkpb.RequestResponse_OK:
		return nil
	case lkpb.RequestResponse_NOT_ALLOWED:
		return &PermissionError{Op: op, Grant: "canUpdateOwnMetadata", Message: resp.GetMessage()}
	case lkpb.RequestResponse_LIMIT_EXCEEDED:
		kind = ErrLimitExceeded
	case lkpb.RequestResponse_NOT_FOUND:
		kind = ErrNotFound
	default:
		kind = ErrRejected
	}
	return &RequestError{Op: op, Reason: reason.String(), Message: resp.GetMessage(), Kind: kind}
}
