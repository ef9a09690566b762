// Package calltest runs a real LiveKit server on the loopback interface for
// tests and examples.
//
// Start launches a livekit-server process with package lkserver: it listens
// on 127.0.0.1 only, on free ports, with a random API key and secret, and
// Start returns when it answers authenticated requests. Close stops it and
// removes its files. Several servers may run at once, in one process or in
// parallel test binaries. Commands and other code that must not link the
// testing package use lkserver directly.
//
// In tests, NewServer starts a server for one test and stops it when the
// test ends, and Shared returns one server for the whole test binary, which
// is much cheaper: use it with a unique room per test (Server.RoomName) and
// stop it at exit with Main:
//
//	func TestMain(m *testing.M) { calltest.Main(m) }
//
//	func TestChat(t *testing.T) {
//		srv := calltest.Shared(t)
//		room := srv.RoomName(t)
//		token := srv.Token(room, "alice")
//		// join srv.URL() with token ...
//	}
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
// concurrent test binaries install it only once.
//
// # An existing server
//
// When the environment names a server, Start starts nothing: the Server it
// returns describes that server, and Close does nothing (unless
// Options.IgnoreEnv is set). The server is named by LiveKit's standard
// variables LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET, each
// overridden by CALLSTATE_URL, CALLSTATE_API_KEY or CALLSTATE_API_SECRET
// when that is set (see lkserver.EndpointFromEnv); the three values must be
// set together. A shell set up for LiveKit's lk CLI therefore runs the
// tests against that server. Tests sharing an existing server must use
// unique room names, as RoomName provides.
//
// # Logs
//
// The server's log goes to a file in the server's temporary directory, which
// Close removes, and to Options.LogOutput when set. Setting the environment
// variable CALLSTATE_SERVER_LOG=1 copies it to standard error as well. When
// the server fails to start, the error includes the end of its log.
//
// # Scenarios and faults
//
// Server.Join and Server.JoinWith join participants for a test (closing them
// when it ends), and Await waits for an event with a deadline. A Proxy
// (Server.StartProxy) relays the server's signalling port so that a test can
// cut the connections of the participants that joined through it, or make
// the server unreachable for a while, and check how the call recovers. A
// FaultyNet (NewFaultyNet) is the network of one participant's WebRTC
// sockets: it blocks its data path for a while or drops a share of its data
// datagrams, on real sockets and without privileges. Server.Restart kills
// the server and starts it again on the same ports and keys.
// callstate.Room.Simulate asks the server itself to act out LiveKit's
// failure scenarios.
package calltest

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/lkserver"
)

// ServerVersion is the livekit-server release that Start installs when it
// finds no server binary.
const ServerVersion = lkserver.Version

// Environment variables read by this package.
const (
	// EnvBinary names the livekit-server executable to run.
	EnvBinary = lkserver.EnvBinary
	// EnvCacheDir overrides the directory where the server is installed
	// (by default os.UserCacheDir()/callstate).
	EnvCacheDir = lkserver.EnvCacheDir
	// EnvServerLog, set to 1, copies the server's log to standard error.
	EnvServerLog = lkserver.EnvServerLog
	// EnvURL, EnvAPIKey and EnvAPISecret together name an existing server
	// to use instead of starting one. Each overrides LiveKit's standard
	// variable of the same meaning (LIVEKIT_URL, LIVEKIT_API_KEY,
	// LIVEKIT_API_SECRET), which Start reads as well.
	EnvURL       = lkserver.EnvURL
	EnvAPIKey    = lkserver.EnvAPIKey
	EnvAPISecret = lkserver.EnvAPISecret
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

	// IgnoreEnv makes Start launch a local server even when the
	// environment names an existing one. Tests that stop or disturb their
	// server need it.
	IgnoreEnv bool
}

// Server is a LiveKit server for tests: a local livekit-server process
// started by Start, or an existing server named by the environment. The
// embedded lkserver.Server gives its URLs, credentials, tokens and server
// API client; Server adds what tests need.
//
// Its methods may be called from any goroutine.
type Server struct {
	*lkserver.Server
	shared bool
}

// Start starts a LiveKit server, or connects to the existing one named by
// the environment (see the package documentation), and returns when it
// answers authenticated requests. ctx bounds the whole start, including a
// first-time installation of the server binary.
//
// The caller must call Close when done with the server.
func Start(ctx context.Context, opts *Options) (*Server, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if !o.IgnoreEnv {
		if s, ok, err := fromEnv(ctx); ok || err != nil {
			return s, err
		}
	}
	s, err := lkserver.Start(ctx, &lkserver.Options{
		Binary:    o.Binary,
		LogOutput: o.LogOutput,
		APIKey:    o.APIKey,
		APISecret: o.APISecret,
		StopGrace: o.StopGrace,
		Port:      o.Port,

		WebhookURLs: o.WebhookURLs,
	})
	if err != nil {
		return nil, err
	}
	return &Server{Server: s}, nil
}

// fromEnv returns the existing server named by the environment, if any.
func fromEnv(ctx context.Context) (*Server, bool, error) {
	ep := lkserver.EndpointFromEnv(os.Getenv)
	if ep == (lkserver.Endpoint{}) {
		return nil, false, nil
	}
	if ep.URL == "" || ep.APIKey == "" || ep.APISecret == "" {
		return nil, true, fmt.Errorf("calltest: the server's URL, API key and secret must be set together "+
			"(%s or %s, %s or %s, %s or %s)",
			EnvURL, lkserver.EnvLiveKitURL, EnvAPIKey, lkserver.EnvLiveKitAPIKey, EnvAPISecret, lkserver.EnvLiveKitAPISecret)
	}
	s, err := lkserver.Connect(ctx, ep)
	if err != nil {
		return nil, true, fmt.Errorf("calltest: the server named by the environment: %w", err)
	}
	return &Server{Server: s}, true, nil
}

// DefaultGrants returns the grants of the tokens that Server.Token mints:
// lkserver.DefaultGrants, which are join room, publish and subscribe (the
// server defaults), send data, update one's own metadata, administer room
// (so that the participant can also write the room's metadata, session
// data, through the server API), and list rooms (so that session-data
// writes read the current value first).
func DefaultGrants(room string) callstate.Grants { return lkserver.DefaultGrants(room) }

// Token mints a token for identity to join room on this server, with
// DefaultGrants and the default validity. It panics if room or identity is
// empty; use TokenWith for other claims.
func (s *Server) Token(room, identity string) string {
	if room == "" || identity == "" {
		panic(fmt.Sprintf("calltest: Token needs a room and an identity, got room %q and identity %q", room, identity))
	}
	tok, err := s.Server.Token(room, identity)
	if err != nil {
		panic(err)
	}
	return tok
}

// Close stops the server: it asks the process to shut down (SIGTERM), forces
// it after Options.StopGrace (a second SIGTERM, then SIGKILL), waits for it
// to exit and removes its files. Close is idempotent and safe to call
// concurrently; it does nothing for an existing server named by the
// environment and for the server returned by Shared (see CloseShared).
func (s *Server) Close() error {
	if s.shared {
		return nil
	}
	return s.Server.Close()
}
