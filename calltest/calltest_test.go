//go:build unix

package calltest

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

func TestMain(m *testing.M) { Main(m) }

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

func TestSharedServerAnswers(t *testing.T) {
	s := Shared(t)
	assert.Same(t, s, Shared(t), "Shared must return one server per test binary")
	assert.Regexp(t, `^ws://127\.0\.0\.1:\d+$`, s.URL())
	assert.Equal(t, "http"+strings.TrimPrefix(s.URL(), "ws"), s.HTTPURL())
	assert.NotEmpty(t, s.APIKey())
	assert.GreaterOrEqual(t, len(s.APISecret()), 32)

	resp, err := probeClient.Get(s.HTTPURL() + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	// The shared server ignores Close.
	require.NoError(t, s.Close())
	code, _ := listRooms(t, s.HTTPURL(), roomListToken(t, s.APIKey(), s.APISecret()))
	assert.Equal(t, http.StatusOK, code)
}

func TestServerAcceptsMintedTokens(t *testing.T) {
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

func TestCloseStopsTheProcess(t *testing.T) {
	var log bytes.Buffer
	var mu sync.Mutex
	s, err := Start(context.Background(), &Options{IgnoreEnv: true, LogOutput: lockedWriter{&mu, &log}})
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
		wg.Go(func() { servers[i], errs[i] = Start(context.Background(), &Options{IgnoreEnv: true}) })
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

func TestNewServer(t *testing.T) {
	var s *Server
	var pid int
	t.Run("inner", func(t *testing.T) {
		s = NewServer(t, &Options{IgnoreEnv: true, APIKey: "fixedkey", APISecret: strings.Repeat("s", 40)})
		pid = s.cmd.Process.Pid
		assert.Equal(t, "fixedkey", s.APIKey())
		code, body := listRooms(t, s.HTTPURL(), roomListToken(t, "fixedkey", strings.Repeat("s", 40)))
		assert.Equal(t, http.StatusOK, code, body)
	})
	assert.True(t, processReaped(pid), "NewServer's cleanup must stop the server")
}

func TestExistingServerFromEnv(t *testing.T) {
	sh := Shared(t)
	t.Setenv(EnvURL, sh.HTTPURL()+"/")
	t.Setenv(EnvAPIKey, sh.APIKey())
	t.Setenv(EnvAPISecret, sh.APISecret())

	s, err := Start(context.Background(), nil)
	require.NoError(t, err)
	assert.Nil(t, s.cmd, "no process must be started")
	assert.Equal(t, sh.URL(), s.URL())
	assert.Equal(t, sh.HTTPURL(), s.HTTPURL())
	require.NoError(t, s.Close())
	code, _ := listRooms(t, sh.HTTPURL(), roomListToken(t, sh.APIKey(), sh.APISecret()))
	assert.Equal(t, http.StatusOK, code, "Close must leave an existing server alone")

	// IgnoreEnv starts a local server anyway.
	own, err := Start(context.Background(), &Options{IgnoreEnv: true})
	require.NoError(t, err)
	assert.NotEqual(t, sh.URL(), own.URL())
	require.NoError(t, own.Close())

	t.Setenv(EnvAPISecret, sh.APISecret()+"x")
	_, err = Start(context.Background(), nil)
	require.Error(t, err, "wrong credentials must be reported at Start")
	assert.Contains(t, err.Error(), "401")

	t.Setenv(EnvAPISecret, "")
	_, err = Start(context.Background(), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "must be set together")

	t.Setenv(EnvAPISecret, "x")
	t.Setenv(EnvURL, "127.0.0.1:7880")
	_, err = Start(context.Background(), nil)
	require.Error(t, err)
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
	_, err := Start(context.Background(), &Options{IgnoreEnv: true, Binary: filepath.Join(t.TempDir(), "missing")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not an executable")

	// A "server" that prints a line and exits: the error carries its log.
	fake := filepath.Join(t.TempDir(), "fake-server")
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\necho fake server cannot start >&2\nexit 3\n"), 0o755))
	_, err = Start(context.Background(), &Options{IgnoreEnv: true, Binary: fake})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exit status 3")
	assert.Contains(t, err.Error(), "fake server cannot start")

	// A server that never answers is abandoned when ctx ends, and killed.
	hang := filepath.Join(t.TempDir(), "hanging-server")
	pidFile := filepath.Join(t.TempDir(), "pid")
	require.NoError(t, os.WriteFile(hang, []byte("#!/bin/sh\necho $$ > "+pidFile+"\nexec sleep 60\n"), 0o755))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = Start(ctx, &Options{IgnoreEnv: true, Binary: hang})
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
	bin := filepath.Join(cache, "livekit-server-"+ServerVersion, "server")
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
	assert.FileExists(t, filepath.Join(cache, "livekit-server-"+ServerVersion+".lock"))
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

func TestServerRoomService(t *testing.T) {
	s := Shared(t)
	rs := s.RoomService()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	room := s.RoomName(t)
	info, err := rs.CreateRoom(ctx, callstate.CreateRoomOptions{Name: room})
	require.NoError(t, err)
	assert.Equal(t, room, info.Name)
	require.NoError(t, rs.DeleteRoom(ctx, room))
}

func TestRunningServerHasNoGoroutines(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	s, err := Start(context.Background(), &Options{IgnoreEnv: true})
	require.NoError(t, err)
	// Leak checkers in tests that share a running server stay quiet.
	assert.NoError(t, goleak.Find(opt))
	require.NoError(t, s.Close())
	assert.NoError(t, goleak.Find(opt))
}

// TestOrphanedServerDies runs a child test binary that starts a server and
// exits without closing it: the server must not outlive it.
func TestOrphanedServerDies(t *testing.T) {
	if os.Getenv("CALLTEST_ORPHAN_CHILD") == "1" {
		s, err := Start(context.Background(), &Options{IgnoreEnv: true})
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
	cmd.Env = append(os.Environ(), "CALLTEST_ORPHAN_CHILD=1")
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

			s, err := Start(context.Background(), &Options{IgnoreEnv: true})
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
	s := NewServer(t, &Options{Port: port, IgnoreEnv: true})
	assert.Equal(t, fmt.Sprintf("ws://127.0.0.1:%d", port), s.URL())
	code, body := listRooms(t, s.HTTPURL(), roomListToken(t, s.APIKey(), s.APISecret()))
	assert.Equal(t, http.StatusOK, code, body)

	// The port is taken now: a second server on it fails, without retrying
	// elsewhere.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = Start(ctx, &Options{Port: port, IgnoreEnv: true})
	assert.Error(t, err)
}

func TestProxy(t *testing.T) {
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
