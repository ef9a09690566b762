package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/lkserver"
)

// serverStartTimeout bounds the start of a local server, which includes
// installing livekit-server the first time.
const serverStartTimeout = 15 * time.Minute

type serveConfig struct {
	apiKey, apiSecret string
	room, identity    string
	port              int
	verbose           bool
}

func newServeFlags(e *env) (*flag.FlagSet, *serveConfig) {
	c := &serveConfig{}
	fs := newFlagSet(e, "serve", "[flags]", `
Serve starts a LiveKit server for development on the loopback interface
(127.0.0.1, free ports unless -port is given), prints its URL, API key and secret, an example
token and the commands to use it, and runs until interrupted (Ctrl-C or
SIGTERM), when it stops the server.

The first run installs livekit-server with "go install" into the user's
cache directory, which takes a few minutes (see package lkserver).`)
	fs.StringVar(&c.apiKey, "api-key", "", "API `key` the server accepts (default random)")
	fs.StringVar(&c.apiSecret, "api-secret", "", "API `secret` of the key, at least 32 characters (default random)")
	fs.IntVar(&c.port, "port", 0, "HTTP and WebSocket `port` on 127.0.0.1 (default a free one)")
	fs.StringVar(&c.room, "room", "dev", "`room` of the example token")
	fs.StringVar(&c.identity, "identity", "alice", "`identity` of the example token")
	fs.BoolVar(&c.verbose, "v", false, "copy the server's log to standard error")
	return fs, c
}

func serveFlags(e *env) *flag.FlagSet { fs, _ := newServeFlags(e); return fs }

func runServe(ctx context.Context, args []string, e *env) int {
	fs, c := newServeFlags(e)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if (c.apiKey == "") != (c.apiSecret == "") {
		return usageError(fs, "-api-key and -api-secret must be given together")
	}
	if c.port < 0 || c.port > 65535 {
		return usageError(fs, "-port must be between 1 and 65535")
	}
	if c.room == "" || c.identity == "" {
		return usageError(fs, "-room and -identity must not be empty")
	}
	fmt.Fprintln(e.stderr, "callstate serve: starting a local LiveKit server...")
	srv, err := startLocalServer(ctx, e, c.verbose, &lkserver.Options{APIKey: c.apiKey, APISecret: c.apiSecret, Port: c.port})
	if err != nil {
		fmt.Fprintf(e.stderr, "callstate serve: %v\n", err)
		return exitFailure
	}
	defer func() {
		fmt.Fprintln(e.stderr, "callstate serve: stopping the server...")
		if err := srv.Close(); err != nil {
			fmt.Fprintf(e.stderr, "callstate serve: %v\n", err)
		}
	}()
	tok, err := srv.Token(c.room, c.identity)
	if err != nil {
		fmt.Fprintf(e.stderr, "callstate serve: %v\n", err)
		return exitFailure
	}
	printServerInfo(e.stdout, srv, c.room, c.identity, tok)
	fmt.Fprintln(e.stderr, "callstate serve: running; press Ctrl-C to stop.")
	<-ctx.Done()
	return exitOK
}

// startLocalServer starts a loopback LiveKit server with lkserver, copying
// its log to standard error when verbose.
func startLocalServer(ctx context.Context, e *env, verbose bool, o *lkserver.Options) (*lkserver.Server, error) {
	var opts lkserver.Options
	if o != nil {
		opts = *o
	}
	if verbose {
		opts.LogOutput = e.stderr
	}
	ctx, cancel := context.WithTimeout(ctx, serverStartTimeout)
	defer cancel()
	return lkserver.Start(ctx, &opts)
}

// printServerInfo prints how to use the server: its URLs and credentials,
// the exports for callstate and for LiveKit's lk CLI, and an example token.
func printServerInfo(w io.Writer, srv *lkserver.Server, room, identity, tok string) {
	fmt.Fprintf(w, `LiveKit server ready (loopback only)
  URL:        %s
  HTTP URL:   %s
  API key:    %s
  API secret: %s

Use it from another shell (callstate and LiveKit's lk CLI both read these;
%s, %s and %s, when set, override them for callstate):
  export %s=%s %s=%s %s=%s

A token for %q in room %q (join, publish data, update metadata, room admin; valid %v):
  %s

Join as a scripted participant (JSON lines, see docs/cli.md):
  callstate join -room %s -identity %s
`,
		srv.URL(), srv.HTTPURL(), srv.APIKey(), srv.APISecret(),
		envURL, envAPIKey, envAPISecret,
		envLiveKitURL, srv.URL(), envLiveKitAPIKey, srv.APIKey(), envLiveKitAPISecret, srv.APISecret(),
		identity, room, callstate.DefaultTokenValidity, tok,
		room, identity)
}
