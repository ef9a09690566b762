package callstate_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// roomService returns a RoomService of the shared server and a context for
// one test.
func roomService(t *testing.T) (*calltest.Server, *callstate.RoomService, context.Context) {
	t.Helper()
	srv := calltest.Shared(t)
	rs, err := callstate.NewRoomService(srv.URL(), srv.APIKey(), srv.APISecret(), nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return srv, rs, ctx
}

// requireServerError asserts that err is a *ServerError with the code and
// HTTP status, and returns it.
func requireServerError(t *testing.T, err error, code string, status int) *callstate.ServerError {
	t.Helper()
	var se *callstate.ServerError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, code, se.Code, err.Error())
	assert.Equal(t, status, se.HTTPStatus, err.Error())
	assert.True(t, strings.HasPrefix(err.Error(), "callstate: RoomService."), err.Error())
	return se
}

func TestRoomServiceRoomLifecycle(t *testing.T) {
	t.Parallel()
	srv, rs, ctx := roomService(t)
	name := srv.RoomName(t)

	before := time.Now().Add(-time.Second)
	info, err := rs.CreateRoom(ctx, callstate.CreateRoomOptions{
		Name:             name,
		EmptyTimeout:     90 * time.Second,
		DepartureTimeout: 1500 * time.Millisecond, // rounded up to 2s
		MaxParticipants:  7,
		Metadata:         `{"topic":"x"}`,
	})
	require.NoError(t, err)
	assert.Equal(t, name, info.Name)
	assert.True(t, strings.HasPrefix(info.SID, "RM_"), info.SID)
	assert.Equal(t, `{"topic":"x"}`, info.Metadata)
	assert.Equal(t, 90*time.Second, info.EmptyTimeout)
	assert.Equal(t, 2*time.Second, info.DepartureTimeout)
	assert.Equal(t, 7, info.MaxParticipants)
	assert.Equal(t, 0, info.NumParticipants)
	assert.WithinRange(t, info.CreatedAt, before, time.Now().Add(time.Second))

	// Creating it again returns the existing room.
	again, err := rs.CreateRoom(ctx, callstate.CreateRoomOptions{Name: name})
	require.NoError(t, err)
	assert.Equal(t, info.SID, again.SID)

	rooms, err := rs.ListRooms(ctx, name)
	require.NoError(t, err)
	require.Len(t, rooms, 1)
	assert.Equal(t, info.SID, rooms[0].SID)
	assert.Equal(t, info.Metadata, rooms[0].Metadata)

	all, err := rs.ListRooms(ctx)
	require.NoError(t, err)
	assert.True(t, containsRoom(all, name), "ListRooms() must list %s", name)

	none, err := rs.ListRooms(ctx, srv.RoomName(t))
	require.NoError(t, err)
	assert.Empty(t, none)

	updated, err := rs.UpdateRoomMetadata(ctx, name, `{"topic":"y"}`)
	require.NoError(t, err)
	assert.Equal(t, `{"topic":"y"}`, updated.Metadata)
	assert.Equal(t, info.SID, updated.SID)
	rooms, err = rs.ListRooms(ctx, name)
	require.NoError(t, err)
	require.Len(t, rooms, 1)
	assert.Equal(t, `{"topic":"y"}`, rooms[0].Metadata)

	ps, err := rs.ListParticipants(ctx, name)
	require.NoError(t, err)
	assert.Empty(t, ps)

	require.NoError(t, rs.SendData(ctx, name, []byte("hello"), &callstate.PublishOptions{Topic: "t", To: []string{"nobody"}}))
	require.NoError(t, rs.SendData(ctx, name, []byte("hello"), &callstate.PublishOptions{Kind: callstate.Lossy}))

	require.NoError(t, rs.DeleteRoom(ctx, name))
	rooms, err = rs.ListRooms(ctx, name)
	require.NoError(t, err)
	assert.Empty(t, rooms)

	err = rs.DeleteRoom(ctx, name)
	require.ErrorIs(t, err, callstate.ErrNotFound)
	se := requireServerError(t, err, "not_found", 404)
	assert.Equal(t, "DeleteRoom", se.Method)
	assert.NotContains(t, se.Message, "twirp error")
}

func containsRoom(rooms []callstate.RoomInfo, name string) bool {
	for _, r := range rooms {
		if r.Name == name {
			return true
		}
	}
	return false
}

func TestRoomServiceNotFound(t *testing.T) {
	t.Parallel()
	srv, rs, ctx := roomService(t)
	name := srv.RoomName(t)
	_, err := rs.CreateRoom(ctx, callstate.CreateRoomOptions{Name: name})
	require.NoError(t, err)
	t.Cleanup(func() { _ = rs.DeleteRoom(context.Background(), name) })
	unknownRoom := srv.RoomName(t)
	meta := "m"

	for _, tc := range []struct {
		method string
		call   func() error
	}{
		{"GetParticipant", func() error { _, err := rs.GetParticipant(ctx, name, "ghost"); return err }},
		{"GetParticipant", func() error { _, err := rs.GetParticipant(ctx, unknownRoom, "ghost"); return err }},
		{"RemoveParticipant", func() error { return rs.RemoveParticipant(ctx, name, "ghost") }},
		{"UpdateParticipant", func() error {
			_, err := rs.UpdateParticipant(ctx, name, "ghost", callstate.ParticipantUpdate{
				Metadata:    &meta,
				Attributes:  map[string]string{"a": "b"},
				Permissions: &callstate.Permissions{CanPublishData: true},
			})
			return err
		}},
		{"UpdateRoomMetadata", func() error { _, err := rs.UpdateRoomMetadata(ctx, unknownRoom, "x"); return err }},
		{"DeleteRoom", func() error { return rs.DeleteRoom(ctx, unknownRoom) }},
	} {
		err := tc.call()
		require.ErrorIs(t, err, callstate.ErrNotFound, tc.method)
		se := requireServerError(t, err, "not_found", 404)
		assert.Equal(t, tc.method, se.Method)
		assert.False(t, errors.Is(err, callstate.ErrNotPermitted))
	}

	// LiveKit lists no participants, without an error, for a room that does
	// not exist.
	ps, err := rs.ListParticipants(ctx, unknownRoom)
	require.NoError(t, err)
	assert.Empty(t, ps)
}

func TestRoomServiceSendDataUnknownRoom(t *testing.T) {
	t.Parallel() // the server takes about 3 s to give up
	srv, rs, ctx := roomService(t)
	err := rs.SendData(ctx, srv.RoomName(t), []byte("x"), nil)
	require.ErrorIs(t, err, callstate.ErrServerUnreachable)
	requireServerError(t, err, "unavailable", 503)
}

func TestRoomServiceServerLimits(t *testing.T) {
	t.Parallel()
	srv, rs, ctx := roomService(t)
	name := srv.RoomName(t)
	big := strings.Repeat("x", 513<<10)

	_, err := rs.CreateRoom(ctx, callstate.CreateRoomOptions{Name: name, Metadata: big})
	require.ErrorIs(t, err, callstate.ErrInvalidArgument)
	requireServerError(t, err, "invalid_argument", 400)

	_, err = rs.CreateRoom(ctx, callstate.CreateRoomOptions{Name: name})
	require.NoError(t, err)
	t.Cleanup(func() { _ = rs.DeleteRoom(context.Background(), name) })
	_, err = rs.UpdateRoomMetadata(ctx, name, big)
	require.ErrorIs(t, err, callstate.ErrInvalidArgument)
	se := requireServerError(t, err, "invalid_argument", 400)
	assert.Contains(t, se.Message, "metadata")
}

func TestRoomServiceBadCredentials(t *testing.T) {
	t.Parallel()
	srv, _, ctx := roomService(t)
	for name, creds := range map[string][2]string{
		"wrong secret": {srv.APIKey(), srv.APISecret() + "x"},
		"unknown key":  {"nokey", srv.APISecret()},
	} {
		t.Run(name, func(t *testing.T) {
			rs, err := callstate.NewRoomService(srv.HTTPURL(), creds[0], creds[1], nil)
			require.NoError(t, err)
			_, err = rs.ListRooms(ctx)
			require.ErrorIs(t, err, callstate.ErrBadToken)
			require.ErrorIs(t, err, callstate.ErrNotPermitted)
			se := requireServerError(t, err, "unauthenticated", 401)
			assert.NotContains(t, err.Error(), "eyJ", "errors must not quote the token")
			assert.NotEmpty(t, se.Message)
		})
	}

	expired, err := srv.TokenWith(callstate.Claims{
		NotBefore: time.Now().Add(-time.Hour),
		ValidFor:  time.Minute,
		Grants:    callstate.Grants{RoomList: true},
	})
	require.NoError(t, err)
	rs, err := callstate.NewRoomServiceWithToken(srv.URL(), expired, nil)
	require.NoError(t, err)
	_, err = rs.ListRooms(ctx)
	require.ErrorIs(t, err, callstate.ErrBadToken)
	assert.NotContains(t, err.Error(), expired)
}

func TestRoomServiceWithParticipantToken(t *testing.T) {
	t.Parallel()
	srv, admin, ctx := roomService(t)
	name := srv.RoomName(t)
	_, err := admin.CreateRoom(ctx, callstate.CreateRoomOptions{Name: name})
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.DeleteRoom(context.Background(), name) })

	// A participant's token with roomAdmin for its room, as calltest mints.
	rs, err := callstate.NewRoomServiceWithToken(srv.URL(), srv.Token(name, "alice"), nil)
	require.NoError(t, err)
	info, err := rs.UpdateRoomMetadata(ctx, name, `{"k":1}`)
	require.NoError(t, err)
	assert.Equal(t, `{"k":1}`, info.Metadata)
	_, err = rs.ListParticipants(ctx, name)
	require.NoError(t, err)

	// Not for other rooms, nor for calls that need other grants.
	other := srv.RoomName(t)
	_, err = rs.UpdateRoomMetadata(ctx, other, "x")
	require.ErrorIs(t, err, callstate.ErrNotPermitted)
	requireServerError(t, err, "unauthenticated", 401)
	err = rs.DeleteRoom(ctx, name)
	require.ErrorIs(t, err, callstate.ErrNotPermitted)

	// A token without roomAdmin cannot write the room's metadata.
	plain, err := srv.TokenWith(callstate.Claims{Identity: "bob", Grants: callstate.Grants{Room: name, RoomJoin: true}})
	require.NoError(t, err)
	rs, err = callstate.NewRoomServiceWithToken(srv.URL(), plain, nil)
	require.NoError(t, err)
	_, err = rs.UpdateRoomMetadata(ctx, name, "x")
	require.ErrorIs(t, err, callstate.ErrNotPermitted)
}

func TestRoomServiceServerDown(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	rs, err := callstate.NewRoomService("ws://"+addr, "key", "secret", nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = rs.ListRooms(ctx)
	require.ErrorIs(t, err, callstate.ErrServerUnreachable)
	se := requireServerError(t, err, "", 0)
	var op *net.OpError
	assert.ErrorAs(t, se, &op, "the transport error must be kept")

	// A cancelled context is reported as such, not as an unreachable
	// server.
	srv := calltest.Shared(t)
	rs, err = callstate.NewRoomService(srv.URL(), srv.APIKey(), srv.APISecret(), nil)
	require.NoError(t, err)
	cctx, ccancel := context.WithCancel(t.Context())
	ccancel()
	_, err = rs.ListRooms(cctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, errors.Is(err, callstate.ErrServerUnreachable))
}

func TestRoomServiceInvalidArguments(t *testing.T) {
	t.Parallel()
	// Checked before any request: the URL is never dialled.
	rs, err := callstate.NewRoomService("http://127.0.0.1:1", "k", "s", nil)
	require.NoError(t, err)
	ctx := t.Context()
	for name, call := range map[string]func() error{
		"CreateRoom no name": func() error { _, err := rs.CreateRoom(ctx, callstate.CreateRoomOptions{}); return err },
		"CreateRoom negative timeout": func() error {
			_, err := rs.CreateRoom(ctx, callstate.CreateRoomOptions{Name: "r", EmptyTimeout: -time.Second})
			return err
		},
		"CreateRoom negative max": func() error {
			_, err := rs.CreateRoom(ctx, callstate.CreateRoomOptions{Name: "r", MaxParticipants: -1})
			return err
		},
		"DeleteRoom":                 func() error { return rs.DeleteRoom(ctx, "") },
		"ListParticipants":           func() error { _, err := rs.ListParticipants(ctx, ""); return err },
		"GetParticipant no room":     func() error { _, err := rs.GetParticipant(ctx, "", "a"); return err },
		"GetParticipant no identity": func() error { _, err := rs.GetParticipant(ctx, "r", ""); return err },
		"RemoveParticipant":          func() error { return rs.RemoveParticipant(ctx, "r", "") },
		"UpdateParticipant": func() error {
			_, err := rs.UpdateParticipant(ctx, "", "a", callstate.ParticipantUpdate{})
			return err
		},
		"UpdateRoomMetadata": func() error { _, err := rs.UpdateRoomMetadata(ctx, "", "x"); return err },
		"SendData no room":   func() error { return rs.SendData(ctx, "", []byte("x"), nil) },
		"SendData reserved topic": func() error {
			return rs.SendData(ctx, "r", []byte("x"), &callstate.PublishOptions{Topic: callstate.AppMessageTopic})
		},
	} {
		err := call()
		require.ErrorIs(t, err, callstate.ErrInvalidArgument, name)
		assert.False(t, errors.Is(err, callstate.ErrServerUnreachable), "%s: %v", name, err)
	}

	for _, u := range []string{"", "127.0.0.1:7880", "ftp://h", "http://", "ws://%zz"} {
		_, err := callstate.NewRoomService(u, "k", "s", nil)
		assert.ErrorIs(t, err, callstate.ErrInvalidArgument, u)
	}
	_, err = callstate.NewRoomService("ws://h", "", "s", nil)
	assert.ErrorIs(t, err, callstate.ErrInvalidArgument)
	_, err = callstate.NewRoomService("ws://h", "k", "", nil)
	assert.ErrorIs(t, err, callstate.ErrInvalidArgument)
	_, err = callstate.NewRoomServiceWithToken("ws://h", " ", nil)
	assert.ErrorIs(t, err, callstate.ErrInvalidArgument)
}
