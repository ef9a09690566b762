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

// throughput measures reliable messages from one participant to another,
// as the side-by-side tool does: the sender calls PublishData in a loop for
// a window, then every message sent is awaited; the delivered rate is the
// messages received divided by the time from the first send to the last
// arrival. PublishData paces the sender itself (it blocks while the data
// channel holds more than 1 MiB), so a caller publishing as fast as it can
// is the paced case; the process's peak RSS over the case shows that the
// sender's memory stays bounded.
func (r *runner) throughput(out io.Writer) error {
	window := time.Duration(r.pick(5000, 1000)) * time.Millisecond
	sizes := []int{1 << 10, 15 << 10}
	room := roomName("throughput")
	var rs rooms
	defer rs.closeAll()
	sender, receiver, err := r.pair(room, &rs)
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "the sender publishes for %v as fast as PublishData returns; delivered = received / (last arrival - first send); every message arrives, in order\n", window)
	fmt.Fprintln(out, "peak RSS: of this process (sender, receiver and the bench) during the case, VmHWM reset before it")
	t := newTable(out, "size", "messages", "packets/msg", "time", "delivered msgs/s", "throughput", "peak RSS")
	defer t.flush()
	for _, size := range sizes {
		before := sender.Stats().Data.PacketsSent
		peakOK := resetPeakRSS()
		count, d, err := r.sendFor(sender, receiver, size, window)
		if err != nil {
			return fmt.Errorf("%s messages: %w", sizeName(size), err)
		}
		peak := "-"
		if p := peakRSSKiB(); peakOK && p > 0 {
			peak = fmt.Sprintf("%.0f MB", float64(p)*1024/1e6)
		}
		packets := float64(sender.Stats().Data.PacketsSent-before) / float64(count)
		t.row(sizeName(size), fmt.Sprint(count), fmt.Sprintf("%.0f", packets), ms(d),
			rate(float64(count), d), mbps(float64(count*size), d), peak)
	}
	return nil
}

// sendFor sends reliable messages of size bytes from sender for window
// and returns how many it sent and the time from the first send to the
// last arrival at receiver.
func (r *runner) sendFor(sender, receiver *callstate.Room, size int, window time.Duration) (int, time.Duration, error) {
	return r.send(sender, receiver, size, -1, window)
}

// maxInFlight bounds the receiver's subscription buffer when the count of
// messages is not known in advance.
const maxInFlight = 1 << 17

// send sends count reliable messages of size bytes from sender, or (count
// < 0) as many as it can within window, and returns how many it sent and
// the time from the first send to the last arrival at receiver. Each
// message carries its index, so that loss, duplication and reordering are
// detected.
func (r *runner) send(sender, receiver *callstate.Room, size, count int, window time.Duration) (int, time.Duration, error) {
	from := sender.LocalParticipant().Identity
	buffer := count + 64
	if count < 0 {
		buffer = maxInFlight
	}
	sub := receiver.Subscribe(&callstate.SubscribeOptions{MaxEvents: buffer, Filter: func(e callstate.Event) bool {
		d, ok := e.(callstate.DataReceived)
		return ok && d.Data.From == from
	}})
	defer sub.Close()

	type result struct {
		last time.Time
		err  error
	}
	done := make(chan result, 1)
	// sentAll carries the number of messages sent, once sending ends.
	sentAll := make(chan int, 1)
	go func() {
		next, want := 0, -1
		var last time.Time
		events, ended := sub.Events(), sentAll
		for {
			select {
			case n := <-ended:
				want, ended = n, nil
			case ev, ok := <-events:
				if !ok {
					done <- result{err: fmt.Errorf("the subscription ended after %d messages", next)}
					return
				}
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
					last = e.Time
					if last.IsZero() {
						last = time.Now()
					}
				case callstate.EventsDropped:
					done <- result{err: fmt.Errorf("the receiver's subscription dropped %d events", e.Count)}
					return
				case callstate.Disconnected:
					done <- result{err: fmt.Errorf("the receiver left the room: %v", e.Err)}
					return
				}
			}
			if want >= 0 && next >= want {
				done <- result{last: last}
				return
			}
		}
	}()

	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	start := time.Now()
	sent := 0
	for ; count < 0 && time.Since(start) < window && sent < maxInFlight-64 || sent < count; sent++ {
		binary.BigEndian.PutUint32(payload, uint32(sent))
		if err := sender.PublishData(ctx, payload, nil); err != nil {
			return 0, 0, fmt.Errorf("sending message %d: %w", sent, err)
		}
	}
	sentAll <- sent
	timer := time.NewTimer(arrivalTimeout)
	defer timer.Stop()
	select {
	case res := <-done:
		if res.err != nil {
			return 0, 0, res.err
		}
		return sent, res.last.Sub(start), nil
	case <-timer.C:
		return 0, 0, fmt.Errorf("the messages did not all arrive within %v of the last send", arrivalTimeout)
	case <-r.ctx.Done():
		return 0, 0, r.ctx.Err()
	}
}
