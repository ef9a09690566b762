package callstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/callstate/callstate/internal/lkpb"
	"github.com/callstate/callstate/internal/sessionstate"
)

// Strategy says how SetSessionData combines new data with the current
// session data.
type Strategy int

const (
	// Replace makes the given object the whole session data. It is Daily's
	// default.
	Replace Strategy = iota
	// ShallowMerge sets the given top-level keys and keeps the others; a
	// key set to null is deleted; nested objects are replaced, not merged.
	ShallowMerge
)

// String returns "replace" or "shallow-merge".
func (s Strategy) String() string {
	if s == ShallowMerge {
		return "shallow-merge"
	}
	return "replace"
}

// SessionDataKey is the key of the room metadata object that callstate
// reserves for its merge bookkeeping (per-key version stamps). SessionData
// never shows it, SetSessionData refuses it, and a LiveKit app that reads
// the room metadata should ignore it. A LiveKit app (or RoomService) that
// sets the room metadata to a plain JSON object without it replaces the
// session data with that object, and so does an object whose reserved key
// is invalid (see SetSessionData).
const SessionDataKey = sessionstate.ReservedKey

// Timing of repairs of lost session-data writes (see SetSessionData): wait
// until no new room metadata has arrived for sessionQuiet, plus
// sessionStep for each participant ranked before us; a write of ours not
// yet echoed is given sessionGrace.
const (
	sessionQuiet = 150 * time.Millisecond
	sessionStep  = 100 * time.Millisecond
	sessionGrace = 750 * time.Millisecond
)

// sessionData is the Room's session-data state; guarded by Room.mu.
type sessionData struct {
	rep    *sessionstate.Replica
	data   map[string]json.RawMessage
	sem    chan struct{} // one session-data write in flight
	change chan struct{} // closed and replaced on every observed value

	// The repair schedule runs on a timer rather than on a goroutine of
	// its own: a Room spends its life waiting for a repair that is rarely
	// needed, and a parked goroutine (its stack) is a participant's cost
	// in a process that runs hundreds. tmu, not Room.mu, guards these:
	// poke is called with and without Room.mu held.
	tmu     sync.Mutex
	timer   *time.Timer // runs Room.sessionTick; nil until startSessionTimer
	next    repairStep  // what the next tick does
	busy    bool        // a tick is running
	again   bool        // poked while busy: plan again when the tick ends
	stopped bool        // the Room is ending: no more ticks
}

// repairStep is what a tick of the repair schedule does.
type repairStep int

const (
	stepPlan   repairStep = iota // decide whether and when to repair
	stepRepair                   // repair now
)

func newSessionData(identity string) *sessionData {
	s := &sessionData{
		sem:    make(chan struct{}, 1),
		change: make(chan struct{}),
	}
	if identity == "" {
		identity = "?"
	}
	s.rep, _ = sessionstate.NewReplica(identity)
	return s
}

// observe takes a new room metadata value, in the order received, and
// returns the event to emit, if any; Room.mu held.
//
// restore is true for the first value from a room created anew while the
// Room was away (a rejoin into a room with another sid, after a server
// restart): see sessionstate.Replica.Restore.
func (s *sessionData) observe(now time.Time, metadata string, restore bool) (SessionDataUpdated, bool) {
	var obs sessionstate.Observation
	if restore {
		obs = s.rep.Restore(metadata)
	} else {
		obs = s.rep.Observe(metadata)
	}
	s.data = obs.Data
	close(s.change)
	s.change = make(chan struct{})
	s.poke()
	if len(obs.Changed) == 0 {
		return SessionDataUpdated{}, false
	}
	return SessionDataUpdated{Time: now, Data: maps.Clone(obs.Data), Changed: obs.Changed}, true
}

// poke asks the repair schedule to plan again, soon: something that
// decides whether a repair is due has changed.
func (s *sessionData) poke() {
	s.tmu.Lock()
	defer s.tmu.Unlock()
	switch {
	case s.timer == nil || s.stopped:
	case s.busy:
		s.again = true
	default:
		s.next = stepPlan
		s.timer.Reset(0)
	}
}

func (s *sessionData) dataLocked() map[string]json.RawMessage { return maps.Clone(s.data) }

// SessionData returns the session data (Daily's custom session data): the
// JSON object in the room's metadata, without callstate's reserved key
// SessionDataKey. It is nil when the room metadata is not a JSON object (see
// Metadata for the raw value). The map is a copy.
func (r *Room) SessionData() map[string]json.RawMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.session.dataLocked()
}

// DecodeSessionData unmarshals the session data into v, which is left
// untouched when there is none.
func (r *Room) DecodeSessionData(v any) error {
	data := r.SessionData()
	if data == nil {
		return nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("%w: session data: %v", ErrInvalidJSON, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: session data: %v", ErrInvalidJSON, err)
	}
	return nil
}

// SetSessionData writes the session data (Daily's custom session data): one
// JSON object for the whole room, delivered to everyone present as a
// SessionDataUpdated event and to later joiners when they join, and kept
// when its writer leaves. data must encode to a JSON object: a Go map or
// struct, a json.RawMessage or []byte of JSON text. With Replace it becomes
// the whole session data; with ShallowMerge its top-level keys are set
// (nested objects replaced whole) and keys set to null are deleted.
//
// SetSessionData returns once the server has applied the write and the
// Room has received it back: SessionData then reflects it. ctx bounds the
// whole call.
//
// The session data is stored in the room metadata, which only a
// participant whose token has the roomAdmin grant for the room may write:
// without it the error is a *PermissionError naming roomAdmin, and nothing
// changes. The encoded value must fit MaxMetadataSize.
//
// Writes include every write the Room has received. When the token also
// has the roomList grant, SetSessionData first reads the room metadata from
// the server, so that a write also includes every write applied before it
// whose room update has not arrived yet: writes made one after another, by
// any participants, then build on each other. Without it, such a write is
// merged back by a repair moments later (see below).
//
// Concurrent writers: LiveKit only replaces room metadata whole, so two
// participants that merge at the same moment could each overwrite the
// other's keys. callstate prevents this: every write carries per-key version
// stamps (in the reserved key SessionDataKey), and a participant whose
// write was overwritten by a concurrent one that did not know it writes it
// again. The guarantee: every participant sees the same sequence of session
// data; once writes stop, the session data converges, everywhere, on the
// combination of all writes, in which for each key the latest write (by
// version stamp) wins, a null merge deletes, and a Replace removes every
// key written before it. In particular concurrent merges of different keys
// all survive. A write can still be lost if its writer leaves before its
// loss is noticed and no participant present had seen it.
//
// Room metadata written from outside: any token with roomAdmin can set the
// room metadata, SessionDataKey included, without joining, so callstate
// treats the stamps it reads as untrusted. A room metadata object without
// valid stamps (a plain JSON object, or stamps that fail validation, such as
// a clock above 2^53-1) replaces the session data with that object, ordered
// after every write received before it: every older stamp is superseded and
// no participant writes it back. Stamps that are valid but so high that the
// clock could run out (2^52 and above, which no room reaches by use) are
// dropped by the next write or repair: it resets, writing the session data
// with stamps that start again from 1, and every participant then starts
// over from it. So no value in the room metadata makes SetSessionData fail
// or its write lose for good.
//
// Across a server restart: a single LiveKit server keeps rooms in memory,
// so a restarted one recreates the room (with another sid) empty when the
// first participant rejoins. The empty metadata of a recreated room is not
// taken for a Replace: every rejoining participant restores the session
// data its replica held (its own writes and those of others it had seen),
// through the same repairs, so that the session data converges on the
// value before the restart combined with the writes made since. A
// deliberate write in the recreated room (a plain object from the server
// API, or a Replace by a participant who had seen the data) still wins.
// A write made while the Room is recovering waits for it (bounded by ctx),
// and one refused because the restarted server has not recreated the room
// yet is made again once the Room has rejoined.
func (r *Room) SetSessionData(ctx context.Context, data any, strategy Strategy) error {
	const op = "SetSessionData"
	if err := r.checkOpen(); err != nil {
		return err
	}
	var strat sessionstate.Strategy
	switch strategy {
	case Replace:
		strat = sessionstate.Replace
	case ShallowMerge:
		strat = sessionstate.ShallowMerge
	default:
		return fmt.Errorf("%w: unknown strategy %d", ErrInvalidArgument, strategy)
	}
	changes, err := sessionstate.ParseObject(data)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidJSON, op, err)
	}
	if err := r.checkRoomAdmin(op); err != nil {
		return err
	}
	s := r.session
	if err := r.acquire(ctx, op, s.sem); err != nil {
		return err
	}
	u, err := r.writeSessionDataRecovering(ctx, op, changes, strat)
	<-s.sem // the wait below must not hold up repairs
	if err != nil {
		return err
	}
	// Read your writes: wait until the Room has received a room metadata
	// value that includes this write.
	for {
		r.mu.Lock()
		done := s.rep.Includes(u)
		change := s.change
		r.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-change:
		case <-ctx.Done():
			return fmt.Errorf("callstate: %s: the write was applied, but not yet received back: %w", op, ctx.Err())
		case <-r.closing:
			return r.endError()
		}
	}
}

// writeSessionDataRecovering is writeSessionData made while the Room may
// be recovering its connection: the write waits (bounded by ctx) until the
// Room is back, and a write refused because the room does not exist (a
// restarted server has not recreated it yet) is made again once the Room
// has rejoined, so that a write in flight across a recovery completes
// instead of failing for a reason the recovery removes.
func (r *Room) writeSessionDataRecovering(ctx context.Context, op string, changes map[string]json.RawMessage, strat sessionstate.Strategy) (*sessionstate.Update, error) {
	if err := r.awaitGate(ctx, op, 0); err != nil {
		return nil, err
	}
	u, err := r.writeSessionData(ctx, op, changes, strat)
	var se *ServerError
	if err == nil || !errors.As(err, &se) || se.Code != "not_found" {
		return u, err
	}
	// The server may not have told the Room yet that it restarted: wait
	// for the recovery to begin (the signalling connection fails at once
	// when the server's process ends), then for it to end.
	if !r.awaitRecovering(ctx, rejoinTimeout) {
		return u, err
	}
	if err := r.awaitGate(ctx, op, 0); err != nil {
		return nil, err
	}
	return r.writeSessionData(ctx, op, changes, strat)
}

// awaitRecovering waits up to d, and ctx, for the Room to be recovering
// its connection; false if it is not.
func (r *Room) awaitRecovering(ctx context.Context, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	sub := r.Subscribe(&SubscribeOptions{Filter: func(e Event) bool {
		_, ok := e.(ConnectionStateChanged)
		return ok
	}})
	defer sub.Close()
	for {
		if r.ConnectionState() == StateReconnecting || !r.gateOpen() {
			return true
		}
		select {
		case _, ok := <-sub.Events():
			if !ok {
				return false
			}
		case <-ctx.Done():
			return false
		case <-r.closing:
			return false
		}
	}
}

// writeSessionData prepares, checks and sends one write; the caller holds
// the session write semaphore.
func (r *Room) writeSessionData(ctx context.Context, op string, changes map[string]json.RawMessage, strat sessionstate.Strategy) (*sessionstate.Update, error) {
	r.readSessionData(ctx)
	r.mu.Lock()
	u, err := r.session.rep.Prepare(changes, strat)
	r.mu.Unlock()
	if err != nil {
		// changes passed ParseObject and strat is known, so Prepare has no
		// reason left to fail (it never runs out of clock: see
		// SetSessionData); name the cause if it does anyway.
		if errors.Is(err, sessionstate.ErrInvalidData) {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidJSON, op, err)
		}
		return nil, fmt.Errorf("callstate: %s: %w", op, err)
	}
	if u.Size() > MaxMetadataSize {
		return nil, &SizeError{What: "session data (encoded)", Size: u.Size(), Limit: MaxMetadataSize}
	}
	return u, r.writeRoomMetadata(ctx, op, u)
}

// ownToken returns the participant's newest token and the room's name.
func (r *Room) ownToken() (token, room string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.token, r.info.Name
}

// ownService returns a server API client that uses the participant's
// own token.
func (r *Room) ownService(token string) (*RoomService, error) {
	return NewRoomServiceWithToken(r.url, token, &RoomServiceOptions{HTTPClient: r.opts.HTTPClient})
}

// readSessionData reads the room metadata from the server, when the token
// allows it (the roomList grant), so that a write includes every write
// applied before it, even one whose room update has not arrived yet.
// Failures are ignored: the write then includes what the Room has received,
// and repairs take care of the rest.
func (r *Room) readSessionData(ctx context.Context) {
	tok, room := r.ownToken()
	if c, _, err := parseTokenUnverified(tok); err != nil || !c.Grants.RoomList {
		return
	}
	svc, err := r.ownService(tok)
	if err != nil {
		return
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	var resp lkpb.ListRoomsResponse
	if svc.call(ctx, "ListRooms", Grants{}, &lkpb.ListRoomsRequest{Names: []string{room}}, &resp) != nil {
		return
	}
	for _, rm := range resp.GetRooms() {
		if rm.GetName() == room {
			r.mu.Lock()
			r.session.rep.Learn(rm.GetMetadata())
			r.mu.Unlock()
		}
	}
}

// checkRoomAdmin refuses session-data writes that the server would refuse
// for want of the roomAdmin grant, when the token says so.
func (r *Room) checkRoomAdmin(op string) error {
	tok, room := r.ownToken()
	c, _, err := parseTokenUnverified(tok)
	if err != nil {
		return nil // not a token we can read: let the server decide
	}
	if !c.Grants.RoomAdmin || (c.Grants.Room != "" && c.Grants.Room != room) {
		return &PermissionError{Op: op, Grant: "roomAdmin"}
	}
	return nil
}

// writeRoomMetadata sends u with UpdateRoomMetadata, using the
// participant's own token, and commits it; the caller holds the session
// write semaphore.
func (r *Room) writeRoomMetadata(ctx context.Context, op string, u *sessionstate.Update) error {
	tok, room := r.ownToken()
	svc, err := r.ownService(tok)
	if err != nil {
		return err
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	var resp lkpb.Room
	err = svc.call(ctx, "UpdateRoomMetadata", Grants{}, &lkpb.UpdateRoomMetadataRequest{Room: room, Metadata: u.Metadata()}, &resp)
	if err != nil {
		var se *ServerError
		if errors.As(err, &se) && errors.Is(err, ErrNotPermitted) {
			return &PermissionError{Op: op, Grant: "roomAdmin", Message: se.Message}
		}
		if cerr := r.checkOpen(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("callstate: %s: %w", op, err)
	}
	r.mu.Lock()
	r.session.rep.Commit(u, resp.GetMetadata())
	r.session.poke()
	r.mu.Unlock()
	return nil
}

// startSessionTimer starts the schedule that repairs session-data writes
// lost to concurrent writers. It holds one count of Room.wg until the
// Room's life ends and no tick is running.
func (r *Room) startSessionTimer() {
	s := r.session
	s.tmu.Lock()
	s.timer = time.AfterFunc(time.Hour, r.sessionTick)
	s.timer.Stop()
	s.tmu.Unlock()
	context.AfterFunc(r.life, func() {
		s.tmu.Lock()
		s.stopped = true
		s.timer.Stop()
		running := s.busy
		s.tmu.Unlock()
		if !running {
			r.wg.Done()
		} // else the running tick does, as it ends
	})
}

// sessionTick runs on the timer's goroutine: it plans (and sets the timer
// for the repair it plans) or repairs. Ticks do not overlap: one that
// fires while another runs (the timer was reset meanwhile) leaves the work
// to the running one.
func (r *Room) sessionTick() {
	s := r.session
	s.tmu.Lock()
	if s.stopped || s.busy {
		s.again = s.again || s.busy
		s.tmu.Unlock()
		return
	}
	s.busy = true
	step := s.next
	s.tmu.Unlock()
	for {
		var d time.Duration
		var due bool
		if step == stepRepair {
			r.repair()
		} else {
			d, due = r.repairPlan()
		}
		s.tmu.Lock()
		switch {
		case s.stopped:
			s.busy = false
			s.tmu.Unlock()
			r.wg.Done()
			return
		case s.again:
			s.again = false
			s.tmu.Unlock()
			step = stepPlan
			continue
		case due:
			s.next = stepRepair
			s.timer.Reset(d)
		}
		s.busy = false
		s.tmu.Unlock()
		return
	}
}

// repairPlan says whether a repair is due, and after how long.
func (r *Room) repairPlan() (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := r.session.rep
	need := rep.Need()
	switch need {
	case sessionstate.RepairLater:
		return sessionGrace, true
	case sessionstate.RepairNow:
		// Writers blamed for losses repair in the order of their identities,
		// so that the first repair usually makes the others unnecessary.
		blamed := []string{r.local.Identity}
		for _, w := range rep.Lost() {
			if _, ok := r.remotes[w]; ok {
				blamed = append(blamed, w)
			}
		}
		slices.Sort(blamed)
		rank := slices.Index(blamed, r.local.Identity)
		return sessionQuiet + time.Duration(rank)*sessionStep, true
	}
	if len(r.absentLostLocked()) == 0 {
		return 0, false
	}
	// Writers who left (or wrote from outside callstate) cannot repair
	// their writes: those present do, in the order of their identities.
	present := append([]string{r.local.Identity}, slices.Collect(maps.Keys(r.remotes))...)
	slices.Sort(present)
	rank := slices.Index(present, r.local.Identity)
	return sessionQuiet + time.Duration(rank)*sessionStep, true
}

// absentLostLocked returns the writers whose writes are lost and who are
// not in the room; Room.mu held.
func (r *Room) absentLostLocked() []string {
	var absent []string
	for _, w := range r.session.rep.Lost() {
		if _, ok := r.remotes[w]; !ok && w != r.local.Identity {
			absent = append(absent, w)
		}
	}
	return absent
}

func (r *Room) repair() {
	if r.checkRoomAdmin("repair") != nil {
		return
	}
	s := r.session
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r.acquire(r.life, "repair", s.sem) != nil { // waits until the Room ends at most
		return
	}
	defer func() { <-s.sem }()
	r.mu.Lock()
	u, ok := s.rep.Repair()
	if !ok {
		u, ok = s.rep.RepairFor(r.absentLostLocked()...)
	}
	r.mu.Unlock()
	if !ok || u.Size() > MaxMetadataSize {
		return
	}
	if err := r.writeRoomMetadata(ctx, "repair", u); err != nil {
		r.opts.Logger.Warn("callstate: repairing session data", "err", err)
		s.poke() // try again on the same schedule
	}
}

// flushSessionData gives this participant's session-data writes that were
// lost to concurrent writes, or are not yet confirmed, up to d to be
// repaired before the Room leaves: once it has left, nobody may be left who
// knows them.
func (r *Room) flushSessionData(d time.Duration) {
	if r.checkOpen() != nil || r.session == nil {
		return
	}
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		need := r.session.rep.Need()
		change := r.session.change
		r.mu.Unlock()
		switch need {
		case sessionstate.RepairNone:
			return
		case sessionstate.RepairNow:
			r.repair()
		}
		select {
		case <-change:
		case <-deadline.C:
			r.repair()
			return
		case <-r.closing:
			return
		}
	}
}
