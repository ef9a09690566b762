package sessionstate

import (
	"bytes"
	"cmp"
	"encoding/json"
	"strings"
)

// stamp orders writes: by clock, then by writer. The zero stamp (clock 0)
// precedes every write; writes always carry a clock of at least 1.
type stamp struct {
	clock  uint64
	writer string
}

func (s stamp) compare(o stamp) int {
	if c := cmp.Compare(s.clock, o.clock); c != 0 {
		return c
	}
	return strings.Compare(s.writer, o.writer)
}

func (s stamp) isZero() bool { return s.clock == 0 }

// entry is the latest known write of one key. A nil value is a tombstone:
// the key was deleted at stamp.
type entry struct {
	stamp stamp
	value json.RawMessage
}

func (e entry) live() bool { return e.value != nil }

// compare orders two entries of the same key. Distinct writes never share a
// stamp; the value comparison only makes malformed input resolve the same way
// everywhere.
func (e entry) compare(o entry) int {
	if c := e.stamp.compare(o.stamp); c != 0 {
		return c
	}
	if e.live() != o.live() {
		if e.live() {
			return 1
		}
		return -1
	}
	return bytes.Compare(e.value, o.value)
}

// state is a join-semilattice: the epoch is the stamp of the latest Replace,
// and entries holds, per key, the latest write not older than the epoch.
// Entries older than the epoch are implicitly deleted and never stored.
type state struct {
	epoch   stamp
	entries map[string]entry
}

func newState() state { return state{entries: make(map[string]entry)} }

func (s *state) clone() state {
	c := state{epoch: s.epoch, entries: make(map[string]entry, len(s.entries))}
	for k, e := range s.entries {
		c.entries[k] = e
	}
	return c
}

// join merges o into s (s becomes the least upper bound of both).
func (s *state) join(o *state) {
	if o.epoch.compare(s.epoch) > 0 {
		s.epoch = o.epoch
		s.prune()
	}
	for k, e := range o.entries {
		if e.stamp.compare(s.epoch) < 0 {
			continue
		}
		if cur, ok := s.entries[k]; ok && cur.compare(e) >= 0 {
			continue
		}
		s.entries[k] = e
	}
}

// prune drops entries the epoch supersedes.
func (s *state) prune() {
	for k, e := range s.entries {
		if e.stamp.compare(s.epoch) < 0 {
			delete(s.entries, k)
		}
	}
}

// dominates reports whether s already contains everything o says, so that
// joining o into s would change nothing.
func (s *state) dominates(o *state) bool {
	if s.epoch.compare(o.epoch) < 0 {
		return false
	}
	for k, e := range o.entries {
		if e.stamp.compare(s.epoch) < 0 {
			continue
		}
		cur, ok := s.entries[k]
		if !ok || cur.compare(e) < 0 {
			return false
		}
	}
	return true
}

// visible returns the live keys and values: the session data the state
// describes. Values are shared with the state.
func (s *state) visible() map[string]json.RawMessage {
	m := make(map[string]json.RawMessage, len(s.entries))
	for k, e := range s.entries {
		if e.live() {
			m[k] = e.value
		}
	}
	return m
}

// maxClock returns the largest clock the state mentions.
func (s *state) maxClock() uint64 {
	m := s.epoch.clock
	for _, e := range s.entries {
		m = max(m, e.stamp.clock)
	}
	return m
}

// MaxClock is the largest clock a stamp read from the room metadata may
// carry: metadata with a larger one has no valid stamps (it counts as an
// outside Replace of its data). Room metadata comes from anyone with the
// roomAdmin grant, so its stamps are untrusted; the bound keeps every clock
// far from the end of the uint64 range, so that an outside Replace is always
// ordered strictly after everything observed. 2^53-1 is also the largest
// integer a JavaScript reader of the metadata represents exactly.
const MaxClock = 1<<53 - 1

// highClock is where a replica stops stamping and resets instead (see
// Replica.Prepare). Clocks grow by one per write or outside Replace, so no
// room reaches it by use (2^52 writes take 140,000 years at a thousand a
// second): only stamps written from outside take a replica there, and
// resetting then, long before MaxClock, means no outside value can exhaust
// the clock.
const highClock = 1 << 52

// freshClock bounds the clocks of metadata that a replica whose clock is at
// highClock takes as a fresh start (see Replica.Prepare): resets stamp from
// 1, so their clocks stay far below it, while writes made as the clock
// approached highClock stay above it.
const freshClock = highClock / 2
