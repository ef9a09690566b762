//go:build unix

package lkserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// listRooms calls the server API's ListRooms with token and returns the
// HTTP status and body.
func listRooms(t *testing.T, httpURL, token string) (int, string) {
	t.Helper()
	return twirpJSON(t, httpURL, "ListRooms", token, "{}")
}

func twirpJSON(t *testing.T, httpURL, method, token, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, httpURL+"/twirp/livekit.RoomService/"+method, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := probeClient.Do(req)
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

// processGone reports whether the process with the pid has ended: it no
// longer exists, or it is a zombie that its parent has yet to reap (an
// orphan's new parent may take its time).
func processGone(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	_, rest, ok := bytes.Cut(b, []byte(") "))
	return ok && len(rest) > 0 && (rest[0] == 'Z' || rest[0] == 'X')
}

// processReaped reports whether no process, not even a zombie, has the pid:
// the server was waited for.
func processReaped(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestCloseStopsTheProcess(t *testing.T) {
	var log bytes.Buffer
	var mu sync.Mutex
	s, err := Start(context.Background(), &Options{LogOutput: lockedWriter{&mu, &log}})
	require.NoError(t, err)
	pid := s.cmd.Process.Pid
	dir := s.dir
	require.False(t, processReaped(pid))
	require.DirExists(t, dir)

	start := time.Now()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { assert.NoError(t, s.Close()) })
	}
	wg.Wait()
	t.Logf("Close took %v", time.Since(start))
	assert.True(t, processReaped(pid), "process %d still exists after Close", pid)
	assert.NoDirExists(t, dir)
	require.NoError(t, s.Close(), "Close must be idempotent")

	mu.Lock()
	assert.Contains(t, log.String(), "starting LiveKit server", "LogOutput must receive the server's log")
	mu.Unlock()

	_, err = probeClient.Get(s.HTTPURL() + "/")
	assert.Error(t, err, "the server must no longer answer")
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestParallelServers(t *testing.T) {
	servers := make([]*Server, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range servers {
		wg.Go(func() { servers[i], errs[i] = Start(context.Background(), nil) })
	}
	wg.Wait()
	for i, s := range servers {
		require.NoError(t, errs[i])
		t.Cleanup(func() { assert.NoError(t, s.Close()) })
	}
	for i, s := range servers {
		code, body := listRooms(t, s.HTTPURL(), roomListToken(t, s.APIKey(), s.APISecret()))
		assert.Equal(t, http.StatusOK, code, body)
		other := servers[(i+1)%len(servers)]
		assert.NotEqual(t, s.URL(), other.URL())
		assert.NotEqual(t, s.APIKey(), other.APIKey())
		code, body = listRooms(t, other.HTTPURL(), roomListToken(t, s.APIKey(), s.APISecret()))
		assert.Equal(t, http.StatusUnauthorized, code, body)
	}
}

func TestServerURLs(t *testing.T) {
	for in, want := range map[string][2]string{
		"ws://h:1":           {"ws://h:1", "http://h:1"},
		"http://h:1/":        {"ws://h:1", "http://h:1"},
		"wss://example.test": {"wss://example.test", "https://example.test"},
		"HTTPS://h":          {"wss://h", "https://h"},
	} {
		ws, h, err := serverURLs(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, [2]string{ws, h}, in)
	}
	for _, in := range []string{"", "h:1", "ftp://h", "ws://"} {
		_, _, err := serverURLs(in)
		assert.Error(t, err, in)
	}
}

func TestStartFailures(t *testing.T) {
	_, err := Start(context.Background(), &Options{Binary: filepath.Join(t.TempDir(), "missing")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not an executable")

	// A "server" that prints a line and exits: the error carries its log.
	fake := filepath.Join(t.TempDir(), "fake-server")
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\necho fake server cannot start >&2\nexit 3\n"), 0o755))
	_, err = Start(context.Background(), &Options{Binary: fake})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exit status 3")
	assert.Contains(t, err.Error(), "fake server cannot start")

	// A server that never answers is abandoned when ctx ends, and killed.
	hang := filepath.Join(t.TempDir(), "hanging-server")
	pidFile := filepath.Join(t.TempDir(), "pid")
	require.NoError(t, os.WriteFile(hang, []byte("#!/bin/sh\necho $$ > "+pidFile+"\nexec sleep 60\n"), 0o755))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = Start(ctx, &Options{Binary: hang})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	assert.True(t, processReaped(pid), "the abandoned process must be killed")
}

func TestFindBinary(t *testing.T) {
	t.Setenv(EnvBinary, filepath.Join(t.TempDir(), "nope"))
	_, err := findBinary(context.Background(), "")
	require.ErrorContains(t, err, EnvBinary)

	// The cached copy is used when there is no other.
	cache := t.TempDir()
	bin := filepath.Join(cache, "livekit-server-"+Version, "server")
	require.NoError(t, os.MkdirAll(filepath.Dir(bin), 0o755))
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755))
	t.Setenv(EnvBinary, "")
	t.Setenv(EnvCacheDir, cache)
	t.Setenv("PATH", t.TempDir())
	got, err := findBinary(context.Background(), "")
	require.NoError(t, err)
	assert.Equal(t, bin, got)

	// livekit-server on the PATH comes first.
	pathDir := t.TempDir()
	onPath := filepath.Join(pathDir, "livekit-server")
	require.NoError(t, os.WriteFile(onPath, []byte("#!/bin/sh\n"), 0o755))
	t.Setenv("PATH", pathDir)
	got, err = findBinary(context.Background(), "")
	require.NoError(t, err)
	assert.Equal(t, onPath, got)
}

func TestInstallWithoutGo(t *testing.T) {
	cache := t.TempDir()
	t.Setenv(EnvBinary, "")
	t.Setenv(EnvCacheDir, cache)
	t.Setenv("PATH", t.TempDir())
	_, err := findBinary(context.Background(), "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no go command")
	assert.FileExists(t, filepath.Join(cache, "livekit-server-"+Version+".lock"))
}

func TestLockFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := lockFile(context.Background(), path)
	require.NoError(t, err)

	// A second holder waits; flock locks are per open file, so this works
	// within one process.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = lockFile(ctx, path)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	got := make(chan error, 1)
	go func() {
		u, err := lockFile(context.Background(), path)
		if err == nil {
			u()
		}
		got <- err
	}()
	unlock()
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the lock was not handed over after unlock")
	}
}

func TestConfigYAMLQuotes(t *testing.T) {
	y := configYAML(1, 2, 3, `k"ey`, "s: ecret")
	assert.Contains(t, y, `"k\"ey": "s: ecret"`)
	assert.Regexp(t, regexp.MustCompile(`(?m)^port: 1$`), y)
	assert.Contains(t, y, `stun_servers: ["127.0.0.1:3"]`)
}

func TestRunningServerHasNoGoroutines(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	s, err := Start(context.Background(), nil)
	require.NoError(t, err)
	// Leak checkers in tests that share a running server stay quiet.
	assert.NoError(t, goleak.Find(opt))
	require.NoError(t, s.Close())
	assert.NoError(t, goleak.Find(opt))
}

// TestOrphanedServerDies runs a child test binary that starts a server and
// exits without closing it: the server must not outlive it.
func TestOrphanedServerDies(t *testing.T) {
	if os.Getenv("LKSERVER_ORPHAN_CHILD") == "1" {
		s, err := Start(context.Background(), nil)
		if err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("pid=" + strconv.Itoa(s.cmd.Process.Pid) + " dir=" + s.dir + "\n")
		os.Exit(0)
	}
	if runtime.GOOS != "linux" {
		t.Skip("the kernel stops orphaned servers on Linux only")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOrphanedServerDies$")
	cmd.Env = append(os.Environ(), "LKSERVER_ORPHAN_CHILD=1")
	out, err := cmd.Output()
	require.NoError(t, err, string(out))
	m := regexp.MustCompile(`pid=(\d+) dir=(\S+)`).FindStringSubmatch(string(out))
	require.NotNil(t, m, string(out))
	pid, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(m[2]) })
	require.Eventually(t, func() bool { return processGone(pid) }, 5*time.Second, 10*time.Millisecond,
		"the server (pid %d) outlived the test binary that started it", pid)
}

func TestStartRetriesOnPortCollision(t *testing.T) {
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			var taken int
			if network == "tcp" {
				l, err := net.Listen("tcp4", "127.0.0.1:0")
				require.NoError(t, err)
				defer l.Close()
				taken = l.Addr().(*net.TCPAddr).Port
			} else {
				c, err := net.ListenPacket("udp4", "127.0.0.1:0")
				require.NoError(t, err)
				defer c.Close()
				taken = c.LocalAddr().(*net.UDPAddr).Port
			}
			var calls atomic.Int32
			pickPort = func(n string) (int, error) {
				if n == network && calls.Add(1) == 1 {
					return taken, nil // the first pick collides
				}
				return freePort(n)
			}
			defer func() { pickPort = freePort }()

			s, err := Start(context.Background(), nil)
			require.NoError(t, err)
			defer s.Close()
			assert.GreaterOrEqual(t, calls.Load(), int32(2), "Start must have retried")
			assert.NotContains(t, s.URL(), ":"+strconv.Itoa(taken))
			code, body := listRooms(t, s.HTTPURL(), roomListToken(t, s.APIKey(), s.APISecret()))
			assert.Equal(t, http.StatusOK, code, body)
		})
	}
}

func TestFixedPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	s, err := Start(context.Background(), &Options{Port: port})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	assert.Equal(t, fmt.Sprintf("ws://127.0.0.1:%d", port), s.URL())
	code, body := listRooms(t, s.HTTPURL(), roomListToken(t, s.APIKey(), s.APISecret()))
	assert.Equal(t, http.StatusOK, code, body)

	// The port is taken now: a second server on it fails, without retrying
	// elsewhere.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = Start(ctx, &Options{Port: port})
	assert.Error(t, err)
}

func TestConnect(t *testing.T) {
	local, err := Start(context.Background(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, local.Close()) })
	assert.NotZero(t, local.PID())
	assert.Equal(t, Endpoint{URL: local.URL(), APIKey: local.APIKey(), APISecret: local.APISecret()}, local.Endpoint())

	ep := local.Endpoint()
	ep.URL = local.HTTPURL() + "/" // the HTTP form works as well
	s, err := Connect(context.Background(), ep)
	require.NoError(t, err)
	assert.Equal(t, local.URL(), s.URL())
	assert.Equal(t, local.HTTPURL(), s.HTTPURL())
	assert.Zero(t, s.PID(), "Connect starts no process")
	tok, err := s.Token("r1", "alice")
	require.NoError(t, err)
	code, body := twirpJSON(t, s.HTTPURL(), "ListParticipants", tok, `{"room":"r1"}`)
	assert.Equal(t, http.StatusOK, code, body)
	require.NoError(t, s.Close())
	code, body = listRooms(t, local.HTTPURL(), roomListToken(t, local.APIKey(), local.APISecret()))
	assert.Equal(t, http.StatusOK, code, "Close must leave an existing server alone: %s", body)

	bad := local.Endpoint()
	bad.APISecret += "x"
	_, err = Connect(context.Background(), bad)
	require.Error(t, err, "wrong credentials must be reported by Connect")
	assert.Contains(t, err.Error(), "401")

	_, err = Connect(context.Background(), Endpoint{URL: local.URL(), APIKey: local.APIKey()})
	assert.ErrorContains(t, err, "needs a URL, an API key and an API secret")
	_, err = Connect(context.Background(), Endpoint{URL: "127.0.0.1:7880", APIKey: "k", APISecret: "s"})
	assert.ErrorContains(t, err, "the scheme must be ws, wss, http or https")
}

func TestEndpointFromEnv(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	assert.Equal(t, Endpoint{}, EndpointFromEnv(getenv))

	// LiveKit's standard variables, as the lk CLI reads them.
	env[EnvLiveKitURL] = "wss://lk.example"
	env[EnvLiveKitAPIKey] = "lkkey"
	env[EnvLiveKitAPISecret] = "lksecret"
	assert.Equal(t, Endpoint{URL: "wss://lk.example", APIKey: "lkkey", APISecret: "lksecret"}, EndpointFromEnv(getenv))

	// Each CALLSTATE_ variable overrides its LiveKit one alone; an empty
	// one does not.
	env[EnvURL] = "ws://127.0.0.1:7880"
	env[EnvAPISecret] = ""
	assert.Equal(t, Endpoint{URL: "ws://127.0.0.1:7880", APIKey: "lkkey", APISecret: "lksecret"}, EndpointFromEnv(getenv))
	env[EnvAPIKey] = "cskey"
	env[EnvAPISecret] = "cssecret"
	assert.Equal(t, Endpoint{URL: "ws://127.0.0.1:7880", APIKey: "cskey", APISecret: "cssecret"}, EndpointFromEnv(getenv))

	// nil reads the process environment.
	t.Setenv(EnvURL, "")
	t.Setenv(EnvLiveKitURL, "ws://from-os")
	assert.Equal(t, "ws://from-os", EndpointFromEnv(nil).URL)
}

func TestServerEnvDropsLiveKitVariables(t *testing.T) {
	// livekit-server reads these over its configuration file; a shell set
	// up for the lk CLI has the first three.
	for _, k := range []string{EnvLiveKitURL, EnvLiveKitAPIKey, EnvLiveKitAPISecret, "LIVEKIT_KEYS", "NODE_IP", "UDP_PORT", "REDIS_HOST", "REDIS_PASSWORD"} {
		t.Setenv(k, "x")
	}
	t.Setenv("LKSERVER_TEST_KEPT", "1")
	env := serverEnv()
	assert.Contains(t, env, "LKSERVER_TEST_KEPT=1")
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		assert.False(t, strings.HasPrefix(name, "LIVEKIT_") || name == "NODE_IP" || name == "UDP_PORT" || strings.HasPrefix(name, "REDIS_"),
			"%s must not reach the server", name)
	}
}

func TestTokenAndDefaultGrants(t *testing.T) {
	// Tokens need no running server.
	s := &Server{key: "key", secret: strings.Repeat("s", 32), external: true}
	tok, err := s.Token("r1", "alice")
	require.NoError(t, err)
	c, err := callstate.ParseToken(tok, s.APISecret())
	require.NoError(t, err)
	assert.Equal(t, "alice", c.Identity)
	assert.Equal(t, DefaultGrants("r1"), c.Grants)
	assert.True(t, c.Grants.RoomJoin)
	assert.True(t, c.Grants.RoomAdmin)
	assert.True(t, c.Grants.RoomList)
	assert.True(t, c.Grants.CanUpdateOwnMetadata)
	require.NotNil(t, c.Grants.CanPublishData)
	assert.True(t, *c.Grants.CanPublishData)

	_, err = s.Token("", "alice")
	assert.ErrorIs(t, err, callstate.ErrInvalidArgument)
	_, err = s.Token("r1", "")
	assert.ErrorIs(t, err, callstate.ErrInvalidArgument)
}

// Restart kills the process and starts a new one on the same ports with the
// same keys; it refuses after Close, and Close stops the new process.
func TestRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	s, err := Start(ctx, nil)
	require.NoError(t, err)
	url, key, pid := s.URL(), s.APIKey(), s.PID()
	_, err = s.RoomService().CreateRoom(ctx, callstate.CreateRoomOptions{Name: "before"})
	require.NoError(t, err)
	require.NoError(t, s.Restart(ctx))
	assert.True(t, processReaped(pid), "the old process is gone")
	assert.NotEqual(t, pid, s.PID())
	assert.Equal(t, url, s.URL(), "the same port")
	assert.Equal(t, key, s.APIKey())
	rooms, err := s.RoomService().ListRooms(ctx)
	require.NoError(t, err, "the new process answers with the same keys")
	assert.Empty(t, rooms, "the rooms were in the old process's memory")
	newPID := s.PID()
	require.NoError(t, s.Close())
	assert.True(t, processReaped(newPID), "Close stops the restarted process")
	assert.ErrorIs(t, s.Restart(ctx), ErrEnded)
}
