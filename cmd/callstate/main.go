// Command callstate is the command-line companion of the callstate SDK.
//
// Usage:
//
//	callstate <command> [flags]
//
// The commands are:
//
//	demo    run a scripted call that exercises every feature, against a
//	        local LiveKit server it starts (or an existing one)
//	serve   run a local LiveKit server for development until interrupted
//	token   mint an access token
//	join    join a room as a participant scripted with JSON lines on
//	        standard input and output
//	bench   measure callstate against a LiveKit server and print the figures
//	room    list, create, delete rooms and set their metadata (server API)
//	participant
//	        list, show, remove and update participants (server API)
//	send    send data or an app message to a room (server API)
//	webhook receive webhooks and print the verified events as JSON lines
//	help    show the help of a command
//
// Run "callstate help <command>" or "callstate <command> -h" for the flags of
// a command. The line formats of the join command are described in
// docs/cli.md.
//
// The flags -url, -api-key and -api-secret default to LiveKit's standard
// environment variables LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET,
// which LiveKit's lk CLI reads too; CALLSTATE_URL, CALLSTATE_API_KEY and
// CALLSTATE_API_SECRET, when set, override them one by one. "callstate
// serve" prints both sets for its server.
//
// Exit status: 0 on success, 1 on failure, 2 for invalid usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/callstate/callstate/internal/redact"
	"github.com/callstate/callstate/lkserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &env{
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
		getenv: os.Getenv,
	})
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// Environment variables read by the commands. Each CALLSTATE_ variable of
// the server overrides LiveKit's standard one (see lkserver.EndpointFromEnv).
const (
	envURL              = lkserver.EnvURL
	envAPIKey           = lkserver.EnvAPIKey
	envAPISecret        = lkserver.EnvAPISecret
	envLiveKitURL       = lkserver.EnvLiveKitURL
	envLiveKitAPIKey    = lkserver.EnvLiveKitAPIKey
	envLiveKitAPISecret = lkserver.EnvLiveKitAPISecret
	envToken            = "CALLSTATE_TOKEN"
)

// env is what a command runs with: its standard streams and environment.
// Tests substitute their own.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	// flags returns the command's flag set, for its usage.
	flags func(e *env) *flag.FlagSet
	run   func(ctx context.Context, args []string, e *env) int
}

func commands() []command {
	return []command{
		{name: "demo", summary: "run a scripted call that exercises every feature", flags: demoFlags, run: runDemo},
		{name: "serve", summary: "run a local LiveKit server for development", flags: serveFlags, run: runServe},
		{name: "token", summary: "mint an access token", flags: tokenFlags, run: runToken},
		{name: "join", summary: "join a room as a participant scripted with JSON lines", flags: joinFlags, run: runJoin},
		{name: "bench", summary: "measure callstate against a LiveKit server and print the figures", flags: benchFlags, run: runBench},
		{name: "room", summary: "list, create, delete rooms and set their metadata (server API)", flags: roomFlags, run: runRoom},
		{name: "participant", summary: "list, show, remove and update participants (server API)", flags: participantFlags, run: runParticipant},
		{name: "send", summary: "send data or an app message to a room (server API)", flags: sendFlags, run: runSend},
		{name: "webhook", summary: "receive webhooks and print the verified events", flags: webhookFlags, run: runWebhook},
	}
}

// run runs the command line args (without the program name) and returns
// the exit status. ctx is cancelled on SIGINT or SIGTERM.
func run(ctx context.Context, args []string, e *env) int {
	// Nothing the command writes to standard error carries a credential,
	// whichever error or log line it prints: the secrets of the
	// environment are removed, and so is anything shaped like a token.
	// (Standard output is left alone: "callstate token" prints a token on
	// purpose; the JSON lines of "callstate join" redact their errors.)
	e.stderr = redactingWriter{w: e.stderr, secrets: envSecrets(e.getenv)}
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if name != "help" || len(rest) == 0 {
			usage(e.stdout)
			return exitOK
		}
		c, ok := lookup(rest[0])
		if !ok {
			fmt.Fprintf(e.stderr, "callstate help: unknown command %q\n", rest[0])
			usage(e.stderr)
			return exitUsage
		}
		fs := c.flags(e)
		fs.SetOutput(e.stdout)
		fs.Usage()
		return exitOK
	}
	c, ok := lookup(name)
	if !ok {
		fmt.Fprintf(e.stderr, "callstate: unknown command %q\n", name)
		usage(e.stderr)
		return exitUsage
	}
	return c.run(ctx, rest, e)
}

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func usage(w io.Writer) {
	fmt.Fprint(w, `callstate is the command-line companion of the callstate SDK.

Usage:

	callstate <command> [flags]

Commands:

`)
	for _, c := range commands() {
		fmt.Fprintf(w, "\t%-11s  %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run "callstate help <command>" or "callstate <command> -h" for its flags.
The flags -url, -api-key and -api-secret default to LiveKit's environment
variables LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET, as for lk;
CALLSTATE_URL, CALLSTATE_API_KEY and CALLSTATE_API_SECRET override them.
`)
}

// newFlagSet returns a flag set for a command whose usage starts with the
// given synopsis and description.
func newFlagSet(e *env, name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet("callstate "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: callstate %s %s\n\n%s\n\nFlags:\n", name, synopsis, strings.TrimSpace(description))
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; it returns the exit status and false when the
// command must stop (help requested or invalid flags).
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return exitUsage, false
	}
	return exitOK, true
}

// usageError reports a flag combination error and returns exitUsage.
func usageError(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(fs.Output(), "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fmt.Fprintf(fs.Output(), "Run '%s -h' for help.\n", fs.Name())
	return exitUsage
}

// isSet reports whether the flag was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// serverFlags are the flags naming an existing server.
type serverFlags struct {
	url, apiKey, apiSecret string
}

func (s *serverFlags) register(fs *flag.FlagSet, e *env, what string) {
	ep := lkserver.EndpointFromEnv(e.getenv)
	envFlag(fs, &s.url, ep.URL, "url", "`URL` of the LiveKit server (ws://, wss://, http:// or https://)"+what, envURL, envLiveKitURL)
	envFlag(fs, &s.apiKey, ep.APIKey, "api-key", "API `key` of the server", envAPIKey, envLiveKitAPIKey)
	envFlag(fs, &s.apiSecret, ep.APISecret, "api-secret", "API `secret` of the server", envAPISecret, envLiveKitAPISecret)
}

// complete reports whether all three are set, and an error when only some
// are.
func (s *serverFlags) complete() (bool, error) {
	switch {
	case s.url == "" && s.apiKey == "" && s.apiSecret == "":
		return false, nil
	case s.url == "" || s.apiKey == "" || s.apiSecret == "":
		return false, errors.New("-url, -api-key and -api-secret (or their environment variables) must be given together")
	}
	return true, nil
}

// envStringVar defines a string flag whose default is the value of the
// environment variable env.
func envStringVar(fs *flag.FlagSet, e *env, p *string, name, env, usage string) {
	envFlag(fs, p, e.getenv(env), name, usage, env)
}

// envFlag defines a string flag whose default def was read from the
// environment variables vars, the first set one winning. The usage text
// names the variables but never shows the value, which may be a secret.
func envFlag(fs *flag.FlagSet, p *string, def, name, usage string, vars ...string) {
	*p = def
	fs.Var(envValue{p}, name, usage+"; default $"+strings.Join(vars, ", else $"))
}

// envValue is the flag.Value of envStringVar.
type envValue struct{ p *string }

// String returns "" so that usage texts show no default.
func (envValue) String() string { return "" }

func (v envValue) Set(s string) error { *v.p = s; return nil }

// kvFlag is a repeatable key=value flag.
type kvFlag map[string]string

func (f kvFlag) String() string {
	var parts []string
	for k, v := range f {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (f kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	f[k] = v
	return nil
}

// redactingWriter removes credentials from what goes through it. Each
// Write is redacted on its own: the command writes whole lines.
type redactingWriter struct {
	w       io.Writer
	secrets []string
}

func (r redactingWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.w, redact.String(string(p), r.secrets...)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// envSecrets are the API secrets the environment holds.
func envSecrets(getenv func(string) string) []string {
	if getenv == nil {
		return nil
	}
	var out []string
	for _, name := range []string{"CALLSTATE_API_SECRET", "LIVEKIT_API_SECRET"} {
		if v := getenv(name); v != "" {
			out = append(out, v)
		}
	}
	return out
}
