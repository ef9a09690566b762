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
// The flags -url, -api-key and -api-secret default to the environment
// variables CALLSTATE_URL, CALLSTATE_API_KEY and CALLSTATE_API_SECRET, which
// "callstate serve" prints for its server.
//
// Exit status: 0 on success, 1 on failure, 2 for invalid usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
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

// Environment variables read by the commands.
const (
	envURL       = "CALLSTATE_URL"
	envAPIKey    = "CALLSTATE_API_KEY"
	envAPISecret = "CALLSTATE_API_SECRET"
	envToken     = "CALLSTATE_TOKEN"
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
The flags -url, -api-key and -api-secret default to the environment
variables CALLSTATE_URL, CALLSTATE_API_KEY and CALLSTATE_API_SECRET.
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
	envStringVar(fs, e, &s.url, "url", envURL, "`URL` of the LiveKit server (ws://, wss://, http:// or https://)"+what)
	envStringVar(fs, e, &s.apiKey, "api-key", envAPIKey, "API `key` of the server")
	envStringVar(fs, e, &s.apiSecret, "api-secret", envAPISecret, "API `secret` of the server")
}

// complete reports whether all three are set, and an error when only some
// are.
func (s *serverFlags) complete() (bool, error) {
	switch {
	case s.url == "" && s.apiKey == "" && s.apiSecret == "":
		return false, nil
	case s.url == "" || s.apiKey == "" || s.apiSecret == "":
		return false, errors.New("-url, -api-key and -api-secret must be given together")
	}
	return true, nil
}

// isLocalURL reports whether the server URL names this machine (127.0.0.1,
// ::1 or localhost), where loopback ICE is the right choice.
func isLocalURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// envStringVar defines a string flag whose default is the value of the
// environment variable env. The usage text names the variable but never
// shows its value, which may be a secret.
func envStringVar(fs *flag.FlagSet, e *env, p *string, name, env, usage string) {
	*p = e.getenv(env)
	fs.Var(envValue{p}, name, usage+"; default $"+env)
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
