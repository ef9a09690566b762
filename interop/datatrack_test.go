//go:build unix

package interop_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// dtSizes are the frame sizes sent both ways: 1 byte to 1 MiB.
var dtSizes = []int{1, 100, 1375, 1376, 1377, 4000, 16 << 10, 100 << 10, 176128, 500 << 10, 1 << 20}

// dtFrame is the frame of n bytes both sides expect (web/datatrack.js has
// the same function).
func dtFrame(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((i * 31) ^ n ^ (n >> 8))
	}
	return b
}

// TestBrowserDataTracks has livekit-client 2.23 in headless Chromium and a
// Go participant exchange data track frames of 1 byte to 1 MiB both ways,
// each checked byte for byte: the browser's publishDataTrack to callstate's
// SubscribeDataTrack, and callstate's PublishDataTrack to the browser's
// RemoteDataTrack.subscribe(). Frames up to 176,128 bytes go on a track
// with callstate's default 1,400-byte packets (TestDataTrackBetweenRooms
// checks their size on the wire); larger ones on a track with 16,000-byte packets, as livekit-client's own.
func TestBrowserDataTracks(t *testing.T) {
	if os.Getenv("CALLSTATE_BROWSER_TESTS") != "1" {
		t.Skip("browser interoperability test; run it with: bash interop/setup.sh && CALLSTATE_BROWSER_TESTS=1 go test ./interop")
	}
	app := loadPage(t, "datatrack.html", "datatrack.js")
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node is needed to drive the browser")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv := calltest.Shared(t)
	roomName := srv.RoomName(t)
	const goID, browserID = "go-bot", "browser"
	bot := srv.Join(t, roomName, goID, nil)
	events, data := bot.Subscribe(nil), bot.Subscribe(nil)

	web := app.serve(t)
	var sizes []string
	for _, n := range dtSizes {
		sizes = append(sizes, strconv.Itoa(n))
	}
	page := web.URL + "/?" + url.Values{
		"url": {srv.URL()}, "token": {srv.Token(roomName, browserID)}, "peer": {goID},
		"sizes": {strings.Join(sizes, ",")},
	}.Encode()

	done := make(chan driverRun, 1)
	driverCtx, driverExited := context.WithCancel(ctx)
	defer driverExited()
	go func() {
		defer driverExited()
		done <- runDriver(ctx, node, page, 2*time.Minute)
	}()
	driverOutput := func() string {
		select {
		case r := <-done:
			done <- r
			return fmt.Sprintf("driver: %v\n%s", r.err, r.stderr)
		default:
			return "driver still running"
		}
	}

	// Browser to Go.
	pub, err := calltest.AwaitEvent(driverCtx, events, time.Minute, func(e callstate.DataTrackPublished) bool {
		return e.Participant.Identity == browserID && e.Track.Name == "browser-frames"
	})
	require.NoError(t, err, "the browser published no data track: %s", driverOutput())
	rs, err := bot.SubscribeDataTrack(ctx, browserID, pub.Track.SID, nil)
	require.NoError(t, err)
	to := &callstate.PublishOptions{To: []string{browserID}}
	require.NoError(t, bot.PublishData(ctx, []byte("go"), &callstate.PublishOptions{To: to.To, Topic: "dt.ready"}))
	for _, n := range dtSizes {
		for {
			f, err := rs.Next(driverCtx)
			require.NoError(t, err, "waiting for the browser's frame of %d bytes: %s", n, driverOutput())
			if len(f.Payload) != n {
				continue // a frame pushed again before our ack reached the browser
			}
			require.True(t, bytes.Equal(dtFrame(n), f.Payload), "the browser's frame of %d bytes differs", n)
			require.NoError(t, bot.PublishData(ctx, []byte(strconv.Itoa(n)), &callstate.PublishOptions{To: to.To, Topic: "dt.ack"}))
			break
		}
	}
	t.Logf("browser to Go: every size received, %+v", rs.Stats())

	// Go to the browser.
	small, err := bot.PublishDataTrack(ctx, "go-frames", nil)
	require.NoError(t, err)
	big, err := bot.PublishDataTrack(ctx, "go-big", &callstate.DataTrackOptions{MaxPacketSize: 16000})
	require.NoError(t, err)
	for _, n := range dtSizes {
		tr := small
		if n > small.MaxFrameSize() {
			tr = big
		}
		want := fmt.Sprintf("%d ok", n)
		for attempt := 0; ; attempt++ {
			require.NoError(t, tr.Push(ctx, dtFrame(n), nil))
			e, err := calltest.AwaitEvent(driverCtx, data, 2*time.Second, func(e callstate.DataReceived) bool {
				return e.Data.From == browserID && e.Data.Topic == "dt.got" && strings.HasPrefix(string(e.Data.Payload), strconv.Itoa(n)+" ")
			})
			if err == nil {
				require.Equal(t, want, string(e.Data.Payload), "the browser's check of %d bytes", n)
				break
			}
			require.Less(t, attempt, 10, "the browser never got the frame of %d bytes: %s", n, driverOutput())
		}
	}

	var run driverRun
	select {
	case run = <-done:
	case <-ctx.Done():
		t.Fatalf("the browser did not finish: %v", ctx.Err())
	}
	require.NoError(t, run.err, "driver failed:\n%s", run.stderr)
	require.Nil(t, run.results.Error, "the browser app failed")
	assert.True(t, run.results.Done)
}
