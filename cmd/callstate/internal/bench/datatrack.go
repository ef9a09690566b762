package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/callstate/callstate"
)

// datatrack measures lossy data through the server both ways callstate
// sends it: frames of a data track (LiveKit's packetization, packets of at
// most 1,400 bytes) and lossy PublishData (callstate's fragments), the same
// sizes at the same pace, from one participant to another. Each frame or
// message carries its index; the receiver notes when it arrives, so the
// latency is from the send call to the arrival (one clock: both
// participants are in this process).
func (r *runner) datatrack(out io.Writer) error {
	sizes := []int{1 << 10, 16 << 10, 100 << 10}
	count := r.pick(500, 50)
	const interval = 5 * time.Millisecond // 200 frames/s
	room := roomName("datatrack")
	var rs rooms
	defer rs.closeAll()
	sender, receiver, err := r.pair(room, &rs)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	// The receiver must know the track before it can subscribe.
	seen := receiver.Subscribe(&callstate.SubscribeOptions{Filter: func(e callstate.Event) bool {
		_, ok := e.(callstate.DataTrackPublished)
		return ok
	}})
	defer seen.Close()
	track, err := sender.PublishDataTrack(ctx, "bench", nil)
	if err != nil {
		return fmt.Errorf("publishing the data track: %w", err)
	}
	if _, err := await[callstate.DataTrackPublished](ctx, seen, 20*time.Second); err != nil {
		return err
	}
	sub, err := receiver.SubscribeDataTrack(ctx, sender.LocalParticipant().Identity, "bench", &callstate.DataTrackSubscribeOptions{Buffer: count + 16})
	if err != nil {
		return fmt.Errorf("subscribing to the data track: %w", err)
	}
	defer func() { _ = sub.Unsubscribe(context.Background()) }()

	fmt.Fprintf(out, "%d frames or messages per size, one every %v; latency from the send call to the arrival, one process\n", count, interval)
	t := newTable(out, "size", "via", "delivered", "frames/s", "throughput", "latency p50", "latency p99", "max")
	defer t.flush()
	for _, size := range sizes {
		for _, via := range []string{"data track", "lossy PublishData"} {
			if err := r.ctx.Err(); err != nil {
				return err
			}
			var res lossyRun
			if via == "data track" {
				res, err = r.lossyRun(size, count, interval, func(p []byte) error { return track.Push(ctx, p, nil) },
					func(ctx context.Context) ([]byte, time.Time, error) {
						f, err := sub.Next(ctx)
						return f.Payload, f.Received, err
					})
			} else {
				res, err = r.lossyPublishRun(sender, receiver, size, count, interval)
			}
			if err != nil {
				return fmt.Errorf("%s %s: %w", sizeName(size), via, err)
			}
			s := summarize(res.latencies)
			t.row(sizeName(size), via, fmt.Sprintf("%d/%d", len(res.latencies), count),
				rate(float64(len(res.latencies)), res.elapsed), mbps(float64(len(res.latencies)*size), res.elapsed),
				ms(s.p50), ms(s.p99), ms(s.max))
		}
	}
	return nil
}

// lossyRun is the outcome of one size over one path.
type lossyRun struct {
	latencies []time.Duration
	elapsed   time.Duration // first send to last arrival
}

// lossyRun sends count payloads of size bytes with send, paced by
// interval, and receives them with next until all arrived or a second
// passed after the last send with nothing new.
func (r *runner) lossyRun(size, count int, interval time.Duration, send func([]byte) error,
	next func(context.Context) ([]byte, time.Time, error)) (lossyRun, error) {
	sent := make([]time.Time, count)
	var mu sync.Mutex
	got := make([]time.Duration, 0, count)
	var last time.Time
	done := make(chan struct{})
	rctx, stop := context.WithCancel(r.ctx)
	defer stop()
	go func() {
		defer close(done)
		seen := make([]bool, count)
		for {
			p, at, err := next(rctx)
			if err != nil {
				return
			}
			if len(p) != size {
				continue
			}
			i := int(binary.BigEndian.Uint32(p))
			if i >= count || seen[i] {
				continue
			}
			seen[i] = true
			mu.Lock()
			got = append(got, at.Sub(sent[i]))
			last = at
			n := len(got)
			mu.Unlock()
			if n == count {
				return
			}
		}
	}()
	payload := make([]byte, size)
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := range count {
		binary.BigEndian.PutUint32(payload, uint32(i))
		mu.Lock()
		sent[i] = time.Now()
		mu.Unlock()
		if err := send(payload); err != nil {
			return lossyRun{}, fmt.Errorf("send %d: %w", i, err)
		}
		<-tick.C
	}
	// Lossy: what has not arrived a second after it stops arriving is lost.
	for {
		mu.Lock()
		n, l := len(got), last
		mu.Unlock()
		if n == count {
			break
		}
		if !l.IsZero() && time.Since(l) > time.Second || l.IsZero() && time.Since(start) > 10*time.Second {
			break
		}
		select {
		case <-done:
		case <-time.After(50 * time.Millisecond):
		}
	}
	stop()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return lossyRun{latencies: got, elapsed: last.Sub(start)}, nil
}

// lossyPublishRun is lossyRun over lossy PublishData.
func (r *runner) lossyPublishRun(sender, receiver *callstate.Room, size, count int, interval time.Duration) (lossyRun, error) {
	topic := fmt.Sprintf("bench-lossy-%d", size)
	sub := receiver.Subscribe(&callstate.SubscribeOptions{MaxEvents: count + 64, Filter: func(e callstate.Event) bool {
		d, ok := e.(callstate.DataReceived)
		return ok && d.Data.Topic == topic
	}})
	defer sub.Close()
	return r.lossyRun(size, count, interval,
		func(p []byte) error {
			return sender.PublishData(r.ctx, p, &callstate.PublishOptions{Kind: callstate.Lossy, Topic: topic})
		},
		func(ctx context.Context) ([]byte, time.Time, error) {
			for {
				select {
				case ev, ok := <-sub.Events():
					if !ok {
						return nil, time.Time{}, io.EOF
					}
					if d, ok := ev.(callstate.DataReceived); ok {
						return d.Data.Payload, d.Time, nil
					}
				case <-ctx.Done():
					return nil, time.Time{}, ctx.Err()
				}
			}
		})
}

// await returns the first event of type E on sub within timeout.
func await[E callstate.Event](ctx context.Context, sub *callstate.Subscription, timeout time.Duration) (E, error) {
	var zero E
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				return zero, fmt.Errorf("the subscription ended while waiting for %T", zero)
			}
			if e, ok := ev.(E); ok {
				return e, nil
			}
		case <-ctx.Done():
			return zero, fmt.Errorf("no %T within %v: %w", zero, timeout, ctx.Err())
		}
	}
}
