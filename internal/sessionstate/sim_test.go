package sessionstate

import (
	"container/heap"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// The simulation models a LiveKit room: a server holding the room metadata
// (last write wins) and answering UpdateRoomMetadata with the value as it
// stands once the update is applied, request and response delays, and
// per-participant in-order delivery of every value (or, with coalescing, of
// the latest value at each broadcast, which may skip values). Participants
// behave as the package documentation asks of the Room (see react): one
// write in flight at a time, repairs delayed by a quiet period and a rank,
// RepairLater after a grace period, and the lowest present participant
// repairing on behalf of absent writers. Each run ends at quiescence and is
// checked against an oracle computed from the applied writes.

type simOp struct {
	at         int64
	replica    int
	strategy   Strategy
	changes    map[string]json.RawMessage
	leaveAfter bool // the participant leaves once this write is committed
}

type simExternal struct {
	at       int64
	metadata string
}

type simConfig struct {
	seed       uint64
	replicas   int
	deliverMax int64
	rpcMax     int64
	coalesce   bool
	grace      int64
	quiet      int64 // see react
	rankStep   int64
	jitter     int64 // random extra delay on every repair timer
	ops        []simOp
	externals  []simExternal
	joinsAt    []int64 // late joiners, created at these times
	noAnswer   bool    // Commit without the server's answer
	// phases run one after another, each once the previous one (the ops
	// above first) reached quiescence; their times are relative to that.
	phases []simPhase
	// noOracle skips the comparison with the oracle (which does not model
	// stamped metadata written from outside); convergence is still checked.
	noOracle bool
}

// simPhase is a batch of events started at quiescence.
type simPhase struct {
	joins     int // late joiners, created when the phase starts
	ops       []simOp
	externals []simExternal
	// check runs once the phase reached quiescence and every present
	// participant was checked to have converged on final.
	check func(final map[string]json.RawMessage)
}

type simEvent struct {
	at  int64
	seq int64
	fn  func()
}

type simQueue []simEvent

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)   { *q = append(*q, x.(simEvent)) }
func (q *simQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type simReplica struct {
	idx        int
	r          *Replica
	present    bool
	late       bool
	inflight   bool
	queue      []simOp
	wantRepair bool
	timerGen   int
	nowSince   int64 // when RepairNow (or a repair for others) was first due, or -1
	laterSince int64 // when RepairLater was first reported, or -1
	deliverAt  int64
}

// simWrite is a fresh write as applied by the server, for the oracle.
type simWrite struct {
	stamp    stamp
	strategy Strategy
	changes  map[string]json.RawMessage
	metadata string
	writer   int
	// superseded: the server's answer was an outside replace applied after
	// the write.
	superseded bool
}

type sim struct {
	t   testing.TB
	cfg simConfig
	rng *rand.Rand
	q   simQueue
	now int64
	seq int64

	reps []*simReplica

	value       string
	version     int
	broadcasted int

	applied  []simWrite
	observed map[string]bool // metadata strings delivered to someone
	extEpoch map[string][]stamp

	writes, repairs, repairsFor int
	firstWrite, lastWrite       int64
	events                      int
}

type simResult struct {
	final                       map[string]json.RawMessage
	writes, repairs, repairsFor int
	duration                    int64
}

func runSim(t testing.TB, cfg simConfig) simResult {
	t.Helper()
	s := &sim{
		t:          t,
		cfg:        cfg,
		rng:        rand.New(rand.NewPCG(cfg.seed, 0x5e551)),
		observed:   make(map[string]bool),
		extEpoch:   make(map[string][]stamp),
		firstWrite: -1,
	}
	for i := 0; i < cfg.replicas; i++ {
		s.addReplica(false)
	}
	for _, op := range cfg.ops {
		s.at(op.at, func() { s.startOp(s.reps[op.replica], op) })
	}
	for _, ext := range cfg.externals {
		s.at(ext.at, func() { s.serverSet(ext.metadata) })
	}
	for _, at := range cfg.joinsAt {
		s.at(at, func() {
			rep := s.addReplica(true)
			s.deliverTo(rep, s.value) // the join response
		})
	}
	s.drain()
	for _, ph := range cfg.phases {
		base := s.now + 1
		for range ph.joins {
			s.at(base, func() {
				rep := s.addReplica(true)
				s.deliverTo(rep, s.value)
			})
		}
		for _, ext := range ph.externals {
			s.at(base+ext.at, func() { s.serverSet(ext.metadata) })
		}
		for _, op := range ph.ops {
			s.at(base+op.at, func() { s.startOp(s.reps[op.replica], op) })
		}
		s.drain()
		final := s.checkConverged()
		if ph.check != nil {
			ph.check(final)
		}
	}
	return s.check()
}

// drain runs events until none is left.
func (s *sim) drain() {
	for s.q.Len() > 0 {
		ev := heap.Pop(&s.q).(simEvent)
		s.now = ev.at
		ev.fn()
		s.events++
		if s.events >= 5_000_000 {
			s.t.Fatalf("seed %d: no quiescence", s.cfg.seed)
		}
	}
}

func (s *sim) at(t int64, fn func()) {
	s.seq++
	heap.Push(&s.q, simEvent{at: t, seq: s.seq, fn: fn})
}

func (s *sim) rnd(lo, hi int64) int64 { return lo + s.rng.Int64N(hi-lo+1) }

func (s *sim) addReplica(late bool) *simReplica {
	i := len(s.reps)
	r, err := NewReplica(fmt.Sprintf("p%02d", i))
	require.NoError(s.t, err)
	rep := &simReplica{idx: i, r: r, present: true, late: late, nowSince: -1, laterSince: -1}
	s.reps = append(s.reps, rep)
	if !late {
		s.deliverTo(rep, s.value)
	}
	return rep
}

func (s *sim) startOp(rep *simReplica, op simOp) {
	if !rep.present {
		return
	}
	if rep.inflight {
		rep.queue = append(rep.queue, op)
		return
	}
	u, err := rep.r.Prepare(op.changes, op.strategy)
	require.NoError(s.t, err)
	if *simTraceFlag {
		s.t.Logf("t=%d r%d prepare %v reset=%v clock=%d maxObs=%d -> %s", s.now, rep.idx, op.changes, u.reset, rep.r.clock, rep.r.maxObs, u.metadata)
	}
	s.writes++
	s.send(rep, u, op.leaveAfter)
}

func (s *sim) send(rep *simReplica, u *Update, leaveAfter bool) {
	rep.inflight = true
	s.at(s.now+s.rnd(1, s.cfg.rpcMax), func() {
		applied := -1
		if !u.stamp.isZero() {
			w := simWrite{stamp: u.stamp, metadata: u.metadata, writer: rep.idx}
			w.strategy, w.changes = deltaOp(&u.delta)
			applied = len(s.applied)
			s.applied = append(s.applied, w)
		}
		if s.firstWrite < 0 {
			s.firstWrite = s.now
		}
		s.lastWrite = s.now
		s.serverSet(u.metadata)
		// The answer carries the room as it stands once the update is
		// applied: this value or one applied just after it.
		s.at(s.now+s.rnd(0, 2), func() {
			current := s.value
			if applied >= 0 && current != u.metadata && !s.cfg.noAnswer && !decode(current).stamped {
				s.applied[applied].superseded = true
			}
			s.at(s.now+s.rnd(1, s.cfg.rpcMax), func() { s.committed(rep, u, current, leaveAfter) })
		})
	})
}

// deltaOp recovers the operation from an update's delta, independently of
// the join code, for the oracle.
func deltaOp(d *state) (Strategy, map[string]json.RawMessage) {
	changes := make(map[string]json.RawMessage)
	for k, e := range d.entries {
		changes[k] = e.value // nil: deletion
	}
	if !d.epoch.isZero() {
		return Replace, changes
	}
	return ShallowMerge, changes
}

// simTrace logs every write, server value and observation of a run (go
// test -run X -args -sim.trace), to follow a failing seed.
var simTraceFlag = flag.Bool("sim.trace", false, "log the simulation's events")

func (s *sim) serverSet(md string) {
	if *simTraceFlag {
		s.t.Logf("t=%d server set %s", s.now, md)
	}
	s.value = md
	s.version++
	if !s.cfg.coalesce {
		s.broadcast()
		return
	}
	s.at(s.now+s.rnd(0, 3), func() {
		if s.version != s.broadcasted {
			s.broadcast()
		}
	})
}

func (s *sim) broadcast() {
	s.broadcasted = s.version
	for _, rep := range s.reps {
		if rep.present {
			s.deliverTo(rep, s.value)
		}
	}
}

func (s *sim) deliverTo(rep *simReplica, md string) {
	t := max(s.now+s.rnd(1, s.cfg.deliverMax), rep.deliverAt)
	rep.deliverAt = t
	s.at(t, func() {
		if !rep.present {
			return
		}
		obs := rep.r.Observe(md)
		if *simTraceFlag {
			s.t.Logf("t=%d r%d observe %s -> repair %v lost %v high=%v", s.now, rep.idx, md, obs.Repair, obs.Lost, rep.r.high())
		}
		s.observed[md] = true
		if obs.External && !rep.late {
			s.extEpoch[md] = append(s.extEpoch[md], stamp{clock: rep.r.maxObs})
		}
		if obs.Repair != rep.r.Need() || !slices.Equal(obs.Lost, rep.r.Lost()) {
			s.t.Fatalf("seed %d: Observation disagrees with Need and Lost", s.cfg.seed)
		}
		s.react(rep)
	})
}

func (s *sim) designated() *simReplica {
	for _, rep := range s.reps {
		if rep.present {
			return rep
		}
	}
	return nil
}

func (s *sim) absentLost(lost []string) []string {
	var out []string
	for _, w := range lost {
		present := false
		for _, rep := range s.reps {
			if rep.present && rep.r.Writer() == w {
				present = true
			}
		}
		if !present {
			out = append(out, w)
		}
	}
	return out
}

// react is the repair policy, run after every observation and commit. One
// timer per participant; RepairNow waits until no metadata arrived for
// quiet ticks (debounced, at most 4*quiet) plus rank*rankStep, rank among
// the present writers the value lost; RepairLater waits grace ticks from
// when it was first reported. The lowest present participant repairs for
// absent writers on the RepairNow schedule.
func (s *sim) react(rep *simReplica) {
	if rep.inflight {
		rep.wantRepair = true
		return
	}
	need, lost := rep.r.Need(), rep.r.Lost()
	absent := s.absentLost(lost)
	forOthers := len(absent) > 0 && s.designated() == rep
	if need != RepairLater {
		rep.laterSince = -1
	}
	if need == RepairNone && !forOthers {
		rep.timerGen++
		rep.nowSince = -1
		return
	}
	var fire int64
	if need == RepairLater {
		if rep.laterSince < 0 {
			rep.laterSince = s.now
		}
		fire = rep.laterSince + s.cfg.grace
	}
	if need == RepairNow || forOthers {
		if rep.nowSince < 0 {
			rep.nowSince = s.now
		}
		blamed := []string{rep.r.Writer()}
		for _, w := range lost {
			if !slices.Contains(absent, w) {
				blamed = append(blamed, w)
			}
		}
		slices.Sort(blamed)
		rank := int64(slices.Index(blamed, rep.r.Writer()))
		t := min(s.now+s.cfg.quiet, rep.nowSince+4*s.cfg.quiet) + rank*s.cfg.rankStep
		if need == RepairLater {
			fire = min(fire, t)
		} else {
			fire = t
		}
	}
	if s.cfg.jitter > 0 {
		fire += s.rnd(0, s.cfg.jitter)
	}
	rep.timerGen++
	gen := rep.timerGen
	s.at(max(fire, s.now), func() {
		if rep.timerGen != gen || !rep.present {
			return
		}
		if rep.inflight {
			rep.wantRepair = true
			return
		}
		need := rep.r.Need()
		switch {
		case need == RepairNow || (need == RepairLater && rep.laterSince >= 0 && s.now >= rep.laterSince+s.cfg.grace):
			if u, ok := rep.r.Repair(); ok {
				s.repairs++
				s.send(rep, u, false)
			}
		case s.designated() == rep:
			if absent := s.absentLost(rep.r.Lost()); len(absent) > 0 {
				if u, ok := rep.r.RepairFor(absent...); ok {
					s.repairsFor++
					s.send(rep, u, false)
				}
			}
		}
		rep.nowSince, rep.laterSince = -1, -1
		s.react(rep)
	})
}

func (s *sim) committed(rep *simReplica, u *Update, current string, leaveAfter bool) {
	if !rep.present {
		return
	}
	if s.cfg.noAnswer {
		current = ""
	}
	rep.r.Commit(u, current)
	rep.inflight = false
	if leaveAfter {
		rep.present = false
		return
	}
	if len(rep.queue) > 0 {
		op := rep.queue[0]
		rep.queue = rep.queue[1:]
		s.startOp(rep, op)
		return
	}
	rep.wantRepair = false
	s.react(rep)
}

// oracle computes the expected session data from the applied writes, per key
// the highest-stamped write, without the package's join code.
func (s *sim) oracle() map[string]json.RawMessage {
	type rec struct {
		stamp    stamp
		strategy Strategy
		changes  map[string]json.RawMessage
	}
	var recs []rec
	for _, w := range s.applied {
		if !s.observed[w.metadata] && (!s.reps[w.writer].present || w.superseded) {
			// Lost with its writer (outside the guarantee), or replaced
			// from outside before anyone saw it.
			continue
		}
		recs = append(recs, rec{w.stamp, w.strategy, w.changes})
	}
	for _, ext := range s.cfg.externals {
		epochs := s.extEpoch[ext.metadata]
		if len(epochs) == 0 {
			continue // overwritten before anyone (present throughout) saw it
		}
		d := decode(ext.metadata)
		e := stamp{clock: epochs[0].clock}
		recs = append(recs, rec{e, Replace, d.data})
	}
	var epoch stamp
	latest := make(map[string]rec)
	for _, r := range recs {
		if r.strategy == Replace && r.stamp.compare(epoch) > 0 {
			epoch = r.stamp
		}
		for k := range r.changes {
			if cur, ok := latest[k]; !ok || r.stamp.compare(cur.stamp) > 0 {
				latest[k] = r
			}
		}
	}
	out := make(map[string]json.RawMessage)
	for k, r := range latest {
		if v := r.changes[k]; v != nil && r.stamp.compare(epoch) >= 0 {
			out[k] = v
		}
	}
	return out
}

// checkConverged checks, at quiescence, that every present participant shows
// the room metadata's session data and has nothing left to repair, and
// returns that data.
func (s *sim) checkConverged() map[string]json.RawMessage {
	t := s.t
	final := decode(s.value)
	for _, rep := range s.reps {
		if !rep.present {
			continue
		}
		require.Equal(t, final.object, rep.r.Data() != nil, "seed %d: %s did not converge", s.cfg.seed, rep.r.Writer())
		require.Equal(t, canon(final.data), canon(rep.r.Data()), "seed %d: %s did not converge", s.cfg.seed, rep.r.Writer())
		require.Equal(t, RepairNone, rep.r.Need(), "seed %d: %s still needs a repair", s.cfg.seed, rep.r.Writer())
		if *simTraceFlag && len(s.absentLost(rep.r.Lost())) > 0 {
			t.Logf("t=%d %s lost %q: best %s last %s awaiting %d", s.now, rep.r.Writer(), rep.r.Lost(), encode(&rep.r.best), rep.r.lastRaw, len(rep.r.awaiting))
		}
		require.Empty(t, s.absentLost(rep.r.Lost()), "seed %d: %s sees lost writes of absent writers", s.cfg.seed, rep.r.Writer())
	}
	return final.data
}

func (s *sim) check() simResult {
	t := s.t
	require.True(t, decode(s.value).object, "seed %d: final metadata is not an object: %q", s.cfg.seed, s.value)
	final := s.checkConverged()
	if !s.cfg.noOracle {
		for md, epochs := range s.extEpoch {
			// Participants present throughout agree on an outside Replace's epoch.
			for _, e := range epochs {
				require.Equal(t, epochs[0], e, "seed %d: epochs of %q differ", s.cfg.seed, md)
			}
		}
		want := s.oracle()
		require.Equal(t, canon(want), canon(final), "seed %d: final session data differs from the oracle", s.cfg.seed)
	}
	return simResult{
		final:      final,
		writes:     s.writes,
		repairs:    s.repairs,
		repairsFor: s.repairsFor,
		duration:   s.lastWrite - s.firstWrite,
	}
}

func canon(m map[string]json.RawMessage) string { return string(EncodeObject(m)) }

func raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

type simStats struct {
	runs                        int
	writes, repairs, repairsFor int
	maxRepairs                  int
	duration, maxDuration       int64
}

func (st *simStats) add(r simResult) {
	st.runs++
	st.writes += r.writes
	st.repairs += r.repairs
	st.repairsFor += r.repairsFor
	st.maxRepairs = max(st.maxRepairs, r.repairs+r.repairsFor)
	st.duration += r.duration
	st.maxDuration = max(st.maxDuration, r.duration)
}

func (st *simStats) String() string {
	n := float64(st.runs)
	return fmt.Sprintf("%d runs: writes %.1f, repairs %.1f (+%.1f on behalf), max repairs %d, settle time %.1f ticks (max %d)",
		st.runs, float64(st.writes)/n, float64(st.repairs)/n, float64(st.repairsFor)/n, st.maxRepairs,
		float64(st.duration)/n, st.maxDuration)
}

var simScale = flag.Int("simscale", 1, "multiply the number of seeds of each simulation test")

func seeds(n int) int {
	if testing.Short() || raceEnabled {
		return n / 10
	}
	return n * *simScale
}

var sweep = flag.Bool("sweep", false, "run TestSimRepairPolicySweep: compare repair policies in the 20-writer simulation")

// concurrentMerges is the 20-writer scenario: every participant
// shallow-merges its own key at (almost) the same moment.
func concurrentMerges(seed uint64, p simConfig) simConfig {
	cfg := p
	cfg.seed, cfg.replicas, cfg.deliverMax, cfg.rpcMax = seed, 20, 20, 10
	for i := range 20 {
		cfg.ops = append(cfg.ops, simOp{
			at:       int64(i % 3),
			replica:  i,
			strategy: ShallowMerge,
			changes:  map[string]json.RawMessage{fmt.Sprintf("key%02d", i): raw(i)},
		})
	}
	return cfg
}

// defaultPolicy is the recommended Room policy, in units where a one-way
// delivery takes 1-20 ticks and a request 1-10 ticks each way.
var defaultPolicy = simConfig{quiet: 20, rankStep: 20, grace: 60}

// TestSimConcurrentDistinctMerges: 20 participants shallow-merge 20 distinct
// keys at the same moment; all keys survive everywhere.
func TestSimConcurrentDistinctMerges(t *testing.T) {
	immediate := simConfig{grace: 100}
	for _, tc := range []struct {
		name     string
		policy   simConfig
		coalesce bool
		seeds    int
	}{
		{"default", defaultPolicy, false, 100},
		{"default/coalescing", defaultPolicy, true, 100},
		{"immediate", immediate, false, 30},
		{"immediate/coalescing", immediate, true, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st simStats
			for seed := range uint64(seeds(tc.seeds)) {
				p := tc.policy
				p.coalesce = tc.coalesce
				res := runSim(t, concurrentMerges(seed, p))
				require.Len(t, res.final, 20, "seed %d", seed)
				for i := range 20 {
					require.Equal(t, raw(i), res.final[fmt.Sprintf("key%02d", i)], "seed %d", seed)
				}
				st.add(res)
			}
			t.Logf("20 concurrent merges, %s policy: %s", tc.name, &st)
		})
	}
}

// TestSimRepairPolicySweep compares repair policies (run with -sweep).
func TestSimRepairPolicySweep(t *testing.T) {
	if !*sweep {
		t.Skip("run with -sweep")
	}
	for _, tc := range []struct {
		coalesce, noAnswer             bool
		quiet, rankStep, grace, jitter int64
	}{
		{false, true, 0, 0, 100, 0}, {true, true, 0, 0, 100, 0},
		{false, false, 0, 0, 100, 0}, {true, false, 0, 0, 100, 0},
		{false, false, 0, 30, 100, 0}, {true, false, 0, 30, 100, 0},
		{false, false, 20, 20, 60, 0}, {true, false, 20, 20, 60, 0},
		{false, true, 20, 20, 60, 0}, {true, true, 20, 20, 60, 0},
		{false, false, 20, 20, 60, 20}, {true, false, 20, 20, 60, 20},
		{false, false, 40, 10, 60, 0}, {true, false, 40, 10, 60, 0},
		{false, false, 20, 20, 30, 0}, {true, false, 20, 20, 30, 0},
	} {
		name := fmt.Sprintf("coalesce=%v/answer=%v/quiet=%d/rank=%d/grace=%d/jitter=%d",
			tc.coalesce, !tc.noAnswer, tc.quiet, tc.rankStep, tc.grace, tc.jitter)
		t.Run(name, func(t *testing.T) {
			var st simStats
			for seed := range uint64(300) {
				p := simConfig{coalesce: tc.coalesce, noAnswer: tc.noAnswer,
					quiet: tc.quiet, rankStep: tc.rankStep, grace: tc.grace, jitter: tc.jitter}
				res := runSim(t, concurrentMerges(seed, p))
				require.Len(t, res.final, 20, "seed %d", seed)
				st.add(res)
			}
			t.Logf("%s: %s", name, &st)
		})
	}
}

// TestSimTwoWritersSequential: two writers each perform 100 merges back to
// back (200 in all), on a shared key, on a key of their own and on keys
// picked at random; everyone ends with, per key, the last write in stamp
// order.
func TestSimTwoWritersSequential(t *testing.T) {
	for _, coalesce := range []bool{false, true} {
		t.Run(fmt.Sprintf("coalesce=%v", coalesce), func(t *testing.T) {
			var st simStats
			for seed := range uint64(seeds(50)) {
				rng := rand.New(rand.NewPCG(seed, 7))
				cfg := simConfig{seed: seed, replicas: 2, deliverMax: 15, rpcMax: 8, coalesce: coalesce, quiet: 20, rankStep: 20, grace: 60}
				for n := range 200 {
					w := n % 2
					cfg.ops = append(cfg.ops, simOp{
						at:       int64(n / 2),
						replica:  w,
						strategy: ShallowMerge,
						changes: map[string]json.RawMessage{
							"shared":                         raw(n),
							fmt.Sprintf("own%d", w):          raw(n),
							fmt.Sprintf("k%d", rng.IntN(10)): raw(n),
						},
					})
				}
				res := runSim(t, cfg)
				require.Contains(t, res.final, "shared")
				require.Contains(t, res.final, "own0")
				require.Contains(t, res.final, "own1")
				require.Equal(t, raw(198), res.final["own0"], "seed %d", seed)
				require.Equal(t, raw(199), res.final["own1"], "seed %d", seed)
				st.add(res)
			}
			t.Logf("2 writers x 100 sequential merges: %s", &st)
		})
	}
}

// TestSimMixed mixes merges, null deletes and replaces from several writers,
// a participant joining late, and two outside plain-JSON replaces amid the
// writes.
func TestSimMixed(t *testing.T) {
	for _, coalesce := range []bool{false, true} {
		t.Run(fmt.Sprintf("coalesce=%v", coalesce), func(t *testing.T) {
			var st simStats
			for seed := range uint64(seeds(150)) {
				rng := rand.New(rand.NewPCG(seed, 11))
				cfg := simConfig{seed: seed, replicas: 5, deliverMax: 20, rpcMax: 10, coalesce: coalesce, quiet: 20, rankStep: 20, grace: 60,
					joinsAt: []int64{40}}
				for n := range 60 {
					op := simOp{at: rng.Int64N(120), replica: rng.IntN(5), strategy: ShallowMerge,
						changes: map[string]json.RawMessage{}}
					if n >= 40 && rng.IntN(3) == 0 {
						op.replica = 5 // the late joiner
						op.at = 60 + rng.Int64N(60)
					}
					if rng.IntN(10) == 0 {
						op.strategy = Replace
					}
					for range 1 + rng.IntN(3) {
						k := fmt.Sprintf("k%d", rng.IntN(8))
						if op.strategy == ShallowMerge && rng.IntN(5) == 0 {
							op.changes[k] = json.RawMessage("null")
						} else {
							op.changes[k] = raw(map[string]int{"n": n, "w": op.replica})
						}
					}
					cfg.ops = append(cfg.ops, op)
				}
				cfg.externals = []simExternal{
					{at: 50 + rng.Int64N(20), metadata: fmt.Sprintf(`{"k1":"outside %d","ext":true}`, seed)},
					{at: rng.Int64N(120), metadata: fmt.Sprintf(`{"k2":"outside %d","ext2":true}`, seed)},
				}
				st.add(runSim(t, cfg))
			}
			t.Logf("5+1 writers, 60 mixed ops, two outside replaces: %s", &st)
		})
	}
}

// TestSimWritersLeave: writers leave as soon as their write is committed;
// the lowest present participant repairs their lost writes.
func TestSimWritersLeave(t *testing.T) {
	for _, coalesce := range []bool{false, true} {
		t.Run(fmt.Sprintf("coalesce=%v", coalesce), func(t *testing.T) {
			var st simStats
			for seed := range uint64(seeds(200)) {
				cfg := simConfig{seed: seed, replicas: 10, deliverMax: 20, rpcMax: 10, coalesce: coalesce, quiet: 20, rankStep: 20, grace: 60}
				for i := range 10 {
					cfg.ops = append(cfg.ops, simOp{at: int64(i % 2), replica: i, strategy: ShallowMerge,
						changes:    map[string]json.RawMessage{fmt.Sprintf("key%d", i): raw(i)},
						leaveAfter: i%2 == 1})
				}
				res := runSim(t, cfg)
				if !coalesce {
					// Every value reaches everyone, so nothing is lost for good.
					require.Len(t, res.final, 10, "seed %d", seed)
				}
				st.add(res)
			}
			t.Logf("10 concurrent merges, 5 writers leaving at once: %s", &st)
		})
	}
}

// TestSimExternalReplaceWins: an outside replace applied after the writes it
// supersedes removes their keys for good, while writes stamped after it
// survive.
func TestSimExternalReplaceWins(t *testing.T) {
	for seed := range uint64(seeds(100)) {
		cfg := simConfig{seed: seed, replicas: 3, deliverMax: 5, rpcMax: 3, quiet: 5, rankStep: 5, grace: 20}
		cfg.ops = []simOp{
			{at: 0, replica: 0, strategy: ShallowMerge, changes: map[string]json.RawMessage{"a": raw(1)}},
			{at: 0, replica: 1, strategy: ShallowMerge, changes: map[string]json.RawMessage{"b": raw(2)}},
			{at: 500, replica: 2, strategy: ShallowMerge, changes: map[string]json.RawMessage{"c": raw(3)}},
		}
		cfg.externals = []simExternal{{at: 250, metadata: `{"x":"outside"}`}}
		res := runSim(t, cfg)
		require.Equal(t, `{"c":3,"x":"outside"}`, canon(res.final), "seed %d", seed)
	}
}

func TestOracleSanity(t *testing.T) {
	// The oracle itself: a replace wipes older keys, a later merge survives.
	s := &sim{observed: map[string]bool{"m": true}, reps: []*simReplica{{present: true}}}
	s.applied = []simWrite{
		{stamp: stamp{1, "a"}, strategy: ShallowMerge, changes: map[string]json.RawMessage{"x": raw(1), "y": raw(1)}, metadata: "m"},
		{stamp: stamp{2, "b"}, strategy: Replace, changes: map[string]json.RawMessage{"y": raw(2)}, metadata: "m"},
		{stamp: stamp{3, "a"}, strategy: ShallowMerge, changes: map[string]json.RawMessage{"z": raw(3), "y": nil}, metadata: "m"},
	}
	got := s.oracle()
	require.Equal(t, `{"z":3}`, canon(got))
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	require.True(t, slices.Equal(keys, []string{"z"}))
}
