package sessionstate

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// forgedStamps builds room metadata as an outsider with roomAdmin could
// write it through UpdateRoomMetadata: the data {"x":1} (plus "y":2 when
// flags&1), carrying a reserved object with a correct digest, so that it
// passes every check but the ones on its stamps. x is stamped [c1,w1]; y, or
// with flags&2 the tombstone of "t", [c2,w2]; with flags&4 the epoch is
// [ce,w2] (else none). flags&8 lists the writers in reverse order, flags&16
// lists w1 twice.
func forgedStamps(c1, c2, ce uint64, w1, w2 string, flags uint8) string {
	data := map[string]json.RawMessage{"x": json.RawMessage(`1`)}
	if flags&1 != 0 {
		data["y"] = json.RawMessage(`2`)
	}
	writers := []string{w1, w2}
	if flags&8 != 0 {
		writers = []string{w2, w1}
	}
	if flags&16 != 0 {
		writers = append(writers, w1)
	}
	idx := func(w string) uint64 {
		for i := len(writers) - 1; i >= 0; i-- {
			if writers[i] == w {
				return uint64(i)
			}
		}
		return 0
	}
	k := map[string][]uint64{"x": {c1, idx(w1)}}
	if flags&1 != 0 {
		k["y"] = []uint64{c2, idx(w2)}
	}
	if flags&2 != 0 {
		k["t"] = []uint64{c2, idx(w2)}
	}
	e := []uint64{0, 0}
	if flags&4 != 0 {
		e = []uint64{ce, idx(w2)}
	}
	body := appendObject(nil, data)
	reserved, err := json.Marshal(wireMeta{V: wireVersion, H: digest(body), W: writers, E: e, K: k})
	if err != nil {
		panic(err)
	}
	return string(body[:len(body)-1]) + `,"` + ReservedKey + `":` + string(reserved) + `}`
}

// liveness runs three participants that write for a while; then the room
// metadata is set from outside to forged (and, per flags, to extra and to
// a plain object) while they are present, and one of them writes at the
// same moment: that write survives. Afterwards, whatever the input:
//   - a newcomer joins, and a write by a present participant succeeds (the
//     simulation fails on any Prepare error) and converges everywhere,
//     newcomer included, with nothing left to repair;
//   - a plain-JSON replace from outside resets the session data to exactly
//     that object, and a write after it keeps it: no participant writes an
//     older or forged key back.
func liveness(t *testing.T, seed uint64, forged, extra string, flags uint8) {
	externals := []simExternal{{at: 0, metadata: forged}}
	if flags&32 != 0 {
		externals = append(externals, simExternal{at: 10, metadata: extra})
	}
	if flags&64 != 0 {
		externals = append(externals, simExternal{at: 20, metadata: `{"plain":true}`})
	}
	writer := int(seed % 3)
	live := json.RawMessage(strconv.FormatUint(seed, 10))
	cfg := simConfig{
		seed: seed, replicas: 3, deliverMax: 5, rpcMax: 3, coalesce: flags&128 != 0,
		quiet: 5, rankStep: 5, grace: 20, noOracle: true,
		ops: []simOp{
			{at: 0, replica: 0, strategy: ShallowMerge, changes: map[string]json.RawMessage{"a": raw(1)}},
			{at: 2, replica: 1, strategy: ShallowMerge, changes: map[string]json.RawMessage{"b": raw(2), "x": raw(0)}},
			{at: 4, replica: 2, strategy: ShallowMerge, changes: map[string]json.RawMessage{"a": json.RawMessage("null")}},
		},
		phases: []simPhase{
			{
				externals: externals,
				// A write racing the forged value and the repairs it
				// triggers survives, unless a Replace ordered after it
				// removed it: the forged epoch, or a later outside value.
				ops: []simOp{{at: 1 + int64(seed%4), replica: (writer + 2) % 3, strategy: ShallowMerge, changes: map[string]json.RawMessage{"during": raw(1)}}},
				check: func(final map[string]json.RawMessage) {
					if len(externals) == 1 && flags&4 == 0 {
						require.Equal(t, "1", string(final["during"]), "seed %d: the write racing %q was lost: %s", seed, forged, canon(final))
					}
				},
			},
			{
				joins: 1,
				ops:   []simOp{{at: 5, replica: writer, strategy: ShallowMerge, changes: map[string]json.RawMessage{"live": live}}},
				check: func(final map[string]json.RawMessage) {
					require.Equal(t, string(live), string(final["live"]), "seed %d: the write after %q did not converge: %s", seed, forged, canon(final))
				},
			},
			{externals: []simExternal{{at: 0, metadata: `{"reset":1}`}}},
			{
				ops: []simOp{{at: 5, replica: (writer + 1) % 4, strategy: ShallowMerge, changes: map[string]json.RawMessage{"after": raw(2)}}},
				check: func(final map[string]json.RawMessage) {
					require.Equal(t, `{"after":2,"reset":1}`, canon(final), "seed %d: after %q, a plain replace did not reset", seed, forged)
				},
			},
		},
	}
	runSim(t, cfg)
}

// FuzzLiveness feeds the participants adversarial reserved metadata: clocks
// at and around the largest values, writers present, absent, empty or
// ordered oddly, epochs and tombstones, plus arbitrary metadata, and
// asserts liveness (see liveness).
func FuzzLiveness(f *testing.F) {
	f.Add(uint64(0), uint64(math.MaxUint64), uint64(1), uint64(0), "m", "m", uint8(0), "")
	f.Add(uint64(1), uint64(math.MaxUint64), uint64(math.MaxUint64), uint64(math.MaxUint64), "p01", "", uint8(7), "")
	f.Add(uint64(2), uint64(MaxClock), uint64(MaxClock), uint64(MaxClock), "\xff", "p00", uint8(15), "")
	f.Add(uint64(3), uint64(MaxClock-1), uint64(MaxClock), uint64(0), "p02", "p02", uint8(2|16|64), "")
	f.Add(uint64(4), uint64(highClock-2), uint64(highClock-1), uint64(highClock-3), "zz", "p00", uint8(1|4|128), "")
	f.Add(uint64(5), uint64(1<<40), uint64(1<<40), uint64(1<<40), "", "", uint8(1|2|4|32), `{"x":2}`)
	f.Add(uint64(6), uint64(3), uint64(2), uint64(1), "p01", "p00", uint8(1|2|4|8|32), "not json")
	f.Fuzz(func(t *testing.T, seed, c1, c2, ce uint64, w1, w2 string, flags uint8, extra string) {
		if len(w1) > 64 || len(w2) > 64 || len(extra) > 4096 {
			return
		}
		liveness(t, seed, forgedStamps(c1, c2, ce, w1, w2, flags), extra, flags)
	})
}

// TestLivenessAfterForgedStamps runs the liveness check over a grid of
// forged clocks near the edges and writers, each flag combination with a
// quarter of the (clock, writer) pairs.
func TestLivenessAfterForgedStamps(t *testing.T) {
	clocks := []uint64{1, 1 << 40, highClock - 2, highClock - 1, highClock, MaxClock - 1, MaxClock, MaxClock + 1, math.MaxUint64 - 1, math.MaxUint64}
	writers := []string{"", "m", "p01", "\xff"}
	n := 0
	for i, c := range clocks {
		for j, w := range writers {
			for flags := range 256 {
				step := 4
				if testing.Short() || raceEnabled {
					step = 28
				}
				if (flags+i+j)%step != 0 {
					continue
				}
				c2 := clocks[(i+j+flags)%len(clocks)]
				seed := uint64(n)
				n++
				t.Run(fmt.Sprintf("c=%d/w=%q/flags=%d", c, w, flags), func(t *testing.T) {
					liveness(t, seed, forgedStamps(c, c2, c2, w, writers[(j+1)%len(writers)], uint8(flags)), `{"x":"e"}`, uint8(flags))
				})
			}
		}
	}
}
