package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/callstate/callstate"
)

// arrivalTimeout bounds the wait for messages still in flight after the
// last send.
const arrivalTimeout = time.Minute

// throughput measures reliable messages from one participant to another:
// from the first send to the last receive, every message counted.
func (r *runner) throughput(out io.Writer) error {
	cases := []struct{ size, count int }{
		{1 << 10, r.pick(5000, 500)},
		{15 << 10, r.pick(1000, 100)},
	}
	room := roomName("throughput")
	var rs rooms
	defer rs.closeAll()
	sender, receiver, err := r.pair(room, &rs)
	if err != nil {
		return err
	}

	fmt.Fprintln(out, "from the first PublishData to the last DataReceived; every message arrives, in order")
	t := newTable(out, "size", "messages", "packets/msg", "time", "msgs/s", "throughput")
	defer t.flush()
	for _, c := range cases {
		before := sender.Stats().Data.PacketsSent
		d, err := r.sendAll(sender, receiver, c.size, c.count)
		if err != nil {
			return fmt.Errorf("%s messages: %w", sizeName(c.size), err)
		}
		packets := float64(sender.Stats().Data.PacketsSent-before) / float64(c.count)
		t.row(sizeName(c.size), fmt.Sprint(c.count), fmt.Sprintf("%.0f", packets), ms(d),
			rate(float64(c.count), d), mbps(float64(c.count*c.size), d))
	}
	return nil
}

// sendAll sends count reliable messages of size bytes from sender and
// returns the time from the first send to the last arrival at receiver.
// Each message carries its index, so that loss, duplication and reordering
// are detected.
func (r *runner) sendAll(sender, receiver *callstate.Room, size, count int) (time.Duration, error) {
	from := sender.LocalParticipant().Identity
	sub := receiver.Subscribe(&callstate.SubscribeOptions{MaxEvents: count + 64, Filter: func(e callstate.Event) bool {
		d, ok := e.(callstate.DataReceived)
		return ok && d.Data.From == from
	}})
	defer sub.Close()

	type result struct {
		last time.Time
		err  error
	}
	done := make(chan result, 1)
	go func() {
		next := 0
		for ev := range sub.Events() {
			switch e := ev.(type) {
			case callstate.DataReceived:
				p := e.Data.Payload
				if len(p) != size {
					done <- result{err: fmt.Errorf("message %d has %d bytes, want %d", next, len(p), size)}
					return
				}
				if i := int(binary.BigEndian.Uint32(p)); i != next {
					done <- result{err: fmt.Errorf("message %d arrived where %d was expected", i, next)}
					return
				}
				next++
				if next == count {
					done <- result{last: time.Now()}
					return
				}
			case callstate.EventsDropped:
				done <- result{err: fmt.Errorf("the receiver's subscription dropped %d events", e.Count)}
				return
			case callstate.Disconnected:
				done <- result{err: fmt.Errorf("the receiver left the room: %v", e.Err)}
				return
			}
		}
		done <- result{err: fmt.Errorf("the subscription ended after %d of %d messages", next, count)}
	}()

	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	start := time.Now()
	for i := range count {
		binary.BigEndian.PutUint32(payload, uint32(i))
		if err := sender.PublishData(ctx, payload, nil); err != nil {
			return 0, fmt.Errorf("sending message %d: %w", i, err)
		}
	}
	timer := time.NewTimer(arrivalTimeout)
	defer timer.Stop()
	select {
	case res := <-done:
		if res.err != nil {
			return 0, res.err
		}
		return res.last.Sub(start), nil
	case <-timer.C:
		return 0, fmt.Errorf("the messages did not all arrive within %v of the last send", arrivalTimeout)
	case <-r.ctx.Done():
		return 0, r.ctx.Err()
	}
}
