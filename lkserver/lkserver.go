// Package lkserver runs a LiveKit server (livekit-server) on the loopback
// interface for development tools, examples and tests.
//
// Start finds or installs a livekit-server binary, writes its
// configuration, launches it listening on 127.0.0.1 only, on free ports,
// with a random API key and secret, and returns when the server answers
// authenticated requests. Close stops it and removes its files. Several
// servers may run at once, in one process or in several.
//
// Connect describes an existing server instead, after checking that it
// answers; EndpointFromEnv reads one from the environment variables that
// LiveKit's own tools use.
//
// The package does not import testing, so that commands can use it; package
// calltest builds its test helpers (servers per test or per test binary,
// joins, fault injection) on top of it.
//
// # The server binary
//
// Start uses, in order: Options.Binary; the file named by the environment
// variable CALLSTATE_LIVEKIT_SERVER; livekit-server on the PATH; the copy in
// the user's cache directory (os.UserCacheDir()/callstate, or
// CALLSTATE_CACHE_DIR, then livekit-server-v1.13.5/server). When none
// exists, Start installs livekit-server v1.13.5 into the cache directory with
// "go install", which needs the go command and network access to the Go
// module proxy and takes a few minutes the first time; a file lock makes
// concurrent processes install it only once. Progress of the installation
// is written to standard error.
//
// # Logs
//
// The server's log goes to a file in the server's temporary directory, which
// Close removes, and to Options.LogOutput when set. Setting the environment
// variable CALLSTATE_SERVER_LOG=1 copies it to standard error as well. When
// the server fails to start, the error includes the end of its log.
//
// # The server process
//
// On Linux the server runs in its own process group, so that a Ctrl-C meant
// for the parent does not reach it, and the kernel kills it when the parent
// dies without calling Close. Elsewhere it may outlive a parent that exits
// without Close.
package lkserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/serverurl"
)

// Version is the livekit-server release that Start installs when it finds
// no server binary.
const Version = "v1.13.5"

// Environment variables read by Start.
const (
	// EnvBinary names the livekit-server executable to run.
	EnvBinary = "CALLSTATE_LIVEKIT_SERVER"
	// EnvCacheDir overrides the directory where the server is installed
	// (by default os.UserCacheDir()/callstate).
	EnvCacheDir = "CALLSTATE_CACHE_DIR"
	// EnvServerLog, set to 1, copies the server's log to standard error.
	EnvServerLog = "CALLSTATE_SERVER_LOG"
)

const (
	defaultStopGrace = 100 * time.Millisecond
	forceStopWait    = 5 * time.Second
	readyTimeout     = 30 * time.Second
	startAttempts    = 3
	logTailBytes     = 4096
)

// Options configure Start. The zero value (or a nil *Options) is a good
// default. Fields may be added in later versions; set them by name.
type Options struct {
	// Binary is the path of the livekit-server executable. When empty,
	// Start finds or installs one (see the package documentation).
	Binary string

	// LogOutput, when not nil, receives a copy of the server's log. Writes
	// come from one goroutine at a time.
	LogOutput io.Writer

	// APIKey and APISecret are the credentials the server accepts. When
	// empty, Start generates random ones. LiveKit expects secrets of at
	// least 32 characters.
	APIKey    string
	APISecret string

	// StopGrace is how long Close lets the server shut down gracefully
	// after the first SIGTERM before forcing it. Zero means 100ms. A
	// server with connected participants waits for them during a graceful
	// shutdown, so long grace periods mostly delay Close.
	StopGrace time.Duration

	// Port is the HTTP and WebSocket port of the server on 127.0.0.1. Zero
	// picks a free one (and retries on a collision); a fixed port is not
	// retried. The WebRTC UDP port is always picked free.
	Port int

	// WebhookURLs are the URLs the server posts its webhooks to, signed
	// with APIKey.
	WebhookURLs []string

	// Redis is the host:port of a Redis server. When set, the server is a
	// node of the LiveKit cluster of every server started with the same
	// Redis (and the same key and secret): rooms live on one node, and
	// participants connect through any node (see StartCluster).
	Redis string
}

// Server is a LiveKit server: a local livekit-server process started by
// Start, or an existing server described by Connect.
//
// Its methods may be called from any goroutine.
type Server struct {
	url, httpURL string
	key, secret  string
	external     bool
	stopGrace    time.Duration

	// mu guards cmd, proc and ended, which Restart replaces.
	mu      sync.Mutex
	cmd     *exec.Cmd
	dir     string
	logFile *os.File
	proc    *process
	nodeID  string
	ended   bool

	closeOnce sync.Once
	closeErr  error
}

// Start starts a livekit-server process on the loopback interface and
// returns when it answers authenticated requests. ctx bounds the whole
// start, including a first-time installation of the server binary; it does
// not bound the server's life.
//
// The caller must call Close when done with the server.
func Start(ctx context.Context, opts *Options) (*Server, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	bin, err := findBinary(ctx, o.Binary)
	if err != nil {
		return nil, err
	}
	key, secret := o.APIKey, o.APISecret
	if key == "" {
		key = "API" + randomHex(6)
	}
	if secret == "" {
		secret = randomHex(32)
	}
	grace := o.StopGrace
	if grace <= 0 {
		grace = defaultStopGrace
	}
	var lastErr error
	for range startAttempts {
		s, retry, err := startOnce(ctx, bin, key, secret, grace, o.LogOutput, o.Port, o.WebhookURLs, o.Redis)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !retry || ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// Connect returns a Server describing the existing server ep names, once
// it has answered an authenticated request with ep's credentials (within
// ctx and at most 30 s). ep.URL may be a ws://, wss://, http:// or https://
// URL. Close does nothing for such a Server: the server is not ours to stop.
func Connect(ctx context.Context, ep Endpoint) (*Server, error) {
	if ep.URL == "" || ep.APIKey == "" || ep.APISecret == "" {
		return nil, errors.New("lkserver: Connect needs a URL, an API key and an API secret")
	}
	wsURL, httpURL, err := serverURLs(ep.URL)
	if err != nil {
		return nil, err
	}
	s := &Server{url: wsURL, httpURL: httpURL, key: ep.APIKey, secret: ep.APISecret, external: true}
	probeCtx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := s.probe(probeCtx, 10*time.Second); err != nil {
		return nil, fmt.Errorf("lkserver: the server at %s does not answer: %w", ep.URL, err)
	}
	return s, nil
}

// serverURLs derives the WebSocket and HTTP base URLs from either form.
func serverURLs(s string) (wsURL, httpURL string, err error) {
	u, err := serverurl.Parse(s)
	if err != nil {
		return "", "", fmt.Errorf("lkserver: %w", err)
	}
	wsURL, httpURL = serverurl.Bases(u)
	return wsURL, httpURL, nil
}

// startOnce makes one attempt at starting the server on fresh ports. retry
// reports whether a failure may be a port collision worth another attempt.
func startOnce(ctx context.Context, bin, key, secret string, grace time.Duration, logOut io.Writer, fixedPort int, webhooks []string, redis string) (s *Server, retry bool, err error) {
	httpPort := fixedPort
	if httpPort == 0 {
		if httpPort, err = pickPort("tcp"); err != nil {
			return nil, false, err
		}
	}
	defer func() {
		if fixedPort != 0 {
			retry = false
		}
	}()
	udpPort, err := pickPort("udp")
	if err != nil {
		return nil, false, err
	}
	stunPort, err := pickPort("udp")
	if err != nil {
		return nil, false, err
	}
	dir, err := os.MkdirTemp("", "lkserver-")
	if err != nil {
		return nil, false, fmt.Errorf("lkserver: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	cfgPath := filepath.Join(dir, "livekit.yaml")
	if err := os.WriteFile(cfgPath, []byte(configYAML(httpPort, udpPort, stunPort, key, secret)+webhookYAML(key, webhooks)+redisYAML(redis)), 0o600); err != nil {
		return nil, false, fmt.Errorf("lkserver: %w", err)
	}
	logFile, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, false, fmt.Errorf("lkserver: %w", err)
	}
	var out io.Writer = logFile
	extra := []io.Writer{logFile}
	if logOut != nil {
		extra = append(extra, logOut)
	}
	if os.Getenv(EnvServerLog) == "1" {
		extra = append(extra, os.Stderr)
	}
	if len(extra) > 1 {
		out = io.MultiWriter(extra...)
	}

	cmd := exec.Command(bin, "--dev", "--config", cfgPath)
	cmd.Dir = dir
	cmd.Env = serverEnv()
	cmd.Stdout = out
	cmd.Stderr = out
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, false, fmt.Errorf("lkserver: starting %s: %w", bin, err)
	}
	host := fmt.Sprintf("127.0.0.1:%d", httpPort)
	s = &Server{
		url:       "ws://" + host,
		httpURL:   "http://" + host,
		key:       key,
		secret:    secret,
		stopGrace: grace,
		cmd:       cmd,
		dir:       dir,
		logFile:   logFile,
		proc:      newProcess(cmd),
	}

	if err := s.waitReady(ctx); err != nil {
		exitedEarly := s.proc.exited()
		s.stopProcess()
		logFile.Close()
		tail := logTail(filepath.Join(dir, "server.log"))
		if tail != "" {
			tail = "\n--- end of the server log ---\n" + tail
		}
		// An early exit or a foreign server on our port is likely a port
		// taken between picking it and binding it.
		collided := exitedEarly || errors.Is(err, errForeignServer)
		return nil, collided && ctx.Err() == nil,
			fmt.Errorf("lkserver: livekit-server (%s) did not start on %s: %w%s", bin, host, err, tail)
	}
	// The server logs its node id before it listens, so the line is there
	// once it answers.
	s.nodeID = nodeIDFromLog(filepath.Join(dir, "server.log"))
	return s, false, nil
}

var nodeIDPattern = regexp.MustCompile(`"nodeID": "([A-Za-z0-9_]+)"`)

// nodeIDFromLog finds the node id in the server's "starting LiveKit
// server" log line; "" when it is not there.
func nodeIDFromLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if m := nodeIDPattern.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}

// lastNodeIDFromLog is nodeIDFromLog for the last start logged.
func lastNodeIDFromLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if m := nodeIDPattern.FindAllSubmatch(b, -1); len(m) > 0 {
		return string(m[len(m)-1][1])
	}
	return ""
}

var errForeignServer = errors.New("another server answers on the port")

// probeClient keeps no idle connections, so that no goroutine outlives a
// probe (tests that check for leaked goroutines stay quiet).
var probeClient = &http.Client{Transport: &http.Transport{
	Proxy:             http.ProxyFromEnvironment,
	DisableKeepAlives: true,
}}

// waitReady polls the server until it answers an authenticated request with
// our credentials, the process exits, or the deadline passes.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.proc.exited() {
			s.proc.wait()
			return fmt.Errorf("the process exited: %s", s.cmd.ProcessState)
		}
		// A local server answers within milliseconds; a short timeout
		// notices soon a port held by something else that does not answer.
		err := s.probe(ctx, 500*time.Millisecond)
		if err == nil || errors.Is(err, errForeignServer) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// probe makes one authenticated ListRooms request.
func (s *Server) probe(ctx context.Context, timeout time.Duration) error {
	tok, err := callstate.NewToken(s.key, s.secret, callstate.Claims{
		Grants:   callstate.Grants{RoomList: true},
		ValidFor: time.Minute,
	})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, s.httpURL+"/twirp/livekit.RoomService/ListRooms", strings.NewReader("{}"))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusUnauthorized && !s.external:
		return fmt.Errorf("%w: %s", errForeignServer, bytes.TrimSpace(body))
	}
	return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
}

// configYAML is the server's configuration: loopback only, fixed ports, one
// key.
func configYAML(httpPort, udpPort, stunPort int, key, secret string) string {
	q := func(v string) string { b, _ := json.Marshal(v); return string(b) }
	return fmt.Sprintf(`port: %d
bind_addresses: ["127.0.0.1"]
rtc:
  udp_port: %d
  tcp_port: 0
  node_ip: 127.0.0.1
  use_external_ip: false
  enable_loopback_candidate: true
  ips:
    includes: ["127.0.0.1/32"]
  interfaces:
    includes: ["lo"]
  stun_servers: ["127.0.0.1:%d"]
keys:
  %s: %s
`, httpPort, udpPort, stunPort, q(key), q(secret))
}

// webhookYAML is the configuration of the server's webhooks; empty without
// URLs.
func webhookYAML(key string, urls []string) string {
	if len(urls) == 0 {
		return ""
	}
	q := func(v string) string { b, _ := json.Marshal(v); return string(b) }
	s := "webhook:\n  api_key: " + q(key) + "\n  urls:\n"
	for _, u := range urls {
		s += "    - " + q(u) + "\n"
	}
	return s
}

// redisYAML is the configuration of the server's Redis; empty without
// one.
func redisYAML(addr string) string {
	if addr == "" {
		return ""
	}
	b, _ := json.Marshal(addr)
	return "redis:\n  address: " + string(b) + "\n"
}

// serverEnv is the environment of the server process: ours, without the
// variables livekit-server would read over its configuration file (among
// them LIVEKIT_URL and the API key variables, which a developer's shell
// often sets for LiveKit's CLI).
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "LIVEKIT_"),
			name == "NODE_IP", name == "UDP_PORT",
			name == "REDIS_HOST", name == "REDIS_PASSWORD":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// pickPort chooses the server's ports; tests replace it to provoke
// collisions.
var pickPort = freePort

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(network string) (int, error) {
	switch network {
	case "tcp":
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("lkserver: finding a free TCP port: %w", err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	default:
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("lkserver: finding a free UDP port: %w", err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// logTail returns the last few KiB of the log file.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return strings.TrimRight(string(b), "\n")
}

// URL returns the server's WebSocket URL, for example ws://127.0.0.1:40123,
// the URL participants join.
func (s *Server) URL() string { return s.url }

// HTTPURL returns the server's HTTP URL, for example http://127.0.0.1:40123,
// the base of its server API.
func (s *Server) HTTPURL() string { return s.httpURL }

// APIKey returns the API key the server accepts.
func (s *Server) APIKey() string { return s.key }

// APISecret returns the secret of APIKey.
func (s *Server) APISecret() string { return s.secret }

// Endpoint returns the server's URL and credentials.
func (s *Server) Endpoint() Endpoint {
	return Endpoint{URL: s.url, APIKey: s.key, APISecret: s.secret}
}

// PID returns the process id of the server started by Start, or 0 for an
// existing server described by Connect.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// NodeID returns the LiveKit node id of the server started by Start (the
// id that LiveKit's cluster uses, "ND_" followed by random characters), or
// "" for an existing server described by Connect.
func (s *Server) NodeID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nodeID
}

// DefaultGrants returns the grants of the tokens that Server.Token mints:
// join room, publish and subscribe (the server defaults), send data, update
// one's own metadata, administer room, so that the participant can also
// write the room's metadata (session data) through the server API, and list
// rooms, so that session-data writes read the current value first.
func DefaultGrants(room string) callstate.Grants {
	return callstate.Grants{
		Room:                 room,
		RoomJoin:             true,
		RoomAdmin:            true,
		RoomList:             true,
		CanPublishData:       callstate.Bool(true),
		CanUpdateOwnMetadata: true,
	}
}

// Token mints a token for identity to join room on this server, with
// DefaultGrants and the default validity. Errors come from
// callstate.NewToken (an empty room or identity is one).
func (s *Server) Token(room, identity string) (string, error) {
	if room == "" {
		return "", fmt.Errorf("lkserver: a token needs a room: %w", callstate.ErrInvalidArgument)
	}
	return s.TokenWith(callstate.Claims{Identity: identity, Grants: DefaultGrants(room)})
}

// TokenWith mints a token with the given claims, signed with the server's
// credentials. Errors come from callstate.NewToken.
func (s *Server) TokenWith(c callstate.Claims) (string, error) {
	return callstate.NewToken(s.key, s.secret, c)
}

// RoomService returns a client of the server's API, authenticated with the
// server's credentials.
func (s *Server) RoomService() *callstate.RoomService {
	rs, err := callstate.NewRoomService(s.httpURL, s.key, s.secret, nil)
	if err != nil {
		panic(err) // the URL and credentials were checked by Start or Connect
	}
	return rs
}

// Close stops a server started by Start: it asks the process to shut down
// (SIGTERM), forces it after Options.StopGrace (a second SIGTERM, then
// SIGKILL), waits for it to exit and removes its files. Close is idempotent
// and safe to call concurrently; it does nothing for a server described by
// Connect.
func (s *Server) Close() error {
	if s.external {
		return nil
	}
	s.closeOnce.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.ended = true
		s.stopProcess()
		s.finishClose()
	})
	return s.closeErr
}

// finishClose closes the log and removes the server's files, once the
// process is gone.
func (s *Server) finishClose() {
	if err := s.logFile.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		s.closeErr = fmt.Errorf("lkserver: %w", err)
	}
	if err := os.RemoveAll(s.dir); err != nil && s.closeErr == nil {
		s.closeErr = fmt.Errorf("lkserver: removing the server's files: %w", err)
	}
}

// Kill ends a server started by Start at once, with SIGKILL, as a crash or
// the loss of its machine would: it neither drains nor tells its
// participants or the cluster that it leaves. It then reaps the process
// and removes its files. Kill and Close are idempotent, and whichever comes
// first decides how the server ends; Kill does nothing for a server
// described by Connect.
func (s *Server) Kill() error {
	if s.external {
		return nil
	}
	s.closeOnce.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.ended = true
		s.killProcess()
		s.finishClose()
	})
	return s.closeErr
}

// killProcess ends the process with SIGKILL and reaps it. The caller holds
// s.mu.
func (s *Server) killProcess() {
	if !s.proc.exited() {
		_ = s.cmd.Process.Kill()
	}
	s.proc.wait()
}

// ErrEnded is returned by Restart for a server already closed or killed.
var ErrEnded = errors.New("lkserver: the server was closed")

// Restart kills the server's process with SIGKILL, as a crash would, and
// starts it again with the same configuration: the same ports, API key and
// secret, and log. It returns once the new process answers authenticated
// requests, within ctx. A single server keeps its rooms in memory, so they
// are gone: participants find a server that no longer knows their
// sessions (LiveKit answers their resume with a leave, STATE_MISMATCH),
// and rooms come back empty, without their metadata, when someone joins.
// Restart is for servers started by Start; it returns ErrEnded after Close
// or Kill.
func (s *Server) Restart(ctx context.Context) error {
	if s.external {
		return errors.New("lkserver: Restart needs a server started by Start, not one described by Connect")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return ErrEnded
	}
	s.killProcess()
	old := s.cmd
	var lastErr error
	// The ports were ours a moment ago and nothing else should take them;
	// a few attempts cover a socket the kernel has not released yet.
	for range startAttempts {
		cmd := exec.Command(old.Path, old.Args[1:]...)
		cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = old.Dir, old.Env, old.Stdout, old.Stderr
		setProcAttr(cmd)
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("lkserver: restarting %s: %w", old.Path, err)
		}
		s.cmd, s.proc = cmd, newProcess(cmd)
		err := s.waitReady(ctx)
		if err == nil {
			s.nodeID = lastNodeIDFromLog(filepath.Join(s.dir, "server.log"))
			return nil
		}
		lastErr = err
		s.killProcess()
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("lkserver: livekit-server did not restart on %s: %w", s.httpURL, lastErr)
}

// stopProcess terminates the process and reaps it.
func (s *Server) stopProcess() {
	defer s.proc.wait()
	p := s.cmd.Process
	for _, step := range []struct {
		sig  os.Signal
		wait time.Duration
	}{
		{syscall.SIGTERM, s.stopGrace},
		{syscall.SIGTERM, forceStopWait}, // a second SIGTERM skips draining
		{os.Kill, 0},
	} {
		if s.proc.exited() {
			return
		}
		if err := p.Signal(step.sig); err != nil {
			_ = p.Kill()
		}
		s.awaitExit(step.wait)
	}
}

// awaitExit polls until the process has exited or d has passed. Polling,
// rather than a goroutine blocked in wait, keeps a running server free of
// goroutines (see process).
func (s *Server) awaitExit(d time.Duration) {
	deadline := time.Now().Add(d)
	for !s.proc.exited() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}
