package sessionstate

import (
	"encoding/json"
	"fmt"
	"testing"
)

// benchValues returns two stamped metadata values of n keys written by n
// writers, differing in one key, and the replica that wrote them.
func benchValues(b *testing.B, n int) (string, string) {
	b.Helper()
	r, err := NewReplica("bench")
	if err != nil {
		b.Fatal(err)
	}
	var last *Update
	for i := range n {
		w, _ := NewReplica(fmt.Sprintf("participant-%02d", i))
		if last != nil {
			w.Observe(last.Metadata())
		}
		u, err := w.Prepare(map[string]json.RawMessage{fmt.Sprintf("key%02d", i): json.RawMessage(`{"name":"value","n":12345}`)}, ShallowMerge)
		if err != nil {
			b.Fatal(err)
		}
		last = u
	}
	r.Observe(last.Metadata())
	u, err := r.Prepare(map[string]json.RawMessage{"key00": json.RawMessage(`2`)}, ShallowMerge)
	if err != nil {
		b.Fatal(err)
	}
	return last.Metadata(), u.Metadata()
}

func BenchmarkObserve20Keys(b *testing.B) {
	v1, v2 := benchValues(b, 20)
	r, _ := NewReplica("observer")
	b.ReportAllocs()
	b.SetBytes(int64(len(v1)))
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			r.Observe(v1)
		} else {
			r.Observe(v2)
		}
	}
}

func BenchmarkObserveRepeated(b *testing.B) {
	v1, _ := benchValues(b, 20)
	r, _ := NewReplica("observer")
	r.Observe(v1)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r.Observe(v1)
	}
}

func BenchmarkPrepare20Keys(b *testing.B) {
	v1, _ := benchValues(b, 20)
	r, _ := NewReplica("writer")
	r.Observe(v1)
	changes := map[string]json.RawMessage{"key05": json.RawMessage(`{"name":"other"}`)}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := r.Prepare(changes, ShallowMerge); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseObject(b *testing.B) {
	in := json.RawMessage(`{"a":1,"b":{"c":[1,2,3]},"d":"text"}`)
	b.ReportAllocs()
	for range b.N {
		if _, err := ParseObject(in); err != nil {
			b.Fatal(err)
		}
	}
}
