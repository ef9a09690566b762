package callstate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/callstate/callstate/internal/lkpb"
	"github.com/callstate/callstate/internal/signal"
	"github.com/pion/webrtc/v4"
)

// DefaultResumeWindow is how long a Room tries to get its connection back
// after losing it, unless JoinOptions.Resume says otherwise: about what
// LiveKit's own clients allow (10 attempts over about 40 s).
const DefaultResumeWindow = 40 * time.Second

// DefaultReconnectAttempts bounds the attempts of one recovery unless
// JoinOptions.ReconnectAttempts says otherwise (LiveKit's clients: 10).
const DefaultReconnectAttempts = 10

// DefaultMaxQueuedBytes bounds the reliable bytes waiting to be sent while
// a Room recovers, unless JoinOptions.MaxQueuedBytes says otherwise.
const DefaultMaxQueuedBytes = 4 << 20

// Recovery says how a Room got its connection back.
type Recovery int

const (
	// RecoveryNone: the change was not the end of a recovery.
	RecoveryNone Recovery = iota
	// RecoveryResumed: the same session, over a new signalling connection;
	// the PeerConnection was kept.
	RecoveryResumed
	// RecoveryICERestart: the same session, and its PeerConnection found
	// a new network path (ICE restart).
	RecoveryICERestart
	// RecoveryRejoined: the session was gone (a restarted server, a server
	// that asked for it); the Room joined again as a new session with the
	// same identity, re-applied its own state and replayed its reliable
	// sends, and reported what changed while it was away.
	RecoveryRejoined
)

// String names the recovery.
func (k Recovery) String() string {
	switch k {
	case RecoveryResumed:
		return "resumed"
	case RecoveryICERestart:
		return "ICE restart"
	case RecoveryRejoined:
		return "rejoined"
	}
	return "none"
}

// The recovery ladder.
//
// When the Room loses its connection (the signalling WebSocket fails, the
// PeerConnection fails, or the server sends a Leave whose action is RESUME
// or RECONNECT) it does not end: it reports StateReconnecting and climbs,
// as far as needed:
//
//  1. resume: dial again with LiveKit's resume parameters (reconnect=1 and
//     the participant's sid) using the newest token; the server keeps the
//     participant and its PeerConnection, and the Room tells it what it
//     has (sync state). Others see no leave and no join.
//  2. ICE restart: after a resume, when the PeerConnection was failed or
//     disconnected, or the server asked for it (Leave RESUME after a
//     data-path outage), the Room offers again with new ICE credentials
//     until the PeerConnection is back.
//  3. rejoin: when the session is gone (Leave RECONNECT, a resume refused,
//     STATE_MISMATCH from a restarted server), the Room joins again as a
//     new session with the same identity and its own metadata, name and
//     attributes.
//
// Reliable packets the server may not have are sent again (see retain in
// datapacket.go). The whole recovery is bounded by JoinOptions.Resume and
// ReconnectAttempts; when they run out the Room ends with the last
// failure's reason.
const (
	resumeDialTimout = 5 * time.Second
	resumeBackoffMin = 100 * time.Millisecond
	resumeBackoffMax = 4 * time.Second
	// iceRestartEvery is how long the Room waits for the PeerConnection to
	// come back after an ICE restart before offering again.
	iceRestartEvery = 5 * time.Second
)

type rung int

const (
	rungResume rung = iota
	rungICE
	rungRejoin
)

// recoveryFailure is why a recovery ended the Room.
type recoveryFailure struct {
	reason DisconnectReason
	err    error
}

// recover tries to get the connection back after the signalling
// connection failed with cause; it reports whether it did. It runs on the
// read loop; the work after the new connection is up (ICE restart, replay)
// runs on a goroutine of its own, as it needs the read loop to handle the
// server's answers.
func (r *Room) recover(cause error, need rung) (bool, recoveryFailure) {
	fail := recoveryFailure{reason: ReasonSignalClose, err: cause}
	if errors.Is(cause, signal.ErrTimeout) {
		fail.reason = ReasonConnectionTimeout
	}
	if !r.opts.resumes() {
		return false, fail
	}
	// Sends wait only while the data path is unusable: after a cut of the
	// signalling connection alone the PeerConnection still carries data
	// (and SCTP delivers what it holds once the path is back).
	if need >= rungICE || r.transport().State() != webrtc.PeerConnectionStateConnected {
		r.closeGate()
	}
	r.recoveryGen.Add(1)
	r.setState(StateReconnecting)
	r.opts.Logger.Info("callstate: connection lost, recovering", "err", cause, "rung", int(need))
	deadline := time.Now().Add(r.opts.Resume)
	backoff := resumeBackoffMin
	for attempt := 0; attempt < r.opts.ReconnectAttempts && time.Now().Before(deadline); attempt++ {
		if attempt > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-r.closing:
				t.Stop()
				return false, fail
			}
			backoff = min(2*backoff, resumeBackoffMax)
		}
		if need < rungRejoin {
			res := r.resumeOnce()
			switch {
			case res.ok:
				r.afterRecovery(need, res.lastSeq, deadline)
				return true, fail
			case res.gone:
				// The session is gone: rejoin at once, without a backoff.
				r.opts.Logger.Info("callstate: the session is gone, rejoining", "err", res.err)
				fail = recoveryFailure{reason: res.reason, err: res.err}
				need = rungRejoin
				r.closeGate()
				attempt--
				continue
			case res.final:
				return false, recoveryFailure{reason: res.reason, err: res.err}
			}
			fail.err = res.err
			continue
		}
		res := r.rejoinOnce()
		if res.ok {
			r.afterRecovery(rungRejoin, 0, deadline)
			return true, fail
		}
		if res.final {
			return false, recoveryFailure{reason: res.reason, err: res.err}
		}
		fail.err = res.err
	}
	if fail.err == nil {
		fail.err = errors.New("callstate: the connection could not be recovered")
	}
	return false, recoveryFailure{reason: fail.reason, err: fmt.Errorf("callstate: gave up recovering the connection: %w", fail.err)}
}

// attemptResult is the outcome of one resume or rejoin attempt: ok, the
// session is gone (rejoin), the server refused for good (final), or a
// failure worth another attempt.
type attemptResult struct {
	ok, gone, final bool
	lastSeq         uint32 // the server's last_message_seq, after a resume
	reason          DisconnectReason
	err             error
}

// resumeOnce dials once with the resume parameters.
func (r *Room) resumeOnce() attemptResult {
	ctx, cancel := context.WithTimeout(r.life, min(resumeDialTimout, r.opts.Resume))
	defer cancel()
	r.mu.Lock()
	token, sid := r.token, r.local.SID
	r.mu.Unlock()
	sig, first, err := signal.Dial(ctx, signal.Options{
		URL:           r.url,
		Token:         token,
		SDKVersion:    Version,
		AutoSubscribe: r.opts.AutoSubscribe,
		HTTPClient:    r.opts.HTTPClient,
		Handler:       r.handleSignal,
		Raw:           r.rawSignalHook(),
		Reconnect:     true,
		SID:           sid,
		SinglePC:      r.transport().SinglePC(),

		WithoutCapabilities: r.opts.withoutCapabilities,
	})
	if err != nil {
		if r.checkOpen() != nil {
			return attemptResult{final: true, reason: ReasonClientInitiated, err: err}
		}
		var de *signal.DialError
		if errors.As(err, &de) && de.StatusCode >= 400 && de.StatusCode < 500 {
			if de.StatusCode == 401 {
				// The token is refused: a rejoin would be too.
				return attemptResult{final: true, reason: ReasonJoinFailure, err: joinError(ctx, err)}
			}
			// The server does not know the session any more.
			return attemptResult{gone: true, reason: ReasonStateMismatch, err: joinError(ctx, err)}
		}
		return attemptResult{err: err}
	}
	rc := first.GetReconnect()
	if rc == nil {
		sig.Close(context.Background(), false)
		if l := first.GetLeave(); l != nil {
			reason := DisconnectReason(l.GetReason())
			err := fmt.Errorf("%w: %s", errServerLeft, reason)
			if l.GetAction() == lkpb.LeaveRequest_DISCONNECT && reason != ReasonStateMismatch {
				return attemptResult{final: true, reason: reason, err: err}
			}
			return attemptResult{gone: true, reason: reason, err: err}
		}
		// A join response for a new session: ours is gone.
		return attemptResult{gone: true, reason: ReasonStateMismatch, err: errors.New("callstate: the server answered the resume with a new session")}
	}
	if !r.installSignal(sig) {
		return attemptResult{final: true, reason: ReasonClientInitiated, err: r.endError()}
	}
	if err := sig.Send(ctx, &lkpb.SignalRequest{Message: &lkpb.SignalRequest_SyncState{SyncState: r.syncState()}}); err != nil {
		r.opts.Logger.Warn("callstate: sending sync state after resume", "err", err)
	}
	r.resendPending(ctx, sig)
	return attemptResult{ok: true, lastSeq: rc.GetLastMessageSeq()}
}

// installSignal makes sig the Room's signalling connection, dropping the
// old one; false if the Room is ending (sig is then closed).
func (r *Room) installSignal(sig *signal.Client) bool {
	r.sigMu.Lock()
	if r.checkOpen() != nil {
		r.sigMu.Unlock()
		sig.Close(context.Background(), false)
		return false
	}
	old := r.sig
	r.sigMalformedTotal += old.Malformed()
	r.sig = sig
	r.sigMu.Unlock()
	// The old connection is dead: drop it without a close handshake.
	gone, drop := context.WithCancel(context.Background())
	drop()
	old.Close(gone, false)
	return true
}

// resendPending sends the requests still awaiting an answer again: those
// sent on the lost connection may not have reached the server (they are
// idempotent updates).
func (r *Room) resendPending(ctx context.Context, sig *signal.Client) {
	r.mu.Lock()
	var again []*lkpb.SignalRequest
	for _, p := range r.pending {
		again = append(again, p.req)
	}
	r.mu.Unlock()
	slices.SortFunc(again, func(a, b *lkpb.SignalRequest) int {
		return cmp.Compare(a.GetUpdateMetadata().GetRequestId(), b.GetUpdateMetadata().GetRequestId())
	})
	for _, req := range again {
		if err := sig.Send(ctx, req); err != nil {
			r.opts.Logger.Warn("callstate: sending a request again after recovery", "err", err)
		}
	}
}

// afterRecovery finishes a recovery whose new connection is up, on a
// goroutine of its own (the read loop must handle the server's answers
// meanwhile): it restarts ICE when needed, sends again the reliable packets
// the server may not have, reopens sends, and reports StateConnected.
func (r *Room) afterRecovery(need rung, lastSeq uint32, deadline time.Time) {
	gen := r.recoveryGen.Load()
	r.spawn(func() { r.finishRecovery(gen, need, lastSeq, deadline) })
}

// finishRecovery is afterRecovery's goroutine. gen is the recovery's
// generation: a later recovery (another cut meanwhile) supersedes it.
func (r *Room) finishRecovery(gen uint64, need rung, lastSeq uint32, deadline time.Time) {
	kind := RecoveryResumed
	tr := r.transport()
	if need == rungICE || tr.State() == webrtc.PeerConnectionStateFailed || tr.State() == webrtc.PeerConnectionStateDisconnected {
		if tr.SinglePC() {
			kind = RecoveryICERestart
			if !r.restartICE(deadline) {
				if r.checkOpen() == nil && r.recoveryGen.Load() == gen {
					// The path did not come back: the session is as good
					// as gone. Let the read loop rejoin.
					r.iceGaveUp.Store(true)
					r.signal().Drop()
				}
				return
			}
		}
	}
	if need == rungRejoin {
		kind = RecoveryRejoined
		ctx, cancel := context.WithDeadline(r.life, deadline)
		err := tr.WaitReady(ctx)
		cancel()
		if err != nil {
			if r.checkOpen() == nil && r.recoveryGen.Load() == gen {
				r.iceGaveUp.Store(true)
				r.signal().Drop()
			}
			return
		}
	}
	if need == rungRejoin {
		r.awaitPeers(deadline)
	}
	if !r.gateOpen() {
		r.replay(need == rungRejoin, lastSeq)
	}
	// Data tracks: subscriptions asked for again; after a rejoin (a new
	// session) our own tracks published again under the same handles.
	dctx, dcancel := context.WithDeadline(r.life, deadline)
	r.dataTracksReconnected(dctx, kind == RecoveryRejoined)
	dcancel()
	r.mu.Lock()
	if r.recoveryGen.Load() != gen {
		r.mu.Unlock()
		return
	}
	r.iceWanted.Store(false)
	r.recoveredAs[kind].Add(1)
	if r.state != StateDisconnected {
		r.state = StateConnected
		r.emitLocked(ConnectionStateChanged{Time: time.Now(), State: StateConnected, Recovery: kind})
	}
	r.unlock()
	r.openGate()
}

// awaitPeers waits, bounded by rejoinPeersWait and the deadline, for the
// participants known before a rejoin to be in the room again.
func (r *Room) awaitPeers(deadline time.Time) {
	ids := r.rejoinPeers.Load()
	if ids == nil {
		return
	}
	until := time.Now().Add(rejoinPeersWait)
	if deadline.Before(until) {
		until = deadline
	}
	ctx, cancel := context.WithDeadline(r.life, until)
	defer cancel()
	for _, id := range *ids {
		if _, err := r.WaitForParticipant(ctx, id); err != nil {
			return
		}
	}
}

// restartICE offers ICE restarts until the PeerConnection is connected or
// the deadline passes.
func (r *Room) restartICE(deadline time.Time) bool {
	tr := r.transport()
	// Offers come 1 s apart at first, then further apart up to
	// iceRestartEvery: an outage that ends soon after the first offer is
	// recovered within about a second, a long one costs few offers.
	every := time.Second
	for time.Now().Before(deadline) {
		if err := tr.RestartICE(); err != nil {
			r.opts.Logger.Debug("callstate: ICE restart", "err", err)
		}
		wait := time.NewTimer(min(every, time.Until(deadline)))
		every = min(2*every, iceRestartEvery)
		for tr.State() != webrtc.PeerConnectionStateConnected {
			select {
			case <-r.pcChanged:
				continue
			case <-wait.C:
			case <-r.closing:
				wait.Stop()
				return false
			}
			break
		}
		wait.Stop()
		if tr.State() == webrtc.PeerConnectionStateConnected {
			return true
		}
	}
	return false
}

// spawn runs f on a goroutine the Room's end waits for; false if the Room
// is ending (f does not run).
func (r *Room) spawn(f func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == StateDisconnected {
		return false
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f()
	}()
	return true
}

// syncState describes what the Room has to a server it resumes with.
func (r *Room) syncState() *lkpb.SyncState {
	st := r.transport().SyncState()
	r.dataTrackSyncState(st)
	r.mu.Lock()
	defer r.mu.Unlock()
	for sid, seq := range r.lastSeq {
		st.DatachannelReceiveStates = append(st.DatachannelReceiveStates, &lkpb.DataChannelReceiveState{PublisherSid: sid, LastSeq: seq})
	}
	return st
}

func (r *Room) setState(s ConnectionState) {
	r.mu.Lock()
	defer r.unlock()
	if r.state == s || r.state == StateDisconnected {
		return
	}
	r.state = s
	r.emitLocked(ConnectionStateChanged{Time: time.Now(), State: s})
}

func (r *Room) rawSignalHook() func([]byte) {
	if r.opts.rawHook == nil {
		return nil
	}
	return func(b []byte) { r.opts.rawHook("signal", b) }
}
