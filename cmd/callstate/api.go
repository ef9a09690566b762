package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/callstate/callstate"
)

// LiveKit's own environment variables, read by the server API commands
// when the CALLSTATE_ ones are not set (those override, so that a shell
// set up by "callstate serve" wins over a LiveKit deployment's settings).
var livekitVars = map[string]string{
	envURL:       "LIVEKIT_URL",
	envAPIKey:    "LIVEKIT_API_KEY",
	envAPISecret: "LIVEKIT_API_SECRET",
}

// apiEnv returns e with LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET
// standing in for the CALLSTATE_ variables that are not set.
func apiEnv(e *env) *env {
	c := *e
	c.getenv = func(k string) string {
		if v := e.getenv(k); v != "" {
			return v
		}
		if lk, ok := livekitVars[k]; ok {
			return e.getenv(lk)
		}
		return ""
	}
	return &c
}

// apiFlags are the flags shared by the server API commands.
type apiFlags struct {
	server      serverFlags
	json, table bool
}

func (a *apiFlags) register(fs *flag.FlagSet, e *env) {
	ae := apiEnv(e)
	envStringVar(fs, ae, &a.server.url, "url", envURL, "`URL` of the LiveKit server (ws://, wss://, http:// or https://); or $LIVEKIT_URL")
	envStringVar(fs, ae, &a.server.apiKey, "api-key", envAPIKey, "API `key` of the server; or $LIVEKIT_API_KEY")
	envStringVar(fs, ae, &a.server.apiSecret, "api-secret", envAPISecret, "API `secret` of the server; or $LIVEKIT_API_SECRET")
	fs.BoolVar(&a.json, "json", false, "print JSON (the default when standard output is not a terminal)")
	fs.BoolVar(&a.table, "table", false, "print a table for people (the default on a terminal)")
}

// service returns the RoomService the flags name, or reports the missing
// flags and returns nil.
// parseVerb parses a server API verb's flags and from min to max
// arguments, and returns the RoomService they name. ok is false when the
// verb must return code at once: help, a usage error, or missing
// credentials.
func (a *apiFlags) parseVerb(fs *flag.FlagSet, args []string, min, max int) (rs *callstate.RoomService, pos []string, code int, ok bool) {
	if pos, code, ok = parseArgs(fs, args, min, max); !ok {
		return nil, nil, code, false
	}
	if rs, code = a.service(fs); rs == nil {
		return nil, nil, code, false
	}
	return rs, pos, code, true
}

// apiGroupFlags is the flag set of a server API command with verbs (room,
// participant): the API flags, and the verbs in its usage.
func apiGroupFlags(e *env, cmd, description string, verbs []subcommand) *flag.FlagSet {
	fs := newFlagSet(e, cmd, "<command> [flags] [arguments]", description)
	var a apiFlags
	a.register(fs, e)
	fs.Usage = func() { verbsUsage(fs.Output(), cmd, verbs) }
	return fs
}

func (a *apiFlags) service(fs *flag.FlagSet) (*callstate.RoomService, int) {
	if a.server.url == "" || a.server.apiKey == "" || a.server.apiSecret == "" {
		return nil, usageError(fs, "-url, -api-key and -api-secret (or $%s, $%s, $%s or $LIVEKIT_URL, $LIVEKIT_API_KEY, $LIVEKIT_API_SECRET) are required", envURL, envAPIKey, envAPISecret)
	}
	rs, err := callstate.NewRoomService(a.server.url, a.server.apiKey, a.server.apiSecret, nil)
	if err != nil {
		return nil, usageError(fs, "%v", err)
	}
	return rs, exitOK
}

// wantTable reports whether the output is for people: -table, or a
// terminal without -json.
func (a *apiFlags) wantTable(w io.Writer) bool {
	if a.table || a.json {
		return a.table && !a.json
	}
	return isTerminal(w)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// subcommand is one verb of a command with verbs (room, participant,
// webhook).
type subcommand struct {
	name, synopsis, summary string
	run                     func(ctx context.Context, args []string, e *env) int
}

// runVerbs dispatches args to the verb they name.
func runVerbs(ctx context.Context, cmd string, verbs []subcommand, args []string, e *env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		w := e.stderr
		code := exitUsage
		if len(args) > 0 {
			w, code = e.stdout, exitOK
		}
		verbsUsage(w, cmd, verbs)
		return code
	}
	for _, v := range verbs {
		if v.name == args[0] {
			return v.run(ctx, args[1:], e)
		}
	}
	fmt.Fprintf(e.stderr, "callstate %s: unknown command %q\n", cmd, args[0])
	verbsUsage(e.stderr, cmd, verbs)
	return exitUsage
}

func verbsUsage(w io.Writer, cmd string, verbs []subcommand) {
	fmt.Fprintf(w, "Usage: callstate %s <command> [flags] [arguments]\n\nCommands:\n\n", cmd)
	for _, v := range verbs {
		fmt.Fprintf(w, "\t%-16s %s\n", v.name+" "+v.synopsis, v.summary)
	}
	fmt.Fprintf(w, "\nRun \"callstate %s <command> -h\" for its flags.\n", cmd)
}

// verbFlags returns the flag set of a verb, with the shared flags.
func verbFlags(e *env, cmd, verb, synopsis, description string, a *apiFlags) *flag.FlagSet {
	fs := newFlagSet(e, cmd+" "+verb, synopsis, description)
	a.register(fs, e)
	return fs
}

// parseArgs parses flags and positional arguments in any order, and checks
// the number of positional arguments is between min and max.
func parseArgs(fs *flag.FlagSet, args []string, min, max int) ([]string, int, bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < min || len(pos) > max {
		fmt.Fprintf(fs.Output(), "%s: want %s\n", fs.Name(), argCount(min, max))
		fs.Usage()
		return nil, exitUsage, false
	}
	return pos, exitOK, true
}

func argCount(min, max int) string {
	switch {
	case min == max:
		return fmt.Sprintf("%d argument(s)", min)
	default:
		return fmt.Sprintf("%d to %d arguments", min, max)
	}
}

// fail reports an error of a server API command and returns exitFailure.
// Errors of the library never carry tokens or secrets.
func fail(e *env, name string, err error) int {
	fmt.Fprintf(e.stderr, "callstate %s: %v\n", name, err)
	return exitFailure
}

// writeJSON writes v as one line of JSON.
func writeJSON(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(w, "%s\n", b)
}

// table writes rows aligned in columns.
func table(w io.Writer, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}
