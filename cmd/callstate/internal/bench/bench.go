// Package bench measures callstate against a real LiveKit server and prints
// a report: join time, reliable throughput, large transfers, the lossy
// packetization engine, session data latency in a large room, the memory
// and goroutines each joined participant costs, and app messages in a room
// spread over the nodes of a LiveKit cluster.
//
// Every measurement but the packetization engine's goes over real WebRTC to
// a livekit-server on the loopback interface: one that Run starts with
// package lkserver, or an existing local one named in Config. The cluster
// section starts its own cluster (Redis and two nodes) with lkserver. It is the
// logic of the "callstate bench" command.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/lkserver"
)

// Config configures Run. The zero value runs every section at full size
// against a local server that Run starts.
type Config struct {
	// URL, APIKey and APISecret name an existing LiveKit server on this
	// machine (the Rooms connect over the loopback interface). When URL is
	// empty, Run starts a local livekit-server with lkserver.Start and stops
	// it before returning.
	URL, APIKey, APISecret string

	// Quick runs fewer iterations and smaller rooms, for smoke runs in CI:
	// the whole report takes well under a minute.
	Quick bool

	// Only, when not empty, runs only the sections with these names (see
	// Sections), in the report's usual order.
	Only []string

	// Log, when not nil, receives progress messages, one per line.
	Log io.Writer

	// ScaleParticipants and ScaleDuration size the footprint2000 section:
	// how many participants join (zero means DefaultScaleParticipants)
	// and how long each layout keeps them connected (zero means
	// DefaultScaleDuration).
	ScaleParticipants int
	ScaleDuration     time.Duration
}

// Section names, in the order Run reports them.
const (
	SectionJoin       = "join"
	SectionThroughput = "throughput"
	SectionTransfer   = "transfer"
	SectionLossy      = "lossy"
	SectionDataTrack  = "datatrack"
	SectionSession    = "session"
	SectionFootprint  = "footprint"
	// SectionCluster starts its own cluster (Redis and two nodes), even
	// when Config names a server, and reports itself skipped when there
	// is no redis-server.
	SectionCluster = "cluster"
	// SectionFootprint2000 joins thousands of participants into this
	// process and keeps them connected for minutes. It runs only when
	// Config.Only names it.
	SectionFootprint2000 = "footprint2000"
)

// section is one measurement of the report.
type section struct {
	name  string
	title string
	run   func(*runner, io.Writer) error
	// timeout bounds the section; zero means sectionTimeout.
	timeout time.Duration
	// optIn sections run only when Config.Only names them.
	optIn bool
}

var sections = []section{
	{SectionJoin, "join: time for callstate.Join to return and to the first delivered packet", (*runner).join, 0, false},
	{SectionThroughput, "throughput: reliable messages, one sender to one receiver", (*runner).throughput, 0, false},
	{SectionTransfer, "transfer: one large reliable payload", (*runner).transfer, 0, false},
	{SectionLossy, "lossy: packetization engine, fragment and reassemble (no network)", (*runner).lossy, 0, false},
	{SectionDataTrack, "datatrack: data track frames beside lossy PublishData, through the server", (*runner).datatrack, 0, false},
	{SectionSession, "session: session data write visible at every participant", (*runner).session, 0, false},
	{SectionFootprint, "footprint: cost of each joined participant in this process", (*runner).footprint, 0, false},
	{SectionCluster, "cluster: app messages in a room spread over the nodes of a LiveKit cluster", (*runner).cluster, clusterTimeout, false},
	// Its timeout depends on Config.ScaleDuration: see runSection.
	{SectionFootprint2000, "footprint2000: thousands of participants in this process, connected for minutes", (*runner).footprintScale, 0, true},
}

// Sections returns the names of the report's sections, in order; Config.Only
// selects among them. Without Config.Only, all run but SectionFootprint2000.
func Sections() []string {
	names := make([]string, len(sections))
	for i, s := range sections {
		names[i] = s.name
	}
	return names
}

// sectionTimeout bounds one section, so that a stuck measurement fails
// instead of hanging the run.
const sectionTimeout = 3 * time.Minute

// Run runs the selected measurements and prints the report to out, one
// section per measurement. A section that fails reports its error in its
// place and the others still run; Run then returns an error naming every
// failure. Run stops early, with ctx's error, when ctx ends.
//
// Run closes everything it opened (Rooms, and the server it started) before
// it returns, also on error. It must not run concurrently with other
// measurements in the same process: the footprint section counts the
// process's goroutines and heap.
func Run(ctx context.Context, out io.Writer, cfg Config) (err error) {
	selected, err := selectSections(cfg.Only)
	if err != nil {
		return err
	}
	if cfg.URL == "" && (cfg.APIKey != "" || cfg.APISecret != "") || cfg.URL != "" && (cfg.APIKey == "" || cfg.APISecret == "") {
		return errors.New("bench: URL, APIKey and APISecret must be given together (or none, to start a local server)")
	}
	r := &runner{ctx: ctx, quick: cfg.Quick, log: cfg.Log, url: cfg.URL, key: cfg.APIKey, secret: cfg.APISecret,
		scaleN: cfg.ScaleParticipants, scaleD: cfg.ScaleDuration}
	if r.scaleN <= 0 {
		r.scaleN = DefaultScaleParticipants
	}
	if r.scaleD <= 0 {
		r.scaleD = DefaultScaleDuration
	}
	if r.log == nil {
		r.log = io.Discard
	}
	serverDesc := "existing server at " + cfg.URL
	if needsServer(selected) && cfg.URL == "" {
		r.logf("starting a local livekit-server")
		srv, serr := lkserver.Start(ctx, nil)
		if serr != nil {
			return fmt.Errorf("bench: starting a local server: %w", serr)
		}
		defer func() {
			if cerr := srv.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("bench: stopping the local server: %w", cerr)
			}
		}()
		r.url, r.key, r.secret = srv.URL(), srv.APIKey(), srv.APISecret()
		r.serverPID = srv.PID()
		serverDesc = "local livekit-server at " + srv.URL() + ", started for this run"
	}
	if !needsServer(selected) {
		serverDesc = "none needed"
	}
	if slices.ContainsFunc(selected, func(s section) bool { return s.name == SectionCluster }) {
		serverDesc += "; the cluster section starts its own cluster"
	}

	mode := "full"
	if cfg.Quick {
		mode = "quick"
	}
	fmt.Fprintf(out, "callstate %s benchmarks (%s run)\n", callstate.Version, mode)
	fmt.Fprintf(out, "%s %s/%s, %d CPUs (GOMAXPROCS %d)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Fprintf(out, "server: %s\n", serverDesc)
	fmt.Fprintf(out, "units: ms = milliseconds, MB = 10^6 bytes, KiB/MiB = 2^10/2^20 bytes\n")

	var errs []error
	for _, s := range selected {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("bench: %w", err))
			break
		}
		fmt.Fprintf(out, "\n== %s\n", s.title)
		r.logf("running %s", s.name)
		start := time.Now()
		serr := r.runSection(s, out)
		if serr != nil {
			fmt.Fprintf(out, "FAILED: %v\n", serr)
			errs = append(errs, fmt.Errorf("bench: %s: %w", s.name, serr))
		}
		r.logf("%s done in %v", s.name, time.Since(start).Round(time.Millisecond))
	}
	return errors.Join(errs...)
}

// selectSections returns the sections named in only, in report order.
func selectSections(only []string) ([]section, error) {
	if len(only) == 0 {
		var sel []section
		for _, s := range sections {
			if !s.optIn {
				sel = append(sel, s)
			}
		}
		return sel, nil
	}
	for _, name := range only {
		if !slices.ContainsFunc(sections, func(s section) bool { return s.name == name }) {
			return nil, fmt.Errorf("bench: unknown section %q (known: %s)", name, strings.Join(Sections(), ", "))
		}
	}
	var sel []section
	for _, s := range sections {
		if slices.Contains(only, s.name) {
			sel = append(sel, s)
		}
	}
	return sel, nil
}

// needsServer reports whether any of the sections talks to a server.
func needsServer(sel []section) bool {
	return slices.ContainsFunc(sel, func(s section) bool { return s.name != SectionLossy && s.name != SectionCluster })
}

// runner holds what the sections share.
type runner struct {
	ctx              context.Context
	quick            bool
	log              io.Writer
	logMu            sync.Mutex
	url, key, secret string
	serverPID        int // of the server Run started; 0 for an existing one
	scaleN           int
	scaleD           time.Duration
}

// runSection runs one section with its own deadline, so that a stuck
// measurement fails instead of hanging the run.
func (r *runner) runSection(s section, out io.Writer) error {
	parent := r.ctx
	timeout := s.timeout
	if s.name == SectionFootprint2000 {
		timeout = scaleTimeout(r.scaleD)
	}
	if timeout == 0 {
		timeout = sectionTimeout
	}
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	r.ctx = ctx
	defer func() { r.ctx = parent }()
	return s.run(r, out)
}

// pick returns full, or quick in a quick run.
func (r *runner) pick(full, quick int) int {
	if r.quick {
		return quick
	}
	return full
}

func (r *runner) logf(format string, args ...any) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	fmt.Fprintf(r.log, "bench: "+format+"\n", args...)
}

// roomName returns a room name unique to this run.
func roomName(section string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "bench-" + section + "-" + hex.EncodeToString(b)
}

// joinTimeout bounds one join.
const joinTimeout = 30 * time.Second

// joinRoom joins room as identity with lkserver.DefaultGrants over the
// loopback interface, and returns the Room and how long Join took.
func (r *runner) joinRoom(room, identity string, opts *callstate.JoinOptions) (*callstate.Room, time.Duration, error) {
	tok, err := callstate.NewToken(r.key, r.secret, callstate.Claims{Identity: identity, Grants: lkserver.DefaultGrants(room)})
	if err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(r.ctx, joinTimeout)
	defer cancel()
	start := time.Now()
	rm, err := callstate.Join(ctx, r.url, tok, opts)
	d := time.Since(start)
	if err != nil {
		return nil, 0, fmt.Errorf("%s joining %s: %w", identity, room, err)
	}
	return rm, d, nil
}

// rooms is a set of joined Rooms that are closed together.
// pair joins a sender and a receive-only receiver into room, adding both
// to rs.
func (r *runner) pair(room string, rs *rooms) (sender, receiver *callstate.Room, err error) {
	sender, _, err = r.joinRoom(room, "sender", nil)
	if err != nil {
		return nil, nil, err
	}
	rs.add(sender)
	receiver, _, err = r.joinRoom(room, "receiver", &callstate.JoinOptions{ReceiveOnly: true})
	if err != nil {
		return nil, nil, err
	}
	rs.add(receiver)
	return sender, receiver, nil
}

type rooms struct {
	mu   sync.Mutex
	list []*callstate.Room
}

func (rs *rooms) add(r *callstate.Room) {
	rs.mu.Lock()
	rs.list = append(rs.list, r)
	rs.mu.Unlock()
}

// closeAll closes every Room, in parallel, and returns when all are closed.
func (rs *rooms) closeAll() {
	rs.mu.Lock()
	list := rs.list
	rs.list = nil
	rs.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range list {
		wg.Go(func() { _ = r.Close() })
	}
	wg.Wait()
}

// table writes an aligned table: a header row, then rows, cells separated
// by tabs.
type table struct {
	tw *tabwriter.Writer
}

func newTable(out io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	fmt.Fprint(t.tw, "  "+strings.Join(cells, "\t")+"\n")
}

func (t *table) flush() { _ = t.tw.Flush() }
