package callstate_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// BenchmarkJoin measures the time from Join's call to its return (the
// participant connected, able to send and receive) against a local server.
func BenchmarkJoin(b *testing.B) {
	srv := calltest.Shared(b)
	room := srv.RoomName(b)
	srv.Join(b, room, "host", nil)
	ctx := b.Context()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r, err := callstate.Join(ctx, srv.URL(), srv.Token(room, fmt.Sprintf("p%d", i)), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = r.Close()
		b.StartTimer()
	}
}

// BenchmarkReliableThroughput measures reliable messages from one
// participant to another through the server: every message is received
// before the benchmark ends.
func BenchmarkReliableThroughput(b *testing.B) {
	for _, size := range []int{1 << 10, 15 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			srv := calltest.Shared(b)
			room := srv.RoomName(b)
			a := srv.Join(b, room, "sender", nil)
			r := srv.Join(b, room, "receiver", nil)
			sub := r.Subscribe(&callstate.SubscribeOptions{MaxEvents: 1 << 16})
			payload := make([]byte, size)
			ctx := b.Context()
			b.SetBytes(int64(size))
			b.ResetTimer()
			start := time.Now()
			done := make(chan int)
			n := b.N
			go func() {
				got := 0
				for got < n {
					e, ok := <-sub.Events()
					if !ok {
						break
					}
					if d, ok := e.(callstate.DataReceived); ok && d.Data.From == "sender" {
						got++
					}
				}
				done <- got
			}()
			for range n {
				if err := a.PublishData(ctx, payload, nil); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case got := <-done:
				if got != n {
					b.Fatalf("received %d of %d", got, n)
				}
			case <-time.After(time.Minute):
				b.Fatal("messages did not all arrive")
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msgs/s")
			if d := sub.Dropped(); d > 0 {
				b.Fatalf("subscriber dropped %d events", d)
			}
		})
	}
}
