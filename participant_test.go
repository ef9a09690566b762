package callstate_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

func updatedBy(id string, cond func(callstate.ParticipantUpdated) bool) func(callstate.ParticipantUpdated) bool {
	return func(e callstate.ParticipantUpdated) bool {
		return e.Participant.Identity == id && (cond == nil || cond(e))
	}
}

func TestParticipantStateReachesEveryone(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	checkLeaks(t)
	a := srv.Join(t, room, "alice", nil)
	b := srv.Join(t, room, "bob", nil)
	c := srv.Join(t, room, "carol", nil)
	subA, subB, subC := a.Subscribe(nil), b.Subscribe(nil), c.Subscribe(nil)
	ctx := ctxT(t)

	require.NoError(t, a.SetUserData(ctx, map[string]any{"mood": "happy", "n": 1}))
	local := calltest.Await(t, subA, updatedBy("alice", nil))
	assert.True(t, local.Local)
	assert.True(t, local.Changes.UserData)
	for _, sub := range []*callstate.Subscription{subB, subC} {
		e := calltest.Await(t, sub, updatedBy("alice", func(e callstate.ParticipantUpdated) bool { return e.Changes.UserData }))
		assert.False(t, e.Local)
		var ud struct {
			Mood string
			N    int
		}
		require.NoError(t, e.Participant.DecodeUserData(&ud))
		assert.Equal(t, "happy", ud.Mood)
		assert.Equal(t, 1, ud.N)
	}

	require.NoError(t, a.SetName(ctx, "Alice A."))
	require.NoError(t, a.SetAttributes(ctx, map[string]string{"team": "red", "seat": "3"}))
	for _, sub := range []*callstate.Subscription{subB, subC} {
		calltest.Await(t, sub, updatedBy("alice", func(e callstate.ParticipantUpdated) bool {
			return e.Participant.Name == "Alice A." && e.Participant.Attributes["team"] == "red" && e.Participant.Attributes["seat"] == "3"
		}))
	}

	// A key set to "" is deleted.
	require.NoError(t, a.SetAttributes(ctx, map[string]string{"seat": "", "team": "blue"}))
	e := calltest.Await(t, subB, updatedBy("alice", func(e callstate.ParticipantUpdated) bool {
		return e.Participant.Attributes["team"] == "blue"
	}))
	assert.NotContains(t, e.Participant.Attributes, "seat")
	assert.Equal(t, map[string]string{"team": "blue"}, a.LocalParticipant().Attributes)

	require.NoError(t, a.SetMetadata(ctx, "plain text, not JSON"))
	e = calltest.Await(t, subC, updatedBy("alice", func(e callstate.ParticipantUpdated) bool {
		return e.Participant.Metadata == "plain text, not JSON"
	}))
	assert.True(t, e.Changes.Metadata)
	assert.True(t, e.Changes.UserData, "user data went away")
	_, ok := e.Participant.UserData()
	assert.False(t, ok)
	var v any
	assert.ErrorIs(t, e.Participant.DecodeUserData(&v), callstate.ErrInvalidJSON)
}

func TestLateJoinerSeesParticipantState(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	ctx := ctxT(t)
	a := srv.JoinWith(t, callstate.Claims{Identity: "alice", Name: "Al", Grants: calltest.DefaultGrants(room)},
		&callstate.JoinOptions{
			Name:       "Alice",
			UserData:   map[string]string{"from": "join option"},
			Attributes: map[string]string{"lang": "en"},
		})
	b := srv.JoinWith(t, callstate.Claims{Identity: "bob", Name: "Bob", Metadata: `{"from":"token"}`,
		Attributes: map[string]string{"lang": "fr"}, Grants: calltest.DefaultGrants(room)}, nil)

	require.NoError(t, b.SetName(ctx, "Robert"))
	require.NoError(t, a.SetAttributes(ctx, map[string]string{"x": "1"}))

	late := srv.Join(t, room, "late", nil)
	got := map[string]callstate.Participant{}
	for _, p := range late.RemoteParticipants() {
		got[p.Identity] = p
	}
	require.Contains(t, got, "alice")
	require.Contains(t, got, "bob")
	assert.Equal(t, "Alice", got["alice"].Name)
	assert.JSONEq(t, `{"from":"join option"}`, got["alice"].Metadata)
	assert.Equal(t, map[string]string{"lang": "en", "x": "1"}, got["alice"].Attributes)
	assert.Equal(t, "Robert", got["bob"].Name)
	ud, ok := got["bob"].UserData()
	require.True(t, ok)
	assert.JSONEq(t, `{"from":"token"}`, string(ud))
	assert.Equal(t, map[string]string{"lang": "fr"}, got["bob"].Attributes)
}

func TestClearingUserData(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", &callstate.JoinOptions{UserData: map[string]int{"x": 1}})
	b := srv.Join(t, room, "bob", nil)
	sub := b.Subscribe(nil)
	ctx := ctxT(t)
	p, _ := b.Participant("alice")
	_, ok := p.UserData()
	require.True(t, ok)

	require.NoError(t, a.SetUserData(ctx, nil))
	e := calltest.Await(t, sub, updatedBy("alice", func(e callstate.ParticipantUpdated) bool { return e.Changes.UserData }))
	_, ok = e.Participant.UserData()
	assert.False(t, ok, "user data cleared for observers")
	_, ok = a.LocalParticipant().UserData()
	assert.False(t, ok, "user data cleared locally")
	var v map[string]int
	require.NoError(t, e.Participant.DecodeUserData(&v))
	assert.Nil(t, v)

	assert.ErrorIs(t, a.SetMetadata(ctx, ""), callstate.ErrInvalidArgument)
	assert.ErrorIs(t, a.SetName(ctx, ""), callstate.ErrInvalidArgument)
}

func TestParticipantUpdateRefusals(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	ctx := ctxT(t)
	ro := srv.JoinWith(t, callstate.Claims{Identity: "readonly", Metadata: "before",
		Grants: callstate.Grants{Room: room, RoomJoin: true}}, nil)

	a := srv.Join(t, room, "alice", nil)

	for name, err := range map[string]error{
		"metadata":   ro.SetMetadata(ctx, "after"),
		"user data":  ro.SetUserData(ctx, 1),
		"name":       ro.SetName(ctx, "x"),
		"attributes": ro.SetAttributes(ctx, map[string]string{"a": "b"}),
	} {
		require.ErrorIs(t, err, callstate.ErrNotPermitted, name)
		var pe *callstate.PermissionError
		require.ErrorAs(t, err, &pe, name)
		assert.Equal(t, "canUpdateOwnMetadata", pe.Grant)
	}
	svc := service(t, srv)
	p, err := svc.GetParticipant(ctx, room, "readonly")
	require.NoError(t, err)
	assert.Equal(t, "before", p.Metadata, "nothing changed on the server")
	assert.Equal(t, "before", ro.LocalParticipant().Metadata)

	big := strings.Repeat("x", callstate.MaxMetadataSize+1)
	assert.ErrorIs(t, a.SetMetadata(ctx, big), callstate.ErrTooLarge)
	assert.ErrorIs(t, a.SetUserData(ctx, big), callstate.ErrTooLarge)
	assert.ErrorIs(t, a.SetName(ctx, strings.Repeat("n", callstate.MaxNameSize+1)), callstate.ErrTooLarge)
	err = a.SetAttributes(ctx, map[string]string{"k": strings.Repeat("v", callstate.MaxAttributesSize)})
	var se *callstate.SizeError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, callstate.MaxAttributesSize, se.Limit)
	assert.ErrorIs(t, a.SetUserData(ctx, func() {}), callstate.ErrInvalidJSON)
	assert.ErrorIs(t, a.SetUserData(ctx, json.RawMessage(`{bad`)), callstate.ErrInvalidJSON)
	assert.ErrorIs(t, a.SetAttributes(ctx, map[string]string{"": "v"}), callstate.ErrInvalidArgument)
	p, err = svc.GetParticipant(ctx, room, "alice")
	require.NoError(t, err)
	assert.Empty(t, p.Metadata)
}

func TestRapidUpdatesEndOnTheLastValue(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", nil)
	b := srv.Join(t, room, "bob", nil)
	sub := b.Subscribe(nil)
	ctx := ctxT(t)
	const n = 100
	for i := range n {
		require.NoError(t, a.SetUserData(ctx, map[string]int{"n": i}))
	}
	calltest.Await(t, sub, updatedBy("alice", func(e callstate.ParticipantUpdated) bool {
		return e.Participant.Metadata == fmt.Sprintf(`{"n":%d}`, n-1)
	}))
	p, _ := b.Participant("alice")
	assert.Equal(t, fmt.Sprintf(`{"n":%d}`, n-1), p.Metadata)
	assert.Equal(t, fmt.Sprintf(`{"n":%d}`, n-1), a.LocalParticipant().Metadata)
	// A late joiner agrees.
	c := srv.Join(t, room, "carol", nil)
	p, _ = c.Participant("alice")
	assert.Equal(t, fmt.Sprintf(`{"n":%d}`, n-1), p.Metadata)
}

func TestConcurrentUpdatesFromSeveralParticipants(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	const n = 5
	rooms := make([]*callstate.Room, n)
	for i := range n {
		rooms[i] = srv.Join(t, room, fmt.Sprintf("p%d", i), nil)
	}
	obs := srv.Join(t, room, "observer", nil)
	sub := obs.Subscribe(nil)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, r := range rooms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- r.SetUserData(ctx, map[string]int{"i": i})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	want := func() bool {
		for i := range n {
			p, ok := obs.Participant(fmt.Sprintf("p%d", i))
			if !ok || p.Metadata != fmt.Sprintf(`{"i":%d}`, i) {
				return false
			}
		}
		return true
	}
	for !want() {
		calltest.Await[callstate.ParticipantUpdated](t, sub, nil)
	}
}

func TestServerSideParticipantUpdate(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", nil)
	b := srv.Join(t, room, "bob", nil)
	subA, subB := a.Subscribe(nil), b.Subscribe(nil)
	ctx := ctxT(t)
	svc := service(t, srv)
	md := `{"set":"by the server"}`
	name := "Alice (admin)"
	_, err := svc.UpdateParticipant(ctx, room, "alice", callstate.ParticipantUpdate{
		Metadata: &md, Name: &name, Attributes: map[string]string{"role": "speaker"}})
	require.NoError(t, err)
	match := func(e callstate.ParticipantUpdated) bool {
		return e.Participant.Metadata == md && e.Participant.Name == name && e.Participant.Attributes["role"] == "speaker"
	}
	e := calltest.Await(t, subB, updatedBy("alice", match))
	ud, ok := e.Participant.UserData()
	require.True(t, ok)
	assert.JSONEq(t, md, string(ud))
	e = calltest.Await(t, subA, updatedBy("alice", match))
	assert.True(t, e.Local)
	assert.Equal(t, md, a.LocalParticipant().Metadata)
}
