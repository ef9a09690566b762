package callstate

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
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
	initial := o.initialMetadata

	r := newRoom(o, serverURL, token)
	cfg := r.chunkConfig()
	r.asm = chunk.NewAssembler(cfg)

	sigOpts := signal.Options{
		URL:           serverURL,
		Token:         token,
		SDKVersion:    Version,
		AutoSubscribe: o.AutoSubscribe,
		HTTPClient:    o.HTTPClient,
		Handler:       r.handleSignal,
	}
	sigOpts.Raw = r.rawSignalHook()
	if len(o.Attributes) > 0 {
		b, _ := json.Marshal(o.Attributes)
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
		r.putRemoteLocked(p, Participant{})
	}
	r.info = roomInfoFromProto(jr.GetRoom())
	r.session = newSessionData(r.local.Identity)
	cfg.MaxLossyPacket = maxLossyPacket(r.local.Identity, r.local.SID)
	r.enc = chunk.NewEncoder(cfg)
	r.lossyEnc = chunk.NewEncoder(cfg)
	r.session.observe(now, r.info.Metadata)

	tr, err := rtc.New(rtc.Config{
		ICEServers:    iceServers(jr.GetIceServers()),
		Loopback:      o.loopback,
		SettingEngine: o.SettingEngine,
		Logger:        o.Logger,
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
	return r, nil
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
