package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/lkserver"
)

// clusterNodes is how many nodes the cluster section's cluster has.
const clusterNodes = 2

// clusterTimeout bounds the cluster section, longer than the others: it
// fills a room of 100 and keeps it busy for 30 s.
const clusterTimeout = 8 * time.Minute

// clusterMsg is one app message of the cluster section.
type clusterMsg struct {
	From int   `json:"f"`
	Seq  int   `json:"s"`
	Sent int64 `json:"t"` // time.Now().UnixNano() at the sender, same process
}

// clusterReceiver is what one participant received.
type clusterReceiver struct {
	got       map[[2]int]bool // (from, seq) received
	dups      int
	bad       int
	latencies []time.Duration
	count     atomic.Int64 // len(got), readable while receiving
}

// cluster measures a room spread over the nodes of a LiveKit cluster
// (Redis and two livekit-server nodes started for the section): n
// participants join through the nodes in turn, then each sends one app
// message per second for a while; every participant must receive every
// other's messages. It reports completeness, latency, and the goroutines and
// heap each participant costs this process.
func (r *runner) cluster(out io.Writer) error {
	n := r.pick(100, 6)
	rounds := r.pick(30, 3)

	r.logf("cluster: starting Redis and %d livekit-server nodes", clusterNodes)
	c, err := lkserver.StartCluster(r.ctx, clusterNodes, nil)
	if errors.Is(err, lkserver.ErrRedisNotFound) {
		fmt.Fprintf(out, "skipped: %v\n", err)
		return nil
	}
	if err != nil {
		return err
	}
	defer c.Close()
	key, secret := c.Node(0).APIKey(), c.Node(0).APISecret()

	room := roomName("cluster")
	var rs rooms
	defer rs.closeAll()
	base := measureUsage()

	r.logf("cluster: joining %d participants over %d nodes", n, clusterNodes)
	parts := make([]*callstate.Room, n)
	joins := make([]time.Duration, n)
	errs := make([]error, n)
	sem := make(chan struct{}, joinParallel)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			node := c.Node(i % clusterNodes)
			tok, err := callstate.NewToken(key, secret, callstate.Claims{Identity: fmt.Sprintf("bot-%d", i), Grants: lkserver.DefaultGrants(room)})
			if err != nil {
				errs[i] = err
				return
			}
			ctx, cancel := context.WithTimeout(r.ctx, joinTimeout)
			defer cancel()
			start := time.Now()
			rm, err := callstate.Join(ctx, node.URL(), tok, nil)
			joins[i] = time.Since(start)
			if err != nil {
				errs[i] = fmt.Errorf("bot-%d joining through node %d: %w", i, i%clusterNodes, err)
				return
			}
			rs.add(rm)
			parts[i] = rm
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	host, err := c.RoomNode(r.ctx, room)
	if err != nil {
		return err
	}

	// Every participant must know every other before the messages start:
	// LiveKit announces joins in batches, a few seconds late at times.
	r.logf("cluster: waiting until every participant sees the %d others", n-1)
	for i, rm := range parts {
		if err := awaitRemotes(r.ctx, rm, n-1); err != nil {
			return fmt.Errorf("bot-%d: %w", i, err)
		}
	}
	idle := measureUsage()

	// One receiving goroutine per participant.
	recv := make([]*clusterReceiver, n)
	subs := make([]*callstate.Subscription, n)
	var rwg sync.WaitGroup
	for i, rm := range parts {
		cr := &clusterReceiver{got: make(map[[2]int]bool, (n-1)*rounds)}
		recv[i] = cr
		sub := rm.Subscribe(&callstate.SubscribeOptions{MaxEvents: 4 * n, Filter: func(e callstate.Event) bool {
			_, ok := e.(callstate.AppMessage)
			return ok
		}})
		subs[i] = sub
		rwg.Go(func() { cr.receive(sub) })
	}
	defer func() {
		for _, s := range subs {
			s.Close()
		}
		rwg.Wait()
	}()

	// Every participant sends once a second, its sends offset from the
	// others' so that the load is spread over the second.
	r.logf("cluster: %d participants sending one app message per second for %d s", n, rounds)
	var sendErrs atomic.Int64
	var firstSendErr atomic.Value
	sendStart := time.Now()
	var swg sync.WaitGroup
	for i, rm := range parts {
		swg.Go(func() {
			offset := time.Duration(i) * time.Second / time.Duration(n)
			for k := range rounds {
				at := sendStart.Add(offset + time.Duration(k)*time.Second)
				t := time.NewTimer(time.Until(at))
				select {
				case <-t.C:
				case <-r.ctx.Done():
					t.Stop()
					return
				}
				err := rm.SendAppMessage(r.ctx, clusterMsg{From: i, Seq: k, Sent: time.Now().UnixNano()})
				if err != nil {
					sendErrs.Add(1)
					firstSendErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	swg.Wait()
	sendTime := time.Since(sendStart)
	busy := measureUsageNow()

	// Wait for the last deliveries, for at most 10 s.
	expected := int64((n - 1) * rounds)
	deadline := time.Now().Add(10 * time.Second)
	for {
		done := true
		for _, cr := range recv {
			if cr.count.Load() < expected {
				done = false
				break
			}
		}
		if done || time.Now().After(deadline) || r.ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, s := range subs {
		s.Close()
	}
	rwg.Wait()
	subs = nil

	var delivered, dups, bad int64
	var lat []time.Duration
	for _, cr := range recv {
		delivered += int64(len(cr.got))
		dups += int64(cr.dups)
		bad += int64(cr.bad)
		lat = append(lat, cr.latencies...)
	}
	total := expected * int64(n)
	s := summarize(lat)

	fmt.Fprintf(out, "%d participants in one room, joined through %d nodes in turn (Redis and %d livekit-server nodes on this machine, started for this section; the room is on node %d);\n",
		n, clusterNodes, clusterNodes, host)
	fmt.Fprintf(out, "each sends one app message per second for %d s (sends took %v); latency = receiver's AppMessage.Time - sender's clock before SendAppMessage\n",
		rounds, sendTime.Round(time.Millisecond))
	js := summarize(joins)
	t := newTable(out, "sent", "expected", "delivered", "missing", "duplicates", "completeness", "p50", "p99", "max")
	t.row(fmt.Sprint(int64(n*rounds)-sendErrs.Load()), fmt.Sprint(total), fmt.Sprint(delivered), fmt.Sprint(total-delivered), fmt.Sprint(dups),
		fmt.Sprintf("%.3f%%", 100*float64(delivered)/float64(total)), ms(s.p50), ms(s.p99), ms(s.max))
	t.flush()
	fmt.Fprintf(out, "joins: p50 %s, p99 %s, max %s (%d at a time)\n", ms(js.p50), ms(js.p99), ms(js.max), joinParallel)
	per := func(now usage) (float64, float64) {
		return float64(now.goroutines-base.goroutines) / float64(n), (float64(now.heapInuse) - float64(base.heapInuse)) / float64(n)
	}
	gi, hi := per(idle)
	gb, hb := per(busy)
	t = newTable(out, "per participant, in this process", "goroutines", "heap in use")
	t.row("joined, idle (after GC)", fmt.Sprintf("%.1f", gi), kib(hi))
	t.row("at the end of the sending (no GC)", fmt.Sprintf("%.1f", gb), kib(hb))
	t.flush()
	fmt.Fprintf(out, "process: %d goroutines, %s heap in use with the %d participants joined and idle\n", idle.goroutines, kib(float64(idle.heapInuse)), n)

	switch {
	case sendErrs.Load() > 0:
		return fmt.Errorf("%d sends failed, the first: %v", sendErrs.Load(), firstSendErr.Load())
	case bad > 0:
		return fmt.Errorf("%d messages could not be decoded", bad)
	case delivered != total:
		return fmt.Errorf("%d of %d deliveries missing", total-delivered, total)
	case dups > 0:
		return fmt.Errorf("%d duplicate deliveries", dups)
	}
	return nil
}

// receive records the app messages sub delivers until it ends.
func (cr *clusterReceiver) receive(sub *callstate.Subscription) {
	for ev := range sub.Events() {
		e, ok := ev.(callstate.AppMessage)
		if !ok {
			if d, ok := ev.(callstate.EventsDropped); ok {
				cr.bad += int(d.Count) // a lost event is a failure of the run
			}
			continue
		}
		var m clusterMsg
		if json.Unmarshal(e.Data, &m) != nil {
			cr.bad++
			continue
		}
		k := [2]int{m.From, m.Seq}
		if cr.got[k] {
			cr.dups++
			continue
		}
		cr.got[k] = true
		cr.count.Add(1)
		cr.latencies = append(cr.latencies, e.Time.Sub(time.Unix(0, m.Sent)))
	}
}

// awaitRemotes waits until rm knows want remote participants.
func awaitRemotes(ctx context.Context, rm *callstate.Room, want int) error {
	sub := rm.Subscribe(&callstate.SubscribeOptions{MaxEvents: 4 * want, Filter: func(e callstate.Event) bool {
		_, ok := e.(callstate.ParticipantJoined)
		return ok
	}})
	defer sub.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for len(rm.RemoteParticipants()) < want {
		select {
		case _, ok := <-sub.Events():
			if !ok {
				return errors.New("the room ended")
			}
		case <-ctx.Done():
			return fmt.Errorf("sees %d of the %d others: %w", len(rm.RemoteParticipants()), want, ctx.Err())
		}
	}
	return nil
}

// measureUsageNow returns the process's goroutines and heap in use at
// once, without waiting or collecting garbage: the load as it is.
func measureUsageNow() usage {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{goroutines: runtime.NumGoroutine(), heapInuse: ms.HeapInuse}
}
