package bench

import (
	"fmt"
	"io"
	"time"
)

// join measures sequential joins into a room that already has one
// participant. Each Room is closed before the next join, outside the
// measurement.
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

	samples := make([]time.Duration, 0, n)
	for i := range n {
		rm, d, err := r.joinRoom(room, fmt.Sprintf("joiner-%d", i), nil)
		if err != nil {
			return err
		}
		samples = append(samples, d)
		_ = rm.Close()
	}
	fmt.Fprintf(out, "%d sequential joins (publisher and subscriber connections, data channels open) into a room with 1 participant\n", n)
	s := summarize(samples)
	t := newTable(out, "joins", "mean", "p50", "p99", "min", "max")
	t.row(fmt.Sprint(s.n), ms(s.mean), ms(s.p50), ms(s.p99), ms(s.min), ms(s.max))
	t.flush()
	return nil
}
