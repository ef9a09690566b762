package chunk

import (
	"math/rand/v2"
	"testing"
)

func TestTmpStream(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 100000; i++ {
		d := make([]byte, r.IntN(100))
		for j := range d { d[j] = byte(r.Uint32()) }
		c := make([]byte, r.IntN(70))
		for j := range c { c[j] = byte(r.Uint32()) }
		ok := t.Run("x", func(t *testing.T) { checkStreamReceiver(t, d, c) })
		if !ok {
			t.Fatalf("%q %q", d, c)
		}
	}
}
