//go:build unix

package interop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

func TestMain(m *testing.M) { calltest.Main(m) }

const (
	// testTimeout bounds the whole test, browser start included.
	testTimeout = 2 * time.Minute
	// browserTimeout bounds each wait for the browser: its start and join,
	// and its answer.
	browserTimeout = 60 * time.Second
)

// browserResults is what web/app.js reports in window.results.
type browserResults struct {
	Done               bool            `json:"done"`
	Error              *string         `json:"error"`
	Identity           string          `json:"identity"`
	Sent               bool            `json:"sent"`
	ConnectMs          *float64        `json:"connectMs"`
	PeerMetadata       *string         `json:"peerMetadata"`
	PeerMetadataEvents int             `json:"peerMetadataEvents"`
	RoomMetadata       *string         `json:"roomMetadata"`
	RoomMetadataObject json.RawMessage `json:"roomMetadataObject"`
	AppMessages        []struct {
		From string          `json:"from"`
		Data json.RawMessage `json:"data"`
	} `json:"appMessages"`
	Data []struct {
		From    string `json:"from"`
		Topic   string `json:"topic"`
		Payload string `json:"payload"`
	} `json:"data"`
}

// driverRun is the outcome of driver.mjs.
type driverRun struct {
	results *browserResults
	raw     []byte // the results as JSON, for pages that report others
	err     error
	stderr  string
}

// TestBrowser has a Go participant and a livekit-client app in headless
// Chromium exchange state in one room. The exchange is a ping-pong, so that
// every step is observed as a change:
//
//  1. the Go participant joins; the browser joins;
//  2. Go sets its user data and the session data;
//  3. the browser, once it sees Go's metadata, sets its own metadata to JSON
//     user data and sends Go an app message and a data packet with a topic;
//  4. Go, once it has all three, sends the browser an app message and a data
//     packet with a topic;
//  5. the browser reports what it saw.
//
// The Go participant uses one PeerConnection (callstate's default); the
// browser runs in both of livekit-client's modes, one PeerConnection (its
// default) and two.
func TestBrowser(t *testing.T) {
	if os.Getenv("CALLSTATE_BROWSER_TESTS") != "1" {
		t.Skip("browser interoperability test; run it with: bash interop/setup.sh && CALLSTATE_BROWSER_TESTS=1 go test ./interop")
	}
	t.Run("browser-single-pc", func(t *testing.T) { testBrowser(t, true) })
	t.Run("browser-two-pcs", func(t *testing.T) { testBrowser(t, false) })
}

func testBrowser(t *testing.T, browserSinglePC bool) {
	app := loadPage(t, "index.html", "app.js")
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node is needed to drive the browser")
	_, err = os.Stat(filepath.Join("web", "node_modules", "playwright-core"))
	require.NoError(t, err, "playwright-core is missing: run bash interop/setup.sh")

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	srv := calltest.Shared(t)
	roomName := srv.RoomName(t)
	const goID, browserID = "go-bot", "browser"
	bot := srv.Join(t, roomName, goID, nil)
	joined, updated, apps, data := bot.Subscribe(nil), bot.Subscribe(nil), bot.Subscribe(nil), bot.Subscribe(nil)

	// What each side sends.
	goUserData := map[string]any{"role": "bot", "lang": "go", "n": 1}
	goSession := map[string]any{"agenda": []string{"intro", "demo"}, "locked": true}
	goAppMessage := map[string]any{"text": "hello from go", "n": 2}
	const goTopic, goPayload = "go.topic", "plain bytes from go"
	const browserUserData = `{"role":"viewer","lang":"js","hand":true}`
	const browserAppMessage = `{"text":"hello from the browser","n":3}`
	const browserTopic, browserPayload = "browser.topic", "plain bytes from the browser"

	// The page and its bundle.
	web := app.serve(t)
	page := web.URL + "/?" + url.Values{
		"url":        {srv.URL()},
		"token":      {srv.Token(roomName, browserID)},
		"peer":       {goID},
		"userData":   {browserUserData},
		"appMessage": {browserAppMessage},
		"topic":      {browserTopic},
		"payload":    {browserPayload},
		"singlePC":   {strconv.FormatBool(browserSinglePC)},
	}.Encode()

	// The browser. driverCtx ends when the driver exits, so that a browser
	// that fails ends the waits below at once.
	start := time.Now()
	driverCtx, driverExited := context.WithCancel(ctx)
	defer driverExited()
	done := make(chan driverRun, 1)
	go func() {
		defer driverExited()
		done <- runDriver(ctx, node, page, 2*browserTimeout)
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

	// 1, 2: the browser joins; Go sets its user data and the session data.
	_, err = calltest.AwaitEvent(driverCtx, joined, browserTimeout, func(e callstate.ParticipantJoined) bool {
		return e.Participant.Identity == browserID
	})
	require.NoError(t, err, "the browser did not join: %s", driverOutput())
	t.Logf("browser joined after %v", time.Since(start).Round(time.Millisecond))
	// livekit-client emits participant events only once its room is
	// connected, which may be after the server announced it: wait for the
	// browser to say so.
	_, err = calltest.AwaitEvent(driverCtx, data, browserTimeout, func(e callstate.DataReceived) bool {
		return e.Data.From == browserID && e.Data.Topic == "interop.ready"
	})
	require.NoError(t, err, "the browser did not connect: %s", driverOutput())
	require.NoError(t, bot.SetUserData(ctx, goUserData))
	require.NoError(t, bot.SetSessionData(ctx, goSession, callstate.ShallowMerge))

	// 3: Go sees the browser's user data, app message and data packet.
	upd, err := calltest.AwaitEvent(driverCtx, updated, browserTimeout, func(e callstate.ParticipantUpdated) bool {
		_, ok := e.Participant.UserData()
		return e.Participant.Identity == browserID && ok
	})
	require.NoError(t, err, "no user data from the browser: %s", driverOutput())
	ud, _ := upd.Participant.UserData()
	assert.JSONEq(t, browserUserData, string(ud))
	var decoded struct {
		Role string `json:"role"`
		Hand bool   `json:"hand"`
	}
	require.NoError(t, upd.Participant.DecodeUserData(&decoded))
	assert.Equal(t, "viewer", decoded.Role)
	assert.True(t, decoded.Hand)

	msg, err := calltest.AwaitEvent(driverCtx, apps, browserTimeout, func(e callstate.AppMessage) bool {
		return e.From == browserID
	})
	require.NoError(t, err, "no app message from the browser: %s", driverOutput())
	assert.JSONEq(t, browserAppMessage, string(msg.Data))

	dr, err := calltest.AwaitEvent(driverCtx, data, browserTimeout, func(e callstate.DataReceived) bool {
		return e.Data.From == browserID && e.Data.Topic == browserTopic
	})
	require.NoError(t, err, "no data packet from the browser: %s", driverOutput())
	assert.Equal(t, browserTopic, dr.Data.Topic)
	assert.Equal(t, browserPayload, string(dr.Data.Payload))
	assert.Equal(t, callstate.Reliable, dr.Data.Kind)

	// 4: Go answers the browser.
	require.NoError(t, bot.SendAppMessage(ctx, goAppMessage, browserID))
	require.NoError(t, bot.PublishData(ctx, []byte(goPayload), &callstate.PublishOptions{Topic: goTopic, To: []string{browserID}}))

	// 5: what the browser saw.
	var run driverRun
	select {
	case run = <-done:
	case <-ctx.Done():
		t.Fatalf("the browser did not finish: %v", ctx.Err())
	}
	require.NoError(t, run.err, "driver failed:\n%s", run.stderr)
	res := run.results
	if res.ConnectMs != nil {
		t.Logf("the browser's room.connect took %v ms", *res.ConnectMs)
	}
	t.Logf("browser done after %v", time.Since(start).Round(time.Millisecond))
	require.Nil(t, res.Error, "the browser app failed")
	assert.True(t, res.Done)
	assert.Equal(t, browserID, res.Identity)

	// Go's user data, as the browser's view of its metadata.
	require.NotNil(t, res.PeerMetadata)
	goUserJSON, err := json.Marshal(goUserData)
	require.NoError(t, err)
	assert.JSONEq(t, string(goUserJSON), *res.PeerMetadata)
	assert.Positive(t, res.PeerMetadataEvents, "the browser saw no ParticipantMetadataChanged")
	assert.Equal(t, bot.LocalParticipant().Metadata, *res.PeerMetadata)

	// The session data, as a JSON object in the room metadata, with
	// callstate's reserved key beside the session data's keys.
	require.NotNil(t, res.RoomMetadata)
	assert.Equal(t, bot.Metadata(), *res.RoomMetadata)
	var roomObj map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(res.RoomMetadataObject, &roomObj), "room metadata is not a JSON object in the browser: %s", *res.RoomMetadata)
	assert.Contains(t, roomObj, callstate.SessionDataKey)
	assert.Equal(t, "__callstate", callstate.SessionDataKey)
	assert.JSONEq(t, `["intro","demo"]`, string(roomObj["agenda"]))
	assert.JSONEq(t, `true`, string(roomObj["locked"]))
	assert.Len(t, roomObj, 3, "session data keys and the reserved key: %s", *res.RoomMetadata)

	// Go's app message, on callstate's topic, as JSON.
	require.Len(t, res.AppMessages, 1)
	assert.Equal(t, goID, res.AppMessages[0].From)
	assert.JSONEq(t, `{"text":"hello from go","n":2}`, string(res.AppMessages[0].Data))

	// Go's data packet, with its topic.
	require.Len(t, res.Data, 1)
	assert.Equal(t, goID, res.Data[0].From)
	assert.Equal(t, goTopic, res.Data[0].Topic)
	assert.Equal(t, goPayload, res.Data[0].Payload)
}

// runDriver runs driver.mjs on page and decodes the results it prints. The
// driver runs in a process group of its own, killed when ctx ends and once
// the driver has exited. The driver closes the browser before it exits; a
// browser whose driver was killed exits when its pipe to the driver closes.
func runDriver(ctx context.Context, node, page string, timeout time.Duration) driverRun {
	cmd := exec.CommandContext(ctx, node, "driver.mjs", page, fmt.Sprint(timeout.Milliseconds()))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if cmd.Process != nil {
		// Anything left of the group once the driver has gone.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	run := driverRun{err: err, stderr: stderr.String(), raw: bytes.TrimSpace(stdout.Bytes())}
	var res browserResults
	if jerr := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); jerr != nil {
		run.err = errors.Join(err, fmt.Errorf("driver output is not JSON results: %w: %q", jerr, stdout.String()))
		return run
	}
	run.results = &res
	return run
}

// webPage is a page of the browser tests and its bundled script, served to
// headless Chromium from a local HTTP server.
type webPage struct {
	html, js []byte
	bundle   string // the script's name under dist/
}

// loadPage reads web/<html> and web/dist/<bundle>, which interop/setup.sh
// builds.
func loadPage(t *testing.T, html, bundle string) webPage {
	t.Helper()
	js, err := os.ReadFile(filepath.Join("web", "dist", bundle))
	require.NoError(t, err, "the bundled web app is missing: run bash interop/setup.sh")
	page, err := os.ReadFile(filepath.Join("web", html))
	require.NoError(t, err)
	return webPage{html: page, js: js, bundle: bundle}
}

// serve serves the page at / and its script at /dist/<bundle> until the
// test ends.
func (p webPage) serve(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(p.html)
	})
	mux.HandleFunc("GET /dist/"+p.bundle, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		_, _ = w.Write(p.js)
	})
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)
	return web
}
