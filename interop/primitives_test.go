//go:build unix

package interop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// primitivesResults is what web/primitives.js reports in window.results.
type primitivesResults struct {
	Done  bool    `json:"done"`
	Error *string `json:"error"`
	Rpc   map[string]struct {
		OK      bool    `json:"ok"`
		Payload string  `json:"payload"`
		Code    int     `json:"code"`
		Message string  `json:"message"`
		Data    *string `json:"data"`
	} `json:"rpc"`
	CalledByGo []struct {
		Method string `json:"method"`
		Caller string `json:"caller"`
		Length int    `json:"length"`
	} `json:"calledByGo"`
	Bytes []struct {
		From   string            `json:"from"`
		Name   string            `json:"name"`
		Mime   string            `json:"mime"`
		Attrs  map[string]string `json:"attrs"`
		Size   *int              `json:"size"`
		N      int               `json:"n"`
		Head   string            `json:"head"`
		Chunks int               `json:"chunks"`
	} `json:"bytes"`
	Texts []struct {
		From  string            `json:"from"`
		Parts int               `json:"parts"`
		Text  string            `json:"text"`
		Attrs map[string]string `json:"attrs"`
	} `json:"texts"`
	Chats []struct {
		From string `json:"from"`
		Text string `json:"text"`
	} `json:"chats"`
	Compressed []struct {
		Topic string `json:"topic"`
		Size  *int   `json:"size"`
		N     int    `json:"n"`
		OK    bool   `json:"ok"`
	} `json:"compressed"`
	BrowserDone bool `json:"browserDone"`
	Left        bool `json:"left"`
}

// TestBrowserPrimitives exchanges RPC calls, data streams and chat between
// a callstate participant and livekit-client 2.23 in headless Chromium:
// RPC both ways (success, application error with data, unsupported method,
// timeout, a payload over the v1 limit through v2, the caller leaving, the
// callee leaving), the browser's sendFile and streamText read incrementally
// by callstate's handlers, callstate's writers read by the browser's
// handlers, chat both ways (streams and the legacy packet), and raw deflate
// compression both ways (the browser's sendText and sendFile, callstate's
// SendText and SendBytes), each side having seen the other's capability.
func TestBrowserPrimitives(t *testing.T) {
	if os.Getenv("CALLSTATE_BROWSER_TESTS") != "1" {
		t.Skip("browser interoperability test; run it with: bash interop/setup.sh && CALLSTATE_BROWSER_TESTS=1 go test ./interop")
	}
	app := loadPage(t, "index.html", "app.js")
	require.Contains(t, string(app.js), "primitives", "the bundle is older than primitives.js: run bash interop/setup.sh")
	node, err := exec.LookPath("node")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	srv := calltest.Shared(t)
	roomName := srv.RoomName(t)
	const goID, browserID = "go-bot", "browser"
	bot := srv.Join(t, roomName, goID, nil)
	events := bot.Subscribe(nil)

	// Go's handlers, before the browser joins.
	holdLeaving := make(chan struct{}, 1)
	holdCause := make(chan error, 1)
	require.NoError(t, bot.RegisterRpcMethod("echo", func(_ context.Context, inv callstate.RpcInvocation) (string, error) {
		return "echo:" + inv.Payload, nil
	}))
	require.NoError(t, bot.RegisterRpcMethod("fail", func(context.Context, callstate.RpcInvocation) (string, error) {
		return "", callstate.NewRpcError(2002, "go nope", "go detail")
	}))
	require.NoError(t, bot.RegisterRpcMethod("hold", func(hctx context.Context, inv callstate.RpcInvocation) (string, error) {
		if inv.Payload == "leaving" {
			holdLeaving <- struct{}{}
		}
		<-hctx.Done()
		if inv.Payload == "leaving" {
			holdCause <- context.Cause(hctx)
		}
		return "", nil
	}))
	type fileRead struct {
		info      callstate.StreamInfo
		n         int
		ok        bool
		firstRecv int64
		err       error
	}
	files := make(chan fileRead, 1)
	require.NoError(t, bot.RegisterByteStreamHandler("browser-file", func(br *callstate.ByteStreamReader) {
		res := fileRead{info: br.Info(), ok: true, firstRecv: -1}
		buf := make([]byte, 64<<10)
		for {
			n, err := br.Read(buf)
			if n > 0 && res.firstRecv < 0 {
				res.firstRecv = br.BytesReceived()
			}
			for i := range buf[:n] {
				res.ok = res.ok && buf[i] == byte(res.n+i)
			}
			res.n += n
			if err != nil {
				if !errors.Is(err, io.EOF) {
					res.err = err
				}
				break
			}
		}
		files <- res
	}))
	type zRead struct {
		info callstate.StreamInfo
		data string
		err  error
	}
	zreads := make(chan zRead, 3)
	require.NoError(t, bot.RegisterTextStreamHandler("browser-ztext", func(tr *callstate.TextStreamReader) {
		s, err := tr.ReadAll()
		zreads <- zRead{tr.Info(), s, err}
	}))
	require.NoError(t, bot.RegisterByteStreamHandler("browser-zfile", func(br *callstate.ByteStreamReader) {
		b, err := io.ReadAll(br)
		zreads <- zRead{br.Info(), string(b), err}
	}))
	texts := make(chan string, 1)
	require.NoError(t, bot.RegisterTextStreamHandler("browser-text", func(tr *callstate.TextStreamReader) {
		// The first part arrives while the browser's writer is open: the
		// browser writes the second only once Go has read the first.
		var got []byte
		buf := make([]byte, 1024)
		for !bytes.Contains(got, []byte("part one|")) {
			n, err := tr.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				texts <- "error before part two: " + err.Error()
				return
			}
		}
		if err := bot.PublishData(ctx, []byte("got part one"), &callstate.PublishOptions{Topic: "ctl", To: []string{browserID}}); err != nil {
			texts <- err.Error()
			return
		}
		rest, err := io.ReadAll(tr)
		if err != nil {
			texts <- err.Error()
			return
		}
		texts <- string(got) + string(rest)
	}))

	// The page.
	web := app.serve(t)
	page := web.URL + "/?" + url.Values{
		"mode":  {"primitives"},
		"url":   {srv.URL()},
		"token": {srv.Token(roomName, browserID)},
		"peer":  {goID},
	}.Encode()
	driverCtx, driverExited := context.WithCancel(ctx)
	defer driverExited()
	done := make(chan driverRun, 1)
	go func() {
		defer driverExited()
		done <- runDriver(ctx, node, page, 2*browserTimeout)
	}()

	_, err = calltest.AwaitEvent(driverCtx, events, browserTimeout, func(e callstate.ParticipantJoined) bool {
		return e.Participant.Identity == browserID
	})
	require.NoError(t, err, "the browser did not join")

	// Go -> browser RPC.
	out, err := bot.PerformRpc(ctx, browserID, "echo", "hi", nil)
	require.NoError(t, err)
	assert.Equal(t, "echo:hi", out)
	big := strings.Repeat("y", 40000)
	out, err = bot.PerformRpc(ctx, browserID, "echo", big, nil)
	require.NoError(t, err, "a payload over the v1 limit, through v2 both ways")
	assert.Equal(t, "echo:"+big, out)
	_, err = bot.PerformRpc(ctx, browserID, "fail", "", nil)
	var re *callstate.RpcError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, callstate.RpcErrorCode(2001), re.Code)
	assert.Equal(t, "nope", re.Message)
	assert.Equal(t, "js detail", re.Data)
	_, err = bot.PerformRpc(ctx, browserID, "nosuch", "", nil)
	require.ErrorAs(t, err, &re)
	assert.Equal(t, callstate.RpcUnsupportedMethod, re.Code)
	_, err = bot.PerformRpc(ctx, browserID, "slow", "", &callstate.RpcOptions{ResponseTimeout: time.Second})
	require.ErrorAs(t, err, &re)
	assert.Equal(t, callstate.RpcResponseTimeout, re.Code)

	// Go's writers -> the browser's handlers; Go's chat.
	w, err := bot.StreamBytes(ctx, &callstate.StreamOptions{Topic: "go-bytes", To: []string{browserID}, Name: "go.bin", MimeType: "application/x-go", Attributes: map[string]string{"lang": "go"}})
	require.NoError(t, err)
	for i := range 10 {
		_, err := w.Write(bytes.Repeat([]byte{'a' + byte(i)}, 30_000))
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	tw, err := bot.StreamText(ctx, &callstate.StreamOptions{Topic: "go-text", To: []string{browserID}, Attributes: map[string]string{"k": "v"}})
	require.NoError(t, err)
	for _, s := range []string{"un ", "deux ", "trois"} {
		_, err := tw.WriteString(s)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	_, err = bot.SendChatMessage(ctx, "hello from go chat", nil)
	require.NoError(t, err)

	// Go's one-shot sends, compressed for the browser, which advertises
	// raw deflate: a text inline in its header, a text and bytes in chunks.
	pb, ok := bot.Participant(browserID)
	require.True(t, ok)
	assert.True(t, pb.DeflateStreams, "livekit-client in Chromium advertises deflate-raw")
	for _, n := range []int{6000, 300_000} {
		info, err := bot.SendText(ctx, jsonish(n), &callstate.StreamOptions{Topic: "go-ztext", To: []string{browserID}})
		require.NoError(t, err)
		assert.True(t, info.Compressed, "%d bytes of text sent compressed", n)
	}
	info, err := bot.SendBytes(ctx, []byte(jsonish(500_000)), &callstate.StreamOptions{Topic: "go-zbytes", To: []string{browserID}})
	require.NoError(t, err)
	assert.True(t, info.Compressed)

	// The browser's streams, read incrementally.
	select {
	case f := <-files:
		require.NoError(t, f.err)
		assert.Equal(t, 3<<20, f.n)
		assert.True(t, f.ok, "content as sent")
		assert.Equal(t, "browser.bin", f.info.Name)
		assert.Equal(t, "application/x-browser", f.info.MimeType)
		// livekit-client's sendFile does not send the attributes it is given.
		assert.Equal(t, int64(3<<20), f.info.Size)
		assert.Less(t, f.firstRecv, int64(3<<20), "read before the file had arrived whole")
	case <-driverCtx.Done():
		t.Fatal("no file from the browser")
	}
	select {
	case s := <-texts:
		assert.Equal(t, "part one|part two", s)
	case <-driverCtx.Done():
		t.Fatal("no text stream from the browser")
	}
	// The browser's compressed sends, inflated byte-exact.
	for _, want := range []struct {
		topic string
		n     int
	}{{"browser-ztext", 6000}, {"browser-ztext", 200000}, {"browser-zfile", 1 << 20}} {
		select {
		case z := <-zreads:
			require.NoError(t, z.err)
			assert.Equal(t, want.topic, z.info.Topic)
			assert.True(t, z.info.Compressed, "%s of %d bytes came compressed", want.topic, want.n)
			assert.Equal(t, int64(want.n), z.info.Size, "the size before compression")
			assert.Equal(t, len(jsonish(want.n)), len(z.data))
			assert.True(t, z.data == jsonish(want.n), "%s of %d bytes as sent", want.topic, want.n)
		case <-driverCtx.Done():
			t.Fatalf("no %s of %d bytes from the browser", want.topic, want.n)
		}
	}
	// Chat from the browser: the text stream and the legacy packet.
	var stream, legacy bool
	for !stream || !legacy {
		m, err := calltest.AwaitEvent(driverCtx, events, browserTimeout, func(e callstate.ChatMessage) bool { return e.From == browserID })
		require.NoError(t, err, "chat from the browser")
		if m.Legacy {
			legacy = true
			assert.Equal(t, "legacy hello", m.Text)
		} else {
			stream = true
			assert.Equal(t, "hello from browser chat", m.Text)
		}
	}

	// The browser calls and leaves: Go's handler sees its ctx end; Go's
	// call to the leaving browser fails at once with 1503.
	select {
	case <-holdLeaving:
	case <-driverCtx.Done():
		t.Fatal("the browser's last call did not arrive")
	}
	start := time.Now()
	_, err = bot.PerformRpc(ctx, browserID, "leave", "", nil)
	require.ErrorAs(t, err, &re)
	assert.Equal(t, callstate.RpcRecipientDisconnected, re.Code)
	assert.Less(t, time.Since(start), 5*time.Second)
	select {
	case cause := <-holdCause:
		assert.ErrorIs(t, cause, callstate.ErrRpcCallerLeft)
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's ctx did not end when the browser left")
	}

	var run driverRun
	select {
	case run = <-done:
	case <-ctx.Done():
		t.Fatal("the browser did not finish")
	}
	require.NoError(t, run.err, "driver failed:\n%s", run.stderr)
	var res primitivesResults
	require.NoError(t, json.Unmarshal(run.raw, &res))
	require.Nil(t, res.Error, "the browser app failed")

	// Browser -> Go RPC, as the browser saw it.
	rpc := res.Rpc
	assert.True(t, rpc["echo"].OK, "%+v", rpc["echo"])
	assert.Equal(t, "echo:hi", rpc["echo"].Payload)
	assert.False(t, rpc["fail"].OK)
	assert.Equal(t, 2002, rpc["fail"].Code)
	assert.Equal(t, "go nope", rpc["fail"].Message)
	require.NotNil(t, rpc["fail"].Data)
	assert.Equal(t, "go detail", *rpc["fail"].Data)
	assert.Equal(t, 1400, rpc["nosuch"].Code)
	assert.Equal(t, 1502, rpc["timeout"].Code)
	assert.True(t, rpc["big"].OK, "code %d: %s", rpc["big"].Code, rpc["big"].Message)
	assert.Len(t, rpc["big"].Payload, len("echo:")+40000)
	require.Len(t, res.CalledByGo, 2)
	assert.Equal(t, goID, res.CalledByGo[0].Caller)

	// Go's streams and chat, as the browser's handlers read them.
	require.Len(t, res.Bytes, 1)
	b := res.Bytes[0]
	assert.Equal(t, goID, b.From)
	assert.Equal(t, "go.bin", b.Name)
	assert.Equal(t, "application/x-go", b.Mime)
	assert.Equal(t, "go", b.Attrs["lang"])
	assert.Equal(t, 300_000, b.N)
	assert.Equal(t, strings.Repeat("a", 16), b.Head)
	assert.Greater(t, b.Chunks, 1)
	require.Len(t, res.Texts, 1)
	assert.Equal(t, "un deux trois", res.Texts[0].Text)
	assert.Equal(t, "v", res.Texts[0].Attrs["k"])
	require.Len(t, res.Chats, 1)
	assert.Equal(t, "hello from go chat", res.Chats[0].Text)
	assert.Equal(t, goID, res.Chats[0].From)
	// Go's compressed streams, as the browser's handlers read them.
	// The handlers run concurrently: matched by topic and length.
	require.Len(t, res.Compressed, 3)
	seen := map[string]bool{}
	for _, z := range res.Compressed {
		seen[fmt.Sprint(z.Topic, " ", z.N)] = true
		require.NotNil(t, z.Size)
		assert.Equal(t, z.N, *z.Size)
		assert.True(t, z.OK, "%s of %d bytes as sent", z.Topic, z.N)
	}
	assert.Equal(t, map[string]bool{"go-ztext 6000": true, "go-ztext 300000": true, "go-zbytes 500000": true}, seen)
}

// jsonish returns n bytes of JSON-like records, as web/primitives.js's
// jsonish does.
func jsonish(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"id":%d,"name":"user-%d","ok":%t},`, i, (i*7919)%10007, i%3 == 0)
	}
	return b.String()[:n]
}
