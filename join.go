package callstate

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/callstate/callstate/internal/chunk"
	"github.com/callstate/callstate/internal/lkpb"
	"github.com/callstate/callstate/internal/redact"
	"github.com/callstate/callstate/internal/rtc"
	"github.com/callstate/callstate/internal/signal"
	"github.com/pion/webrtc/v4"
)

// Join joins the room that token grants, on the LiveKit server at serverURL
// (ws://, wss://, http:// or https://), with the options in opts (nil for
// the defaults). ctx bounds the join only; the Room lives until Close or
// until the server ends it.
//
// Join returns once the participant is connected: the state of the room is
// known (participants, metadata, session data), events flow, and, unless
// the participant is receive-only, data can be sent: a packet published
// right after Join returns is delivered. Errors are *JoinError values
// matching ErrInvalidArgument, ErrBadToken, ErrServerUnreachable or
// ErrJoinRefused; their text never contains the token.
func Join(ctx context.Context, serverURL, token string, opts *JoinOptions) (*Room, error) {
	if err := checkJoinArgs(serverURL, token); err != nil {
		return nil, err
	}
	o, err := opts.resolve(serverURL)
	if err != nil {
		return nil, err
	}
	if o.HTTPClient == nil {
		o.HTTPClient = acquireHTTP()
		o.ownHTTP = true
	}
	// The Room's end releases the shared HTTP client once the Room runs;
	// until then, a failed join does.
	running := false
	defer func() {
		if o.ownHTTP && !running {
			releaseHTTP()
		}
	}()
	initial := o.initialMetadata

	r := newRoom(o, serverURL, token)
	cfg := r.chunkConfig()
	r.asm = chunk.NewAssembler(cfg)

	tr, sig, jr, err := r.dialSession(ctx, token, "", o.Attributes, !o.TwoPeerConnections)
	for attempt, wait := 1, joinRetryWait; err != nil && passingRefusal(err) && attempt < o.JoinAttempts; attempt, wait = attempt+1, 2*wait {
		o.Logger.Debug("callstate: the server refused the join for now; trying again", "err", err, "attempt", attempt, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err // the refusal says more than the deadline
		}
		tr, sig, jr, err = r.dialSession(ctx, token, "", o.Attributes, !o.TwoPeerConnections)
	}
	if err != nil {
		return nil, err
	}
	r.sigMu.Lock()
	r.sig = sig
	r.sigMu.Unlock()
	tr.Attach(iceServers(jr.GetIceServers()))
	now := time.Now()
	r.local = participantFromInfo(jr.GetParticipant())
	for _, pi := range jr.GetOtherParticipants() {
		if pi.GetState() == lkpb.ParticipantInfo_DISCONNECTED {
			continue
		}
		p := participantFromInfo(pi)
		r.putRemoteLocked(p, Participant{})
	}
	r.info = roomInfoFromProto(jr.GetRoom())
	r.session = newSessionData(r.local.Identity)
	cfg.MaxLossyPacket = maxLossyPacket(r.local.Identity, r.local.SID)
	r.lossyEnc = chunk.NewEncoder(cfg)
	r.session.observe(now, r.info.Metadata, false)

	r.tr = tr
	if tr.SinglePC() && hasRelay(jr.GetIceServers()) {
		// The offer in the join request carries only the candidates found
		// without the server's ICE servers, which were not known yet. Most
		// networks need nothing more (the server's own candidates are
		// reachable); if the connection is not up soon, restart ICE to
		// gather through the server's TURN relays too.
		relay := time.AfterFunc(relayRestartAfter, func() {
			select {
			case <-r.subReady:
			case <-r.closing:
			default:
				if err := tr.RestartICE(); err != nil {
					o.Logger.Debug("callstate: ICE restart through the server's relays", "err", err)
				}
			}
		})
		defer relay.Stop()
	}
	r.gate = make(chan struct{})
	close(r.gate)
	running = true
	r.wg.Add(3)
	go r.readLoop()
	r.expireLoop()
	r.startSessionTimer()

	fail := func(err error) (*Room, error) {
		r.shutdown(ReasonJoinFailure, err, true)
		<-r.done
		return nil, joinError(ctx, err)
	}
	publish := !o.ReceiveOnly && r.local.Permissions.CanPublishData
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
		// Join returns only once our own channels are open, so that the
		// first packet the caller publishes is carried, never dropped
		// while reported sent.
		if err := tr.WaitReady(ctx); err != nil {
			if errors.Is(err, rtc.ErrClosed) {
				err = r.endError()
			}
			return fail(err)
		}
	}
	// Less the message id that sendReliable adds to plain packets.
	cfg.MaxReliablePacket = maxReliablePacket(tr.MaxMessageSize(), o.MaxReliablePacket, r.local.Identity, r.local.SID) - msgIDReserve
	cfg.ReserveForwardedDestinations = true
	r.enc = chunk.NewEncoder(cfg)
	r.mu.Lock()
	r.state = StateConnected
	r.mu.Unlock()
	if initial != nil || o.Name != "" {
		upd := &lkpb.UpdateParticipantMetadata{Name: o.Name}
		if initial != nil {
			upd.Metadata = *initial
		}
		if err := r.updateSelf(ctx, "Join", upd); err != nil {
			r.shutdown(ReasonJoinFailure, err, true)
			<-r.done
			return nil, err
		}
	}
	// After the initial metadata and name, so that the others' first
	// sight of the participant already has them.
	if publish && !o.NoPresenceTrack {
		// Before Join returns, so that the others learn of the join at
		// once (see JoinOptions.NoPresenceTrack).
		if _, err := r.publishDataTrack(ctx, presenceTrack, 0, nil); err != nil {
			r.shutdown(ReasonJoinFailure, err, true)
			<-r.done
			return nil, joinError(ctx, err)
		}
	}
	return r, nil
}

// dialSession connects a new session: the signalling connection and the
// transport, not yet attached, in the layout asked for (one PeerConnection, falling
// back to two on a server without /rtc/v1). metadata and attrs, when set,
// are the participant's at join. It is used by Join and by a rejoin.
func (r *Room) dialSession(ctx context.Context, token, metadata string, attrs map[string]string, singlePC bool) (*rtc.Transport, *signal.Client, *lkpb.JoinResponse, error) {
	o := r.opts
	sigOpts := signal.Options{
		URL:           r.url,
		Token:         token,
		SDKVersion:    Version,
		AutoSubscribe: o.AutoSubscribe,
		Attributes:    attrs,
		Metadata:      metadata,
		HTTPClient:    o.HTTPClient,
		Handler:       r.handleSignal,
		Raw:           r.rawSignalHook(),

		WithoutCapabilities: o.withoutCapabilities,
	}
	trCfg := rtc.Config{
		Loopback:      o.loopback,
		SettingEngine: o.SettingEngine,
		SharedNet:     o.sharedNet,
		Logger:        o.Logger,
		SendSignal:    r.sendSignal,
		OnMessage:     r.onData,
		OnDataTrack:   r.onDataTrack,
		OnState:       r.onTransportState,
	}
	var tr *rtc.Transport
	var sig *signal.Client
	var first *lkpb.SignalResponse
	var err error
	if singlePC {
		// One PeerConnection, offered in the join request: the server
		// answers right after its JoinResponse, saving the round trip of
		// an offer sent after the join.
		trCfg.SinglePC = true
		tr, err = rtc.New(trCfg)
		if err != nil {
			return nil, nil, nil, &JoinError{Kind: ErrJoinRefused, Err: err}
		}
		offer, err := tr.Offer(ctx)
		if err != nil {
			_ = tr.Close()
			return nil, nil, nil, joinError(ctx, err)
		}
		sigOpts.SinglePC = true
		sigOpts.PublisherOffer = offer
		sig, first, err = signal.Dial(ctx, sigOpts)
		if err != nil {
			_ = tr.Close()
			tr = nil
			if !noV1(err) {
				return nil, nil, nil, joinError(ctx, err)
			}
			o.Logger.Debug("callstate: the server has no /rtc/v1; joining with two PeerConnections", "err", err)
		}
	}
	if tr == nil {
		sigOpts.SinglePC, sigOpts.PublisherOffer = false, nil
		sig, first, err = signal.Dial(ctx, sigOpts)
		if err != nil {
			return nil, nil, nil, joinError(ctx, err)
		}
	}
	jr := first.GetJoin()
	if jr == nil {
		sig.Close(context.Background(), false)
		if tr != nil {
			_ = tr.Close()
		}
		if l := first.GetLeave(); l != nil {
			return nil, nil, nil, &JoinError{Kind: ErrJoinRefused, Message: "the server sent leave: " + l.GetReason().String()}
		}
		return nil, nil, nil, &JoinError{Kind: ErrJoinRefused, Message: "the server's first message was not a join response"}
	}
	if tr == nil {
		trCfg.SinglePC = false
		trCfg.ICEServers = iceServers(jr.GetIceServers())
		tr, err = rtc.New(trCfg)
		if err != nil {
			sig.Close(context.Background(), true)
			return nil, nil, nil, &JoinError{Kind: ErrJoinRefused, Err: err}
		}
	}
	// The caller attaches the transport (tr.Attach) once sig is the Room's
	// signalling connection: candidates gathered after the offer go out
	// through Room.sendSignal, which sends on the Room's connection.
	return tr, sig, jr, nil
}

// chunkConfig returns the packetization limits the options ask for.
func (r *Room) chunkConfig() chunk.Config {
	// Fields left zero take their defaults in NewAssembler and NewEncoder,
	// where the byte budgets are computed from MaxMessageSize.
	cfg := chunk.Config{}
	cfg.MaxMessageSize = r.opts.MaxMessageSize
	if r.opts.LossyReassemblyTimeout > 0 {
		cfg.LossyTimeout = r.opts.LossyReassemblyTimeout
	}
	if r.opts.StreamReassemblyTimeout > 0 {
		cfg.StreamTimeout = r.opts.StreamReassemblyTimeout
	}
	return cfg
}

// relayRestartAfter is how long a single-PeerConnection join waits for a
// direct connection before it restarts ICE through the server's TURN
// relays.
const relayRestartAfter = 2 * time.Second

// hasRelay reports whether the server named a TURN server.
func hasRelay(servers []*lkpb.ICEServer) bool {
	for _, s := range servers {
		for _, u := range s.GetUrls() {
			if strings.HasPrefix(u, "turn:") || strings.HasPrefix(u, "turns:") {
				return true
			}
		}
	}
	return false
}

// noV1 reports a refused /rtc/v1 upgrade that means the server does not
// have the path (servers before it answer 404), as opposed to a refused
// token or room.
func noV1(err error) bool {
	var de *signal.DialError
	return errors.As(err, &de) && (de.StatusCode == http.StatusNotFound || de.StatusCode == http.StatusMethodNotAllowed)
}

// maxReliablePacket is the largest reliable packet the Room sends as one
// packet: the peer's SCTP maximum message size (capped at 65,535, the most
// pion's receivers accept by default, and 65,535 when it is not known), less
// what the server stamps into a packet it forwards (the sender's identity
// and sid, twice), or the caller's lower limit. The chunk encoder also
// leaves room for the destinations the server copies into the packet
// (Config.ReserveForwardedDestinations).
func maxReliablePacket(negotiated, requested int, identity, sid string) int {
	if negotiated <= 0 || negotiated > 65535 {
		negotiated = 65535
	}
	limit := negotiated - (2*(len(identity)+3) + 2*(len(sid)+3) + 8)
	if requested > 0 && requested < limit {
		limit = requested
	}
	return max(limit, minReliablePacket)
}

// msgIDReserve is what a message id (UserPacket.nonce: tag, length and 16
// bytes, and a longer length of the enclosing field) adds to a packet.
const msgIDReserve = 24

// minReliablePacket is the floor of WithMaxReliablePacket: a stream chunk
// must still hold its header and some content.
const minReliablePacket = 1024

func checkJoinArgs(serverURL, token string) error {
	if _, err := parseServerURL(serverURL); err != nil {
		return &JoinError{Kind: ErrInvalidArgument, Err: err}
	}
	if strings.TrimSpace(token) == "" {
		return &JoinError{Kind: ErrBadToken, Message: "empty token"}
	}
	return nil
}

// joinError classifies a failure during Join. Every text it keeps goes
// through redact: a dial error quotes the URL with the token, and
// LiveKit's 401 body quotes the token itself.
// DefaultJoinAttempts is JoinOptions.JoinAttempts' default.
const DefaultJoinAttempts = 3

// joinRetryWait is the wait before Join's second attempt (see
// JoinOptions.JoinAttempts).
const joinRetryWait = 250 * time.Millisecond

// passingRefusal reports a join the server refused for reasons of its own
// that pass (HTTP 5xx): overloaded nodes, a room node that did not answer
// in time.
func passingRefusal(err error) bool {
	var je *JoinError
	return errors.As(err, &je) && je.StatusCode >= 500 && je.StatusCode <= 599
}

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
		return &JoinError{StatusCode: de.StatusCode, Message: redact.String(de.Body), Kind: kind}
	}
	switch {
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return &JoinError{Kind: ErrServerUnreachable, Message: "join cancelled", Err: ctx.Err()}
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		return &JoinError{Kind: ErrServerUnreachable, Message: "no connection within the join deadline", Err: ctx.Err()}
	case errors.Is(err, errServerLeft):
		// The server itself ended the session during the join.
		return &JoinError{Kind: ErrJoinRefused, Err: redact.Error(err)}
	case errors.Is(err, ErrClosed):
		// The connection went away during the join (the server went
		// silent or closed it): the server is not reachable for us.
		return &JoinError{Kind: ErrServerUnreachable, Err: redact.Error(err)}
	}
	return &JoinError{Kind: ErrServerUnreachable, Err: redact.Error(err)}
}

func iceServers(in []*lkpb.ICEServer) []webrtc.ICEServer {
	var out []webrtc.ICEServer
	for _, s := range in {
		out = append(out, webrtc.ICEServer{URLs: s.GetUrls(), Username: s.GetUsername(), Credential: s.GetCredential()})
	}
	return out
}
