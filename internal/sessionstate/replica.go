package sessionstate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// Strategy says how a write combines with the current session data.
type Strategy uint8

const (
	// Replace makes the given object the whole session data. It is the
	// zero Strategy, as it is Daily's default.
	Replace Strategy = iota
	// ShallowMerge sets the given top-level keys, replacing their values
	// whole (nested objects are not merged), and deletes the keys given as
	// null. Other keys are left alone.
	ShallowMerge
)

// String returns "replace" or "shallow-merge".
func (s Strategy) String() string {
	switch s {
	case Replace:
		return "replace"
	case ShallowMerge:
		return "shallow-merge"
	default:
		return fmt.Sprintf("Strategy(%d)", uint8(s))
	}
}

// RepairNeed says whether, and how urgently, a Replica should write a repair.
type RepairNeed uint8

const (
	// RepairNone: the room metadata holds everything this replica wrote.
	RepairNone RepairNeed = iota
	// RepairNow: a value this replica wrote, and had already seen in the
	// room metadata, was overwritten by a concurrent write that did not
	// know it. Call Repair and send the result.
	RepairNow
	// RepairLater: the room metadata lacks a value this replica wrote, but
	// the write's own echo has not been observed yet, so the metadata seen
	// may simply predate it. Wait for more metadata; if Need still reports
	// a repair after a grace period (a few round trips, comfortably longer
	// than the usual delivery delay), call Repair. The server may coalesce
	// room updates, so the echo is not guaranteed to arrive.
	RepairLater
)

// String returns "none", "now" or "later".
func (n RepairNeed) String() string {
	switch n {
	case RepairNone:
		return "none"
	case RepairNow:
		return "now"
	case RepairLater:
		return "later"
	default:
		return fmt.Sprintf("RepairNeed(%d)", uint8(n))
	}
}

// Observation is what one room metadata value means to a Replica.
type Observation struct {
	// Data is the session data: the metadata object without ReservedKey,
	// values compacted. It is nil when the metadata is not a JSON object
	// (Object is then false), and a fresh copy the caller may keep.
	Data map[string]json.RawMessage
	// Object reports whether the metadata is a JSON object.
	Object bool
	// External reports that the metadata carries no valid version stamps:
	// a value written outside callstate (a LiveKit app, RoomService),
	// taken as an authoritative Replace.
	External bool
	// Changed lists, sorted, the top-level keys whose value differs from
	// the previously observed session data (added, removed or modified).
	Changed []string
	// Repair says whether this replica should repair its own lost writes.
	Repair RepairNeed
	// Lost lists, sorted, the other writers whose latest writes the
	// metadata lacks (or contradicts). The empty string stands for writers
	// outside callstate. See RepairFor.
	Lost []string
}

// Update is a room metadata value prepared by a Replica, to be sent with
// UpdateRoomMetadata and then passed to Commit once the server accepted it.
type Update struct {
	r        *Replica
	reset    bool  // stamped afresh from clock 1 (see Prepare)
	stamp    stamp // zero for repairs
	delta    state // what the write adds to the writer's knowledge
	full     state // the whole state the metadata describes
	metadata string
	sum      uint64 // hash of metadata
	// lost: committed, and the server's answer already lacked it (Commit),
	// so no echo will bring it; kept with the awaiting writes all the same,
	// so that a reset observed meanwhile does not forget it (forgetHigh).
	lost bool
}

// Metadata returns the room metadata value to send.
func (u *Update) Metadata() string { return u.metadata }

// Size returns the length in bytes of Metadata, for checking against the
// server's room metadata limit before sending.
func (u *Update) Size() int { return len(u.metadata) }

// Data returns the session data the update writes, as a fresh copy.
func (u *Update) Data() map[string]json.RawMessage { return cloneData(u.full.visible()) }

// maxAwaiting bounds the committed writes whose echo a Replica waits for.
const maxAwaiting = 16

// recentSize is how many recently observed metadata values a Replica
// remembers (as hashes), to recognise the echo of a write observed before
// the write was committed.
const recentSize = 8

// Replica is one participant's view of the session data and its writes to
// it. Its writer identity (normally the participant identity) tags every
// write it makes; an identity must not be used by two replicas at once.
//
// A Replica is not safe for concurrent use: the caller serialises calls.
// It performs no I/O; the caller sends what Prepare and Repair return and
// feeds every room metadata value it receives, in order, to Observe,
// starting with the value in the join response.
type Replica struct {
	writer string
	clock  uint64 // Lamport clock: the largest clock seen or used
	maxObs uint64 // the largest clock in observed metadata
	best   state  // join of everything observed and committed

	// While high (see Prepare): the largest clock used by resets, and the
	// state of the latest committed reset, not yet observed.
	lowClock uint64
	fresh    *state

	observed     bool
	lastRaw      string
	lastData     map[string]json.RawMessage // nil when not an object
	lastExternal bool
	lastState    state // the stamped state of the last observed metadata

	awaiting []*Update // committed writes whose echo is not yet observed, or known lost (Update.lost)
	recent   [recentSize]uint64
	nRecent  int
}

// NewReplica returns a Replica writing as writer, which must not be empty
// (the empty writer stands for writes made outside callstate).
func NewReplica(writer string) (*Replica, error) {
	if writer == "" {
		return nil, errors.New("callstate: session data writer identity is empty")
	}
	return &Replica{writer: writer, best: newState()}, nil
}

// Writer returns the writer identity.
func (r *Replica) Writer() string { return r.writer }

// Data returns the session data of the last observed metadata as a fresh
// copy, or nil if that metadata was not a JSON object or nothing was
// observed yet.
func (r *Replica) Data() map[string]json.RawMessage { return cloneData(r.lastData) }

// Observe processes a room metadata value received from the server. Values
// must be passed in the order received; a value equal to the previous one
// (a periodic room update) changes nothing.
//
// Metadata carrying valid stamps is merged with what the replica knows.
// Any other JSON object is an authoritative Replace by an outside writer,
// ordered after everything observed so far; metadata that is not a JSON
// object is likewise a Replace by an empty object.
func (r *Replica) Observe(metadata string) Observation {
	if r.observed && metadata == r.lastRaw {
		return r.observation(nil)
	}
	d := decode(metadata)
	var sv state
	if d.stamped {
		sv = d.st
		if r.high() && sv.maxClock() < freshClock {
			// The room metadata has started over (a reset, see Prepare, or
			// any value written without the high stamps): forget them and
			// start over from this value, as a newcomer would, keeping
			// only this replica's own writes below highClock that may
			// still be in flight. A value stamped just below highClock is
			// a write made before the clock got there, and is joined.
			r.forgetHigh()
		}
		r.maxObs = max(r.maxObs, sv.maxClock())
	} else {
		// A write known lost was applied before this Replace, which
		// supersedes it.
		r.awaiting = slices.DeleteFunc(r.awaiting, func(u *Update) bool { return u.lost })
		if r.maxObs+1 >= highClock-1 {
			// Stamps from outside took the clock to highClock. Decided on
			// what was observed, never on this replica's own clock, so
			// that every replica that observed the same values orders the
			// Replace alike (after the restart, a write observed after it
			// is newer; without, one stamped below its epoch is older).
			// Every stamp
			// known is older than this Replace, so forgetting them loses
			// nothing, and the clock starts over (see Prepare). That
			// includes this replica's own writes and reset (which
			// forgetHigh keeps for a reset): restamped below the Replace's
			// epoch by the restart, they would be written back over it. A
			// write the server applies after the Replace comes back as its
			// echo, and is observed then.
			r.forgetAll()
		}
		// maxObs <= MaxClock < highClock here: the epoch is strictly after
		// every stamp observed, whatever their writers.
		e := stamp{clock: r.maxObs + 1, writer: ""}
		sv = newState()
		sv.epoch = e
		for k, v := range d.data {
			sv.entries[k] = entry{stamp: e, value: v}
		}
		r.maxObs = e.clock
	}
	r.clock = max(r.clock, r.maxObs)
	r.best.join(&sv)
	for _, u := range r.awaiting {
		// Nothing when the replica kept its knowledge; after forgetHigh,
		// the writes it kept.
		r.best.join(&u.delta)
	}

	kept := r.awaiting[:0]
	for _, u := range r.awaiting {
		// A lost write is done with once its own change is observed (a
		// repair brought it back, or a later write replaced it): the
		// state it was made on may never be dominated again after a
		// reset.
		if u.lost && !sv.dominates(&u.delta) || !u.lost && !sv.dominates(&u.full) {
			kept = append(kept, u)
		}
	}
	clear(r.awaiting[len(kept):])
	r.awaiting = kept

	r.recent[r.nRecent%recentSize] = hashString(metadata)
	r.nRecent++

	changed := changedKeys(r.lastData, d.data)
	r.observed = true
	r.lastRaw = metadata
	r.lastData = d.data
	r.lastExternal = !d.stamped
	r.lastState = sv
	return r.observation(changed)
}

// Restore is Observe for the first room metadata after the room was
// created anew while this replica was away: the room's sid changed, as
// when a restarted server (which keeps rooms in memory) recreates the room
// for the first participant to rejoin. Such a room comes back with empty
// metadata, which is no write by anyone: Restore does not take it for an
// outside Replace by an empty object (as Observe would, losing everything)
// but keeps all the replica knows. The last observed session data is then
// empty, so every write the replica knows is reported missing: its own
// (Need: RepairNow) and those of the others (Lost), which the usual
// repairs write back, so that the session data converges on the value
// before the restart joined with the writes made since. Metadata that is
// not empty was written deliberately (by a participant that restored
// first, or by someone who replaced the data meanwhile) and is observed as
// Observe does: a Replace still wins.
func (r *Replica) Restore(metadata string) Observation {
	if metadata != "" {
		return r.Observe(metadata)
	}
	changed := changedKeys(r.lastData, nil)
	r.observed = true
	r.lastRaw = metadata
	r.lastData = nil
	r.lastExternal = false
	r.lastState = newState()
	return r.observation(changed)
}

func (r *Replica) observation(changed []string) Observation {
	need, lost := r.assess()
	return Observation{
		Data:     cloneData(r.lastData),
		Object:   r.lastData != nil,
		External: r.lastExternal,
		Changed:  changed,
		Repair:   need,
		Lost:     lost,
	}
}

// Need reports whether this replica should repair, comparing what it knows
// with the last observed metadata. Call it when a RepairLater grace period
// ends, and after a write is committed.
func (r *Replica) Need() RepairNeed {
	need, _ := r.assess()
	return need
}

// Lost returns, sorted, the other writers whose latest writes the last
// observed metadata lacks or contradicts ("" for writers outside callstate).
func (r *Replica) Lost() []string {
	_, lost := r.assess()
	return lost
}

// assess compares the best known state with the last observed data and
// blames each difference on the writer of the newer knowledge.
func (r *Replica) assess() (RepairNeed, []string) {
	self := false
	var others map[string]struct{}
	blame := func(w string) {
		if w == r.writer {
			self = true
			return
		}
		if others == nil {
			others = make(map[string]struct{})
		}
		others[w] = struct{}{}
	}
	for k, e := range r.best.entries {
		v, shown := r.lastData[k]
		if e.live() {
			if !shown || !bytes.Equal(v, e.value) {
				blame(e.stamp.writer)
			}
		} else if shown {
			blame(e.stamp.writer)
		}
	}
	for k := range r.lastData {
		if _, ok := r.best.entries[k]; !ok {
			// Shown, but older than the latest Replace.
			blame(r.best.epoch.writer)
		}
	}
	need := RepairNone
	if self {
		need = RepairNow
		for _, u := range r.awaiting {
			if !u.lost {
				need = RepairLater // the loss may be an echo still to come
				break
			}
		}
	}
	var lost []string
	if others != nil {
		lost = make([]string, 0, len(others))
		for w := range others {
			lost = append(lost, w)
		}
		slices.Sort(lost)
	}
	return need, lost
}

// Prepare computes the metadata for a write of changes with the given
// strategy, on top of everything the replica knows (including its own
// writes the server has not echoed yet). Changes are validated as by
// ParseObject; with ShallowMerge a null value deletes its key, with Replace
// null-valued keys are simply absent. Every change gets one fresh stamp,
// greater than every stamp the replica has seen.
//
// A replica whose next stamp would reach highClock (which only stamps
// written from outside bring about: see MaxClock) makes a reset instead: a
// Replace by the session data it knows, stamped [1, writer], plus the write
// stamped [2, writer]. Every replica that knows high stamps forgets them on
// observing metadata without any (this reset, for one) and starts over from
// that value, as a newcomer does; so Prepare always succeeds on valid
// changes, and the clock never runs out. Concurrent resets merge like any
// concurrent writes: one base wins (by writer), every reset's write
// survives.
//
// Prepare does not change what the replica knows (beyond advancing its
// clock): send Metadata, and call Commit only if the server accepted it (if the outcome is unknown, calling
// Commit makes the write at-least-once: it will be repaired in if it was
// lost). An uncommitted Update is simply dropped.
func (r *Replica) Prepare(changes map[string]json.RawMessage, s Strategy) (*Update, error) {
	if s != Replace && s != ShallowMerge {
		return nil, fmt.Errorf("callstate: unknown session data strategy %d", uint8(s))
	}
	norm, err := normalize(changes)
	if err != nil {
		return nil, err
	}
	reset := r.high()
	var base state
	var st stamp
	switch {
	case !reset:
		r.clock++
		base = r.best.clone()
		st = stamp{clock: r.clock, writer: r.writer}
	case r.fresh != nil:
		// A reset of ours was committed but not observed yet: build on it.
		base = r.fresh.clone()
		r.lowClock = max(r.lowClock, base.maxClock()) + 1
		st = stamp{clock: r.lowClock, writer: r.writer}
	default:
		base = r.resetBase()
		st = stamp{clock: r.lowClock + 1, writer: r.writer}
		r.lowClock++
	}
	delta := newState()
	if s == Replace {
		delta.epoch = st
	}
	for k, v := range norm {
		if isNull(v) {
			if s == ShallowMerge {
				delta.entries[k] = entry{stamp: st}
			}
			continue
		}
		delta.entries[k] = entry{stamp: st, value: v}
	}
	full := base
	full.join(&delta)
	u := r.newUpdate(st, delta, full)
	u.reset = reset
	return u, nil
}

// Commit records that the server accepted u, which must come from this
// replica's Prepare, Repair or RepairFor. From then on the replica repairs
// u's values if a concurrent write overwrites them.
//
// current is the room metadata the server returned with its answer, or ""
// if unknown. LiveKit's UpdateRoomMetadata answers with the room as it stood
// once the update was applied: u itself or a later value. If that later
// value already lacks u's values, the loss is certain and Need reports
// RepairNow at once; if it is an outside Replace (no valid stamps), u is
// superseded and forgotten. Otherwise the replica waits for u's echo,
// reporting RepairLater meanwhile if the observed metadata lacks u.
func (r *Replica) Commit(u *Update, current string) {
	if u.r != r {
		panic("sessionstate: Commit of an Update prepared by another Replica")
	}
	if u.reset && r.high() {
		r.fresh = &u.full
	}
	echoed := r.recentlyObserved(u.sum) || r.knowsStamp(u.stamp)
	if echoed {
		r.best.join(&u.delta)
		return
	}
	if current != "" && current != u.metadata {
		// current is not part of the ordered stream of observed values, so
		// it only serves to decide whether u was overwritten.
		d := decode(current)
		if !d.stamped {
			// An outside Replace was applied after u: u is superseded.
			return
		}
		r.best.join(&u.delta)
		if !d.st.dominates(&u.full) {
			// Lost: Need reports RepairNow. The write is kept with the
			// awaiting ones (not making Need wait) in case a reset is
			// observed before the repair: forgetHigh keeps it then.
			u.lost = true
		}
	} else {
		r.best.join(&u.delta)
	}
	if len(r.awaiting) == maxAwaiting {
		copy(r.awaiting, r.awaiting[1:])
		r.awaiting = r.awaiting[:maxAwaiting-1]
	}
	r.awaiting = append(r.awaiting, u)
}

// Learn merges room metadata read from the server outside the ordered
// stream of values that Observe takes (for example with RoomService
// ListRooms just before a write) into what the replica knows, so that its
// next write includes it. It changes neither the observed session data nor
// the repair assessment's view of what was observed. Metadata without valid
// stamps is ignored: an outside Replace takes effect only through Observe.
func (r *Replica) Learn(metadata string) {
	d := decode(metadata)
	if !d.stamped {
		return
	}
	r.maxObs = max(r.maxObs, d.st.maxClock())
	r.clock = max(r.clock, r.maxObs)
	r.best.join(&d.st)
}

// Includes reports whether the last observed metadata contains everything
// u wrote, or supersedes it (a later write of the same keys, a later
// Replace): once it does, every participant that received that metadata
// sees u's effect.
func (r *Replica) Includes(u *Update) bool {
	if !r.observed {
		return false
	}
	if r.lastRaw == u.metadata {
		return true
	}
	if u.reset && r.high() {
		// The reset has not been observed: the high stamps it drops are
		// still known, and would dominate its state whatever the values.
		return false
	}
	return r.lastState.dominates(&u.full)
}

// Repair returns the metadata restoring this replica's lost writes (the
// whole best known state), or false when Need reports RepairNone. Send it
// like a Prepare result and Commit it once accepted.
func (r *Replica) Repair() (*Update, bool) {
	if r.Need() == RepairNone {
		return nil, false
	}
	return r.snapshot(), true
}

// RepairFor is Repair on behalf of other writers: it returns the metadata
// restoring everything known, or false when the last observed metadata lost
// nothing written by any of writers. The caller uses it for writers that are
// no longer present (and "" for writers outside callstate), choosing one
// present participant to do it (for example the lowest identity) or
// staggering participants by rank, so that one repair usually suffices. Only
// writes this replica has observed can be restored.
func (r *Replica) RepairFor(writers ...string) (*Update, bool) {
	lost := r.Lost()
	for _, w := range writers {
		if _, found := slices.BinarySearch(lost, w); found {
			return r.snapshot(), true
		}
	}
	return nil, false
}

func (r *Replica) snapshot() *Update {
	if r.high() {
		// Writing the high stamps back would keep them alive: reset with
		// the data they describe instead.
		base := r.fresh
		if base == nil {
			b := r.resetBase()
			base = &b
		}
		u := r.newUpdate(stamp{}, newState(), base.clone())
		u.reset = true
		return u
	}
	return r.newUpdate(stamp{}, newState(), r.best.clone())
}

// high reports whether the next stamp would reach highClock.
func (r *Replica) high() bool { return max(r.clock, r.maxObs) >= highClock-1 }

// resetBase returns the base of a reset: a Replace by the session data the
// replica knows, stamped with a fresh low clock.
func (r *Replica) resetBase() state {
	r.lowClock++
	base := newState()
	base.epoch = stamp{clock: r.lowClock, writer: r.writer}
	for k, v := range r.best.visible() {
		base.entries[k] = entry{stamp: base.epoch, value: v}
	}
	return base
}

// forgetAll drops everything the replica knows, its own writes and reset
// included, and restarts its clock.
func (r *Replica) forgetAll() {
	r.best, r.fresh = newState(), nil
	r.clock, r.maxObs, r.lowClock = 0, 0, 0
	clear(r.awaiting)
	r.awaiting = r.awaiting[:0]
}

// forgetHigh drops what the replica knows and restarts its clock, keeping
// its latest committed reset and the committed writes awaiting their echo
// whose stamps are below highClock (Observe joins them back in).
func (r *Replica) forgetHigh() {
	r.best = newState()
	if r.fresh != nil {
		// The latest committed reset is ours to repair if it was lost.
		r.best = r.fresh.clone()
	}
	r.clock, r.maxObs, r.lowClock, r.fresh = r.best.maxClock(), 0, 0, nil
	kept := r.awaiting[:0]
	for _, u := range r.awaiting {
		if u.delta.maxClock() < highClock && u.full.maxClock() < highClock {
			kept = append(kept, u)
			r.clock = max(r.clock, u.delta.maxClock())
		}
	}
	clear(r.awaiting[len(kept):])
	r.awaiting = kept
}

func (r *Replica) newUpdate(st stamp, delta, full state) *Update {
	md := encode(&full)
	return &Update{r: r, stamp: st, delta: delta, full: full, metadata: md, sum: hashString(md)}
}

func (r *Replica) recentlyObserved(sum uint64) bool {
	for i := 0; i < min(r.nRecent, recentSize); i++ {
		if r.recent[i] == sum {
			return true
		}
	}
	return false
}

// knowsStamp reports whether the best state already holds a write stamped
// s, which for a fresh stamp means its echo was observed.
func (r *Replica) knowsStamp(s stamp) bool {
	if s.isZero() {
		return false
	}
	if r.best.epoch == s {
		return true
	}
	for _, e := range r.best.entries {
		if e.stamp == s {
			return true
		}
	}
	return false
}

// hashString returns the FNV-1a 64 hash of s.
func hashString[T string | []byte](s T) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return h
}

// changedKeys returns the sorted keys whose values differ between a and b.
func changedKeys(a, b map[string]json.RawMessage) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// cloneData deep-copies session data into one buffer; nil stays nil.
func cloneData(m map[string]json.RawMessage) map[string]json.RawMessage {
	if m == nil {
		return nil
	}
	size := 0
	for _, v := range m {
		size += len(v)
	}
	buf := make([]byte, 0, size)
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		start := len(buf)
		buf = append(buf, v...)
		out[k] = json.RawMessage(buf[start:len(buf):len(buf)])
	}
	return out
}
