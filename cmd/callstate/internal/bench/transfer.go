package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/callstate/callstate"
)

// transferSize is the size of the large reliable payload.
const transferSize = 8 << 20

// transfer measures one large reliable payload, from the start of
// PublishData to its byte-exact arrival.
func (r *runner) transfer(out io.Writer) error {
	runs := r.pick(3, 1)
	room := roomName("transfer")
	var rs rooms
	defer rs.closeAll()
	sender, receiver, err := r.pair(room, &rs)
	if err != nil {
		return err
	}

	rng := rand.New(rand.NewPCG(1, 2))
	payload := make([]byte, transferSize)
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	samples := make([]time.Duration, 0, runs)
	for i := range runs {
		payload[0] = byte(i) // each run's payload differs from the last
		d, err := r.transferOnce(sender, receiver, payload)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		samples = append(samples, d)
	}
	s := summarize(samples)
	fmt.Fprintf(out, "%s reliable payload (a data stream), from the start of PublishData to its byte-exact arrival\n", sizeName(transferSize))
	t := newTable(out, "runs", "mean", "min", "max", "throughput (mean)")
	t.row(fmt.Sprint(s.n), ms(s.mean), ms(s.min), ms(s.max), mbps(transferSize, s.mean))
	t.flush()
	return nil
}

// transferOnce sends payload from sender and returns how long it took to
// arrive whole at receiver.
func (r *runner) transferOnce(sender, receiver *callstate.Room, payload []byte) (time.Duration, error) {
	from := sender.LocalParticipant().Identity
	sub := receiver.Subscribe(&callstate.SubscribeOptions{Filter: func(e callstate.Event) bool {
		d, ok := e.(callstate.DataReceived)
		return ok && d.Data.From == from
	}})
	defer sub.Close()
	ctx, cancel := context.WithTimeout(r.ctx, arrivalTimeout)
	defer cancel()

	start := time.Now()
	sent := make(chan error, 1)
	go func() { sent <- sender.PublishData(ctx, payload, nil) }()
	pending := sent // nil once PublishData has returned
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				return 0, fmt.Errorf("the receiver's subscription ended")
			}
			switch e := ev.(type) {
			case callstate.DataReceived:
				d := time.Since(start)
				if pending != nil {
					if err := <-pending; err != nil {
						return 0, fmt.Errorf("sending: %w", err)
					}
				}
				if !bytes.Equal(e.Data.Payload, payload) {
					return 0, fmt.Errorf("the payload arrived altered (%d bytes, want %d)", len(e.Data.Payload), len(payload))
				}
				return d, nil
			case callstate.Disconnected:
				return 0, fmt.Errorf("the receiver left the room: %v", e.Err)
			}
		case err := <-pending:
			if err != nil {
				return 0, fmt.Errorf("sending: %w", err)
			}
			pending = nil
		case <-ctx.Done():
			return 0, fmt.Errorf("the payload did not arrive: %w", ctx.Err())
		}
	}
}
