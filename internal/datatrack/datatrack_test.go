package datatrack

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func packetize(t testing.TB, p *Packetizer, frame []byte, o FrameOptions) [][]byte {
	t.Helper()
	var out [][]byte
	if err := p.Packetize(frame, o, func(pkt []byte) error {
		out = append(out, append([]byte(nil), pkt...))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestHeaderLayout(t *testing.T) {
	// A single-packet frame with a user timestamp, as livekit-client
	// writes it: flags S|F|X, handle, sequence, frame, timestamp, then one
	// word count (2: three words, the count and a 10-byte item) and the item.
	h := Header{Start: true, Final: true, Handle: 0x0102, Sequence: 0x0304, Frame: 0x0506, Timestamp: 0x0708090a,
		UserTimestamp: 0x1112131415161718, HasUserTimestamp: true}
	got := h.Append(nil, []byte{0xaa})
	want := []byte{0x1c, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 2, 2, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0xaa}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoded\n%x\nwant\n%x", got, want)
	}
	if h.Len() != len(want)-1 {
		t.Fatalf("Len %d, want %d", h.Len(), len(want)-1)
	}
	back, payload, err := Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	if back != h || !bytes.Equal(payload, []byte{0xaa}) {
		t.Fatalf("parsed %+v %x", back, payload)
	}
	e := Header{Handle: 9, E2EE: &E2EE{KeyIndex: 3, IV: [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}}, HasUserTimestamp: true, UserTimestamp: 7}
	b := e.Append(nil, nil)
	if len(b)%4 != 0 || len(b) != e.Len() {
		t.Fatalf("E2EE header of %d bytes (Len %d)", len(b), e.Len())
	}
	back, _, err = Parse(b)
	if err != nil || back.E2EE == nil || *back.E2EE != *e.E2EE || back.UserTimestamp != 7 {
		t.Fatalf("parsed %+v, %v", back, err)
	}
}

func TestParseErrors(t *testing.T) {
	ok := (&Header{Handle: 1, HasUserTimestamp: true}).Append(nil, nil)
	cases := map[string]struct {
		b    []byte
		want error
	}{
		"short":        {ok[:11], ErrShort},
		"version":      {append([]byte{0x20}, ok[1:]...), ErrVersion},
		"handle0":      {append(append([]byte{}, ok[:2]...), append([]byte{0, 0}, ok[4:]...)...), ErrHandle},
		"no ext len":   {append([]byte{0x04}, ok[1:12]...), ErrExtension},
		"ext overrun":  {append(append([]byte{}, ok[:12]...), 0, 9), ErrExtension},
		"item overrun": {append(append([]byte{}, ok[:12]...), 0, 0, 2, 9), ErrExtension},
		"short ts":     {append(append([]byte{}, ok[:12]...), 0, 0, 2, 0), ErrExtension},
	}
	for name, c := range cases {
		if _, _, err := Parse(c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

func TestRoundTripSizes(t *testing.T) {
	p, err := NewPacketizer(7, 0)
	if err != nil {
		t.Fatal(err)
	}
	d := NewDepacketizer(Limits{})
	o := FrameOptions{UserTimestamp: 42, HasUserTimestamp: true}
	max := p.MaxFrame(o)
	for _, n := range []int{0, 1, 100, 1376, 1377, 1388, 1389, 5000, 65536, max} {
		frame := make([]byte, n)
		for i := range frame {
			frame[i] = byte(i * 7)
		}
		pkts := packetize(t, p, frame, o)
		var got []Frame
		for _, pkt := range pkts {
			if len(pkt) > DefaultMaxPacket {
				t.Fatalf("packet of %d bytes", len(pkt))
			}
			f, ok, err := d.Push(pkt)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				got = append(got, f)
			}
		}
		if len(got) != 1 || !bytes.Equal(got[0].Payload, frame) || got[0].UserTimestamp != 42 {
			t.Fatalf("frame of %d bytes: %d frames back", n, len(got))
		}
	}
	var fe *FrameSizeError
	if err := p.Packetize(make([]byte, max+1), o, func([]byte) error { t.Fatal("emitted"); return nil }); !errors.As(err, &fe) || fe.Limit != max {
		t.Fatalf("over the limit: %v", err)
	}
	if s := d.Stats(); s.Dropped != 0 || s.Frames != 10 {
		t.Fatalf("stats %+v", s)
	}
}

func TestReorderedAndLost(t *testing.T) {
	p, _ := NewPacketizer(1, 200)
	d := NewDepacketizer(Limits{})
	rng := rand.New(rand.NewPCG(1, 2))
	var frames [][]byte
	var all [][]byte
	for i := range 20 {
		f := make([]byte, 100+i*150)
		for j := range f {
			f[j] = byte(rng.Uint32())
		}
		frames = append(frames, f)
		pkts := packetize(t, p, f, FrameOptions{})
		if i == 5 {
			pkts = append(pkts[:1], pkts[2:]...) // loses one packet
		}
		// Packets of a frame arrive in any order.
		rng.Shuffle(len(pkts), func(a, b int) { pkts[a], pkts[b] = pkts[b], pkts[a] })
		all = append(all, pkts...)
	}
	got := map[int]bool{}
	for _, pkt := range all {
		f, ok, err := d.Push(pkt)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if !bytes.Equal(f.Payload, frames[f.Number]) {
				t.Fatalf("frame %d corrupted", f.Number)
			}
			got[int(f.Number)] = true
		}
	}
	if len(got) != 19 || got[5] {
		t.Fatalf("delivered %v", got)
	}
	if s := d.Stats(); s.Dropped != 1 || d.Partials() != 0 {
		t.Fatalf("stats %+v, %d partials", s, d.Partials())
	}
}

func TestBounded(t *testing.T) {
	p, _ := NewPacketizer(1, 0)
	d := NewDepacketizer(Limits{MaxFrame: 3000, MaxPartials: 2})
	pkts := packetize(t, p, make([]byte, 5000), FrameOptions{})
	for _, pkt := range pkts {
		if _, ok, _ := d.Push(pkt); ok {
			t.Fatal("frame over MaxFrame delivered")
		}
	}
	// Three frames missing their final packets: at most two are held.
	for range 3 {
		pkts := packetize(t, p, make([]byte, 2000), FrameOptions{})
		if _, ok, _ := d.Push(pkts[0]); ok {
			t.Fatal("incomplete frame delivered")
		}
		if d.Partials() > 2 {
			t.Fatalf("%d partials", d.Partials())
		}
	}
	if s := d.Stats(); s.Dropped != 2 {
		t.Fatalf("stats %+v", s)
	}
	// Late packets of a dropped frame are not taken for a new one.
	if _, _, err := d.Push(pkts[1]); err != nil || d.Stats().Late != 1 {
		t.Fatalf("late packet: %v %+v", err, d.Stats())
	}
}

func TestTimestamp(t *testing.T) {
	p, _ := NewPacketizer(1, 0)
	now := p.start
	p.Now = func() time.Time { return now }
	a := packetize(t, p, []byte{1}, FrameOptions{})
	now = now.Add(time.Second)
	b := packetize(t, p, []byte{1}, FrameOptions{})
	ha, _, _ := Parse(a[0])
	hb, _, _ := Parse(b[0])
	if hb.Timestamp-ha.Timestamp != ClockRate || hb.Frame != ha.Frame+1 || hb.Sequence != ha.Sequence+1 {
		t.Fatalf("%+v then %+v", ha, hb)
	}
}

func TestPacketizerArgs(t *testing.T) {
	if _, err := NewPacketizer(0, 0); !errors.Is(err, ErrHandle) {
		t.Fatal(err)
	}
	if _, err := NewPacketizer(1, 20); !errors.Is(err, ErrPacketSize) {
		t.Fatal(err)
	}
	if _, err := NewPacketizer(1, MaxPacketLimit+1); !errors.Is(err, ErrPacketSize) {
		t.Fatal(err)
	}
}
