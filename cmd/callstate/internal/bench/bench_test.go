package bench_test

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
	"github.com/callstate/callstate/cmd/callstate/internal/bench"
)

func TestMain(m *testing.M) { calltest.Main(m) }

// logWriter sends progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestRunQuick is the smoke test of the bench command: a quick run of every
// section against a local server succeeds, reports every section, and
// leaves no goroutine behind.
func TestRunQuick(t *testing.T) {
	srv := calltest.Shared(t)
	leaks := goleak.IgnoreCurrent()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := bench.Run(ctx, &out, bench.Config{
		URL:       srv.URL(),
		APIKey:    srv.APIKey(),
		APISecret: srv.APISecret(),
		Quick:     true,
		Log:       logWriter{t},
	})
	t.Log("\n" + out.String())
	require.NoError(t, err)
	report := out.String()
	for _, name := range bench.Sections() {
		if name == bench.SectionFootprint2000 {
			assert.NotContains(t, report, "\n== "+name+": ", "opt-in section %s runs only when named", name)
			continue
		}
		assert.Contains(t, report, "\n== "+name+": ", "section %s", name)
	}
	assert.NotContains(t, report, "FAILED")
	assert.Contains(t, report, "first packet delivered")
	assert.Regexp(t, `first packet delivered +\d+ .* 0 of \d+`, report, "no first packet lost")
	assert.Contains(t, report, "delivered msgs/s")
	assert.Regexp(t, `receive-only +\d+\.\d +\d+ KiB +\d+ KiB`, report, "footprint reports goroutines, RSS and heap")
	// The goroutines each participant costs: pion's (ICE, DTLS, SCTP, and
	// the SRTP sessions it starts on every PeerConnection) and four of
	// callstate's (the signalling reader and the three data channel
	// readers: _reliable, _lossy and _data_track).
	for style, limit := range map[string]float64{"receive-only": 20, "publishing": 20} {
		m := regexp.MustCompile(`(?m)^  ` + style + ` +(\d+\.\d)`).FindStringSubmatch(report)
		if assert.NotNil(t, m, style) {
			g, err := strconv.ParseFloat(m[1], 64)
			require.NoError(t, err)
			assert.LessOrEqual(t, g, limit, "goroutines per %s participant", style)
		}
	}
	for _, unit := range []string{"ms", "MB/s", "msgs/s", "allocs/fragment", "KiB"} {
		assert.Contains(t, report, unit)
	}
	goleak.VerifyNone(t, leaks)
}

// TestRunFootprint2000Small runs the opt-in scale section, scaled down:
// both layouts are reported, every participant stayed connected, and no
// goroutine is left behind.
func TestRunFootprint2000Small(t *testing.T) {
	srv := calltest.Shared(t)
	leaks := goleak.IgnoreCurrent()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := bench.Run(ctx, &out, bench.Config{
		URL:               srv.URL(),
		APIKey:            srv.APIKey(),
		APISecret:         srv.APISecret(),
		Only:              []string{bench.SectionFootprint2000},
		ScaleParticipants: 20,
		ScaleDuration:     time.Second,
		Log:               logWriter{t},
	})
	t.Log("\n" + out.String())
	require.NoError(t, err)
	report := out.String()
	assert.Contains(t, report, "\n== footprint2000: ")
	assert.Contains(t, report, "2 rooms of 10")
	assert.Contains(t, report, "1 room of 20")
	assert.Equal(t, 2, strings.Count(report, "20 of 20"), "every participant connected in both layouts")
	assert.Regexp(t, `\d+\.\d%`, report, "idle CPU")
	goleak.VerifyNone(t, leaks)
}

// TestRunOnly runs one section alone, the one that needs no server: the
// report has that section only.
func TestRunOnly(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, bench.Run(context.Background(), &out, bench.Config{Quick: true, Only: []string{bench.SectionLossy}}))
	report := out.String()
	assert.Contains(t, report, "\n== lossy: ")
	assert.Equal(t, 1, strings.Count(report, "\n== "))
	assert.Contains(t, report, "server: none needed")
}

func TestRunRefusesBadConfig(t *testing.T) {
	var out bytes.Buffer
	err := bench.Run(context.Background(), &out, bench.Config{Only: []string{"nope"}})
	require.ErrorContains(t, err, `unknown section "nope"`)
	err = bench.Run(context.Background(), &out, bench.Config{URL: "ws://127.0.0.1:1"})
	require.ErrorContains(t, err, "must be given together")
	assert.Empty(t, out.String(), "nothing is printed for a refused configuration")
}

// TestRunReportsFailure checks that a section that fails is reported in
// its place and in the error, and that the other sections still run.
func TestRunReportsFailure(t *testing.T) {
	srv := calltest.Shared(t)
	var out bytes.Buffer
	err := bench.Run(context.Background(), &out, bench.Config{
		URL: srv.URL(), APIKey: srv.APIKey(), APISecret: strings.Repeat("x", 40), // tokens the server refuses
		Quick: true, Only: []string{bench.SectionJoin, bench.SectionLossy},
	})
	require.ErrorIs(t, err, callstate.ErrBadToken)
	assert.ErrorContains(t, err, "bench: join: ")
	report := out.String()
	assert.Contains(t, report, "\n== join: ")
	assert.Contains(t, report, "FAILED: ")
	assert.Contains(t, report, "\n== lossy: ")
	assert.Contains(t, report, "allocs/fragment")
}

// TestRunStopsWithContext checks that Run stops when its context ends.
func TestRunStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	err := bench.Run(ctx, &out, bench.Config{Quick: true, Only: []string{bench.SectionLossy}})
	require.ErrorIs(t, err, context.Canceled)
	assert.NotContains(t, out.String(), "allocs/fragment")
}

func TestSections(t *testing.T) {
	assert.Equal(t, []string{"join", "throughput", "transfer", "lossy", "datatrack", "session", "footprint", "cluster", "footprint2000"}, bench.Sections())
}
