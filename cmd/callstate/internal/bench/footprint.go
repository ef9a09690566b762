package bench

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/callstate/callstate"
)

// usage is the process's goroutines, live heap and resident set at one
// moment.
type usage struct {
	goroutines int
	heapInuse  uint64
	rssKiB     int64 // -1 when unknown
}

// measureUsage returns the process's usage once its goroutine count has
// settled (two equal readings 100 ms apart, for at most 3 s) and after a
// full garbage collection that returned free memory to the system (what
// the side-by-side tool does before reading VmRSS).
func measureUsage() usage {
	prev := runtime.NumGoroutine()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		n := runtime.NumGoroutine()
		if n == prev {
			break
		}
		prev = n
	}
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{goroutines: runtime.NumGoroutine(), heapInuse: ms.HeapInuse, rssKiB: rssKiB()}
}

// awaitGoroutines waits, for at most d, until the process runs no more
// than n goroutines: a closed Room's goroutines have all returned when
// Close returns, but those of the HTTP transport may take a moment.
func awaitGoroutines(n int, d time.Duration) {
	for deadline := time.Now().Add(d); runtime.NumGoroutine() > n && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

// perParticipant is what each participant of a group cost the process.
type perParticipant struct {
	goroutines float64
	heapKiB    float64
	rssKiB     float64 // -1 when unknown
}

func costOf(before, after usage, n int) perParticipant {
	c := perParticipant{
		goroutines: float64(after.goroutines-before.goroutines) / float64(n),
		heapKiB:    (float64(after.heapInuse) - float64(before.heapInuse)) / 1024 / float64(n),
		rssKiB:     -1,
	}
	if before.rssKiB >= 0 && after.rssKiB >= 0 {
		c.rssKiB = float64(after.rssKiB-before.rssKiB) / float64(n)
	}
	return c
}

func kibOrDash(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f KiB", v)
}

// footprint measures the goroutines, heap and resident memory that each
// joined participant costs this process, as the side-by-side tool does:
// one room of receive-only participants, then one room of publishing
// participants (each publishes one packet once joined), joined one at a
// time; per-participant deltas of the process's figures.
func (r *runner) footprint(out io.Writer) error {
	n := r.pick(50, 5)
	var rs rooms
	defer rs.closeAll()

	// One participant joins and leaves first, so that what the process
	// pays once (code paged in, protobuf descriptors, the shared DTLS
	// certificate and HTTP client) is not charged to the participants.
	warm, _, err := r.joinRoom(roomName("footprint-warm"), "warm-up", nil)
	if err != nil {
		return err
	}
	_ = warm.Close()
	base := measureUsage()
	groups := []struct {
		name string
		opts *callstate.JoinOptions
	}{
		{"receive-only", &callstate.JoinOptions{ReceiveOnly: true}},
		{"publishing", nil},
	}
	type result struct {
		name  string
		joins summary
		cost  perParticipant
	}
	var results []result
	prev := base
	for _, g := range groups {
		room := roomName("footprint-" + g.name)
		r.logf("footprint: joining %d %s participants", n, g.name)
		var joins []time.Duration
		for i := range n {
			rm, d, err := r.joinRoom(room, fmt.Sprintf("%s-%d", g.name, i), g.opts)
			if err != nil {
				return err
			}
			rs.add(rm)
			if g.opts == nil {
				ctx, cancel := context.WithTimeout(r.ctx, joinTimeout)
				err := rm.PublishData(ctx, []byte("hello"), nil)
				cancel()
				if err != nil {
					return fmt.Errorf("%s-%d publishing: %w", g.name, i, err)
				}
			}
			joins = append(joins, d)
		}
		now := measureUsage()
		results = append(results, result{name: g.name, joins: summarize(joins), cost: costOf(prev, now, n)})
		prev = now
	}
	rs.closeAll()
	awaitGoroutines(base.goroutines, 5*time.Second)
	after := measureUsage()

	fmt.Fprintf(out, "%d receive-only participants in one room, then %d publishing ones in another (each publishes one packet), joined one at a time, in this process;\n", n, n)
	fmt.Fprintln(out, "per-participant deltas of runtime.NumGoroutine, MemStats.HeapInuse and VmRSS (after GC and FreeOSMemory), after one warm-up join")
	t := newTable(out, "participant", "goroutines", "RSS", "heap in use", "join mean", "join p50", "join p99")
	for _, res := range results {
		t.row(res.name, fmt.Sprintf("%.1f", res.cost.goroutines), kibOrDash(res.cost.rssKiB), kibOrDash(res.cost.heapKiB),
			ms(res.joins.mean), ms(res.joins.p50), ms(res.joins.p99))
	}
	t.flush()
	fmt.Fprintf(out, "before: %d goroutines, %s heap; with %d participants: %d goroutines, %s heap; after Close of all: %d goroutines, %s heap\n",
		base.goroutines, kib(float64(base.heapInuse)), 2*n, prev.goroutines, kib(float64(prev.heapInuse)),
		after.goroutines, kib(float64(after.heapInuse)))
	if after.goroutines > base.goroutines {
		return fmt.Errorf("%d goroutines more after closing every Room than before joining", after.goroutines-base.goroutines)
	}
	return nil
}
