package bench

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestSummarize(t *testing.T) {
	var samples []time.Duration
	for i := 100; i >= 1; i-- {
		samples = append(samples, time.Duration(i)*time.Millisecond)
	}
	s := summarize(samples)
	assert.Equal(t, 100, s.n)
	assert.Equal(t, 50500*time.Microsecond, s.mean)
	assert.Equal(t, 50*time.Millisecond, s.p50)
	assert.Equal(t, 99*time.Millisecond, s.p99)
	assert.Equal(t, time.Millisecond, s.min)
	assert.Equal(t, 100*time.Millisecond, s.max)

	few := summarize([]time.Duration{3, 1, 2})
	assert.Equal(t, time.Duration(2), few.p50)
	assert.Equal(t, time.Duration(3), few.p99, "p99 of few samples is the largest")
	assert.Equal(t, summary{}, summarize(nil))
}

func TestFormats(t *testing.T) {
	assert.Equal(t, "0.50 ms", ms(500*time.Microsecond))
	assert.Equal(t, "-0.44 ms", ms(-440*time.Microsecond))
	assert.Equal(t, "12.3 ms", ms(12300*time.Microsecond))
	assert.Equal(t, "1027 ms", ms(1027*time.Millisecond))
	assert.Equal(t, "2.0 MB/s", mbps(2e6, time.Second))
	assert.Equal(t, "500 MB/s", mbps(1e9, 2*time.Second))
	assert.Equal(t, "-", mbps(1, 0))
	assert.Equal(t, "250", rate(500, 2*time.Second))
	assert.Equal(t, "15 KiB", sizeName(15<<10))
	assert.Equal(t, "8 MiB", sizeName(8<<20))
	assert.Equal(t, "1000 B", sizeName(1000))
}

func TestJoinFailuresSummarizes(t *testing.T) {
	if joinFailures([]error{nil, nil}) != nil {
		t.Fatal("no failure, no summary")
	}
	f := joinFailures([]error{
		nil,
		errors.New("p-1 joining r: callstate: join refused (HTTP 503): request timed out"),
		errors.New("p-2 joining r: callstate: join refused (HTTP 503): request timed out"),
		errors.New("p-3 joining r: callstate: server unreachable"),
	})
	want := "3 joins failed: 2× callstate: join refused (HTTP 503): request timed out; 1× callstate: server unreachable"
	if f == nil || f.Error() != want {
		t.Fatalf("got %v, want %q", f, want)
	}
}
