package callstate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

func canon(t *testing.T, m map[string]json.RawMessage) string {
	t.Helper()
	if m == nil {
		return "null"
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return string(b)
}

// awaitSession waits until sub's room has session data equal to want (JSON).
func awaitSession(t *testing.T, r *callstate.Room, sub *callstate.Subscription, want string) {
	t.Helper()
	for {
		got, _ := json.Marshal(r.SessionData())
		if jsonEqual(string(got), want) {
			return
		}
		calltest.Await[callstate.SessionDataUpdated](t, sub, nil)
	}
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

func TestSessionDataReplaceAndMerge(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	checkLeaks(t)
	a := srv.Join(t, room, "alice", nil)
	b := srv.Join(t, room, "bob", nil)
	sub := b.Subscribe(nil)
	ctx := ctxT(t)

	steps := []struct {
		data     string
		strategy callstate.Strategy
		want     string
		changed  []string
	}{
		{`{"a":1,"nested":{"x":1,"y":2}}`, callstate.Replace, `{"a":1,"nested":{"x":1,"y":2}}`, []string{"a", "nested"}},
		{`{"nested":{"x":3},"b":"two"}`, callstate.ShallowMerge, `{"a":1,"b":"two","nested":{"x":3}}`, []string{"b", "nested"}},
		{`{"a":null,"missing":null}`, callstate.ShallowMerge, `{"b":"two","nested":{"x":3}}`, []string{"a"}},
		{`{"c":[1,2,3]}`, callstate.Replace, `{"c":[1,2,3]}`, []string{"b", "c", "nested"}},
	}
	for _, st := range steps {
		require.NoError(t, a.SetSessionData(ctx, json.RawMessage(st.data), st.strategy))
		assert.JSONEq(t, st.want, canon(t, a.SessionData()), "the writer reads its write at once")
		e := calltest.Await[callstate.SessionDataUpdated](t, sub, nil)
		assert.JSONEq(t, st.want, canon(t, e.Data))
		assert.Equal(t, st.changed, e.Changed)
		assert.JSONEq(t, st.want, canon(t, b.SessionData()))
	}
	assert.Contains(t, a.Metadata(), callstate.SessionDataKey, "the raw metadata carries the stamps")
	var v struct{ C []int }
	require.NoError(t, b.DecodeSessionData(&v))
	assert.Equal(t, []int{1, 2, 3}, v.C)

	// Any JSON-object Go value works.
	require.NoError(t, a.SetSessionData(ctx, map[string]any{"topic": "demo"}, callstate.ShallowMerge))
	require.NoError(t, a.SetSessionData(ctx, struct {
		Round int `json:"round"`
	}{2}, callstate.ShallowMerge))
	awaitSession(t, b, sub, `{"c":[1,2,3],"topic":"demo","round":2}`)
}

func TestSessionDataLateJoinerAndWriterLeaving(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	ctx := ctxT(t)
	a := srv.Join(t, room, "alice", nil)
	b := srv.Join(t, room, "bob", nil)
	require.NoError(t, a.SetSessionData(ctx, map[string]string{"owner": "alice"}, callstate.Replace))
	require.NoError(t, b.SetSessionData(ctx, map[string]string{"guest": "bob"}, callstate.ShallowMerge))
	require.NoError(t, a.Close())

	late := srv.Join(t, room, "late", nil)
	assert.JSONEq(t, `{"owner":"alice","guest":"bob"}`, canon(t, late.SessionData()), "a late joiner has the data when Join returns")
	require.NoError(t, b.Close())
	later := srv.Join(t, room, "later", nil)
	assert.JSONEq(t, `{"owner":"alice","guest":"bob"}`, canon(t, later.SessionData()), "the data outlives its writers")
}

func TestSessionDataRefusals(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	ctx := ctxT(t)
	a := srv.Join(t, room, "alice", nil)
	require.NoError(t, a.SetSessionData(ctx, map[string]int{"x": 1}, callstate.Replace))
	before := a.Metadata()
	noAdmin := srv.JoinWith(t, callstate.Claims{Identity: "guest", Grants: callstate.Grants{Room: room, RoomJoin: true}}, nil)

	err := noAdmin.SetSessionData(ctx, map[string]int{"x": 2}, callstate.ShallowMerge)
	require.ErrorIs(t, err, callstate.ErrNotPermitted)
	var pe *callstate.PermissionError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "roomAdmin", pe.Grant)
	svc := service(t, srv)
	rooms, err := svc.ListRooms(ctx, room)
	require.NoError(t, err)
	require.Len(t, rooms, 1)
	assert.Equal(t, before, rooms[0].Metadata, "nothing changed on the server")

	for _, bad := range []any{nil, "a string", []int{1}, json.RawMessage(`[1]`), json.RawMessage(`{bad`), 42,
		map[string]int{callstate.SessionDataKey: 1}} {
		assert.ErrorIs(t, a.SetSessionData(ctx, bad, callstate.Replace), callstate.ErrInvalidJSON, "%v", bad)
	}
	assert.ErrorIs(t, a.SetSessionData(ctx, map[string]int{}, callstate.Strategy(7)), callstate.ErrInvalidArgument)
	err = a.SetSessionData(ctx, map[string]string{"big": strings.Repeat("x", callstate.MaxMetadataSize)}, callstate.Replace)
	assert.ErrorIs(t, err, callstate.ErrTooLarge)
	assert.Equal(t, before, a.Metadata())
}

func TestSessionDataFromOutside(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	ctx := ctxT(t)
	a := srv.Join(t, room, "alice", nil)
	sub := a.Subscribe(nil)
	require.NoError(t, a.SetSessionData(ctx, map[string]int{"x": 1}, callstate.Replace))
	svc := service(t, srv)

	// A plain JSON object written by a LiveKit app replaces the data.
	_, err := svc.UpdateRoomMetadata(ctx, room, `{"from":"outside"}`)
	require.NoError(t, err)
	e := calltest.Await(t, sub, func(e callstate.SessionDataUpdated) bool { return e.Data["from"] != nil })
	assert.JSONEq(t, `{"from":"outside"}`, canon(t, e.Data))
	// Merging on top of it keeps it.
	require.NoError(t, a.SetSessionData(ctx, map[string]int{"y": 2}, callstate.ShallowMerge))
	assert.JSONEq(t, `{"from":"outside","y":2}`, canon(t, a.SessionData()))

	// Metadata that is not a JSON object: no session data, raw value kept.
	_, err = svc.UpdateRoomMetadata(ctx, room, "just text")
	require.NoError(t, err)
	m := calltest.Await(t, sub, func(e callstate.RoomMetadataChanged) bool { return e.Metadata == "just text" })
	assert.Contains(t, m.Previous, `"y":2`)
	assert.Nil(t, a.SessionData())
	assert.Equal(t, "just text", a.Metadata())
}

func TestSessionDataConcurrentMergesConverge(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	const n = 20
	rooms := make([]*callstate.Room, n)
	subs := make([]*callstate.Subscription, n)
	for i := range n {
		rooms[i] = srv.Join(t, room, fmt.Sprintf("p%02d", i), &callstate.JoinOptions{ReceiveOnly: true})
		subs[i] = rooms[i].Subscribe(nil)
	}
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i, r := range rooms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = r.SetSessionData(ctx, map[string]int{fmt.Sprintf("k%02d", i): i}, callstate.ShallowMerge)
		}()
	}
	close(start)
	wg.Wait()
	want := map[string]int{}
	for i := range n {
		require.NoError(t, errs[i])
		want[fmt.Sprintf("k%02d", i)] = i
	}
	wantJSON, _ := json.Marshal(want)
	for i, r := range rooms {
		awaitSession(t, r, subs[i], string(wantJSON))
	}
}

func TestSessionDataSequentialMergesFromTwoWriters(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", &callstate.JoinOptions{ReceiveOnly: true})
	b := srv.Join(t, room, "bob", &callstate.JoinOptions{ReceiveOnly: true})
	obs := srv.Join(t, room, "observer", &callstate.JoinOptions{ReceiveOnly: true})
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, w := range []*callstate.Room{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := w.LocalParticipant().Identity
			for i := range 100 {
				if err := w.SetSessionData(ctx, map[string]any{id: i, "shared": id + fmt.Sprint(i)}, callstate.ShallowMerge); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// Everyone ends on the same object with both writers' last values (a
	// participant may still be receiving the last writes: wait for them).
	var finals []string
	for _, r := range []*callstate.Room{a, b, obs} {
		sub := r.Subscribe(nil)
		for {
			var got map[string]any
			require.NoError(t, r.DecodeSessionData(&got))
			if got["alice"] == float64(99) && got["bob"] == float64(99) {
				assert.Contains(t, []any{"alice99", "bob99"}, got["shared"])
				break
			}
			calltest.Await[callstate.SessionDataUpdated](t, sub, nil)
		}
		sub.Close()
		finals = append(finals, canon(t, r.SessionData()))
	}
	assert.Equal(t, finals[0], finals[1])
	assert.Equal(t, finals[0], finals[2])
}

// Without the roomList grant a write does not read the current value first:
// a merge made right after another participant's write may miss it, and a
// repair merges it back, even when its writer has left.
func TestSessionDataRepairWithoutRoomList(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	ctx := ctxT(t)
	grants := calltest.DefaultGrants(room)
	grants.RoomList = false
	join := func(id string) *callstate.Room {
		return srv.JoinWith(t, callstate.Claims{Identity: id, Grants: grants}, &callstate.JoinOptions{ReceiveOnly: true})
	}
	for i := range 5 {
		a := join(fmt.Sprintf("a%d", i))
		b := join(fmt.Sprintf("b%d", i))
		sub := b.Subscribe(nil)
		require.NoError(t, a.SetSessionData(ctx, map[string]int{"a": i}, callstate.Replace))
		require.NoError(t, b.SetSessionData(ctx, map[string]int{"b": i}, callstate.ShallowMerge))
		require.NoError(t, a.Close())
		awaitSession(t, b, sub, fmt.Sprintf(`{"a":%d,"b":%d}`, i, i))
		sub.Close()
		require.NoError(t, b.Close())
	}
}

// forgedSessionData is room metadata as an outsider with roomAdmin can write
// it without joining: {"x":1} with a reserved object that passes every check
// (its digest is the FNV-1a 64 of the data's canonical encoding) but holds
// a stamp by the absent writer "m" with the given clock.
func forgedSessionData(clock uint64) string {
	h := fnv.New64a()
	h.Write([]byte(`{"x":1}`))
	return fmt.Sprintf(`{"x":1,%q:{"v":1,"h":"%016x","w":["m"],"e":[0,0],"k":{"x":[%d,0]}}}`,
		callstate.SessionDataKey, h.Sum64(), clock)
}

// Stamps in the room metadata are untrusted: an outsider's stamp at (or
// near) the largest clock neither makes later writes fail nor survives a
// plain-JSON replace. A clock above 2^53-1 invalidates the stamps (the value
// is a plain replace); 2^53-1 is valid, so the forged value is a merge, and
// participants restore the keys it lacks.
func TestSessionDataAfterForgedStamps(t *testing.T) {
	// Not parallel: under the load of the parallel tests its replace from
	// the server API was once not seen by every participant within 20 s
	// (see the note); alone it passes.
	srv := calltest.Shared(t)
	svc := service(t, srv)
	for _, tc := range []struct {
		clock uint64
		valid bool
	}{{math.MaxUint64, false}, {math.MaxUint64 - 1, false}, {1<<53 - 1, true}} {
		t.Run(fmt.Sprint(tc.clock), func(t *testing.T) {
			room := srv.RoomName(t)
			ctx := ctxT(t)
			a := srv.Join(t, room, "alice", &callstate.JoinOptions{ReceiveOnly: true})
			b := srv.Join(t, room, "bob", &callstate.JoinOptions{ReceiveOnly: true})
			rooms := []*callstate.Room{a, b}
			subs := []*callstate.Subscription{a.Subscribe(nil), b.Subscribe(nil)}
			awaitAll := func(want string) {
				t.Helper()
				for i, r := range rooms {
					awaitSession(t, r, subs[i], want)
				}
			}
			forge := func() {
				t.Helper()
				_, err := svc.UpdateRoomMetadata(ctx, room, forgedSessionData(tc.clock))
				require.NoError(t, err)
				for _, sub := range subs {
					calltest.Await(t, sub, func(e callstate.RoomMetadataChanged) bool { return e.Metadata == forgedSessionData(tc.clock) })
				}
			}
			require.NoError(t, a.SetSessionData(ctx, map[string]int{"a": 1}, callstate.ShallowMerge))
			awaitAll(`{"a":1}`)

			forge()
			// A present participant's write succeeds and reaches everyone,
			// a newcomer included, whose own write does too.
			require.NoError(t, b.SetSessionData(ctx, map[string]int{"b": 2}, callstate.ShallowMerge))
			want := `{"x":1,"b":2}`
			if tc.valid {
				want = `{"a":1,"x":1,"b":2}`
			}
			awaitAll(want)
			late := srv.Join(t, room, "late", &callstate.JoinOptions{ReceiveOnly: true})
			assert.JSONEq(t, want, canon(t, late.SessionData()))
			rooms, subs = append(rooms, late), append(subs, late.Subscribe(nil))
			require.NoError(t, late.SetSessionData(ctx, map[string]int{"l": 3}, callstate.ShallowMerge))
			want = want[:len(want)-1] + `,"l":3}`
			awaitAll(want)

			// Forge again, then replace with plain JSON from the server API:
			// the replace is the whole session data.
			forge()
			if tc.valid {
				awaitAll(want)
			} else {
				awaitAll(`{"x":1}`)
			}
			_, err := svc.UpdateRoomMetadata(ctx, room, `{"app":1}`)
			require.NoError(t, err)
			awaitAll(`{"app":1}`)
			// Each participant's write carries all it knows: none brings
			// back x, or anything older than the replace.
			final := map[string]int{"app": 1}
			for i, r := range rooms {
				key := fmt.Sprintf("w%d", i)
				final[key] = i
				require.NoError(t, r.SetSessionData(ctx, map[string]int{key: i}, callstate.ShallowMerge))
				finalJSON, _ := json.Marshal(final)
				assert.JSONEq(t, string(finalJSON), canon(t, r.SessionData()))
			}
			finalJSON, _ := json.Marshal(final)
			awaitAll(string(finalJSON))
			listed, err := svc.ListRooms(ctx, room)
			require.NoError(t, err)
			require.Len(t, listed, 1)
			var onServer map[string]json.RawMessage
			require.NoError(t, json.Unmarshal([]byte(listed[0].Metadata), &onServer))
			delete(onServer, callstate.SessionDataKey)
			assert.JSONEq(t, string(finalJSON), canon(t, onServer))
		})
	}
}
