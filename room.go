package callstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callstate/callstate/internal/chunk"
	"github.com/callstate/callstate/internal/lkpb"
	"github.com/callstate/callstate/internal/rtc"
	"github.com/callstate/callstate/internal/sessionstate"
	"github.com/callstate/callstate/internal/signal"
)

// Version is callstate's version, reported to the server on join.
const Version = "0.2.0"

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
	// Set by Join before the Room is shared, then read-only (tr is
	// replaced by a rejoin, under sigMu: see transport).
	opts     *options
	url      string
	tr       *rtc.Transport
	enc      *chunk.Encoder // reliable sends
	lossyEnc *chunk.Encoder // lossy sends
	asm      *chunk.Assembler
	seq      atomic.Uint32 // the last reliable sequence number sent

	// One send of each kind at a time; acquiring a turn honours ctx.
	sendSem  chan struct{}
	lossySem chan struct{}

	// Recovery (see resume.go). gate is closed while the Room recovers:
	// sends wait for it to reopen (gateMu guards it and queued, the
	// payload bytes waiting). iceWanted asks the next recovery for an ICE
	// restart; iceGaveUp makes it rejoin. pcChanged is signalled on every
	// PeerConnection state change. leave is a Leave that asked to resume
	// or rejoin, for the read loop.
	gateMu    sync.Mutex
	gate      chan struct{}
	queued    int
	iceWanted atomic.Bool
	// recoveryGen counts recoveries: a recovery's last steps are skipped
	// when a later one started.
	recoveryGen atomic.Uint64
	// rejoinPeers are the identities the Room knew before its last rejoin.
	rejoinPeers atomic.Pointer[[]string]
	iceGaveUp   atomic.Bool
	pcChanged   chan struct{}
	leave       atomic.Pointer[lkpb.LeaveRequest]

	// Reliable packets kept until the server surely has them (retainMu;
	// see retain in datapacket.go), the bytes written to the current
	// transport's reliable channel, and the identity's message ids.
	retainMu      sync.Mutex
	retained      []retainedPacket
	retainedBytes int
	sentBytes     uint64
	aliveAt       time.Time // send time of the newest packet the server acknowledged
	msgEpoch      [8]byte
	msgCounter    uint64
	lossyDropped  atomic.Uint64
	recoveredAs   [4]atomic.Uint64

	// sigMu guards the signalling connection, which a resume replaces.
	sigMu sync.Mutex
	sig   *signal.Client
	// sigMalformedTotal counts malformed frames of replaced connections.
	sigMalformedTotal uint64

	// mu guards the room's state and everything events are made from;
	// events are emitted while it is held, so that every subscription sees
	// them in the order of the changes. It is never held while calling
	// the network or user code.
	mu          sync.Mutex
	token       string // the newest token the server refreshed
	local       Participant
	remotes     map[string]Participant // by identity; see putRemoteLocked
	remoteBytes int                    // their participantSize, summed
	refused     uint64                 // participants and updates over the bounds
	speakers    []Speaker              // the server's active speakers
	qualities   map[string]quality     // connection ratings, by participant sid
	info        RoomInfo
	session     *sessionData
	subs        map[*Subscription]struct{}
	outbox      []outEvent // emitted, not yet delivered; see flush
	emitted     uint64     // sequence number of the last event emitted
	state       ConnectionState
	ended       bool // subscriptions closed
	reason      DisconnectReason
	endErr      error
	reqID       uint32
	pending     map[uint32]pendingRequest // requests awaiting the server's answer, by request id
	malform     uint64
	lastSeq     map[string]uint32 // by sender sid: the last reliable sequence number received
	dupes       uint64
	lastMsg     map[string]msgID // by sender identity: the last message id received
	dt          *dataTracks      // data tracks, published and subscribed; see datatrack.go

	// RPC and streams read by handlers; see rpcState and streamState for
	// their locks.
	rpc     rpcState
	streams streamState

	// deliverMu is the turn to deliver the outbox to the subscriptions;
	// taken after mu is released, never the other way round.
	deliverMu sync.Mutex

	// Lifecycle; channels and once-values need no lock.
	subReady  chan struct{} // closed when the subscriber connection is up
	subOnce   sync.Once
	closeOnce sync.Once
	closeCall sync.Once     // Close's graceful steps
	leaveErr  error         // set by finish before done is closed
	closeErr  error         // Close's result
	closing   chan struct{} // closed when the Room starts ending
	life      context.Context
	endLife   context.CancelFunc // cancels life when the Room starts ending
	done      chan struct{}      // closed when the Room has ended
	wg        sync.WaitGroup
}

// Snapshot is a consistent view of a Room's whole state at one moment.
type Snapshot struct {
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

// newRoom returns a Room before its connection: state, no transport.
func newRoom(o *options, serverURL, token string) *Room {
	r := &Room{
		opts:      o,
		url:       serverURL,
		token:     token,
		remotes:   map[string]Participant{},
		qualities: map[string]quality{},
		lastSeq:   map[string]uint32{},
		lastMsg:   map[string]msgID{},
		pcChanged: make(chan struct{}, 1),
		msgEpoch:  newEpoch(),
		subs:      map[*Subscription]struct{}{},
		pending:   map[uint32]pendingRequest{},
		subReady:  make(chan struct{}),
		sendSem:   make(chan struct{}, 1),
		lossySem:  make(chan struct{}, 1),
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
		state:     StateConnecting,
		dt:        newDataTracks(),
	}
	r.life, r.endLife = context.WithCancel(context.Background())
	r.rpc.init()
	r.streams.init()
	return r
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
		r.leaveErr = sig.Close(ctx, leave)
	}
	if tr := r.transport(); tr != nil {
		_ = tr.Close()
	}
	r.wg.Wait()
	// Session-data writes in progress use the HTTP client until they see
	// closing; wait for them before releasing its connections.
	r.session.sem <- struct{}{}
	if r.opts.ownHTTP {
		releaseHTTP()
	}
	r.dt.closeAll(r.endError())
	r.mu.Lock()
	for id, p := range r.pending {
		delete(r.pending, id)
		close(p.answer)
	}
	r.ended = true
	now := time.Now()
	r.emitLocked(ConnectionStateChanged{Time: now, State: StateDisconnected})
	r.emitLocked(Disconnected{Time: now, Reason: r.reason, Err: r.endErr})
	r.mu.Unlock()
	// Deliver what is left, Disconnected last, then close every
	// subscription. This waits for a delivery in progress elsewhere.
	r.deliverMu.Lock()
	r.drain()
	r.mu.Lock()
	subs := r.subs
	r.subs = map[*Subscription]struct{}{}
	r.mu.Unlock()
	for s := range subs {
		s.mu.Lock()
		s.closeLocked()
		s.mu.Unlock()
	}
	r.deliverMu.Unlock()
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

// Close leaves the room gracefully and releases every resource of the
// Room: it gives session-data writes of this participant that others have
// not seen yet up to a second to be repaired, tells the server that the
// participant leaves (waiting at most a few seconds), then ends the Room:
// calls in progress return ErrClosed, subscriptions receive Disconnected
// and are closed, and no goroutine of the Room remains when Close returns.
//
// Close returns nil when the Room left cleanly, or an error saying what did
// not complete (the leave could not be sent, or session-data writes were
// still unconfirmed); the Room is closed either way. On a Room that had
// already ended (see Err), it returns nil. Close is idempotent and safe to
// call concurrently: later calls wait for the first and return its result.
func (r *Room) Close() error {
	r.closeCall.Do(func() {
		if r.checkOpen() != nil {
			<-r.done
			return
		}
		r.flushSessionData(time.Second)
		var errs []error
		if r.sessionUnconfirmed() {
			errs = append(errs, errors.New("callstate: Close: session-data writes of this participant were not confirmed"))
		}
		r.shutdown(ReasonClientInitiated, nil, true)
		<-r.done
		if r.leaveErr != nil {
			errs = append(errs, fmt.Errorf("callstate: Close: the leave did not reach the server: %w", r.leaveErr))
		}
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}

// CloseNow ends the Room at once, without the graceful steps of Close: no
// wait for session-data repairs and no leave message (the server sees the
// connection close). It releases everything Close does and returns once no
// goroutine of the Room remains. It is idempotent.
func (r *Room) CloseNow() {
	r.shutdown(ReasonClientInitiated, nil, false)
	<-r.done
}

// sessionUnconfirmed reports whether this participant's own session-data
// writes still need repairing.
func (r *Room) sessionUnconfirmed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.session != nil && r.session.rep.Need() != sessionstate.RepairNone
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
	return r.local.clone()
}

// RemoteParticipants returns the other participants, sorted by identity.
func (r *Room) RemoteParticipants() []Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.remotesLocked()
}

func (r *Room) remotesLocked() []Participant {
	out := make([]Participant, 0, len(r.remotes))
	for _, p := range r.remotes {
		out = append(out, p.clone())
	}
	slices.SortFunc(out, func(a, b Participant) int { return strings.Compare(a.Identity, b.Identity) })
	return out
}

// Participant returns the participant with the given identity, local or
// remote.
func (r *Room) Participant(identity string) (Participant, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if identity == r.local.Identity {
		return r.local.clone(), true
	}
	p, ok := r.remotes[identity]
	return p.clone(), ok
}

// Snapshot returns a consistent view of the whole room; it shares nothing
// with the Room.
func (r *Room) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshotLocked()
}

func (r *Room) snapshotLocked() Snapshot {
	return Snapshot{
		Room:        r.info,
		Local:       r.local.clone(),
		Remote:      r.remotesLocked(),
		SessionData: cloneSession(r.session.dataLocked()),
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
	// ParticipantsRefused counts participants, and updates of
	// participants, that the server announced but the Room did not keep
	// because of JoinOptions.MaxParticipants or MaxParticipantBytes.
	ParticipantsRefused uint64
	// Data are the packetization engine's counters.
	Data DataStats
	// LossyDropped counts lossy packets not sent: made while the Room was
	// recovering its connection, or dropped by JoinOptions.SendFilter.
	LossyDropped uint64
	// Resumed, ICERestarts and Rejoined count the recoveries of each kind
	// (see Recovery).
	Resumed, ICERestarts, Rejoined uint64
	// Retained is the number of reliable packets kept now until the
	// server surely has them (see PublishData).
	Retained int
}

// Stats returns the Room's counters.
func (r *Room) Stats() Stats {
	r.mu.Lock()
	m, d, pr := r.malform, r.dupes, r.refused
	r.mu.Unlock()
	st := Stats{Malformed: m + r.sigMalformed(), Repeated: d, ParticipantsRefused: pr, Data: dataStatsFrom(r.enc.Stats().Add(r.lossyEnc.Stats()).Add(r.asm.Stats())),
		LossyDropped: r.lossyDropped.Load(), Resumed: r.recoveredAs[RecoveryResumed].Load(),
		ICERestarts: r.recoveredAs[RecoveryICERestart].Load(), Rejoined: r.recoveredAs[RecoveryRejoined].Load()}
	st.Data.StreamsRefused, st.Data.StreamsTooSlow = r.streams.refused.Load(), r.streams.tooSlow.Load()
	st.Data.CompressedStreamsSent = r.streams.compressedSent.Load()
	st.Data.CompressedStreamsReceived += r.streams.compressedRead.Load()
	st.Data.RpcBusy, st.Data.RpcDropped = r.rpc.busy.Load(), r.rpc.dropped.Load()
	r.retainMu.Lock()
	st.Retained = len(r.retained)
	r.retainMu.Unlock()
	return st
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
