package callstate_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

func TestMain(m *testing.M) { calltest.Main(m) }

// ctxT returns a context bounded by the test's deadline budget for one step.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// seeEachOther waits, within ctx, until each of rooms sees every other one.
func seeEachOther(t testing.TB, ctx context.Context, rooms ...*callstate.Room) {
	t.Helper()
	for _, r := range rooms {
		for _, o := range rooms {
			if o == r {
				continue
			}
			_, err := r.WaitForParticipant(ctx, o.LocalParticipant().Identity)
			require.NoError(t, err)
		}
	}
}

// checkLeaks fails the test if goroutines started during it are still
// running after its cleanups (the Rooms' Close among them) have run.
func checkLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// service returns a server API client with an HTTP client of its own, whose
// idle connections are closed when the test ends (before checkLeaks looks).
func service(t *testing.T, srv *calltest.Server) *callstate.RoomService {
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(hc.CloseIdleConnections)
	svc, err := callstate.NewRoomService(srv.URL(), srv.APIKey(), srv.APISecret(), &callstate.RoomServiceOptions{HTTPClient: hc})
	require.NoError(t, err)
	return svc
}

func fromIs(id string) func(callstate.DataReceived) bool {
	return func(e callstate.DataReceived) bool { return e.Data.From == id }
}

func TestJoinSeesRoomAndParticipants(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", nil)
	b := srv.Join(t, room, "bob", nil)

	assert.Equal(t, room, b.Name())
	assert.NotEmpty(t, b.SID())
	assert.Equal(t, "bob", b.LocalParticipant().Identity)
	assert.NotEmpty(t, b.LocalParticipant().SID)
	remotes := b.RemoteParticipants()
	require.Len(t, remotes, 1)
	assert.Equal(t, "alice", remotes[0].Identity)
	assert.Equal(t, a.LocalParticipant().SID, remotes[0].SID)
	assert.False(t, remotes[0].JoinedAt.IsZero())
	p, ok := b.Participant("alice")
	assert.True(t, ok)
	assert.Equal(t, "alice", p.Identity)
	assert.Equal(t, callstate.StateConnected, b.ConnectionState())

	svc := service(t, srv)
	list, err := svc.ListParticipants(ctxT(t), room)
	require.NoError(t, err)
	ids := []string{}
	for _, p := range list {
		ids = append(ids, p.Identity)
	}
	assert.ElementsMatch(t, []string{"alice", "bob"}, ids)
}

func TestJoinAndLeaveEvents(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", nil)
	sub := a.Subscribe(nil)
	b := srv.Join(t, room, "bob", nil)

	j := calltest.Await(t, sub, func(e callstate.ParticipantJoined) bool { return e.Participant.Identity == "bob" })
	assert.Equal(t, b.LocalParticipant().SID, j.Participant.SID)
	_, ok := a.Participant("bob")
	assert.True(t, ok)

	require.NoError(t, b.Close())
	l := calltest.Await(t, sub, func(e callstate.ParticipantLeft) bool { return e.Participant.Identity == "bob" })
	assert.Equal(t, j.Participant.SID, l.Participant.SID)
	_, ok = a.Participant("bob")
	assert.False(t, ok)
}

func TestDataBothWaysReliableAndLossy(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", nil)
	b := srv.Join(t, room, "bob", nil)
	subA, subB := a.Subscribe(nil), b.Subscribe(nil)
	ctx := ctxT(t)

	for _, kind := range []callstate.DataKind{callstate.Reliable, callstate.Lossy} {
		msg := []byte("from alice " + kind.String())
		require.NoError(t, a.PublishData(ctx, msg, &callstate.PublishOptions{Kind: kind, Topic: "t-" + kind.String()}))
		got := calltest.Await(t, subB, fromIs("alice"))
		assert.Equal(t, msg, got.Data.Payload)
		assert.Equal(t, kind, got.Data.Kind)
		assert.Equal(t, "t-"+kind.String(), got.Data.Topic)
		assert.Equal(t, a.LocalParticipant().SID, got.Data.FromSID)

		msg = []byte("from bob " + kind.String())
		require.NoError(t, b.PublishData(ctx, msg, &callstate.PublishOptions{Kind: kind}))
		got = calltest.Await(t, subA, fromIs("bob"))
		assert.Equal(t, msg, got.Data.Payload)
		assert.Equal(t, kind, got.Data.Kind)
		assert.Empty(t, got.Data.Topic)
	}
}

func TestDestinationsAreHonoured(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", nil)
	b := srv.Join(t, room, "bob", nil)
	c := srv.Join(t, room, "carol", nil)
	subB, subC := b.Subscribe(nil), c.Subscribe(nil)
	ctx := ctxT(t)
	// alice must know carol and bob before addressing them.
	for _, id := range []string{"bob", "carol"} {
		if _, ok := a.Participant(id); !ok {
			sub := a.Subscribe(nil)
			calltest.Await(t, sub, func(e callstate.ParticipantJoined) bool { return e.Participant.Identity == id })
			sub.Close()
		}
	}

	require.NoError(t, a.PublishData(ctx, []byte("secret"), &callstate.PublishOptions{To: []string{"bob"}, Topic: "private"}))
	require.NoError(t, a.PublishData(ctx, []byte("marker"), &callstate.PublishOptions{Topic: "public"}))

	got := calltest.Await(t, subB, fromIs("alice"))
	assert.Equal(t, "secret", string(got.Data.Payload))
	assert.Equal(t, "private", got.Data.Topic)
	// Reliable packets of one sender arrive in order: carol's first packet
	// from alice must be the marker, so she never got the secret.
	got = calltest.Await(t, subC, fromIs("alice"))
	assert.Equal(t, "marker", string(got.Data.Payload))
}

func TestReceiveOnlyParticipant(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", nil)
	rec := srv.Join(t, room, "recorder", &callstate.JoinOptions{ReceiveOnly: true})
	sub := rec.Subscribe(nil)
	ctx := ctxT(t)

	require.NoError(t, a.PublishData(ctx, []byte("to the recorder"), nil))
	got := calltest.Await(t, sub, fromIs("alice"))
	assert.Equal(t, "to the recorder", string(got.Data.Payload))

	err := rec.PublishData(ctx, []byte("x"), nil)
	assert.ErrorIs(t, err, callstate.ErrReceiveOnly)
}

func TestJoinErrors(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	ctx := ctxT(t)

	t.Run("invalid URL", func(t *testing.T) {
		for _, u := range []string{"", "ftp://x", "ws://", "::bad"} {
			_, err := callstate.Join(ctx, u, srv.Token(room, "x"), nil)
			assert.ErrorIs(t, err, callstate.ErrInvalidArgument, u)
			var je *callstate.JoinError
			assert.ErrorAs(t, err, &je)
		}
	})
	t.Run("empty token", func(t *testing.T) {
		_, err := callstate.Join(ctx, srv.URL(), "", nil)
		assert.ErrorIs(t, err, callstate.ErrBadToken)
	})
	t.Run("wrong secret", func(t *testing.T) {
		tok, err := callstate.NewToken(srv.APIKey(), strings.Repeat("x", 32), callstate.Claims{
			Identity: "mallory", Grants: calltest.DefaultGrants(room)})
		require.NoError(t, err)
		_, err = callstate.Join(ctx, srv.URL(), tok, nil)
		require.ErrorIs(t, err, callstate.ErrBadToken)
		var je *callstate.JoinError
		require.ErrorAs(t, err, &je)
		assert.Equal(t, 401, je.StatusCode)
		assert.NotEmpty(t, je.Message, "the server's explanation is surfaced")
	})
	t.Run("expired token", func(t *testing.T) {
		tok, err := srv.TokenWith(callstate.Claims{Identity: "late", Grants: calltest.DefaultGrants(room),
			NotBefore: time.Now().Add(-2 * time.Hour), ValidFor: time.Hour})
		require.NoError(t, err)
		_, err = callstate.Join(ctx, srv.URL(), tok, nil)
		assert.ErrorIs(t, err, callstate.ErrBadToken)
	})
	t.Run("room full", func(t *testing.T) {
		full := srv.RoomName(t)
		svc := service(t, srv)
		_, err := svc.CreateRoom(ctx, callstate.CreateRoomOptions{Name: full, MaxParticipants: 1})
		require.NoError(t, err)
		srv.Join(t, full, "first", nil)
		_, err = callstate.Join(ctx, srv.URL(), srv.Token(full, "second"), nil)
		require.ErrorIs(t, err, callstate.ErrJoinRefused)
		var je *callstate.JoinError
		require.ErrorAs(t, err, &je)
		assert.NotEmpty(t, je.Message)
		t.Log(err)
	})
	t.Run("server unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		require.NoError(t, l.Close())
		_, err = callstate.Join(ctx, "ws://"+addr, srv.Token(room, "x"), nil)
		assert.ErrorIs(t, err, callstate.ErrServerUnreachable)
		assert.NotErrorIs(t, err, context.DeadlineExceeded, "refused at once, not after the join deadline")
	})
	t.Run("server silent", func(t *testing.T) {
		// A listener that accepts and never answers: the join deadline
		// bounds the wait.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err = callstate.Join(short, "ws://"+l.Addr().String(), srv.Token(room, "x"), nil)
		assert.ErrorIs(t, err, callstate.ErrServerUnreachable)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestSendRefusals(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", &callstate.JoinOptions{MaxMessageSize: 64 << 10})
	srv.Join(t, room, "bob", nil)
	ctx := ctxT(t)

	err := a.PublishData(ctx, make([]byte, 64<<10+1), nil)
	require.ErrorIs(t, err, callstate.ErrTooLarge)
	var se *callstate.SizeError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 64<<10, se.Limit)
	assert.Equal(t, uint64(0), a.Stats().Data.PacketsSent, "nothing was sent")

	err = a.PublishData(ctx, []byte("x"), &callstate.PublishOptions{To: []string{"nobody"}})
	assert.ErrorIs(t, err, callstate.ErrUnknownParticipant)
	err = a.PublishData(ctx, []byte("x"), &callstate.PublishOptions{Topic: callstate.AppMessageTopic})
	assert.ErrorIs(t, err, callstate.ErrInvalidArgument)

	mute := srv.JoinWith(t, callstate.Claims{Identity: "mute", Grants: callstate.Grants{
		Room: room, RoomJoin: true, CanPublishData: callstate.Bool(false)}}, nil)

	err = mute.PublishData(ctx, []byte("x"), nil)
	require.ErrorIs(t, err, callstate.ErrNotPermitted)
	var pe *callstate.PermissionError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "canPublishData", pe.Grant)
}

func TestCallsAfterClose(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	checkLeaks(t)
	a := srv.Join(t, room, "alice", nil)
	sub := a.Subscribe(nil)
	require.NoError(t, a.Close())
	require.NoError(t, a.Close(), "Close is idempotent")
	ctx := ctxT(t)

	assert.ErrorIs(t, a.PublishData(ctx, []byte("x"), nil), callstate.ErrClosed)
	assert.ErrorIs(t, a.SetMetadata(ctx, "x"), callstate.ErrClosed)
	assert.ErrorIs(t, a.SendAppMessage(ctx, map[string]int{"a": 1}), callstate.ErrClosed)
	assert.Equal(t, callstate.StateDisconnected, a.ConnectionState())

	var last callstate.Event
	for e := range sub.Events() {
		last = e
	}
	d, ok := last.(callstate.Disconnected)
	require.True(t, ok, "the last event is Disconnected, got %T", last)
	assert.Equal(t, callstate.ReasonClientInitiated, d.Reason)
	assert.NoError(t, d.Err)
	select {
	case <-a.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	_, ok = <-a.Subscribe(nil).Events()
	assert.False(t, ok, "a subscription to an ended room is closed")
}

func TestCloseReleasesBlockedCalls(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	checkLeaks(t)
	a := srv.Join(t, room, "alice", nil)
	srv.Join(t, room, "bob", nil)
	ctx := ctxT(t)
	errc := make(chan error, 1)
	go func() {
		// Big enough to block on the transport's send buffer.
		var err error
		for err == nil {
			err = a.PublishData(ctx, make([]byte, 4<<20), nil)
		}
		errc <- err
	}()
	require.NoError(t, a.Close())
	select {
	case err := <-errc:
		assert.ErrorIs(t, err, callstate.ErrClosed)
	case <-ctx.Done():
		t.Fatal("a blocked PublishData was not released by Close")
	}
}

func TestServerEndsTheRoom(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", nil)
	sub := a.Subscribe(nil)
	svc := service(t, srv)
	require.NoError(t, svc.RemoveParticipant(ctxT(t), room, "alice"))
	d := calltest.Await(t, sub, func(callstate.Disconnected) bool { return true })
	assert.Equal(t, callstate.ReasonParticipantRemoved, d.Reason)
	assert.ErrorIs(t, a.PublishData(ctxT(t), []byte("x"), nil), callstate.ErrClosed)
	<-a.Done()
	assert.Error(t, a.Err())
}

func TestWaitForParticipant(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	checkLeaks(t)
	a := srv.Join(t, room, "alice", nil)
	ctx := ctxT(t)
	got := make(chan callstate.Participant, 1)
	go func() {
		p, err := a.WaitForParticipant(ctx, "bob")
		assert.NoError(t, err)
		got <- p
	}()
	b := srv.Join(t, room, "bob", nil)
	p := <-got
	assert.Equal(t, b.LocalParticipant().SID, p.SID)
	// Known now: at once, and addressing works.
	p, err := a.WaitForParticipant(ctx, "bob")
	require.NoError(t, err)
	assert.Equal(t, "bob", p.Identity)
	require.NoError(t, a.SendAppMessage(ctx, map[string]int{"hi": 1}, "bob"))

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = a.WaitForParticipant(short, "nobody")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, a.Close())
	_, err = a.WaitForParticipant(ctx, "nobody")
	assert.ErrorIs(t, err, callstate.ErrClosed)
}

// TestRoomsShareTheHTTPClient checks that Rooms without an HTTPClient of
// their own share one (a Transport per Room cost each participant
// kilobytes), that a Room given one uses it, and that once the Rooms have
// closed no goroutine of the shared client's connections is left.
func TestRoomsShareTheHTTPClient(t *testing.T) {
	checkLeaks(t)
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", nil)
	b := srv.Join(t, room, "bob", nil)
	require.NotNil(t, a.HTTPClient())
	assert.Same(t, a.HTTPClient(), b.HTTPClient())
	// A session-data write uses the client for a server API call, leaving
	// a keep-alive connection in its pool.
	require.NoError(t, a.SetSessionData(ctxT(t), map[string]any{"k": 1}, callstate.ShallowMerge))

	own := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(own.CloseIdleConnections)
	c := srv.Join(t, room, "carol", &callstate.JoinOptions{HTTPClient: own})
	assert.Same(t, own, c.HTTPClient())
}
