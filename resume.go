package callstate

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/callstate/callstate/internal/lkpb"
	"github.com/callstate/callstate/internal/signal"
)

// DefaultResumeWindow is how long a Room tries to resume its session after
// its signalling connection was cut, unless WithResume says otherwise.
const DefaultResumeWindow = 15 * time.Second

// Resuming after a cut of the signalling connection.
//
// When the WebSocket to the server fails while the Room is open (a network
// cut, a server-side timeout), the Room does not end at once: it reports
// StateReconnecting and dials again with LiveKit's resume parameters
// (reconnect=1 and the participant's sid), using the newest token the
// server refreshed. The server keeps the participant, its state and its
// WebRTC connections meanwhile; once it answers with a reconnect response,
// the Room tells it what it has (sync state: its session descriptions, data
// channels, and the last reliable sequence number received from each
// sender), and reports StateConnected again. Other participants see no
// leave and no join. If the server does not take the Room back within the
// resume window (WithResume), or answers that the session is gone, the Room
// ends, with Disconnected.
const (
	resumeDialTimout = 5 * time.Second
	resumeBackoffMin = 100 * time.Millisecond
	resumeBackoffMax = 2 * time.Second
)

// resume tries to take the session back after the signalling connection
// failed with cause; it reports whether it did.
func (r *Room) resume(cause error) bool {
	if !r.opts.resumes() {
		return false
	}
	r.setState(StateReconnecting)
	r.opts.Logger.Info("callstate: signalling connection lost, resuming", "err", cause)
	deadline := time.Now().Add(r.opts.Resume)
	backoff := resumeBackoffMin
	for time.Now().Before(deadline) {
		ok, final := r.resumeOnce()
		if ok {
			// Resumed: ask again for the data track subscriptions (this
			// waits for no answer, so it may run on the read loop).
			ctx, cancel := context.WithTimeout(r.life, 5*time.Second)
			r.dataTracksReconnected(ctx, false)
			cancel()
			r.setState(StateConnected)
			return true
		}
		if final {
			return false
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-r.closing:
			t.Stop()
			return false
		}
		backoff = min(2*backoff, resumeBackoffMax)
	}
	return false
}

// resumeOnce dials once; final reports an answer that makes further
// attempts pointless.
func (r *Room) resumeOnce() (ok, final bool) {
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
		SinglePC:      r.tr.SinglePC(),
	})
	if err != nil {
		var de *signal.DialError
		if errors.As(err, &de) && de.StatusCode >= 400 && de.StatusCode < 500 {
			return false, true // the token or the session is refused
		}
		return false, r.checkOpen() != nil
	}
	if first.GetReconnect() == nil {
		// A leave, or a join response for a new session: the server no
		// longer has ours.
		sig.Close(context.Background(), false)
		return false, true
	}
	r.sigMu.Lock()
	if r.checkOpen() != nil {
		r.sigMu.Unlock()
		sig.Close(context.Background(), false)
		return false, true
	}
	old := r.sig
	r.sigMalformedTotal += old.Malformed()
	r.sig = sig
	r.sigMu.Unlock()
	// The old connection is dead: drop it without a close handshake.
	gone, drop := context.WithCancel(context.Background())
	drop()
	old.Close(gone, false)
	if err := sig.Send(ctx, &lkpb.SignalRequest{Message: &lkpb.SignalRequest_SyncState{SyncState: r.syncState()}}); err != nil {
		r.opts.Logger.Warn("callstate: sending sync state after resume", "err", err)
	}
	// Requests sent on the lost connection may not have reached the server:
	// send them again (they are idempotent updates).
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
			r.opts.Logger.Warn("callstate: sending a request again after resume", "err", err)
		}
	}
	return true, false
}

// syncState describes what the Room has to a server it resumes with.
func (r *Room) syncState() *lkpb.SyncState {
	st := r.tr.SyncState()
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
