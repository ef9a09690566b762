package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callstate/callstate"
)

// Defaults of the footprint2000 section.
const (
	DefaultScaleParticipants = 2000
	DefaultScaleDuration     = 5 * time.Minute
)

// scaleParallel is how many joins of the footprint2000 section run at once.
// The server shares the machine: more at once makes each join slower
// rather than the whole faster.
const scaleParallel = 16

// scaleRoomSize is the room size of the section's first layout.
const scaleRoomSize = 100

// scaleTimeout bounds the footprint2000 section: both layouts' joins,
// connected periods and closes.
func scaleTimeout(d time.Duration) time.Duration { return 2*d + 30*time.Minute }

// footprintScale joins many participants into this process, first spread
// over rooms of scaleRoomSize, then all in one room, keeps them connected
// for the configured duration and reports the time to join them all, the
// process's RSS and goroutines, and its CPU while idle (the participants
// connected, nothing sent), with the server's CPU when the run started the
// server.
func (r *runner) footprintScale(out io.Writer) error {
	n, d := r.scaleN, r.scaleD
	// At least two rooms, so that the layouts differ in a scaled-down run.
	rooms := max(2, n/scaleRoomSize)
	// In one room of thousands the participants join without the
	// presence track: with it every participant is a publisher, whose
	// join the server announces to everyone at once (n²/2 updates, two
	// million for 2,000, which starve a server sharing two cores with its
	// clients until it refuses joins), where it batches the updates of
	// participants that publish nothing.
	layouts := []struct {
		name  string
		rooms int
		opts  *callstate.JoinOptions
	}{
		{fmt.Sprintf("%d rooms of %d", rooms, n/rooms), rooms, nil},
		{fmt.Sprintf("1 room of %d, NoPresenceTrack", n), 1, &callstate.JoinOptions{NoPresenceTrack: true}},
	}
	fmt.Fprintf(out, "%d participants that may publish (default JoinOptions but where the layout says) in this process, %d joins at a time, each layout connected for %v;\n", n, scaleParallel, d)
	fmt.Fprintln(out, "RSS and goroutines of this process once all joined (after GC); idle CPU = CPU time over the connected period / its length (100% = one core)")
	t := newTable(out, "layout", "join all", "join p50", "join p99", "RSS", "RSS/participant", "peak RSS", "goroutines/participant", "idle CPU", "server idle CPU", "still connected")
	defer t.flush()
	for _, l := range layouts {
		row, err := r.scaleLayout(n, l.rooms, d, l.opts)
		if err != nil {
			t.flush()
			return fmt.Errorf("%s: %w", l.name, err)
		}
		t.row(append([]string{l.name}, row...)...)
	}
	return nil
}

// scaleLayout runs one layout of footprintScale and returns its table cells.
func (r *runner) scaleLayout(n, nRooms int, d time.Duration, opts *callstate.JoinOptions) ([]string, error) {
	var rs rooms
	defer rs.closeAll()
	base := measureUsage()
	peakOK := resetPeakRSS()
	names := make([]string, nRooms)
	for i := range names {
		names[i] = roomName("scale")
	}
	r.logf("footprint2000: joining %d participants into %d room(s)", n, nRooms)
	joins := make([]time.Duration, n)
	errs := make([]error, n)
	all := make([]*callstate.Room, n)
	var joined atomic.Int64
	sem := make(chan struct{}, scaleParallel)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if r.ctx.Err() != nil {
				errs[i] = r.ctx.Err()
				return
			}
			rm, jd, err := r.joinRoom(names[i%nRooms], fmt.Sprintf("p-%d", i), opts)
			if err != nil {
				errs[i] = err
				return
			}
			rs.add(rm)
			all[i], joins[i] = rm, jd
			if k := joined.Add(1); k%500 == 0 {
				r.logf("footprint2000: %d joined after %v", k, time.Since(start).Round(time.Millisecond))
			}
		})
	}
	wg.Wait()
	joinAll := time.Since(start)
	if failed := joinFailures(errs); failed != nil {
		return nil, fmt.Errorf("%d of %d joined in %v; %w", n-failed.count, n, joinAll.Round(time.Millisecond), failed)
	}
	r.logf("footprint2000: all %d joined in %v; connected for %v", n, joinAll.Round(time.Millisecond), d)
	js := summarize(joins)

	// The connected period: nothing sent; what the process and the server
	// spend is keep-alives, participant updates and timers.
	srvCPU := func() time.Duration {
		if r.serverPID <= 0 {
			return -1 // not ours: its CPU is not reported
		}
		return processCPU(r.serverPID)
	}
	cpu0, srv0, t0 := cpuTime(), srvCPU(), time.Now()
	select {
	case <-time.After(d):
	case <-r.ctx.Done():
		return nil, r.ctx.Err()
	}
	cpu1, srv1, elapsed := cpuTime(), srvCPU(), time.Since(t0)
	connected := 0
	for _, rm := range all {
		if rm.ConnectionState() == callstate.StateConnected {
			connected++
		}
	}
	now := measureUsage()
	peak := "-"
	if p := peakRSSKiB(); peakOK && p > 0 {
		peak = fmt.Sprintf("%.0f MB", float64(p)*1024/1e6)
	}
	rss := "-"
	if now.rssKiB > 0 {
		rss = fmt.Sprintf("%.0f MB", float64(now.rssKiB)*1024/1e6)
	}
	cost := costOf(base, now, n)
	r.logf("footprint2000: closing %d participants", n)
	closeStart := time.Now()
	rs.closeAll()
	r.logf("footprint2000: closed in %v", time.Since(closeStart).Round(time.Millisecond))
	awaitGoroutines(base.goroutines, 30*time.Second)
	if connected < n {
		return nil, fmt.Errorf("%d of %d participants were no longer connected after %v", n-connected, n, d)
	}
	return []string{ms(joinAll), ms(js.p50), ms(js.p99), rss, kibOrDash(cost.rssKiB), peak,
		fmt.Sprintf("%.1f", cost.goroutines), cpuShare(cpu0, cpu1, elapsed), cpuShare(srv0, srv1, elapsed),
		fmt.Sprintf("%d of %d", connected, n)}, nil
}

// joinFailed summarizes failed joins: how many, and each distinct reason
// (the participant's identity and room left out) with its count, so that
// hundreds of refusals by an overloaded server read as a few lines.
type joinFailed struct {
	count   int
	reasons map[string]int
}

func (f *joinFailed) Error() string {
	keys := slices.Sorted(maps.Keys(f.reasons))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d× %s", f.reasons[k], k)
	}
	return fmt.Sprintf("%d joins failed: %s", f.count, strings.Join(parts, "; "))
}

// joinFailures returns the summary of the non-nil errors, nil if none.
func joinFailures(errs []error) *joinFailed {
	f := &joinFailed{reasons: map[string]int{}}
	for _, err := range errs {
		if err == nil {
			continue
		}
		f.count++
		msg := err.Error()
		if _, rest, ok := strings.Cut(msg, ": "); ok {
			msg = rest // "<identity> joining <room>: " is the same for all
		}
		f.reasons[msg]++
	}
	if f.count == 0 {
		return nil
	}
	return f
}

// cpuShare formats the CPU time used between readings from and to over
// wall time as a percentage of one core; "-" when a reading is unknown.
func cpuShare(from, to, wall time.Duration) string {
	if from < 0 || to < 0 || wall <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*(to-from).Seconds()/wall.Seconds())
}
