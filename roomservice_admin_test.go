package callstate_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
	"github.com/callstate/callstate/internal/lkpb"
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
	withTok, err := callstate.NewRoomServiceWithToken(srv.URL(), tok)
	require.NoError(t, err)
	err = withTok.MoveParticipant(ctx, room, "alice", dest)
	requireServerError(t, err, "unauthenticated", 401)

	require.ErrorIs(t, rs.MoveParticipant(ctx, room, "alice", room), callstate.ErrInvalidArgument)
	require.ErrorIs(t, rs.ForwardParticipant(ctx, room, "alice", ""), callstate.ErrInvalidArgument)
}

// rpcResponder joins room as identity and answers the server's RPC
// requests: "echo" with the payload in upper case, "fail" with an
// application error, "slow" with an acknowledgement only; other methods
// are not even acknowledged.
func rpcResponder(t *testing.T, srv *calltest.Server, room, identity string) {
	var r *callstate.Room
	ready := make(chan struct{})
	hook := func(source string, b []byte) {
		if source != "data" {
			return
		}
		var pkt lkpb.DataPacket
		if proto.Unmarshal(b, &pkt) != nil || pkt.GetRpcRequest() == nil {
			return
		}
		req := pkt.GetRpcRequest()
		var answers []*lkpb.DataPacket
		ack := &lkpb.DataPacket{Value: &lkpb.DataPacket_RpcAck{RpcAck: &lkpb.RpcAck{RequestId: req.GetId()}}}
		switch req.GetMethod() {
		case "echo":
			answers = []*lkpb.DataPacket{ack, {Value: &lkpb.DataPacket_RpcResponse{RpcResponse: &lkpb.RpcResponse{
				RequestId: req.GetId(), Value: &lkpb.RpcResponse_Payload{Payload: strings.ToUpper(req.GetPayload())}}}}}
		case "fail":
			answers = []*lkpb.DataPacket{ack, {Value: &lkpb.DataPacket_RpcResponse{RpcResponse: &lkpb.RpcResponse{
				RequestId: req.GetId(), Value: &lkpb.RpcResponse_Error{Error: &lkpb.RpcError{Code: 4242, Message: "no such order", Data: "id=7"}}}}}}
		case "slow":
			answers = []*lkpb.DataPacket{ack}
		}
		// The hook runs on the receiving goroutine: answer from another.
		go func() {
			<-ready
			for _, a := range answers {
				b, err := proto.Marshal(a)
				if err == nil {
					err = r.SendRawPacket(context.Background(), b)
				}
				if err != nil && !errors.Is(err, callstate.ErrClosed) {
					t.Errorf("answering RPC: %v", err)
				}
			}
		}()
	}
	r = srv.Join(t, room, identity, callstate.WithRawHook(nil, hook))
	close(ready)
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
