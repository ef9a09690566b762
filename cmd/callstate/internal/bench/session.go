package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/callstate/callstate"
)

// sessionMarker is the session data key whose value numbers the writes.
const sessionMarker = "bench_write"

// visibleTimeout bounds the wait for one write to reach every participant.
const visibleTimeout = 20 * time.Second

// joinParallel is how many joins run at once when a section fills a room.
const joinParallel = 4

// sighting is the moment a participant's Room observed a write.
type sighting struct {
	write, participant int
	at                 time.Time
}

// session measures how long a session data write takes to become visible
// at every other participant of a large room.
func (r *runner) session(out io.Writer) error {
	n := r.pick(50, 10)
	writes := r.pick(20, 5)
	room := roomName("session")
	var rs rooms
	defer rs.closeAll()

	writer, _, err := r.joinRoom(room, "writer", nil)
	if err != nil {
		return err
	}
	rs.add(writer)
	r.logf("session: joining %d receive-only participants", n-1)
	readers, err := r.joinMany(&rs, room, "reader", n-1, &callstate.JoinOptions{ReceiveOnly: true})
	if err != nil {
		return err
	}

	// One goroutine per reader records when its Room observed each write.
	seen := make(chan sighting, writes*len(readers))
	var wg sync.WaitGroup
	subs := make([]*callstate.Subscription, len(readers))
	for i, rm := range readers {
		sub := rm.Subscribe(&callstate.SubscribeOptions{MaxEvents: 4*writes + 64, Filter: func(e callstate.Event) bool {
			_, ok := e.(callstate.SessionDataUpdated)
			return ok
		}})
		subs[i] = sub
		wg.Go(func() { watchWrites(sub, i, writes, seen) })
	}
	defer func() {
		for _, sub := range subs {
			sub.Close()
		}
		wg.Wait()
	}()

	var calls, afterReturn, afterCall []time.Duration
	for k := 1; k <= writes; k++ {
		ctx, cancel := context.WithTimeout(r.ctx, visibleTimeout)
		start := time.Now()
		err := writer.SetSessionData(ctx, map[string]any{sessionMarker: k}, callstate.ShallowMerge)
		returned := time.Now()
		if err != nil {
			cancel()
			return fmt.Errorf("write %d: %w", k, err)
		}
		calls = append(calls, returned.Sub(start))
		got := make([]bool, len(readers))
		for count := 0; count < len(readers); {
			select {
			case s := <-seen:
				if s.write != k || got[s.participant] {
					cancel()
					return fmt.Errorf("write %d: reader %d reported write %d out of turn", k, s.participant, s.write)
				}
				got[s.participant] = true
				count++
				afterReturn = append(afterReturn, s.at.Sub(returned))
				afterCall = append(afterCall, s.at.Sub(start))
			case <-ctx.Done():
				cancel()
				missing := 0
				for _, ok := range got {
					if !ok {
						missing++
					}
				}
				return fmt.Errorf("write %d: not visible at %d of %d participants within %v", k, missing, len(readers), visibleTimeout)
			}
		}
		cancel()
	}

	fmt.Fprintf(out, "%d participants (1 writer, %d receive-only); %d SetSessionData ShallowMerge writes one after another;\n", n, n-1, writes)
	fmt.Fprintf(out, "visible = the reader's Room observed the write (SessionDataUpdated.When); %d (write, reader) pairs;\n", len(afterReturn))
	fmt.Fprintln(out, "SetSessionData returns once the writer's own Room has received the write back, so readers may see it first (< 0)")
	t := newTable(out, "", "samples", "p50", "p99", "max")
	for _, row := range []struct {
		name    string
		samples []time.Duration
	}{
		{"SetSessionData call", calls},
		{"visible, after SetSessionData returned", afterReturn},
		{"visible, after SetSessionData was called", afterCall},
	} {
		s := summarize(row.samples)
		t.row(row.name, fmt.Sprint(s.n), ms(s.p50), ms(s.p99), ms(s.max))
	}
	t.flush()
	return nil
}

// watchWrites reports on seen, once each, the writes numbered 1 to writes
// that participant's subscription shows, with the time its Room observed
// them. It returns when the subscription ends.
func watchWrites(sub *callstate.Subscription, participant, writes int, seen chan<- sighting) {
	reported := make([]bool, writes+1)
	for ev := range sub.Events() {
		e, ok := ev.(callstate.SessionDataUpdated)
		if !ok {
			continue
		}
		var k int
		if json.Unmarshal(e.Data[sessionMarker], &k) != nil || k < 1 || k > writes || reported[k] {
			continue
		}
		reported[k] = true
		seen <- sighting{write: k, participant: participant, at: e.When()}
	}
}

// joinMany joins n participants named prefix-0, prefix-1, ... into room,
// a few at a time, and adds them to rs.
func (r *runner) joinMany(rs *rooms, room, prefix string, n int, opts *callstate.JoinOptions) ([]*callstate.Room, error) {
	out := make([]*callstate.Room, n)
	errs := make([]error, n)
	sem := make(chan struct{}, joinParallel)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			rm, _, err := r.joinRoom(room, fmt.Sprintf("%s-%d", prefix, i), opts)
			if err != nil {
				errs[i] = err
				return
			}
			rs.add(rm)
			out[i] = rm
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}
