package bench

import (
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/callstate/callstate"
)

// usage is the process's goroutines and live heap at one moment.
type usage struct {
	goroutines int
	heapInuse  uint64
}

// measureUsage returns the process's usage once its goroutine count has
// settled (two equal readings 50 ms apart, for at most a second) and after
// a full garbage collection.
func measureUsage() usage {
	prev := runtime.NumGoroutine()
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		n := runtime.NumGoroutine()
		if n == prev {
			break
		}
		prev = n
	}
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{goroutines: runtime.NumGoroutine(), heapInuse: ms.HeapInuse}
}

// awaitGoroutines waits, for at most d, until the process runs no more
// than n goroutines: a closed Room's goroutines have all returned when
// Close returns, but those of the HTTP transport may take a moment.
func awaitGoroutines(n int, d time.Duration) {
	for deadline := time.Now().Add(d); runtime.NumGoroutine() > n && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

// footprint measures the goroutines and heap that each joined participant
// costs this process, receive-only and publishing, and their join times.
func (r *runner) footprint(out io.Writer) error {
	n := r.pick(20, 5)
	room := roomName("footprint")
	var rs rooms
	defer rs.closeAll()

	base := measureUsage()
	groups := []struct {
		name string
		opts *callstate.JoinOptions
	}{
		{"receive-only", &callstate.JoinOptions{ReceiveOnly: true}},
		{"publishing", nil},
	}
	type result struct {
		name       string
		joins      summary
		goroutines float64
		heap       float64
	}
	var results []result
	prev := base
	for _, g := range groups {
		r.logf("footprint: joining %d %s participants", n, g.name)
		var joins []time.Duration
		for i := range n {
			rm, d, err := r.joinRoom(room, fmt.Sprintf("%s-%d", g.name, i), g.opts)
			if err != nil {
				return err
			}
			rs.add(rm)
			joins = append(joins, d)
		}
		now := measureUsage()
		results = append(results, result{
			name:       g.name,
			joins:      summarize(joins),
			goroutines: float64(now.goroutines-prev.goroutines) / float64(n),
			heap:       (float64(now.heapInuse) - float64(prev.heapInuse)) / float64(n),
		})
		prev = now
	}
	rs.closeAll()
	awaitGoroutines(base.goroutines, 5*time.Second)
	after := measureUsage()

	fmt.Fprintf(out, "%d receive-only, then %d publishing participants joined one at a time into one room, in this process;\n", n, n)
	fmt.Fprintln(out, "per-participant deltas of runtime.NumGoroutine and MemStats.HeapInuse (after GC)")
	t := newTable(out, "participant", "goroutines", "heap in use", "join mean", "join p50", "join p99")
	for _, res := range results {
		t.row(res.name, fmt.Sprintf("%.1f", res.goroutines), kib(res.heap), ms(res.joins.mean), ms(res.joins.p50), ms(res.joins.p99))
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
