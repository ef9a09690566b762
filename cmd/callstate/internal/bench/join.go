package bench

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/callstate/callstate"
)

// firstPacketWait is how long the host waits for a joiner's first packet
// before counting it lost (the side-by-side tool's 5 s).
const firstPacketWait = 5 * time.Second

// join measures sequential joins into a room that already has one
// participant, the host: how long Join takes to return, and how long from
// the start of Join until the host receives the reliable packet the joiner
// publishes right after Join returns. A packet that has not arrived within
// firstPacketWait is counted lost: PublishData returned nil for a packet
// the room never delivered. Each Room is closed before the next join,
// outside the measurement.
func (r *runner) join(out io.Writer) error {
	n := r.pick(30, 8)
	room := roomName("join")
	var rs rooms
	defer rs.closeAll()
	host, _, err := r.joinRoom(room, "host", nil)
	if err != nil {
		return err
	}
	rs.add(host)
	sub := host.Subscribe(&callstate.SubscribeOptions{MaxEvents: 4 * n, Filter: func(e callstate.Event) bool {
		_, ok := e.(callstate.DataReceived)
		return ok
	}})
	defer sub.Close()

	joins := make([]time.Duration, 0, n)
	firsts := make([]time.Duration, 0, n)
	lost := 0
	for i := range n {
		id := fmt.Sprintf("joiner-%d", i)
		start := time.Now()
		rm, d, err := r.joinRoom(room, id, nil)
		if err != nil {
			return err
		}
		joins = append(joins, d)
		msg := "first-" + id
		ctx, cancel := context.WithTimeout(r.ctx, joinTimeout)
		err = rm.PublishData(ctx, []byte(msg), nil)
		cancel()
		if err != nil {
			_ = rm.Close()
			return fmt.Errorf("%s publishing its first packet: %w", id, err)
		}
		at, ok := awaitPayload(r.ctx, sub, msg, firstPacketWait)
		_ = rm.Close()
		if err := r.ctx.Err(); err != nil {
			return err
		}
		if !ok {
			lost++
			continue
		}
		firsts = append(firsts, at.Sub(start))
	}
	fmt.Fprintf(out, "%d sequential joins into a room with 1 participant (the host); each joiner publishes one reliable packet as soon as Join returns\n", n)
	fmt.Fprintf(out, "first packet: from the start of Join to the host's DataReceived; lost = not delivered within %v although PublishData returned nil\n", firstPacketWait)
	t := newTable(out, "figure", "n", "mean", "p50", "p99", "min", "max", "lost")
	s := summarize(joins)
	t.row("Join returns", fmt.Sprint(s.n), ms(s.mean), ms(s.p50), ms(s.p99), ms(s.min), ms(s.max), "")
	f := summarize(firsts)
	t.row("first packet delivered", fmt.Sprint(f.n), ms(f.mean), ms(f.p50), ms(f.p99), ms(f.min), ms(f.max), fmt.Sprintf("%d of %d", lost, n))
	t.flush()
	if lost > 0 {
		return fmt.Errorf("%d of %d first packets were not delivered", lost, n)
	}
	return nil
}

// awaitPayload waits, for at most d, until sub delivers a DataReceived
// whose payload is want, and returns when it arrived. Other packets (a
// late one of an earlier joiner) are skipped.
func awaitPayload(ctx context.Context, sub *callstate.Subscription, want string, d time.Duration) (time.Time, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				return time.Time{}, false
			}
			if e, ok := ev.(callstate.DataReceived); ok && string(e.Data.Payload) == want {
				if e.Time.IsZero() {
					return time.Now(), true
				}
				return e.Time, true // when the Room received it
			}
		case <-timer.C:
			return time.Time{}, false
		case <-ctx.Done():
			return time.Time{}, false
		}
	}
}
