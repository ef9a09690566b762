package callstate

import (
	"context"
	"maps"
	"time"

	"github.com/callstate/callstate/internal/lkpb"
)

// rejoinPeersWait bounds how long a rejoined Room waits for the others it
// knew to be back (they may be rejoining too, after a server restart)
// before it sends its retained packets again: the server forwards a packet
// only to those in the room at the time (and keeps it for 2 s for those
// whose channel opens later).
const rejoinPeersWait = 10 * time.Second

// rejoinTimeout bounds one rejoin attempt: the handshake and the server's
// join response.
const rejoinTimeout = 10 * time.Second

// rejoinOnce joins again as a new session with the same identity, when the
// old session is gone (a restarted server, Leave RECONNECT, a refused
// resume). It runs on the read loop, with sends held at the gate.
//
// What the Room keeps across it: the participant's own state (metadata and
// name are re-applied with an update, attributes with the join request and
// the update), the view of the others (rebuilt from the join response: those
// who left meanwhile are reported as ParticipantLeft, new ones as
// ParticipantJoined, changed ones as ParticipantUpdated, so that a
// subscriber ends with what a fresh snapshot would give), the room's
// metadata and session data (RoomMetadataChanged and SessionDataUpdated for
// what changed), requests awaiting an answer (sent again), and reliable
// sends (replayed by finishRecovery, deduplicated by receivers).
func (r *Room) rejoinOnce() attemptResult {
	ctx, cancel := context.WithTimeout(r.life, rejoinTimeout)
	defer cancel()
	r.mu.Lock()
	token := r.token
	want := r.local.clone()
	r.mu.Unlock()
	before := make([]string, 0, len(r.remotes))
	r.mu.Lock()
	for id := range r.remotes {
		before = append(before, id)
	}
	r.mu.Unlock()
	r.rejoinPeers.Store(&before)
	old := r.transport()
	tr, sig, jr, err := r.dialSession(ctx, token, want.Metadata, want.Attributes, old.SinglePC())
	if err != nil {
		if r.checkOpen() != nil {
			return attemptResult{final: true, reason: ReasonClientInitiated, err: err}
		}
		if je, ok := err.(*JoinError); ok && (je.StatusCode == 401 || je.StatusCode == 403) {
			return attemptResult{final: true, reason: ReasonJoinFailure, err: err}
		}
		return attemptResult{err: err}
	}
	// The new session is the Room's from now on: the old transport goes.
	r.sigMu.Lock()
	r.tr = tr
	r.sigMu.Unlock()
	_ = old.Close()
	if !r.installSignal(sig) {
		_ = tr.Close()
		return attemptResult{final: true, reason: ReasonClientInitiated, err: r.endError()}
	}
	tr.Attach(iceServers(jr.GetIceServers()))
	now := time.Now()
	r.mu.Lock()
	got := participantFromInfo(jr.GetParticipant())
	prev := r.local
	// The new session's sid and permissions, the participant's own state.
	local := got
	local.Metadata, local.Name, local.Attributes = want.Metadata, want.Name, maps.Clone(want.Attributes)
	r.local = local
	if c := diffParticipants(prev, local); c.Any() {
		r.emitLocked(ParticipantUpdated{Time: now, Participant: local, Previous: prev, Changes: c, Local: true})
	}
	// The others, as the new session sees them.
	r.leaveUnlistedLocked(now, jr.GetOtherParticipants())
	var others []*lkpb.ParticipantInfo
	for _, pi := range jr.GetOtherParticipants() {
		if old, ok := r.remotes[pi.GetIdentity()]; ok && old.SID != pi.GetSid() {
			// The same identity in a new session (it rejoined too): its
			// old session left.
			r.applyParticipantsLocked(now, []*lkpb.ParticipantInfo{{Identity: old.Identity, Sid: old.SID, State: lkpb.ParticipantInfo_DISCONNECTED}})
		}
		others = append(others, pi)
	}
	r.applyParticipantsLocked(now, others)
	// Receive state of senders that are gone is of no use any more.
	live := map[string]bool{}
	for _, p := range r.remotes {
		live[p.SID] = true
	}
	for sid := range r.lastSeq {
		if !live[sid] {
			delete(r.lastSeq, sid)
		}
	}
	r.mu.Unlock()
	r.applyRoom(jr.GetRoom())
	r.session.poke() // session data this replica holds may need restoring

	// Re-apply what the join could not carry (the name; the metadata and
	// attributes on the two-PeerConnection path), without waiting for the
	// answer: the read loop must run to receive it.
	upd := &lkpb.UpdateParticipantMetadata{}
	if want.Name != got.Name {
		upd.Name = want.Name
	}
	if want.Metadata != got.Metadata {
		upd.Metadata = want.Metadata
	}
	for k, v := range want.Attributes {
		if got.Attributes[k] != v {
			if upd.Attributes == nil {
				upd.Attributes = map[string]string{}
			}
			upd.Attributes[k] = v
		}
	}
	for k := range got.Attributes {
		if _, ok := want.Attributes[k]; !ok {
			if upd.Attributes == nil {
				upd.Attributes = map[string]string{}
			}
			upd.Attributes[k] = "" // removed while the Room was the old session
		}
	}
	if upd.Name != "" || upd.Metadata != "" || upd.Attributes != nil {
		if err := sig.Send(ctx, &lkpb.SignalRequest{Message: &lkpb.SignalRequest_UpdateMetadata{UpdateMetadata: upd}}); err != nil {
			r.opts.Logger.Warn("callstate: re-applying the participant's state after a rejoin", "err", err)
		}
	}
	r.resendPending(ctx, sig)
	if err := tr.Publish(); err != nil && !r.opts.ReceiveOnly {
		r.opts.Logger.Warn("callstate: publishing after a rejoin", "err", err)
	}
	return attemptResult{ok: true}
}
