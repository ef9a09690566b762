package callstate_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

func TestRoomServiceMutePublishedTrack(t *testing.T) {
	t.Parallel()
	srv, rs, ctx := roomService(t)
	room := srv.RoomName(t)
	srv.Join(t, room, "alice", nil)

	_, err := rs.MutePublishedTrack(ctx, room, "alice", "TR_none", true)
	require.ErrorIs(t, err, callstate.ErrNotFound)
	assert.Contains(t, err.Error(), "TR_none")

	// The server routes the request to the participant's session; for an
	// identity that is not in the room, nobody answers.
	_, err = rs.MutePublishedTrack(ctx, room, "nobody", "TR_none", true)
	requireServerError(t, err, "unavailable", 503)
	require.ErrorIs(t, err, callstate.ErrServerUnreachable)

	// The test server does not allow remote unmuting.
	_, err = rs.MutePublishedTrack(ctx, room, "alice", "TR_none", false)
	se := requireServerError(t, err, "failed_precondition", 412)
	assert.Contains(t, se.Message, "remote unmute")
	require.ErrorIs(t, err, callstate.ErrRejected)

	_, err = rs.MutePublishedTrack(ctx, room, "alice", "", true)
	require.ErrorIs(t, err, callstate.ErrInvalidArgument)
}

func TestRoomServiceUpdateSubscriptions(t *testing.T) {
	t.Parallel()
	srv, rs, ctx := roomService(t)
	room := srv.RoomName(t)
	srv.Join(t, room, "alice", nil)

	require.NoError(t, rs.UpdateSubscriptions(ctx, room, "alice", []string{"TR_none"}, true))
	require.NoError(t, rs.UpdateSubscriptions(ctx, room, "alice", []string{"TR_none"}, false))
	err := rs.UpdateSubscriptions(ctx, room, "nobody", []string{"TR_none"}, true)
	requireServerError(t, err, "unavailable", 503)
	require.ErrorIs(t, rs.UpdateSubscriptions(ctx, room, "alice", nil, true), callstate.ErrInvalidArgument)
}

// The open-source server checks the destinationRoom grant, then answers
// that forwarding and moving are not implemented.
func TestRoomServiceForwardAndMoveUnimplemented(t *testing.T) {
	t.Parallel()
	srv, rs, ctx := roomService(t)
	room := srv.RoomName(t)
	srv.Join(t, room, "alice", nil)
	dest := room + "-dest"

	for name, call := range map[string]func() error{
		"ForwardParticipant": func() error { return rs.ForwardParticipant(ctx, room, "alice", dest) },
		"MoveParticipant":    func() error { return rs.MoveParticipant(ctx, room, "alice", dest) },
	} {
		t.Run(name, func(t *testing.T) {
			err := call()
			se := requireServerError(t, err, "unknown", 500)
			assert.Contains(t, se.Message, "not implemented")
			require.ErrorIs(t, err, callstate.ErrRejected)
		})
	}

	// A token whose destinationRoom is another room is refused before.
	tok, err := srv.TokenWith(callstate.Claims{Grants: callstate.Grants{Room: room, RoomAdmin: true, DestinationRoom: "elsewhere"}})
	require.NoError(t, err)
	withTok, err := callstate.NewRoomServiceWithToken(srv.URL(), tok, nil)
	require.NoError(t, err)
	err = withTok.MoveParticipant(ctx, room, "alice", dest)
	requireServerError(t, err, "unauthenticated", 401)

	require.ErrorIs(t, rs.MoveParticipant(ctx, room, "alice", room), callstate.ErrInvalidArgument)
	require.ErrorIs(t, rs.ForwardParticipant(ctx, room, "alice", ""), callstate.ErrInvalidArgument)
}

// rpcResponder joins room as identity, whose handlers answer the server's
// RPC requests: "echo" with the payload in upper case, "fail" with an
// application error, "slow" never. A second participant, identity+"-mute",
// sends nothing at all, so that its calls are never acknowledged.
func rpcResponder(t *testing.T, srv *calltest.Server, room, identity string) {
	r := srv.Join(t, room, identity, nil)
	require.NoError(t, r.RegisterRpcMethod("echo", func(_ context.Context, inv callstate.RpcInvocation) (string, error) {
		return strings.ToUpper(inv.Payload), nil
	}))
	require.NoError(t, r.RegisterRpcMethod("fail", func(context.Context, callstate.RpcInvocation) (string, error) {
		return "", callstate.NewRpcError(4242, "no such order", "id=7")
	}))
	require.NoError(t, r.RegisterRpcMethod("slow", func(ctx context.Context, _ callstate.RpcInvocation) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	}))
	srv.Join(t, room, identity+"-mute", callstate.WithSendFilter(nil, func(bool, []byte) bool { return false }))
}

func TestRoomServicePerformRpc(t *testing.T) {
	t.Parallel()
	srv, rs, ctx := roomService(t)
	room := srv.RoomName(t)
	rpcResponder(t, srv, room, "bot")

	got, err := rs.PerformRpc(ctx, room, "bot", "echo", "hello", callstate.RpcOptions{})
	require.NoError(t, err)
	assert.Equal(t, "HELLO", got)

	var re *callstate.RpcError
	_, err = rs.PerformRpc(ctx, room, "bot", "fail", "x", callstate.RpcOptions{})
	require.ErrorAs(t, err, &re)
	assert.Equal(t, callstate.RpcError{Code: 4242, Message: "no such order", Data: "id=7"}, *re)

	_, err = rs.PerformRpc(ctx, room, "bot", "slow", "x", callstate.RpcOptions{ResponseTimeout: 300 * time.Millisecond})
	require.ErrorAs(t, err, &re)
	assert.Equal(t, callstate.RpcResponseTimeout, re.Code, err.Error())
	assert.Equal(t, "Response timeout", re.Message)

	_, err = rs.PerformRpc(ctx, room, "bot", "ignored", "x", callstate.RpcOptions{})
	require.ErrorAs(t, err, &re)
	assert.Equal(t, callstate.RpcUnsupportedMethod, re.Code, err.Error())

	_, err = rs.PerformRpc(ctx, room, "bot-mute", "echo", "x", callstate.RpcOptions{})
	require.ErrorAs(t, err, &re)
	assert.Equal(t, callstate.RpcConnectionTimeout, re.Code, err.Error())

	_, err = rs.PerformRpc(ctx, room, "bot", "echo", strings.Repeat("x", callstate.MaxRpcPayload+1), callstate.RpcOptions{})
	require.ErrorAs(t, err, &re)
	assert.Equal(t, callstate.RpcRequestPayloadTooLarge, re.Code, err.Error())
	require.ErrorIs(t, err, callstate.ErrTooLarge)

	_, err = rs.PerformRpc(ctx, room, "nobody", "echo", "x", callstate.RpcOptions{})
	requireServerError(t, err, "unavailable", 503)

	_, err = rs.PerformRpc(ctx, room, "bot", "", "x", callstate.RpcOptions{})
	require.ErrorIs(t, err, callstate.ErrInvalidArgument)
}

// A token with every grant is accepted by the server, which applies the
// kind and the room configuration it carries.
func TestTokenWithEveryGrantJoins(t *testing.T) {
	t.Parallel()
	srv, rs, ctx := roomService(t)
	room := srv.RoomName(t)
	r := srv.JoinWith(t, callstate.Claims{
		Identity:    "agent-1",
		Kind:        callstate.KindAgent,
		KindDetails: []callstate.ParticipantKindDetail{callstate.KindDetailForwarded},
		SIP:         &callstate.SIPGrants{Admin: true, Call: true},
		RoomConfig: &callstate.RoomConfig{
			EmptyTimeout:     77 * time.Second,
			DepartureTimeout: 9 * time.Second,
			MaxParticipants:  5,
			Agents:           []callstate.AgentDispatch{{AgentName: "helper", Metadata: "job"}},
		},
		Grants: callstate.Grants{
			Room:                  room,
			RoomJoin:              true,
			RoomRecord:            true,
			IngressAdmin:          true,
			CanPublishSources:     []callstate.TrackSource{callstate.SourceMicrophone},
			Agent:                 true,
			CanSubscribeMetrics:   callstate.Bool(true),
			CanManageAgentSession: callstate.Bool(true),
			DestinationRoom:       room + "-next",
			CanUpdateOwnMetadata:  true,
		},
	}, nil)

	assert.Equal(t, callstate.KindAgent, r.LocalParticipant().Kind)

	rooms, err := rs.ListRooms(ctx, room)
	require.NoError(t, err)
	require.Len(t, rooms, 1)
	assert.Equal(t, 5, rooms[0].MaxParticipants)
	assert.Equal(t, 77*time.Second, rooms[0].EmptyTimeout)
	assert.Equal(t, 9*time.Second, rooms[0].DepartureTimeout)

	p, err := rs.GetParticipant(ctx, room, "agent-1")
	require.NoError(t, err)
	assert.Equal(t, callstate.KindAgent, p.Kind)
	assert.True(t, p.Permissions.CanUpdateMetadata)
}
