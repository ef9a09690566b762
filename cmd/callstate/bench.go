package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/callstate/callstate/cmd/callstate/internal/bench"
)

type benchConfig struct {
	server       serverFlags
	quick        bool
	only         string
	duration     time.Duration
	participants int
}

func newBenchFlags(e *env) (*flag.FlagSet, *benchConfig) {
	c := &benchConfig{}
	fs := newFlagSet(e, "bench", "[flags]", `
Bench measures callstate over real WebRTC against a LiveKit server and
prints the figures: join time and the time to a joiner's first delivered
packet, reliable throughput, a large transfer, the lossy packetization
engine, session data latency at 50 participants, the goroutines and memory
each participant costs, and app messages in a room of 100 spread over a
two-node LiveKit cluster (which needs redis-server). The footprint2000
section (2,000 participants in this process, as 20 rooms of 100 and as one
room of 2,000, each layout connected for -duration) runs only when -only
names it.

Without -url, it starts a local LiveKit server on the loopback interface and
stops it at the end. It exits 1 if a measurement failed.

Sections: `+strings.Join(bench.Sections(), ", ")+`.`)
	c.server.register(fs, e, " to measure instead of starting one")
	fs.BoolVar(&c.quick, "quick", false, "fewer iterations and smaller rooms (a smoke run)")
	fs.StringVar(&c.only, "only", "", "comma-separated `sections` to run (default all but footprint2000)")
	fs.DurationVar(&c.duration, "duration", bench.DefaultScaleDuration, "footprint2000: how long each layout stays connected")
	fs.IntVar(&c.participants, "participants", bench.DefaultScaleParticipants, "footprint2000: how many participants join")
	return fs, c
}

func benchFlags(e *env) *flag.FlagSet { fs, _ := newBenchFlags(e); return fs }

func runBench(ctx context.Context, args []string, e *env) int {
	fs, c := newBenchFlags(e)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if _, err := c.server.complete(); err != nil {
		return usageError(fs, "%v", err)
	}
	cfg := bench.Config{
		URL:       c.server.url,
		APIKey:    c.server.apiKey,
		APISecret: c.server.apiSecret,
		Quick:     c.quick,
		Log:       e.stderr,

		ScaleParticipants: c.participants,
		ScaleDuration:     c.duration,
	}
	if c.only != "" {
		for _, s := range strings.Split(c.only, ",") {
			cfg.Only = append(cfg.Only, strings.TrimSpace(s))
		}
	}
	if err := bench.Run(ctx, e.stdout, cfg); err != nil {
		fmt.Fprintf(e.stderr, "callstate bench: %v\n", err)
		return exitFailure
	}
	return exitOK
}
