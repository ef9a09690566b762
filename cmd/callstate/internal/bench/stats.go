package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// summary describes a sample of durations.
type summary struct {
	n                        int
	mean, p50, p99, min, max time.Duration
}

// summarize returns the summary of samples (which it sorts). Percentiles
// are nearest-rank: p99 of fewer than 100 samples is the largest one.
func summarize(samples []time.Duration) summary {
	if len(samples) == 0 {
		return summary{}
	}
	slices.Sort(samples)
	var total time.Duration
	for _, d := range samples {
		total += d
	}
	return summary{
		n:    len(samples),
		mean: total / time.Duration(len(samples)),
		p50:  percentile(samples, 50),
		p99:  percentile(samples, 99),
		min:  samples[0],
		max:  samples[len(samples)-1],
	}
}

// percentile returns the nearest-rank p-th percentile of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// ms formats d in milliseconds with a precision that suits its size.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case a >= 10:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.2f ms", v)
	}
}

// rate formats a count per second.
func rate(n float64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", n/d.Seconds())
}

// mbps formats a throughput of bytes over d in MB/s (10^6 bytes).
func mbps(bytes float64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	v := bytes / d.Seconds() / 1e6
	if v >= 100 {
		return fmt.Sprintf("%.0f MB/s", v)
	}
	return fmt.Sprintf("%.1f MB/s", v)
}

// sizeName names a size in KiB or MiB.
func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// kib formats a byte count in KiB.
func kib(b float64) string {
	return fmt.Sprintf("%.0f KiB", b/1024)
}
