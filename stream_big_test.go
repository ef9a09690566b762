package callstate_test

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
)

// patternReader yields n bytes of a cheap pattern, so that the sender
// holds none of the stream in memory.
type patternReader struct{ left int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(b)), p.left))
	for i := range b[:n] {
		b[i] = byte(p.left - int64(i))
	}
	p.left -= int64(n)
	return n, nil
}

// vmHWM returns the process's peak resident set size in bytes, from
// /proc (0 where there is none).
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestStream200MiB passes 200 MiB through a StreamWriter and a
// ByteStreamReader; the Go heap stays bounded throughout (sender and
// receiver share the process, so the bound covers both).
func TestStream200MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MiB transfer")
	}
	size := int64(200 << 20)
	if raceEnabled {
		size = 32 << 20 // the race detector makes every byte slow
	}
	_, _, a, b := rpcPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	type result struct {
		n   int64
		sum [32]byte
		err error
	}
	done := make(chan result, 1)
	require.NoError(t, b.RegisterByteStreamHandler("big", func(br *callstate.ByteStreamReader) {
		h := sha256.New()
		n, err := io.Copy(h, br)
		var r result
		r.n, r.err = n, err
		copy(r.sum[:], h.Sum(nil))
		done <- r
	}))
	peakHeap := sampleHeap(t)
	start := time.Now()
	w, err := a.StreamBytes(ctx, &callstate.StreamOptions{Topic: "big", Size: size})
	require.NoError(t, err)
	_, err = io.Copy(w, &patternReader{left: size})
	require.NoError(t, err)
	require.NoError(t, w.Close())
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("the stream did not arrive")
	}
	elapsed := time.Since(start)
	peakHeap.stop()
	require.NoError(t, r.err)
	assert.Equal(t, size, r.n)
	want := sha256.New()
	_, _ = io.Copy(want, &patternReader{left: size})
	assert.Equal(t, want.Sum(nil), r.sum[:])
	t.Logf("%d MiB in %v: %.1f MiB/s; peak Go heap in use %.1f MiB; process peak RSS %.1f MiB",
		size>>20, elapsed.Round(time.Millisecond), float64(size)/(1<<20)/elapsed.Seconds(),
		float64(peakHeap.peak())/(1<<20), float64(vmHWM())/(1<<20))
	assert.Less(t, peakHeap.peak(), uint64(96<<20), "memory stays bounded, far below the stream's size")
}

// TestSendFileCompressedIsBounded sends a 512 MiB file (sparse: zeros,
// which deflate shrinks a thousandfold) with SendFile, compressed, to a
// handler that inflates it as it reads: the Go heap of sender and receiver
// together stays far below the file's size, as both compress and inflate
// a chunk at a time.
func TestSendFileCompressedIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("512 MiB file")
	}
	size := int64(512 << 20)
	if raceEnabled {
		size = 64 << 20
	}
	path := filepath.Join(t.TempDir(), "zeros.bin")
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(size))
	require.NoError(t, f.Close())
	_, _, a, b := rpcPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	type result struct {
		n, wire    int64
		zeros      bool
		compressed bool
		err        error
	}
	done := make(chan result, 1)
	require.NoError(t, b.RegisterByteStreamHandler("zeros", func(br *callstate.ByteStreamReader) {
		r := result{zeros: true, compressed: br.Info().Compressed}
		buf := make([]byte, 64<<10)
		for {
			n, err := br.Read(buf)
			for _, c := range buf[:n] {
				r.zeros = r.zeros && c == 0
			}
			r.n += int64(n)
			if err != nil {
				if err != io.EOF {
					r.err = err
				}
				break
			}
		}
		r.wire = br.BytesReceived()
		done <- r
	}))
	peakHeap := sampleHeap(t)
	start := time.Now()
	info, err := a.SendFile(ctx, path, &callstate.StreamOptions{Topic: "zeros"})
	require.NoError(t, err)
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("the file did not arrive")
	}
	elapsed := time.Since(start)
	peakHeap.stop()
	require.NoError(t, r.err)
	assert.True(t, info.Compressed)
	assert.True(t, r.compressed)
	assert.Equal(t, size, r.n)
	assert.True(t, r.zeros, "content as sent")
	assert.Less(t, r.wire, size/100, "BytesReceived counts the compressed bytes")
	t.Logf("%d MiB file in %v, %d content bytes on the wire: peak Go heap in use %.1f MiB",
		size>>20, elapsed.Round(time.Millisecond), r.wire, float64(peakHeap.peak())/(1<<20))
	assert.Less(t, peakHeap.peak(), uint64(64<<20), "memory stays bounded, far below the file's size")
}

// heapSampler records the peak of the Go heap in use, sampled every 20 ms.
type heapSampler struct {
	max  atomic.Uint64
	once sync.Once
	quit chan struct{}
	done chan struct{}
}

// sampleHeap starts a sampler, stopped at the latest when t ends.
func sampleHeap(t *testing.T) *heapSampler {
	h := &heapSampler{quit: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(h.stop)
	go func() {
		defer close(h.done)
		var ms runtime.MemStats
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-h.quit:
				return
			case <-tick.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > h.max.Load() {
					h.max.Store(ms.HeapInuse)
				}
			}
		}
	}()
	return h
}

// stop ends the sampling and waits for the sampler to return.
func (h *heapSampler) stop() {
	h.once.Do(func() { close(h.quit) })
	<-h.done
}

// peak is the largest heap in use seen.
func (h *heapSampler) peak() uint64 { return h.max.Load() }
