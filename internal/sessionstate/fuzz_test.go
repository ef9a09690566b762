package sessionstate

import (
	"encoding/json"
	"testing"
)

// FuzzObserve feeds arbitrary room metadata to Observe and checks that the
// replica stays usable: no panic, the reserved key never shows, and a write
// made on top of any metadata round-trips through a fresh replica.
func FuzzObserve(f *testing.F) {
	f.Add("")
	f.Add(`{"a":1}`)
	f.Fuzz(func(t *testing.T, md string) {
		r, err := NewReplica("fuzz")
		if err != nil {
			t.Fatal(err)
		}
		o := r.Observe(md)
		if o.Object != (o.Data != nil) {
			t.Fatalf("Object %v but Data %v", o.Object, o.Data)
		}
		if !o.Object && !o.External {
			t.Fatal("a non-object must count as an outside replace")
		}
		if _, ok := o.Data[ReservedKey]; ok {
			t.Fatal("reserved key shown")
		}
		if enc := EncodeObject(o.Data); o.Object && !json.Valid(enc) {
			t.Fatalf("invalid canonical encoding %q", enc)
		}
		if o.Repair != RepairNone {
			t.Fatalf("a fresh replica has nothing to repair, got %v", o.Repair)
		}
		if again := r.Observe(md); len(again.Changed) != 0 {
			t.Fatalf("repeated value changed %v", again.Changed)
		}

		// Whatever was observed, a valid write can be prepared.
		u, err := r.Prepare(map[string]json.RawMessage{"fuzz-key": json.RawMessage(`{"n":1}`)}, ShallowMerge)
		if err != nil {
			t.Fatal(err)
		}
		want := string(EncodeObject(u.Data()))
		if string(u.Data()["fuzz-key"]) != `{"n":1}` {
			t.Fatalf("write lost its own change: %s", want)
		}
		r.Commit(u, md)
		other, _ := NewReplica("other")
		o2 := other.Observe(u.Metadata())
		if o2.External || !o2.Object {
			t.Fatalf("own encoding not recognised: %q", u.Metadata())
		}
		if got := string(EncodeObject(o2.Data)); got != want {
			t.Fatalf("round trip: got %s, want %s", got, want)
		}
		if d := decode(u.Metadata()); encode(&d.st) != u.Metadata() {
			t.Fatalf("encoding is not canonical: %q", u.Metadata())
		}
		o = r.Observe(u.Metadata())
		if o.Repair != RepairNone || len(o.Lost) != 0 {
			t.Fatalf("own echo reported repair %v, lost %v", o.Repair, o.Lost)
		}
		if _, ok := r.Repair(); ok {
			t.Fatal("Repair offered after the echo")
		}
		if !r.Includes(u) {
			t.Fatal("the echo does not include the write")
		}
		if r.high() {
			t.Fatal("the clock is still high after the echo")
		}
		// And the next write is stamped again.
		u, err = r.Prepare(map[string]json.RawMessage{"fuzz-key": json.RawMessage(`2`)}, ShallowMerge)
		if err != nil || u.reset || u.stamp.clock >= highClock {
			t.Fatalf("second write: reset %v, %v", u != nil && u.reset, err)
		}
	})
}
