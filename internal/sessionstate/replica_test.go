package sessionstate

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newReplica(t *testing.T, writer string) *Replica {
	t.Helper()
	r, err := NewReplica(writer)
	require.NoError(t, err)
	return r
}

func obj(t *testing.T, s string) map[string]json.RawMessage {
	t.Helper()
	m, err := ParseObject(json.RawMessage(s))
	require.NoError(t, err)
	return m
}

// write prepares and commits a write, as if the server applied it alone.
func write(t *testing.T, r *Replica, changes string, s Strategy) *Update {
	t.Helper()
	u, err := r.Prepare(obj(t, changes), s)
	require.NoError(t, err)
	r.Commit(u, u.Metadata())
	return u
}

// observeAll delivers md to every replica and returns the first observation.
func observeAll(rs []*Replica, md string) Observation {
	var first Observation
	for i, r := range rs {
		o := r.Observe(md)
		if i == 0 {
			first = o
		}
	}
	return first
}

func TestNewReplicaRefusesEmptyWriter(t *testing.T) {
	_, err := NewReplica("")
	require.Error(t, err)
	r := newReplica(t, "alice")
	assert.Equal(t, "alice", r.Writer())
}

func TestMergeReplaceAndDelete(t *testing.T) {
	a, b := newReplica(t, "alice"), newReplica(t, "bob")
	rs := []*Replica{a, b}
	observeAll(rs, "")

	o := observeAll(rs, write(t, a, `{"x":1,"n":{"p":1,"q":2}}`, ShallowMerge).Metadata())
	assert.Equal(t, `{"n":{"p":1,"q":2},"x":1}`, canon(o.Data))
	assert.Equal(t, []string{"n", "x"}, o.Changed)
	assert.False(t, o.External)
	assert.True(t, o.Object)

	// Nested objects are replaced, not merged.
	o = observeAll(rs, write(t, b, `{"n":{"r":3}}`, ShallowMerge).Metadata())
	assert.Equal(t, `{"n":{"r":3},"x":1}`, canon(o.Data))
	assert.Equal(t, []string{"n"}, o.Changed)

	// null deletes.
	o = observeAll(rs, write(t, a, `{"x":null,"y":"new"}`, ShallowMerge).Metadata())
	assert.Equal(t, `{"n":{"r":3},"y":"new"}`, canon(o.Data))
	assert.Equal(t, []string{"x", "y"}, o.Changed)

	// Replace drops everything else; null values in a replace are absent.
	o = observeAll(rs, write(t, b, `{"z":true,"gone":null}`, Replace).Metadata())
	assert.Equal(t, `{"z":true}`, canon(o.Data))
	assert.Equal(t, []string{"n", "y", "z"}, o.Changed)

	for _, r := range rs {
		assert.Equal(t, RepairNone, r.Need())
		assert.Empty(t, r.Lost())
		assert.Equal(t, `{"z":true}`, canon(r.Data()))
	}
}

func TestReplaceDropsTombstones(t *testing.T) {
	a := newReplica(t, "alice")
	a.Observe("")
	a.Observe(write(t, a, `{"x":1,"y":2}`, ShallowMerge).Metadata())
	u := write(t, a, `{"x":null,"y":null}`, ShallowMerge)
	assert.Contains(t, u.Metadata(), `"k":{"x":`)
	a.Observe(u.Metadata())
	u = write(t, a, `{"z":1}`, Replace)
	d := decode(u.Metadata())
	require.True(t, d.stamped)
	assert.Len(t, d.st.entries, 1, "tombstones older than the epoch are dropped")
	assert.Equal(t, d.st.epoch, d.st.entries["z"].stamp)
}

func TestValuesKeepTheirText(t *testing.T) {
	a, b := newReplica(t, "alice"), newReplica(t, "bob")
	u := write(t, a, `{"big": 12345678901234567890123, "f": 1.50, "e": 1E3, "s": "<&>\u00e9", "ws": [ 1 , 2 ]}`, ShallowMerge)
	o := b.Observe(u.Metadata())
	assert.Equal(t, `12345678901234567890123`, string(o.Data["big"]))
	assert.Equal(t, `1.50`, string(o.Data["f"]))
	assert.Equal(t, `1E3`, string(o.Data["e"]))
	assert.Equal(t, `"<&>\u00e9"`, string(o.Data["s"]))
	assert.Equal(t, `[1,2]`, string(o.Data["ws"]))
}

func TestObservationDataIsACopy(t *testing.T) {
	a := newReplica(t, "alice")
	u := write(t, a, `{"x":"abc"}`, ShallowMerge)
	o := a.Observe(u.Metadata())
	o.Data["x"][1] = 'Z'
	delete(o.Data, "x")
	assert.Equal(t, `{"x":"abc"}`, canon(a.Data()))
	assert.Equal(t, RepairNone, a.Need())
	d := u.Data()
	d["x"][1] = 'Z'
	assert.Equal(t, `{"x":"abc"}`, canon(u.Data()))
}

func TestObserveSameValueChangesNothing(t *testing.T) {
	a := newReplica(t, "alice")
	o := a.Observe(`{"plain":1}`)
	assert.True(t, o.External)
	assert.Equal(t, []string{"plain"}, o.Changed)
	clock := a.maxObs
	o = a.Observe(`{"plain":1}`)
	assert.Empty(t, o.Changed)
	assert.True(t, o.External)
	assert.Equal(t, `{"plain":1}`, canon(o.Data))
	assert.Equal(t, clock, a.maxObs, "a repeated value is not a new outside replace")
}

func TestNonObjectMetadata(t *testing.T) {
	for _, md := range []string{"", " ", "hello", "[1,2]", "null", "42", `"str"`, "{bad", `{"a":1} x`, "true"} {
		t.Run(md, func(t *testing.T) {
			a := newReplica(t, "alice")
			a.Observe(write(t, a, `{"x":1}`, ShallowMerge).Metadata())
			o := a.Observe(md)
			assert.False(t, o.Object)
			assert.Nil(t, o.Data)
			assert.True(t, o.External)
			assert.Equal(t, []string{"x"}, o.Changed)
			assert.Equal(t, RepairNone, o.Repair, "a non-object is an outside replace, not a loss")
			assert.Nil(t, a.Data())

			// A later merge starts from empty session data.
			u := write(t, a, `{"y":2}`, ShallowMerge)
			assert.Equal(t, `{"y":2}`, canon(u.Data()))
		})
	}
}

func TestPlainJSONIsAnAuthoritativeReplace(t *testing.T) {
	a, b := newReplica(t, "alice"), newReplica(t, "bob")
	rs := []*Replica{a, b}
	observeAll(rs, write(t, a, `{"x":1,"y":2}`, ShallowMerge).Metadata())

	o := observeAll(rs, `{"y":"app","z":[1]}`)
	assert.True(t, o.External)
	assert.Equal(t, `{"y":"app","z":[1]}`, canon(o.Data))
	for _, r := range rs {
		assert.Equal(t, RepairNone, r.Need(), "nobody repairs against an outside replace")
		assert.Empty(t, r.Lost())
	}

	// Writes after it build on it.
	u := write(t, b, `{"w":true}`, ShallowMerge)
	o = observeAll(rs, u.Metadata())
	assert.False(t, o.External)
	assert.Equal(t, `{"w":true,"y":"app","z":[1]}`, canon(o.Data))
	for _, r := range rs {
		assert.Equal(t, RepairNone, r.Need())
	}
}

func TestEditedStampedMetadataIsExternal(t *testing.T) {
	a, b := newReplica(t, "alice"), newReplica(t, "bob")
	u := write(t, a, `{"x":1,"y":2}`, ShallowMerge)
	a.Observe(u.Metadata())
	b.Observe(u.Metadata())

	// A program unaware of the stamps edits a value and keeps the rest.
	edited := strings.Replace(u.Metadata(), `"x":1`, `"x":5`, 1)
	require.NotEqual(t, u.Metadata(), edited)
	for _, r := range []*Replica{a, b} {
		o := r.Observe(edited)
		assert.True(t, o.External)
		assert.Equal(t, `{"x":5,"y":2}`, canon(o.Data))
		assert.Equal(t, RepairNone, o.Repair, "the edit must not be undone")
		assert.Empty(t, o.Lost)
	}
}

func TestMalformedReservedKey(t *testing.T) {
	a := newReplica(t, "alice")
	valid := write(t, a, `{"x":1}`, ShallowMerge).Metadata()
	good := decode(valid)
	require.True(t, good.stamped)
	h := digest(appendObject(nil, good.data))
	cases := map[string]string{
		"number":            `{"x":1,"__callstate":5}`,
		"null":              `{"x":1,"__callstate":null}`,
		"array":             `{"x":1,"__callstate":[1]}`,
		"version 2":         strings.Replace(valid, `"v":1`, `"v":2`, 1),
		"bad digest":        strings.Replace(valid, h, "0000000000000000", 1),
		"no epoch":          `{"x":1,"__callstate":{"v":1,"h":"` + h + `","w":["a"],"k":{"x":[1,0]}}}`,
		"short stamp":       `{"x":1,"__callstate":{"v":1,"h":"` + h + `","w":["a"],"e":[0,0],"k":{"x":[1]}}}`,
		"writer range":      `{"x":1,"__callstate":{"v":1,"h":"` + h + `","w":["a"],"e":[0,0],"k":{"x":[1,1]}}}`,
		"zero clock":        `{"x":1,"__callstate":{"v":1,"h":"` + h + `","w":["a"],"e":[0,0],"k":{"x":[0,0]}}}`,
		"negative clock":    `{"x":1,"__callstate":{"v":1,"h":"` + h + `","w":["a"],"e":[0,0],"k":{"x":[-1,0]}}}`,
		"float clock":       `{"x":1,"__callstate":{"v":1,"h":"` + h + `","w":["a"],"e":[0,0],"k":{"x":[1.5,0]}}}`,
		"huge clock":        `{"x":1,"__callstate":{"v":1,"h":"` + h + `","w":["a"],"e":[0,0],"k":{"x":[18446744073709551616,0]}}}`,
		"unstamped key":     `{"x":1,"__callstate":{"v":1,"h":"` + h + `","w":["a"],"e":[0,0],"k":{}}}`,
		"value below epoch": `{"x":1,"__callstate":{"v":1,"h":"` + h + `","w":["a"],"e":[5,0],"k":{"x":[4,0]}}}`,
		"stamped reserved":  `{"x":1,"__callstate":{"v":1,"h":"` + h + `","w":["a"],"e":[0,0],"k":{"x":[1,0],"__callstate":[2,0]}}}`,
		"writers not array": `{"x":1,"__callstate":{"v":1,"h":"` + h + `","w":"a","e":[0,0],"k":{"x":[1,0]}}}`,
	}
	for name, md := range cases {
		t.Run(name, func(t *testing.T) {
			r := newReplica(t, "bob")
			o := r.Observe(md)
			assert.True(t, o.External)
			assert.True(t, o.Object)
			assert.Equal(t, `{"x":1}`, canon(o.Data), "the reserved key is never shown")
			assert.Equal(t, RepairNone, o.Repair)
		})
	}

	// Sanity: the well-formed variants of the hand-written ones are stamped.
	r := newReplica(t, "bob")
	o := r.Observe(`{"x":1,"__callstate":{"v":1,"h":"` + h + `","w":["a"],"e":[0,0],"k":{"x":[1,0],"gone":[2,0]}}}`)
	assert.False(t, o.External)
	assert.Equal(t, `{"x":1}`, canon(o.Data))
	// An old deletion below the epoch is tolerated and dropped.
	o = r.Observe(`{"x":1,"__callstate":{"v":1,"h":"` + h + `","w":["a"],"e":[3,0],"k":{"x":[3,0],"gone":[2,0]}}}`)
	assert.False(t, o.External)
}

func TestLostUpdateIsRepairedByItsWriter(t *testing.T) {
	a, b, c := newReplica(t, "alice"), newReplica(t, "bob"), newReplica(t, "carol")
	rs := []*Replica{a, b, c}
	observeAll(rs, "")

	// alice and bob merge concurrently from the same (empty) view.
	ua, err := a.Prepare(obj(t, `{"a":1}`), ShallowMerge)
	require.NoError(t, err)
	ub, err := b.Prepare(obj(t, `{"b":2}`), ShallowMerge)
	require.NoError(t, err)

	// The server applies alice's, then bob's.
	observeAll(rs, ua.Metadata())
	a.Commit(ua, ua.Metadata())
	b.Commit(ub, ub.Metadata())
	o := observeAll(rs, ub.Metadata())
	assert.Equal(t, `{"b":2}`, canon(o.Data), "bob's stale write lost a")
	assert.Equal(t, RepairNow, o.Repair, "alice saw a in the metadata before it was lost")
	assert.Equal(t, RepairNone, b.Need())
	assert.Equal(t, []string{"alice"}, b.Lost())
	assert.Equal(t, []string{"alice"}, c.Lost())
	_, ok := b.Repair()
	assert.False(t, ok, "only the writer repairs its own loss")

	u, ok := a.Repair()
	require.True(t, ok)
	assert.Equal(t, u.Size(), len(u.Metadata()))
	assert.Equal(t, `{"a":1,"b":2}`, canon(u.Data()))
	a.Commit(u, u.Metadata())
	o = observeAll(rs, u.Metadata())
	assert.Equal(t, `{"a":1,"b":2}`, canon(o.Data))
	for _, r := range rs {
		assert.Equal(t, RepairNone, r.Need())
		assert.Empty(t, r.Lost())
	}
}

func TestRepairLaterUntilEcho(t *testing.T) {
	a, b := newReplica(t, "alice"), newReplica(t, "bob")
	a.Observe("")
	b.Observe("")
	ub1 := write(t, b, `{"b":1}`, ShallowMerge)

	ua, err := a.Prepare(obj(t, `{"a":1}`), ShallowMerge)
	require.NoError(t, err)
	a.Commit(ua, "") // the answer is unknown
	assert.Equal(t, RepairLater, a.Need(), "the last value observed predates the write")

	// A value applied before alice's write is still in flight.
	o := a.Observe(ub1.Metadata())
	assert.Equal(t, RepairLater, o.Repair)
	u, ok := a.Repair()
	require.True(t, ok, "Repair is available once the grace period is over")
	assert.Equal(t, `{"a":1,"b":1}`, canon(u.Data()))

	// The echo arrives: the write is in place.
	o = a.Observe(ua.Metadata())
	assert.Equal(t, RepairNone, o.Repair)

	// bob, who had not seen it, overwrites it: now the loss is certain.
	b.Observe(ub1.Metadata())
	ub2 := write(t, b, `{"b":2}`, ShallowMerge)
	o = a.Observe(ub2.Metadata())
	assert.Equal(t, RepairNow, o.Repair)
}

func TestEchoBeforeCommit(t *testing.T) {
	a, b := newReplica(t, "alice"), newReplica(t, "bob")
	ua, err := a.Prepare(obj(t, `{"a":1}`), ShallowMerge)
	require.NoError(t, err)
	a.Observe(ua.Metadata()) // the room update overtakes the answer
	a.Commit(ua, ua.Metadata())
	ub := write(t, b, `{"b":1}`, ShallowMerge)
	assert.Equal(t, RepairNow, a.Observe(ub.Metadata()).Repair, "the echo already confirmed the write")
}

func TestCommitAnswerRevealsLoss(t *testing.T) {
	a, b := newReplica(t, "alice"), newReplica(t, "bob")
	a.Observe("")
	ua, err := a.Prepare(obj(t, `{"a":1}`), ShallowMerge)
	require.NoError(t, err)
	ub := write(t, b, `{"b":1}`, ShallowMerge)

	// The server applied alice's write, then bob's, before answering alice
	// and broadcast only bob's.
	a.Commit(ua, ub.Metadata())
	assert.Equal(t, RepairNow, a.Observe(ub.Metadata()).Repair)

	// Had the answer been alice's own value, the loss would only be
	// suspected until the grace period ends.
	a2 := newReplica(t, "alice")
	a2.Observe("")
	ua2, err := a2.Prepare(obj(t, `{"a":1}`), ShallowMerge)
	require.NoError(t, err)
	a2.Commit(ua2, ua2.Metadata())
	assert.Equal(t, RepairLater, a2.Observe(ub.Metadata()).Repair)
}

func TestDeleteIsNotUndoneByStaleWrite(t *testing.T) {
	a, b := newReplica(t, "alice"), newReplica(t, "bob")
	rs := []*Replica{a, b}
	observeAll(rs, write(t, a, `{"x":1}`, ShallowMerge).Metadata())

	del := write(t, a, `{"x":null}`, ShallowMerge)
	a.Observe(del.Metadata())
	// bob writes before seeing the deletion; his value still carries x.
	ub, err := b.Prepare(obj(t, `{"y":2}`), ShallowMerge)
	require.NoError(t, err)
	b.Observe(del.Metadata())
	b.Commit(ub, ub.Metadata())
	o := a.Observe(ub.Metadata())
	assert.Equal(t, `{"x":1,"y":2}`, canon(o.Data), "the stale write shows x again")
	assert.Equal(t, RepairNow, o.Repair, "alice's deletion was lost")
	assert.Equal(t, []string{"alice"}, b.Observe(ub.Metadata()).Lost)

	u, ok := a.Repair()
	require.True(t, ok)
	a.Commit(u, u.Metadata())
	o = observeAll(rs, u.Metadata())
	assert.Equal(t, `{"y":2}`, canon(o.Data))
	assert.Equal(t, RepairNone, a.Need())
	assert.Equal(t, RepairNone, b.Need())
}

func TestReplaceAgainstConcurrentMerge(t *testing.T) {
	// Concurrent writes are ordered by stamp: a merge stamped after a
	// replace survives it, one stamped before does not.
	a, b := newReplica(t, "alice"), newReplica(t, "bob")
	rs := []*Replica{a, b}
	observeAll(rs, write(t, a, `{"old":1}`, ShallowMerge).Metadata())

	ua, err := a.Prepare(obj(t, `{"r":1}`), Replace) // stamp [2,alice]
	require.NoError(t, err)
	ub, err := b.Prepare(obj(t, `{"m":1}`), ShallowMerge) // stamp [2,bob] > [2,alice]
	require.NoError(t, err)
	observeAll(rs, ua.Metadata())
	a.Commit(ua, ua.Metadata())
	b.Commit(ub, ub.Metadata())
	o := observeAll(rs, ub.Metadata())
	assert.Equal(t, `{"m":1,"old":1}`, canon(o.Data))
	assert.Equal(t, RepairNow, a.Need(), "alice's replace was overwritten")
	u, ok := a.Repair()
	require.True(t, ok)
	o = observeAll(rs, u.Metadata())
	assert.Equal(t, `{"m":1,"r":1}`, canon(o.Data))
	assert.Equal(t, RepairNone, a.Need())
	assert.Equal(t, RepairNone, b.Need())
}

func TestRepairForAbsentWriter(t *testing.T) {
	a, b, c := newReplica(t, "alice"), newReplica(t, "bob"), newReplica(t, "carol")
	ua := write(t, a, `{"a":1}`, ShallowMerge)
	b.Observe(ua.Metadata())
	c.Observe("")
	uc := write(t, c, `{"c":1}`, ShallowMerge) // carol never saw alice's write
	o := b.Observe(uc.Metadata())
	assert.Equal(t, []string{"alice"}, o.Lost)
	assert.Equal(t, RepairNone, o.Repair)

	_, ok := b.RepairFor("dave")
	assert.False(t, ok)
	u, ok := b.RepairFor("dave", "alice") // alice left
	require.True(t, ok)
	assert.Equal(t, `{"a":1,"c":1}`, canon(u.Data()))
	b.Commit(u, u.Metadata())
	o = b.Observe(u.Metadata())
	assert.Empty(t, o.Lost)
	_, ok = b.RepairFor("alice")
	assert.False(t, ok)
}

func TestOutsideReplaceLostToStaleWrite(t *testing.T) {
	a, b := newReplica(t, "alice"), newReplica(t, "bob")
	rs := []*Replica{a, b}
	observeAll(rs, write(t, a, `{"x":1}`, ShallowMerge).Metadata())

	ub, err := b.Prepare(obj(t, `{"y":1}`), ShallowMerge) // before the outside write
	require.NoError(t, err)
	observeAll(rs, `{"app":true}`)
	b.Commit(ub, ub.Metadata())
	o := observeAll(rs, ub.Metadata())
	assert.Equal(t, `{"x":1,"y":1}`, canon(o.Data))
	assert.Equal(t, []string{""}, a.Lost(), "the outside writer's replace was lost")
	u, ok := a.RepairFor("")
	require.True(t, ok)
	o = observeAll(rs, u.Metadata())
	// bob's merge is stamped after the replace's epoch: it stays.
	assert.Equal(t, `{"app":true,"y":1}`, canon(o.Data))
	for _, r := range rs {
		assert.Empty(t, r.Lost())
		assert.Equal(t, RepairNone, r.Need())
	}
}

func TestUnconfirmedWriteSurvivesItsOwnPending(t *testing.T) {
	// A writer's second write includes its first one even before the
	// first is echoed.
	a := newReplica(t, "alice")
	write(t, a, `{"a":1}`, ShallowMerge)
	u := write(t, a, `{"b":1}`, ShallowMerge)
	assert.Equal(t, `{"a":1,"b":1}`, canon(u.Data()))
}

func TestCanonicalEncoding(t *testing.T) {
	st := newState()
	st.epoch = stamp{3, "bob"}
	st.entries["b"] = entry{stamp{4, "alice"}, json.RawMessage(`{"q":1}`)}
	st.entries["a"] = entry{stamp{3, "bob"}, json.RawMessage(`"<x>"`)}
	st.entries["gone"] = entry{stamp: stamp{5, "carol"}}
	md := encode(&st)
	h := digest([]byte(`{"a":"<x>","b":{"q":1}}`))
	assert.Equal(t, `{"a":"<x>","b":{"q":1},"__callstate":{"v":1,"h":"`+h+
		`","w":["alice","bob","carol"],"e":[3,1],"k":{"a":[3,1],"b":[4,0],"gone":[5,2]}}}`, md)
	assert.True(t, json.Valid([]byte(md)))

	d := decode(md)
	require.True(t, d.stamped)
	assert.Equal(t, st, d.st)
	assert.Equal(t, md, encode(&d.st), "decode and encode are inverse")

	empty := newState()
	md = encode(&empty)
	assert.Equal(t, `{"__callstate":{"v":1,"h":"`+digest([]byte(`{}`))+`","w":[],"e":[0,0],"k":{}}}`, md)
	assert.True(t, decode(md).stamped)
}

func TestPrepareValidates(t *testing.T) {
	a := newReplica(t, "alice")
	_, err := a.Prepare(map[string]json.RawMessage{ReservedKey: json.RawMessage(`1`)}, ShallowMerge)
	assert.ErrorIs(t, err, ErrInvalidData)
	_, err = a.Prepare(map[string]json.RawMessage{"x": json.RawMessage(`{`)}, ShallowMerge)
	assert.ErrorIs(t, err, ErrInvalidData)
	_, err = a.Prepare(map[string]json.RawMessage{"\xff": json.RawMessage(`1`)}, ShallowMerge)
	assert.ErrorIs(t, err, ErrInvalidData)
	_, err = a.Prepare(nil, Strategy(9))
	assert.Error(t, err)
	u, err := a.Prepare(nil, Replace)
	require.NoError(t, err)
	assert.Empty(t, u.Data())
}

// A stamp whose clock exceeds MaxClock makes the metadata unstamped: an
// outside Replace of its data, which writes then build on as usual.
func TestClockAboveMaxIsUnstamped(t *testing.T) {
	for _, c := range []uint64{MaxClock + 1, math.MaxUint64 - 1, math.MaxUint64} {
		st := newState()
		st.entries["x"] = entry{stamp{c, "m"}, json.RawMessage(`1`)}
		a := newReplica(t, "alice")
		o := a.Observe(encode(&st))
		assert.True(t, o.External, "clock %d", c)
		assert.Equal(t, `{"x":1}`, canon(o.Data))
		u := write(t, a, `{"y":1}`, ShallowMerge)
		assert.False(t, u.reset)
		assert.Equal(t, stamp{2, "alice"}, u.stamp)
		assert.Equal(t, `{"x":1,"y":1}`, canon(u.Data()))
	}
}

// At MaxClock the stamps are valid but leave no room: the next write is a
// reset, stamped from 1, after which every replica that knew the stamps,
// and every newcomer, has the same state and goes on stamping from there.
func TestHighClockResets(t *testing.T) {
	st := newState()
	st.epoch = stamp{MaxClock, "m"}
	st.entries["x"] = entry{stamp{MaxClock, "m"}, json.RawMessage(`1`)}
	st.entries["gone"] = entry{stamp: stamp{MaxClock, "zzz"}}
	forged := encode(&st)
	a, b := newReplica(t, "alice"), newReplica(t, "bob")
	for _, r := range []*Replica{a, b} {
		o := r.Observe(forged)
		require.False(t, o.External)
		require.True(t, r.high())
	}
	u, err := a.Prepare(obj(t, `{"gone":2,"x":null,"y":3}`), ShallowMerge)
	require.NoError(t, err)
	require.True(t, u.reset)
	assert.Equal(t, stamp{2, "alice"}, u.stamp)
	du := decode(u.Metadata())
	assert.Less(t, du.st.maxClock(), uint64(3), "a reset carries no high stamp")
	assert.Equal(t, `{"gone":2,"y":3}`, canon(u.Data()))
	assert.False(t, a.Includes(u), "not yet observed")
	a.Commit(u, u.Metadata())
	late := newReplica(t, "late")
	for _, r := range []*Replica{a, b, late} {
		o := r.Observe(u.Metadata())
		assert.False(t, o.External)
		assert.Equal(t, `{"gone":2,"y":3}`, canon(o.Data))
		assert.Equal(t, RepairNone, o.Repair, r.Writer())
		assert.Empty(t, o.Lost, "the forged stamps are forgotten, not blamed")
		assert.False(t, r.high())
		assert.Equal(t, u.full, r.best, "%s has the reset's state", r.Writer())
	}
	assert.True(t, a.Includes(u))
	ub := write(t, b, `{"z":4}`, ShallowMerge)
	assert.Equal(t, stamp{3, "bob"}, ub.stamp)
	for _, r := range []*Replica{a, late} {
		o := r.Observe(ub.Metadata())
		assert.Equal(t, `{"gone":2,"y":3,"z":4}`, canon(o.Data))
		assert.Equal(t, RepairNone, o.Repair)
		assert.Empty(t, o.Lost)
	}

	// A repair in the high range is a reset too.
	c := newReplica(t, "carol")
	c.Observe(forged)
	ur, ok := c.RepairFor("m")
	assert.False(t, ok, "nothing lost")
	assert.Nil(t, ur)
	require.True(t, c.high())
	ur = c.snapshot()
	assert.True(t, ur.reset)
	assert.Equal(t, `{"x":1}`, canon(ur.Data()))
	dr := decode(ur.Metadata())
	assert.Less(t, dr.st.maxClock(), uint64(highClock))
}

// Two participants reset at once (each wrote while the clock was high):
// whatever the order the server applies them, both writes survive.
func TestConcurrentResetsMerge(t *testing.T) {
	st := newState()
	st.entries["x"] = entry{stamp{MaxClock - 1, "m"}, json.RawMessage(`1`)}
	forged := encode(&st)
	for _, order := range []string{"ab", "ba"} {
		a, b := newReplica(t, "alice"), newReplica(t, "bob")
		a.Observe(forged)
		b.Observe(forged)
		ua, err := a.Prepare(obj(t, `{"a":1}`), ShallowMerge)
		require.NoError(t, err)
		ub, err := b.Prepare(obj(t, `{"b":2}`), ShallowMerge)
		require.NoError(t, err)
		require.True(t, ua.reset)
		require.True(t, ub.reset)
		first, second := ua, ub
		if order == "ba" {
			first, second = ub, ua
		}
		// The server applies both; everyone receives both, in order.
		a.Commit(ua, second.Metadata())
		b.Commit(ub, second.Metadata())
		for _, r := range []*Replica{a, b} {
			r.Observe(first.Metadata())
			r.Observe(second.Metadata())
		}
		// The base of the higher writer's reset wins; the other write is
		// repaired by its writer.
		var repaired *Update
		for _, r := range []*Replica{a, b} {
			if up, ok := r.Repair(); ok {
				require.Nil(t, repaired, "%s: one repair", order)
				repaired = up
				r.Commit(up, up.Metadata())
			}
		}
		if repaired != nil {
			for _, r := range []*Replica{a, b} {
				r.Observe(repaired.Metadata())
			}
		}
		for _, r := range []*Replica{a, b} {
			assert.Equal(t, `{"a":1,"b":2,"x":1}`, canon(r.Data()), "%s: %s", order, r.Writer())
			assert.Equal(t, RepairNone, r.Need(), "%s: %s", order, r.Writer())
			assert.Empty(t, r.Lost(), "%s: %s", order, r.Writer())
			assert.False(t, r.high())
		}
	}
}

// The case of the report: a forged stamp at the largest clock, by a writer
// who never joins, then a plain replace through the server API. The
// replace removes the forged key for good (nobody blames or repairs it) and
// writes go on.
func TestOutsideReplaceAfterForgedMaxStamp(t *testing.T) {
	for _, c := range []uint64{MaxClock, MaxClock - 1, highClock, highClock - 1, math.MaxUint64} {
		st := newState()
		st.entries["x"] = entry{stamp{c, "m"}, json.RawMessage(`1`)}
		a := newReplica(t, "alice")
		a.Observe("")
		a.Observe(write(t, a, `{"mine":1}`, ShallowMerge).Metadata())
		a.Observe(encode(&st))
		o := a.Observe(`{"app":1}`)
		assert.True(t, o.External)
		assert.Equal(t, RepairNone, o.Repair, "clock %d", c)
		assert.Empty(t, o.Lost, "clock %d", c)
		u := write(t, a, `{"y":1}`, ShallowMerge)
		assert.False(t, u.reset, "clock %d", c)
		assert.Less(t, u.stamp.clock, uint64(highClock), "clock %d", c)
		assert.Equal(t, `{"app":1,"y":1}`, canon(u.Data()), "clock %d", c)
	}
}

func TestCommitForeignUpdatePanics(t *testing.T) {
	a, b := newReplica(t, "alice"), newReplica(t, "bob")
	u, err := a.Prepare(nil, ShallowMerge)
	require.NoError(t, err)
	assert.Panics(t, func() { b.Commit(u, "") })
}

func TestAwaitingIsBounded(t *testing.T) {
	a := newReplica(t, "alice")
	for range 3 * maxAwaiting {
		u, err := a.Prepare(obj(t, `{"x":1}`), ShallowMerge)
		require.NoError(t, err)
		a.Commit(u, "")
	}
	assert.Len(t, a.awaiting, maxAwaiting)
}

func TestStrings(t *testing.T) {
	assert.Equal(t, "replace", Replace.String())
	assert.Equal(t, "shallow-merge", ShallowMerge.String())
	assert.Equal(t, "Strategy(7)", Strategy(7).String())
	assert.Equal(t, "none", RepairNone.String())
	assert.Equal(t, "now", RepairNow.String())
	assert.Equal(t, "later", RepairLater.String())
	assert.Equal(t, "RepairNeed(9)", RepairNeed(9).String())
}

func TestCommitAnswerOutsideReplaceSupersedes(t *testing.T) {
	a := newReplica(t, "alice")
	a.Observe("")
	ua, err := a.Prepare(obj(t, `{"a":1}`), ShallowMerge)
	require.NoError(t, err)
	// The server applied alice's write, then an outside replace, and
	// broadcast only the latter.
	a.Commit(ua, `{"app":1}`)
	o := a.Observe(`{"app":1}`)
	assert.Equal(t, RepairNone, o.Repair, "the outside replace came after alice's write")
	u := write(t, a, `{"b":1}`, ShallowMerge)
	assert.Equal(t, `{"app":1,"b":1}`, canon(u.Data()))

	// Without the answer, alice's write is stamped after the replace's
	// epoch and is restored once the grace period ends.
	a2 := newReplica(t, "alice")
	a2.Observe("")
	ua2, err := a2.Prepare(obj(t, `{"a":1}`), ShallowMerge)
	require.NoError(t, err)
	a2.Commit(ua2, "")
	assert.Equal(t, RepairLater, a2.Observe(`{"app":1}`).Repair)
}

func TestLearnMakesTheNextWriteIncludeIt(t *testing.T) {
	a, err := NewReplica("alice")
	require.NoError(t, err)
	b, err := NewReplica("bob")
	require.NoError(t, err)
	ua, err := a.Prepare(map[string]json.RawMessage{"owner": json.RawMessage(`"alice"`)}, Replace)
	require.NoError(t, err)
	a.Commit(ua, ua.Metadata())
	// bob has not received alice's write through the ordered stream, but
	// read it from the server before writing.
	b.Learn(ua.Metadata())
	assert.Empty(t, b.Data(), "Learn does not change the observed data")
	ub, err := b.Prepare(map[string]json.RawMessage{"guest": json.RawMessage(`"bob"`)}, ShallowMerge)
	require.NoError(t, err)
	assert.Equal(t, map[string]json.RawMessage{"owner": json.RawMessage(`"alice"`), "guest": json.RawMessage(`"bob"`)}, ub.Data())
	b.Learn("not json")
	b.Learn(`{"plain":"object"}`)
}

// A room recreated empty (a restarted server): the replicas that come back
// restore what they held, everyone's writes included, and converge on it
// joined with the writes made since.
func TestRestoreAfterRoomRecreated(t *testing.T) {
	a, b := newReplica(t, "alice"), newReplica(t, "bob")
	rs := []*Replica{a, b}
	observeAll(rs, "")
	observeAll(rs, write(t, a, `{"x":1}`, ShallowMerge).Metadata())
	observeAll(rs, write(t, b, `{"y":2}`, ShallowMerge).Metadata())

	// Observe would take the empty metadata for a Replace by {}.
	o := a.Restore("")
	assert.Nil(t, o.Data, "the room's metadata is empty for now")
	assert.Equal(t, []string{"x", "y"}, o.Changed)
	assert.Equal(t, RepairNow, o.Repair, "alice restores her own write")
	assert.Equal(t, []string{"bob"}, o.Lost, "and knows bob's is missing")
	fix, ok := a.Repair()
	require.True(t, ok)
	a.Commit(fix, fix.Metadata())
	// bob comes back after alice's restore and writes: both converge on
	// the value before plus the new write.
	ob := b.Restore(fix.Metadata())
	assert.Equal(t, RepairNone, ob.Repair)
	assert.JSONEq(t, `{"x":1,"y":2}`, string(mustJSON(t, ob.Data)))
	o = observeAll(rs, write(t, b, `{"z":3}`, ShallowMerge).Metadata())
	assert.JSONEq(t, `{"x":1,"y":2,"z":3}`, string(mustJSON(t, o.Data)))
	assert.Equal(t, RepairNone, a.Need())
	assert.Equal(t, RepairNone, b.Need())
}

// A deliberate Replace made in the recreated room before a replica is back
// wins over what the replica held.
func TestRestoreYieldsToReplace(t *testing.T) {
	// aaron sorts before alice: the Replace wins by its clock, not by the
	// writers' order.
	a, c := newReplica(t, "alice"), newReplica(t, "aaron")
	rs := []*Replica{a, c}
	observeAll(rs, "")
	observeAll(rs, write(t, a, `{"x":1}`, ShallowMerge).Metadata())
	// aaron, back first in the recreated room, replaces the data.
	c.Restore("")
	rep := write(t, c, `{"fresh":true}`, Replace)
	o := a.Restore(rep.Metadata())
	assert.JSONEq(t, `{"fresh":true}`, string(mustJSON(t, o.Data)))
	assert.Equal(t, RepairNone, o.Repair, "nothing to restore over a Replace")
	assert.Empty(t, o.Lost)
	// A plain object from outside callstate wins the same way.
	o = a.Restore(`{"plain":1}`)
	assert.JSONEq(t, `{"plain":1}`, string(mustJSON(t, o.Data)))
	assert.Equal(t, RepairNone, o.Repair)
}

func mustJSON(t *testing.T, m map[string]json.RawMessage) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return b
}
