package callstate

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// flakyAPI answers the first failures requests with status and body, then
// succeeds; it records the request id of every attempt.
func flakyAPI(t *testing.T, failures, status int, body string) (*RoomService, func() []string) {
	var mu sync.Mutex
	var ids []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ids = append(ids, r.Header.Get(RequestIDHeader))
		n := len(ids)
		mu.Unlock()
		if n <= failures {
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
			return
		}
		w.Header().Set("Content-Type", "application/protobuf")
	}))
	t.Cleanup(srv.Close)
	rs, err := NewRoomService(srv.URL, testKey, testSecret, nil)
	require.NoError(t, err)
	return rs, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), ids...)
	}
}

func TestRoomServiceRetriesIdempotentCalls(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rs, ids := flakyAPI(t, 2, http.StatusBadGateway, "<html>bad gateway</html>")
	_, err := rs.ListRooms(ctx)
	require.NoError(t, err)
	got := ids()
	require.Len(t, got, 3)
	assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`, got[0])
	assert.Equal(t, got[0], got[1], "every attempt carries the call's id")
	assert.Equal(t, got[0], got[2])

	// A second call has an id of its own.
	_, err = rs.ListRooms(ctx)
	require.NoError(t, err)
	assert.NotEqual(t, got[0], ids()[3])
}

func TestRoomServiceGivesUpAfterAttempts(t *testing.T) {
	t.Parallel()
	rs, ids := flakyAPI(t, 10, http.StatusServiceUnavailable, "")
	err := rs.SendData(t.Context(), "r", []byte("x"), nil)
	require.ErrorIs(t, err, ErrServerUnreachable)
	assert.Len(t, ids(), defaultAttempts)
}

func TestRoomServiceDoesNotRetry(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	t.Run("non-idempotent", func(t *testing.T) {
		rs, ids := flakyAPI(t, 10, http.StatusBadGateway, "")
		require.Error(t, rs.RemoveParticipant(ctx, "r", "a"))
		require.Error(t, rs.DeleteRoom(ctx, "r"))
		_, err := rs.PerformRpc(ctx, "r", "a", "m", "", RpcOptions{})
		require.Error(t, err)
		assert.Len(t, ids(), 3, "one attempt each")
	})
	t.Run("LiveKit's own answer", func(t *testing.T) {
		rs, ids := flakyAPI(t, 1, http.StatusServiceUnavailable, `{"code":"unavailable","msg":"no response from servers"}`)
		_, err := rs.ListRooms(ctx)
		require.ErrorIs(t, err, ErrServerUnreachable)
		assert.Len(t, ids(), 1)
	})
	t.Run("one attempt configured", func(t *testing.T) {
		rs, ids := flakyAPI(t, 1, http.StatusBadGateway, "")
		rs.attempts = 1 // RoomServiceOptions{Attempts: 1}
		_, err := rs.ListRooms(ctx)
		require.Error(t, err)
		assert.Len(t, ids(), 1)
	})
	t.Run("cancelled while waiting", func(t *testing.T) {
		rs, ids := flakyAPI(t, 10, http.StatusBadGateway, "")
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := rs.ListRooms(ctx)
		require.Error(t, err)
		assert.LessOrEqual(t, len(ids()), 1)
	})
}

func TestParseRpcErrorText(t *testing.T) {
	t.Parallel()
	cases := map[string]*RpcError{
		"RpcError 1502: Response timeout":                          {Code: RpcResponseTimeout, Message: "Response timeout"},
		"RpcError 1500: Application error in method handler: boom": {Code: RpcApplicationError, Message: "Application error in method handler", Data: "boom"},
		"psrpc: RpcError 42: custom: a: b":                         {Code: 42, Message: "custom", Data: "a: b"},
	}
	for in, want := range cases {
		got, ok := parseRpcErrorText(in)
		require.True(t, ok, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "RpcError x: y", "RpcError 99999999999: big", "other"} {
		_, ok := parseRpcErrorText(in)
		assert.False(t, ok, in)
	}
	e := NewRpcError(RpcRecipientNotFound, "", "")
	assert.Equal(t, "callstate: RPC error 1401: Recipient not found", e.Error())
	assert.ErrorIs(t, e, ErrUnknownParticipant)
}
