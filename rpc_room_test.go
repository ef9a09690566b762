package callstate_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// rpcPair joins two participants, a and b, who see each other.
func rpcPair(t testing.TB) (srv *calltest.Server, room string, a, b *callstate.Room) {
	t.Helper()
	return joinPair(t, nil, nil)
}

// joinPair joins a and b with the options given and returns once each
// sees the other.
func joinPair(t testing.TB, aOpts, bOpts *callstate.JoinOptions) (srv *calltest.Server, room string, a, b *callstate.Room) {
	t.Helper()
	srv = calltest.Shared(t)
	room = srv.RoomName(t)
	a = srv.Join(t, room, "a", aOpts)
	b = srv.Join(t, room, "b", bOpts)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	seeEachOther(t, ctx, a, b)
	return srv, room, a, b
}

func rpcCode(t *testing.T, err error) *callstate.RpcError {
	t.Helper()
	var re *callstate.RpcError
	require.ErrorAs(t, err, &re)
	return re
}

func TestRpcBetweenRooms(t *testing.T) {
	_, _, a, b := rpcPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var got callstate.RpcInvocation
	var gotMu sync.Mutex
	require.NoError(t, b.RegisterRpcMethod("echo", func(_ context.Context, inv callstate.RpcInvocation) (string, error) {
		gotMu.Lock()
		got = inv
		gotMu.Unlock()
		return "echo:" + inv.Payload, nil
	}))
	require.NoError(t, b.RegisterRpcMethod("fail", func(context.Context, callstate.RpcInvocation) (string, error) {
		return "", callstate.NewRpcError(2001, "nope", "some detail")
	}))
	require.NoError(t, b.RegisterRpcMethod("crash", func(context.Context, callstate.RpcInvocation) (string, error) {
		return "", errors.New("internal secret")
	}))

	t.Run("success", func(t *testing.T) {
		start := time.Now()
		out, err := a.PerformRpc(ctx, "b", "echo", "hi", nil)
		require.NoError(t, err)
		assert.Equal(t, "echo:hi", out)
		t.Logf("round trip %v", time.Since(start))
		gotMu.Lock()
		defer gotMu.Unlock()
		assert.Equal(t, "a", got.CallerIdentity)
		assert.Equal(t, "echo", got.Method)
		assert.Equal(t, "hi", got.Payload)
		assert.NotEmpty(t, got.RequestID)
		assert.Equal(t, callstate.DefaultRpcTimeout, got.ResponseTimeout)
	})
	t.Run("large payload through streams", func(t *testing.T) {
		big := strings.Repeat("é", 50_000) // 100,000 bytes, over MaxRpcPayload
		out, err := a.PerformRpc(ctx, "b", "echo", big, nil)
		require.NoError(t, err)
		assert.Equal(t, "echo:"+big, out)
	})
	t.Run("application error with data", func(t *testing.T) {
		_, err := a.PerformRpc(ctx, "b", "fail", "", nil)
		re := rpcCode(t, err)
		assert.Equal(t, callstate.RpcErrorCode(2001), re.Code)
		assert.Equal(t, "nope", re.Message)
		assert.Equal(t, "some detail", re.Data)
	})
	t.Run("plain error hides its text", func(t *testing.T) {
		_, err := a.PerformRpc(ctx, "b", "crash", "", nil)
		re := rpcCode(t, err)
		assert.Equal(t, callstate.RpcApplicationError, re.Code)
		assert.NotContains(t, re.Error(), "secret")
	})
	t.Run("unsupported method", func(t *testing.T) {
		_, err := a.PerformRpc(ctx, "b", "nosuch", "", nil)
		assert.Equal(t, callstate.RpcUnsupportedMethod, rpcCode(t, err).Code)
		b.UnregisterRpcMethod("crash")
		_, err = a.PerformRpc(ctx, "b", "crash", "", nil)
		assert.Equal(t, callstate.RpcUnsupportedMethod, rpcCode(t, err).Code)
	})
	t.Run("unknown recipient", func(t *testing.T) {
		start := time.Now()
		_, err := a.PerformRpc(ctx, "nobody", "echo", "", nil)
		assert.Equal(t, callstate.RpcRecipientNotFound, rpcCode(t, err).Code)
		assert.ErrorIs(t, err, callstate.ErrUnknownParticipant)
		assert.Less(t, time.Since(start), time.Second)
	})
	t.Run("invalid arguments", func(t *testing.T) {
		_, err := a.PerformRpc(ctx, "b", "", "", nil)
		assert.ErrorIs(t, err, callstate.ErrInvalidArgument)
		_, err = a.PerformRpc(ctx, "b", "echo", "", &callstate.RpcOptions{ResponseTimeout: -1})
		assert.ErrorIs(t, err, callstate.ErrInvalidArgument)
		assert.ErrorIs(t, b.RegisterRpcMethod("", nil), callstate.ErrInvalidArgument)
	})
}

func TestRpcTimeoutAndLeaving(t *testing.T) {
	_, _, a, b := rpcPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	started := make(chan struct{}, 4)
	ended := make(chan error, 4)
	require.NoError(t, b.RegisterRpcMethod("hold", func(hctx context.Context, _ callstate.RpcInvocation) (string, error) {
		started <- struct{}{}
		<-hctx.Done()
		ended <- context.Cause(hctx)
		return "late", nil
	}))

	// The caller's timeout passes: RpcResponseTimeout after it, not later.
	start := time.Now()
	_, err := a.PerformRpc(ctx, "b", "hold", "", &callstate.RpcOptions{ResponseTimeout: 500 * time.Millisecond})
	assert.Equal(t, callstate.RpcResponseTimeout, rpcCode(t, err).Code)
	assert.Less(t, time.Since(start), 3*time.Second)
	<-started

	// The caller leaves: the handler's ctx ends with ErrRpcCallerLeft.
	c := calltest.Shared(t).Join(t, b.Name(), "c", nil)
	_, err = c.WaitForParticipant(ctx, "b")
	require.NoError(t, err)
	_, err = b.WaitForParticipant(ctx, "c")
	require.NoError(t, err)
	callErr := make(chan error, 1)
	go func() {
		_, err := c.PerformRpc(ctx, "b", "hold", "", nil)
		callErr <- err
	}()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the handler did not start")
	}
	require.NoError(t, c.Close())
	require.ErrorIs(t, <-callErr, callstate.ErrClosed)
	// Two handlers end: the timed-out one (by its deadline, later) and
	// this one (at once); wait for the one whose caller left.
	deadline := time.After(20 * time.Second)
	for found := false; !found; {
		select {
		case cause := <-ended:
			found = errors.Is(cause, callstate.ErrRpcCallerLeft)
		case <-deadline:
			t.Fatal("the handler's ctx did not end when its caller left")
		}
	}

	// The callee leaves during a call: RpcRecipientDisconnected at once.
	go func() {
		<-started
		_ = b.Close()
	}()
	start = time.Now()
	_, err = a.PerformRpc(ctx, "b", "hold", "", nil)
	assert.Equal(t, callstate.RpcRecipientDisconnected, rpcCode(t, err).Code)
	assert.Less(t, time.Since(start), 5*time.Second, "well before the 15 s timeout")
}

func TestRpcConcurrencyBound(t *testing.T) {
	_, _, a, b := rpcPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	release := make(chan struct{})
	started := make(chan struct{}, callstate.MaxRpcHandlers)
	require.NoError(t, b.RegisterRpcMethod("hold", func(hctx context.Context, _ callstate.RpcInvocation) (string, error) {
		started <- struct{}{}
		select {
		case <-release:
		case <-hctx.Done():
		}
		return "ok", nil
	}))
	var wg sync.WaitGroup
	errs := make(chan error, callstate.MaxRpcHandlers)
	for range callstate.MaxRpcHandlers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := a.PerformRpc(ctx, "b", "hold", "", nil)
			errs <- err
		}()
	}
	for range callstate.MaxRpcHandlers {
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatal("handlers did not start")
		}
	}
	_, err := a.PerformRpc(ctx, "b", "hold", "", nil)
	re := rpcCode(t, err)
	assert.Equal(t, callstate.RpcApplicationError, re.Code)
	assert.Contains(t, re.Message, "too many")
	assert.Equal(t, uint64(1), b.Stats().Data.RpcBusy)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
}

func TestRpcFromServerAPI(t *testing.T) {
	srv, room, _, b := rpcPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, b.RegisterRpcMethod("whoami", func(_ context.Context, inv callstate.RpcInvocation) (string, error) {
		return fmt.Sprintf("caller=%q payload=%s", inv.CallerIdentity, inv.Payload), nil
	}))
	require.NoError(t, b.RegisterRpcMethod("fail", func(context.Context, callstate.RpcInvocation) (string, error) {
		return "", callstate.NewRpcError(2002, "server asked", "")
	}))
	svc, err := callstate.NewRoomService(srv.URL(), srv.APIKey(), srv.APISecret(), nil)
	require.NoError(t, err)
	out, err := svc.PerformRpc(ctx, room, "b", "whoami", "x", callstate.RpcOptions{})
	require.NoError(t, err)
	assert.Equal(t, `caller="" payload=x`, out)
	_, err = svc.PerformRpc(ctx, room, "b", "fail", "", callstate.RpcOptions{})
	re := rpcCode(t, err)
	assert.Equal(t, callstate.RpcErrorCode(2002), re.Code)
	assert.Equal(t, "server asked", re.Message)
	_, err = svc.PerformRpc(ctx, room, "b", "nosuch", "", callstate.RpcOptions{})
	assert.Equal(t, callstate.RpcUnsupportedMethod, rpcCode(t, err).Code)
}
