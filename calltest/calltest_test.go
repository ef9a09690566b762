//go:build unix

package calltest

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/lkserver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { Main(m) }

// httpClient keeps no idle connections, so that no goroutine outlives a
// request.
var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// listRooms calls the server API's ListRooms with token and returns the
// HTTP status and body.
func listRooms(t *testing.T, httpURL, token string) (int, string) {
	t.Helper()
	return twirpJSON(t, httpURL, "ListRooms", token, "{}")
}

func twirpJSON(t *testing.T, httpURL, method, token, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, httpURL+"/twirp/livekit.RoomService/"+method, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func roomListToken(t *testing.T, key, secret string) string {
	t.Helper()
	tok, err := callstate.NewToken(key, secret, callstate.Claims{Grants: callstate.Grants{RoomList: true}})
	require.NoError(t, err)
	return tok
}

// processReaped reports whether no process, not even a zombie, has the pid:
// the server was waited for.
func processReaped(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestSharedServerAnswers(t *testing.T) {
	t.Parallel()
	s := Shared(t)
	assert.Same(t, s, Shared(t), "Shared must return one server per test binary")
	assert.Regexp(t, `^ws://127\.0\.0\.1:\d+$`, s.URL())
	assert.Equal(t, "http"+strings.TrimPrefix(s.URL(), "ws"), s.HTTPURL())
	assert.NotEmpty(t, s.APIKey())
	assert.GreaterOrEqual(t, len(s.APISecret()), 32)

	resp, err := httpClient.Get(s.HTTPURL() + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	// The shared server ignores Close.
	require.NoError(t, s.Close())
	code, _ := listRooms(t, s.HTTPURL(), roomListToken(t, s.APIKey(), s.APISecret()))
	assert.Equal(t, http.StatusOK, code)
}

func TestServerAcceptsMintedTokens(t *testing.T) {
	t.Parallel()
	s := Shared(t)
	code, body := listRooms(t, s.HTTPURL(), roomListToken(t, s.APIKey(), s.APISecret()))
	assert.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, "rooms")

	// A default test token administers its room.
	room := s.RoomName(t)
	code, body = twirpJSON(t, s.HTTPURL(), "ListParticipants", s.Token(room, "alice"), `{"room":"`+room+`"}`)
	assert.Equal(t, http.StatusOK, code, body)

	// ... and no other room.
	code, body = twirpJSON(t, s.HTTPURL(), "ListParticipants", s.Token(room, "alice"), `{"room":"other"}`)
	assert.Equal(t, http.StatusUnauthorized, code, body)
}

func TestServerRefusesBadTokens(t *testing.T) {
	t.Parallel()
	s := Shared(t)
	code, body := listRooms(t, s.HTTPURL(), roomListToken(t, s.APIKey(), s.APISecret()+"x"))
	assert.Equal(t, http.StatusUnauthorized, code, body)

	code, body = listRooms(t, s.HTTPURL(), roomListToken(t, "otherkey", s.APISecret()))
	assert.Equal(t, http.StatusUnauthorized, code, body)

	// A valid token without the roomList grant.
	noList, err := s.TokenWith(callstate.Claims{Identity: "bob", Grants: callstate.Grants{Room: s.RoomName(t), RoomJoin: true}})
	require.NoError(t, err)
	code, body = listRooms(t, s.HTTPURL(), noList)
	assert.Equal(t, http.StatusUnauthorized, code, body)
}

func TestDefaultGrants(t *testing.T) {
	t.Parallel()
	s := Shared(t)
	tok := s.Token("r1", "alice")
	c, err := callstate.ParseToken(tok, s.APISecret())
	require.NoError(t, err)
	assert.Equal(t, "alice", c.Identity)
	assert.Equal(t, DefaultGrants("r1"), c.Grants)
	assert.True(t, c.Grants.RoomJoin)
	assert.True(t, c.Grants.RoomAdmin)
	assert.True(t, c.Grants.CanUpdateOwnMetadata)
	assert.Equal(t, "r1", c.Grants.Room)

	assert.Panics(t, func() { s.Token("", "alice") })
	assert.Panics(t, func() { s.Token("r1", "") })
	_, err = s.TokenWith(callstate.Claims{Grants: callstate.Grants{RoomJoin: true}})
	assert.ErrorIs(t, err, callstate.ErrInvalidArgument)
}

func TestRoomName(t *testing.T) {
	t.Parallel()
	s := Shared(t)
	seen := map[string]bool{}
	for range 100 {
		n := s.RoomName(t)
		assert.Regexp(t, `^TestRoomName-[0-9a-f]{8}$`, n)
		assert.False(t, seen[n], "duplicate room name %q", n)
		seen[n] = true
	}
	t.Run("sub test/with spaces", func(t *testing.T) {
		n := s.RoomName(t)
		assert.Regexp(t, `^[A-Za-z0-9_-]+$`, n)
		assert.LessOrEqual(t, len(n), 48+9)
	})
}

func TestNewServer(t *testing.T) {
	var s *Server
	var pid int
	t.Run("inner", func(t *testing.T) {
		s = NewServer(t, &Options{IgnoreEnv: true, APIKey: "fixedkey", APISecret: strings.Repeat("s", 40)})
		pid = s.PID()
		require.NotZero(t, pid)
		assert.Equal(t, "fixedkey", s.APIKey())
		code, body := listRooms(t, s.HTTPURL(), roomListToken(t, "fixedkey", strings.Repeat("s", 40)))
		assert.Equal(t, http.StatusOK, code, body)
	})
	assert.True(t, processReaped(pid), "NewServer's cleanup must stop the server")
}

func TestExistingServerFromEnv(t *testing.T) {
	sh := Shared(t)
	for _, k := range []string{lkserver.EnvLiveKitURL, lkserver.EnvLiveKitAPIKey, lkserver.EnvLiveKitAPISecret} {
		t.Setenv(k, "")
	}
	t.Setenv(EnvURL, sh.HTTPURL()+"/")
	t.Setenv(EnvAPIKey, sh.APIKey())
	t.Setenv(EnvAPISecret, sh.APISecret())

	s, err := Start(t.Context(), nil)
	require.NoError(t, err)
	assert.Zero(t, s.PID(), "no process must be started")
	assert.Equal(t, sh.URL(), s.URL())
	assert.Equal(t, sh.HTTPURL(), s.HTTPURL())
	require.NoError(t, s.Close())
	code, _ := listRooms(t, sh.HTTPURL(), roomListToken(t, sh.APIKey(), sh.APISecret()))
	assert.Equal(t, http.StatusOK, code, "Close must leave an existing server alone")

	// IgnoreEnv starts a local server anyway.
	own, err := Start(t.Context(), &Options{IgnoreEnv: true})
	require.NoError(t, err)
	assert.NotEqual(t, sh.URL(), own.URL())
	assert.NotZero(t, own.PID())
	require.NoError(t, own.Close())

	t.Setenv(EnvAPISecret, sh.APISecret()+"x")
	_, err = Start(t.Context(), nil)
	require.Error(t, err, "wrong credentials must be reported at Start")
	assert.Contains(t, err.Error(), "401")

	t.Setenv(EnvAPISecret, "")
	_, err = Start(t.Context(), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "must be set together")

	t.Setenv(EnvAPISecret, "x")
	t.Setenv(EnvURL, "127.0.0.1:7880")
	_, err = Start(t.Context(), nil)
	require.Error(t, err)
}

// TestExistingServerFromLiveKitEnv checks that LiveKit's standard
// variables name the server, as they do for the lk CLI, and that the
// CALLSTATE_ ones override them.
func TestExistingServerFromLiveKitEnv(t *testing.T) {
	sh := Shared(t)
	for _, k := range []string{EnvURL, EnvAPIKey, EnvAPISecret} {
		t.Setenv(k, "")
	}
	t.Setenv(lkserver.EnvLiveKitURL, sh.URL())
	t.Setenv(lkserver.EnvLiveKitAPIKey, sh.APIKey())
	t.Setenv(lkserver.EnvLiveKitAPISecret, sh.APISecret())
	s, err := Start(t.Context(), nil)
	require.NoError(t, err)
	assert.Zero(t, s.PID(), "no process must be started")
	assert.Equal(t, sh.URL(), s.URL())

	// A wrong LiveKit secret, overridden by the right CALLSTATE_ one.
	t.Setenv(lkserver.EnvLiveKitAPISecret, "wrong")
	_, err = Start(t.Context(), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "401")
	t.Setenv(EnvAPISecret, sh.APISecret())
	s, err = Start(t.Context(), nil)
	require.NoError(t, err)
	assert.Equal(t, sh.URL(), s.URL())

	// Only part of the three.
	t.Setenv(lkserver.EnvLiveKitAPIKey, "")
	_, err = Start(t.Context(), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "must be set together")
	assert.Contains(t, err.Error(), lkserver.EnvLiveKitAPIKey)
}

func TestServerRoomService(t *testing.T) {
	t.Parallel()
	s := Shared(t)
	rs := s.RoomService()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	room := s.RoomName(t)
	info, err := rs.CreateRoom(ctx, callstate.CreateRoomOptions{Name: room})
	require.NoError(t, err)
	assert.Equal(t, room, info.Name)
	require.NoError(t, rs.DeleteRoom(ctx, room))
}

func TestProxy(t *testing.T) {
	t.Parallel()
	s := Shared(t)
	p, err := s.StartProxy()
	require.NoError(t, err)
	defer p.Close()
	httpURL := "http://" + strings.TrimPrefix(p.URL(), "ws://")
	tok := roomListToken(t, s.APIKey(), s.APISecret())
	code, body := listRooms(t, httpURL, tok)
	require.Equal(t, http.StatusOK, code, body)

	// A connection held open is cut.
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.URL(), "ws://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	require.NoError(t, err)
	buf := make([]byte, 1)
	_, err = conn.Read(buf) // the relay works
	require.NoError(t, err)
	p.Cut()
	_, err = io.ReadAll(conn)
	require.NoError(t, err, "the cut connection ends (EOF)")

	// Down: connections are refused until up again.
	p.SetDown(true)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequest(http.MethodGet, httpURL, nil)
	require.NoError(t, err)
	_, err = c.Do(req)
	assert.Error(t, err)
	p.SetDown(false)
	code, body = listRooms(t, httpURL, tok)
	assert.Equal(t, http.StatusOK, code, body)
	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "Close is idempotent")
}
