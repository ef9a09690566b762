package datatrack

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzParse checks that Parse never panics, and that what it accepts
// re-encodes to a packet that parses the same.
func FuzzParse(f *testing.F) {
	f.Add((&Header{Start: true, Final: true, Handle: 1, HasUserTimestamp: true, UserTimestamp: 5}).Append(nil, []byte("x")))
	f.Add((&Header{Handle: 2, E2EE: &E2EE{KeyIndex: 1}}).Append(nil, []byte("yz")))
	f.Add([]byte{0x04, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, payload, err := Parse(b)
		if err != nil {
			return
		}
		again := h.Append(nil, payload)
		h2, p2, err := Parse(again)
		if err != nil {
			t.Fatalf("re-encoded packet does not parse: %v", err)
		}
		if h2.Start != h.Start || h2.Final != h.Final || h2.Handle != h.Handle || h2.Sequence != h.Sequence ||
			h2.Frame != h.Frame || h2.Timestamp != h.Timestamp || h2.HasUserTimestamp != h.HasUserTimestamp ||
			h2.UserTimestamp != h.UserTimestamp || (h2.E2EE == nil) != (h.E2EE == nil) || !bytes.Equal(p2, payload) {
			t.Fatalf("round trip changed %+v into %+v", h, h2)
		}
	})
}

// FuzzDepacketizer feeds packets cut from the input (2-byte lengths) and
// checks the bounds: no frame over MaxFrame, no more partials than
// MaxPartials, every frame counted.
func FuzzDepacketizer(f *testing.F) {
	p, _ := NewPacketizer(3, 100)
	var seed []byte
	_ = p.Packetize(bytes.Repeat([]byte{7}, 300), FrameOptions{}, func(pkt []byte) error {
		seed = binary.BigEndian.AppendUint16(seed, uint16(len(pkt)))
		seed = append(seed, pkt...)
		return nil
	})
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Fuzz(func(t *testing.T, in []byte) {
		d := NewDepacketizer(Limits{MaxFrame: 1000, MaxPartials: 3})
		var frames uint64
		for len(in) >= 2 {
			n := int(binary.BigEndian.Uint16(in))
			in = in[2:]
			n = min(n, len(in))
			fr, ok, _ := d.Push(in[:n])
			in = in[n:]
			if ok {
				frames++
				if len(fr.Payload) > 1000 {
					t.Fatalf("frame of %d bytes", len(fr.Payload))
				}
			}
			if d.Partials() > 3 {
				t.Fatalf("%d partials", d.Partials())
			}
		}
		if d.Stats().Frames != frames {
			t.Fatalf("stats %+v, %d frames", d.Stats(), frames)
		}
	})
}
