package callstate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/callstate/callstate/internal/lkpb"
	"github.com/callstate/callstate/internal/rtc"
	"github.com/callstate/callstate/internal/signal"
	"github.com/pion/webrtc/v4"
)

// pendingRequest is a request waiting for the server's answer; a resumed
// connection sends it again (the server's answer to a repeat is ignored).
type pendingRequest struct {
	answer chan *lkpb.RequestResponse
	req    *lkpb.SignalRequest
}

func (r *Room) sendSignal(req *lkpb.SignalRequest) error {
	sig := r.signal()
	if sig == nil {
		// Not reached while transports are attached only once the Room
		// has its connection; an error rather than a crash if it were.
		return errors.New("callstate: no signalling connection yet")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return sig.Send(ctx, req)
}

// transport returns the current transport, which a rejoin replaces.
func (r *Room) transport() *rtc.Transport {
	r.sigMu.Lock()
	defer r.sigMu.Unlock()
	return r.tr
}

// signal returns the current signalling connection.
func (r *Room) signal() *signal.Client {
	r.sigMu.Lock()
	defer r.sigMu.Unlock()
	return r.sig
}

// readLoop runs the signalling connection, and recovers it (resume.go)
// when it fails, when the server asks for it (Leave RESUME or RECONNECT), or
// when the PeerConnection fails (which drops the signalling connection so
// that the recovery happens here, on one goroutine).
func (r *Room) readLoop() {
	defer r.wg.Done()
	for {
		err := r.signal().Run()
		leave := r.leave.Swap(nil)
		if errors.Is(err, signal.ErrClosed) || r.checkOpen() != nil {
			r.shutdown(ReasonSignalClose, nil, false)
			return
		}
		need := rungResume
		if r.iceWanted.Load() {
			need = rungICE
		}
		if r.iceGaveUp.Swap(false) {
			need = rungRejoin
		}
		if leave != nil {
			reason := DisconnectReason(leave.GetReason())
			err = fmt.Errorf("%w: %s", errServerLeft, reason)
			switch leave.GetAction() {
			case lkpb.LeaveRequest_RESUME:
				need = max(need, rungICE)
			case lkpb.LeaveRequest_RECONNECT:
				need = rungRejoin
			}
		}
		ok, fail := r.recover(err, need)
		if ok {
			continue
		}
		r.shutdown(fail.reason, fail.err, false)
		return
	}
}

// handleSignal runs on the read loop, in the order frames arrive.
func (r *Room) handleSignal(msg *lkpb.SignalResponse) {
	if r.handleDataTrackSignal(msg) {
		return
	}
	switch m := msg.GetMessage().(type) {
	case *lkpb.SignalResponse_Offer:
		if err := r.transport().HandleOffer(m.Offer); err != nil {
			r.opts.Logger.Warn("callstate: subscriber offer", "err", err)
		}
	case *lkpb.SignalResponse_Answer:
		if err := r.transport().HandleAnswer(m.Answer); err != nil {
			r.opts.Logger.Warn("callstate: publisher answer", "err", err)
		}
	case *lkpb.SignalResponse_Trickle:
		if err := r.transport().HandleTrickle(m.Trickle); err != nil {
			r.opts.Logger.Debug("callstate: candidate", "err", err)
		}
	case *lkpb.SignalResponse_Update:
		r.mu.Lock()
		r.applyParticipantsLocked(time.Now(), m.Update.GetParticipants())
		r.unlock()
	case *lkpb.SignalResponse_SpeakersChanged:
		r.applySpeakers(m.SpeakersChanged.GetSpeakers())
	case *lkpb.SignalResponse_ConnectionQuality:
		r.applyQuality(m.ConnectionQuality.GetUpdates())
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
	case *lkpb.SignalResponse_RoomMoved:
		r.roomMoved(m.RoomMoved)
	case *lkpb.SignalResponse_Leave:
		// The server's action says what to do: RESUME (it keeps the
		// session, as after a data-path outage of about 15 s: resume and
		// restart ICE), RECONNECT (the session is gone: join again), or
		// DISCONNECT (the end).
		reason := DisconnectReason(m.Leave.GetReason())
		if a := m.Leave.GetAction(); a != lkpb.LeaveRequest_DISCONNECT && r.opts.resumes() {
			r.opts.Logger.Info("callstate: the server asks to reconnect", "reason", reason, "action", a.String())
			r.leave.Store(m.Leave)
			r.signal().Drop()
			return
		}
		r.shutdown(reason, fmt.Errorf("%w: %s", errServerLeft, reason), false)
	}
}

// roomMoved follows the server's move of this participant to another room
// (RoomService.MoveParticipant; announced because callstate speaks protocol
// 16): the connection stays, the token is the new room's, and the others
// are the new room's, so those who are not in it are reported as having
// left and the new ones as having joined.
func (r *Room) roomMoved(m *lkpb.RoomMovedResponse) {
	now := time.Now()
	r.mu.Lock()
	if m.GetToken() != "" {
		r.token = m.GetToken()
	}
	r.leaveUnlistedLocked(now, m.GetOtherParticipants())
	r.applyParticipantsLocked(now, m.GetOtherParticipants())
	if pi := m.GetParticipant(); pi != nil && pi.GetIdentity() == r.local.Identity {
		r.local.SID = pi.GetSid()
		r.applyParticipantsLocked(now, []*lkpb.ParticipantInfo{pi})
	}
	r.mu.Unlock()
	r.applyRoom(m.GetRoom())
}

func (r *Room) onTransportState(publisher bool, s webrtc.PeerConnectionState) {
	switch s {
	case webrtc.PeerConnectionStateConnected:
		if !publisher {
			r.subOnce.Do(func() { close(r.subReady) })
		}
	case webrtc.PeerConnectionStateFailed:
		// A PeerConnection that failed needs an ICE restart, which the
		// read loop's recovery does: drop the signalling connection (the
		// data path is down anyway) so that it starts. Without resuming,
		// the Room ends. pion calls this on its own goroutine, which
		// closing the PeerConnection waits for: end the Room elsewhere.
		if !r.opts.resumes() {
			go r.shutdown(ReasonSignalClose, fmt.Errorf("callstate: WebRTC connection failed"), false)
			break
		}
		if !r.iceWanted.Swap(true) && r.transport() != nil && r.ConnectionState() == StateConnected {
			r.opts.Logger.Info("callstate: the WebRTC connection failed, restarting ICE")
			if sig := r.signal(); sig != nil {
				sig.Drop()
			}
		}
	}
	select {
	case r.pcChanged <- struct{}{}:
	default:
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
	if err != nil && (!r.opts.resumes() || ctx.Err() != nil) {
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
	defer r.unlock()
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
		r.emitLocked(ParticipantUpdated{Time: now, Participant: p, Previous: prev, Changes: c, Local: true})
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
