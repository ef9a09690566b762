package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"

	"github.com/callstate/callstate"
)

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (f *stringsFlag) String() string     { return "" }
func (f *stringsFlag) Set(s string) error { *f = append(*f, s); return nil }

func sendFlags(e *env) *flag.FlagSet { fs, _, _ := newSendFlags(e); return fs }

type sendConfig struct {
	topic string
	to    stringsFlag
	lossy bool
	app   bool
}

func newSendFlags(e *env) (*flag.FlagSet, *apiFlags, *sendConfig) {
	var a apiFlags
	c := &sendConfig{}
	fs := newFlagSet(e, "send", "[flags] <room> [payload]", `
Send sends a payload to the participants of a room through the server API,
from no participant. The payload is the argument, or standard input when
there is none.

By default the payload is sent as reliable data, with -topic if given;
-lossy sends it lossy. With -app it is sent as an app message, and must be
JSON. -to restricts the recipients (repeatable). Send prints nothing.

Example:

	callstate send -app standup '{"type":"poll","question":"lunch?"}'`)
	a.register(fs, e)
	fs.StringVar(&c.topic, "topic", "", "`topic` of the data")
	fs.Var(&c.to, "to", "recipient `identity` (repeatable; default: everyone)")
	fs.BoolVar(&c.lossy, "lossy", false, "send the data lossy")
	fs.BoolVar(&c.app, "app", false, "send an app message (JSON) instead of data")
	return fs, &a, c
}

func runSend(ctx context.Context, args []string, e *env) int {
	fs, a, c := newSendFlags(e)
	pos, code, ok := parseArgs(fs, args, 1, 2)
	if !ok {
		return code
	}
	if c.app && (c.lossy || c.topic != "") {
		return usageError(fs, "-app cannot be combined with -lossy or -topic")
	}
	rs, code := a.service(fs)
	if rs == nil {
		return code
	}
	var payload []byte
	if len(pos) == 2 {
		payload = []byte(pos[1])
	} else {
		b, err := io.ReadAll(io.LimitReader(e.stdin, 1<<20+1))
		if err != nil {
			return fail(e, "send", err)
		}
		payload = b
	}
	room := pos[0]
	if c.app {
		if !json.Valid(payload) {
			return usageError(fs, "the payload of an app message must be JSON")
		}
		if err := rs.SendAppMessage(ctx, room, json.RawMessage(payload), c.to...); err != nil {
			return fail(e, "send", err)
		}
		return exitOK
	}
	opts := &callstate.PublishOptions{Topic: c.topic, To: c.to}
	if c.lossy {
		opts.Kind = callstate.Lossy
	}
	if err := rs.SendData(ctx, room, payload, opts); err != nil {
		return fail(e, "send", err)
	}
	return exitOK
}
