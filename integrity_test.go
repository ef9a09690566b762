package callstate_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// jwtShaped matches any JWT-shaped string.
var jwtShaped = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*`)

func assertNoCredential(t *testing.T, what, text, token, secret string) {
	t.Helper()
	if token != "" {
		assert.NotContains(t, text, token, "%s holds the token", what)
	}
	if secret != "" {
		assert.NotContains(t, text, secret, "%s holds the API secret", what)
	}
	assert.False(t, jwtShaped.MatchString(text), "%s holds a JWT-shaped string: %s", what, text)
}

// No error of Join, whatever the failure, and no log line at any level
// carries the token.
func TestJoinErrorsAndLogsCarryNoToken(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	tok := srv.Token(room, "alice")

	// An unreachable server: the dial error quotes the URL.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "ws://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err = callstate.Join(ctx, dead, tok, &callstate.JoinOptions{Logger: logger})
	require.ErrorIs(t, err, callstate.ErrServerUnreachable)
	assertNoCredential(t, "unreachable-server error", err.Error(), tok, "")

	// A refused token: LiveKit's 401 body quotes it.
	bad := tok[:len(tok)-4] + "AAAA"
	_, err = callstate.Join(t.Context(), srv.URL(), bad, &callstate.JoinOptions{Logger: logger})
	require.ErrorIs(t, err, callstate.ErrBadToken)
	var je *callstate.JoinError
	require.ErrorAs(t, err, &je)
	assert.Equal(t, 401, je.StatusCode)
	assertNoCredential(t, "bad-token error", err.Error(), bad, "")
	assertNoCredential(t, "bad-token message", je.Message, bad, "")

	// A session that runs, with debug logs, resumes after a cut and
	// closes: no log line carries the token either.
	proxy, err := srv.StartProxy()
	require.NoError(t, err)
	defer proxy.Close()
	r, err := callstate.Join(t.Context(), proxy.URL(), tok, &callstate.JoinOptions{Logger: logger})
	require.NoError(t, err)
	sub := r.Subscribe(nil)
	proxy.Cut()
	calltest.Await(t, sub, func(e callstate.ConnectionStateChanged) bool { return e.State == callstate.StateConnected })
	require.NoError(t, r.Close())
	logMu.Lock()
	defer logMu.Unlock()
	require.NotZero(t, logs.Len())
	assertNoCredential(t, "the Room's logs", logs.String(), tok, srv.APISecret())
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// The server API's errors carry neither the token nor the secret.
func TestRoomServiceErrorsCarryNoCredential(t *testing.T) {
	srv := calltest.Shared(t)
	rs, err := callstate.NewRoomService(srv.URL(), srv.APIKey(), "wrong-secret-wrong-secret-wrong-secret", nil)
	require.NoError(t, err)
	_, err = rs.ListRooms(t.Context())
	require.ErrorIs(t, err, callstate.ErrBadToken)
	assertNoCredential(t, "RoomService error", err.Error(), "", "wrong-secret-wrong-secret-wrong-secret")
}

// A connection that goes away during the join (the server went silent or
// the network failed) is ErrServerUnreachable, not a refusal; a join
// cancelled by its ctx says so.
func TestJoinFailureClasses(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	proxy, err := srv.StartProxy()
	require.NoError(t, err)
	defer proxy.Close()
	var once sync.Once
	opts := callstate.WithRawHook(&callstate.JoinOptions{Resume: -1}, func(source string, b []byte) {
		if source == "signal" {
			once.Do(func() { go proxy.SetDown(true) }) // right after the join response
		}
	})
	_, err = callstate.Join(t.Context(), proxy.URL(), srv.Token(room, "alice"), opts)
	require.Error(t, err)
	assert.ErrorIs(t, err, callstate.ErrServerUnreachable)
	assert.NotErrorIs(t, err, callstate.ErrJoinRefused)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = callstate.Join(ctx, srv.URL(), srv.Token(room, "bob"), nil)
	require.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), "join cancelled")
	assert.NotContains(t, err.Error(), "deadline")
}

// Lossy sends never wait behind a reliable transfer in progress.
func TestLossyDoesNotWaitForReliable(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", nil)
	srv.Join(t, room, "bob", &callstate.JoinOptions{ReceiveOnly: true})
	// A reliable transfer far larger than the send buffer: PublishData
	// blocks for as long as the connection takes to drain it (most of a
	// second on loopback).
	big := make([]byte, 8<<20)
	done := make(chan error, 1)
	started := time.Now()
	go func() { done <- a.PublishData(t.Context(), big, nil) }()
	for range 20 {
		require.NoError(t, a.PublishData(t.Context(), []byte("ping"), &callstate.PublishOptions{Kind: callstate.Lossy}))
	}
	lossyDone := time.Since(started)
	// Had the lossy sends waited for their turn behind the transfer, it
	// would be over by now.
	select {
	case err := <-done:
		t.Fatalf("the reliable transfer (err %v) ended before 20 lossy sends returned (%v): they waited for it", err, lossyDone)
	default:
	}
	require.NoError(t, <-done)
}
