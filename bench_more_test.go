package callstate_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// BenchmarkLargeTransfer8MiB measures one 8 MiB reliable payload (a data
// stream) from the start of PublishData to its byte-exact arrival at
// another participant.
func BenchmarkLargeTransfer8MiB(b *testing.B) {
	const size = 8 << 20
	srv := calltest.Shared(b)
	room := srv.RoomName(b)
	sender := srv.Join(b, room, "sender", nil)
	receiver := srv.Join(b, room, "receiver", &callstate.JoinOptions{ReceiveOnly: true})
	sub := receiver.Subscribe(&callstate.SubscribeOptions{Filter: func(e callstate.Event) bool {
		d, ok := e.(callstate.DataReceived)
		return ok && d.Data.From == "sender"
	}})
	defer sub.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	ctx := b.Context()
	b.ReportAllocs()
	b.SetBytes(size)
	for i := 0; b.Loop(); i++ {
		payload[0] = byte(i)
		if err := sender.PublishData(ctx, payload, nil); err != nil {
			b.Fatal(err)
		}
		d, err := calltest.AwaitEvent[callstate.DataReceived](ctx, sub, time.Minute, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if !bytes.Equal(d.Data.Payload, payload) {
			b.Fatalf("the payload arrived altered (%d bytes)", len(d.Data.Payload))
		}
		b.StartTimer()
	}
}

// BenchmarkSessionDataVisible measures how long a session data write takes,
// after SetSessionData returns, to be visible at all of 10 other
// participants: ns/op is the mean of that latency (from the time each
// reader's Room observed the write), p99-ns/op its 99th percentile, and
// call-ns/op the mean duration of SetSessionData itself.
func BenchmarkSessionDataVisible(b *testing.B) {
	const readers = 10
	const marker = "bench_write"
	srv := calltest.Shared(b)
	room := srv.RoomName(b)
	writer := srv.Join(b, room, "writer", nil)

	type sighting struct {
		write int
		at    time.Time
	}
	seen := make(chan sighting, 64*readers)
	var wg sync.WaitGroup
	// Cleanups run last first: the readers' subscriptions close, ending
	// their goroutines, before this wait.
	b.Cleanup(wg.Wait)
	for i := range readers {
		r := srv.Join(b, room, fmt.Sprintf("reader-%d", i), &callstate.JoinOptions{ReceiveOnly: true})
		sub := r.Subscribe(&callstate.SubscribeOptions{MaxEvents: 4096, Filter: func(e callstate.Event) bool {
			_, ok := e.(callstate.SessionDataUpdated)
			return ok
		}})
		wg.Go(func() {
			last := 0
			for ev := range sub.Events() {
				e, ok := ev.(callstate.SessionDataUpdated)
				if !ok {
					continue
				}
				var k int
				if json.Unmarshal(e.Data[marker], &k) == nil && k > last {
					last = k
					seen <- sighting{k, e.When()}
				}
			}
		})
		b.Cleanup(sub.Close)
	}

	ctx := b.Context()
	var visible []time.Duration
	var calls time.Duration
	b.ReportAllocs()
	for k := 1; b.Loop(); k++ {
		start := time.Now()
		if err := writer.SetSessionData(ctx, map[string]int{marker: k}, callstate.ShallowMerge); err != nil {
			b.Fatal(err)
		}
		returned := time.Now()
		calls += returned.Sub(start)
		var latest time.Time
		timeout := time.NewTimer(20 * time.Second)
		for range readers {
			select {
			case s := <-seen:
				if s.write != k {
					b.Fatalf("write %d seen while waiting for write %d", s.write, k)
				}
				if s.at.After(latest) {
					latest = s.at
				}
			case <-timeout.C:
				b.Fatalf("write %d not visible at every reader within 20s", k)
			}
		}
		timeout.Stop()
		visible = append(visible, latest.Sub(returned))
	}
	var total time.Duration
	for _, d := range visible {
		total += d
	}
	slices.Sort(visible)
	p99 := visible[min(len(visible)-1, (len(visible)*99+99)/100-1)]
	b.ReportMetric(float64(total.Nanoseconds())/float64(len(visible)), "ns/op")
	b.ReportMetric(float64(p99.Nanoseconds()), "p99-ns/op")
	b.ReportMetric(float64(calls.Nanoseconds())/float64(len(visible)), "call-ns/op")
}

// BenchmarkLossyLatencyDuringBulkReliable reports how long a 4-byte lossy
// PublishData takes while an 8 MiB reliable transfer is in flight (p50 and
// p99 over b.N sends): lossy sends never wait for a reliable transfer.
func BenchmarkLossyLatencyDuringBulkReliable(b *testing.B) {
	srv := calltest.Shared(b)
	room := srv.RoomName(b)
	a := srv.Join(b, room, "alice", nil)
	srv.Join(b, room, "bob", &callstate.JoinOptions{ReceiveOnly: true})
	ctx := b.Context()
	big := make([]byte, 8<<20)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if a.PublishData(ctx, big, nil) != nil {
				return
			}
		}
	})
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t := time.Now()
		if err := a.PublishData(ctx, []byte("ping"), &callstate.PublishOptions{Kind: callstate.Lossy}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
