package main

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs a whole scripted call")
	}
	t.Parallel()
	srv := calltest.Shared(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	r := runCmd(ctx, nil, nil, "demo", "-url", srv.URL(), "-api-key", srv.APIKey(), "-api-secret", srv.APISecret())
	t.Logf("demo took %v:\n%s", time.Since(start), r.stdout)
	require.Equal(t, exitOK, r.code, "stderr: %s", r.stderr)

	checklist := r.stdout[strings.Index(r.stdout, "Checklist:"):]
	assert.NotContains(t, r.stdout, "✗")
	for _, f := range []string{featJoin, featUserData, featMetadata, featName, featAttributes, featSessReplace,
		featSessMerge, featAppBcast, featAppTo, featReliable, featLossy, featLargeRel, featLargeLossy,
		featLateJoiner, featPresence, featRpc, featRpcError, featRpcServer, featTextStream, featByteStream,
		featChat, featEventJSON, featDataTrack, featSignals, featRemove} {
		assert.Contains(t, checklist, "✓ "+f)
	}
	// With -url the server's webhooks go elsewhere: the step is listed,
	// not run, and not counted.
	assert.Contains(t, checklist, "– "+featWebhooks+" (not run:")
	assert.Contains(t, r.stdout, "25 of 25 features observed")
	assert.Regexp(t, `alice saw participant_joined erin [0-9.]+ms (after|before) erin's Join returned`, r.stdout)
	assert.Regexp(t, `MarshalEvent writes it: \{"type":"chat",[^\n]*"text":"the demo is nearly over 👋"`, r.stdout)
}

// TestDemoOwnServer runs the demo as a user does, without -url: it starts
// its own server, which posts its webhooks to the demo's endpoint.
func TestDemoOwnServer(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs a whole scripted call")
	}
	t.Parallel()
	calltest.Shared(t) // the server's binary is installed
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	r := runCmd(ctx, nil, nil, "demo")
	t.Logf("demo:\n%s", r.stdout)
	require.Equal(t, exitOK, r.code, "stderr: %s", r.stderr)
	checklist := r.stdout[strings.Index(r.stdout, "Checklist:"):]
	assert.Contains(t, checklist, "✓ "+featWebhooks)
	assert.Regexp(t, `verified \(signed with the server's API key\) participant_joined for alice, bob, carol, erin`, r.stdout)
	assert.Contains(t, r.stdout, "26 of 26 features observed")
	assert.Contains(t, r.stdout, "Local server stopped")
}

// TestDemoFailsWhenUnobserved runs the demo against a server that refuses
// its tokens: every step fails and the exit status says so.
func TestDemoFailsWhenUnobserved(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	r := runCmd(ctx, nil, nil, "demo", "-url", srv.URL(), "-api-key", srv.APIKey(), "-api-secret", "wrong-secret-0123456789abcdef0123456789")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stdout, "✗ "+featJoin)
	assert.Contains(t, r.stdout, "0 of 25 features observed")
	assert.NotContains(t, r.stdout, "✓")
	assert.Contains(t, r.stdout, "✗ "+featRpc)
}

// TestServe starts the development server in process, uses it, and stops
// it by cancelling the context as SIGINT does.
func TestServe(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	outR, outW := io.Pipe()
	done := make(chan int, 1)
	go func() {
		defer outW.Close()
		done <- run(ctx, []string{"serve", "-api-key", testKey, "-api-secret", testSecret, "-room", "r1", "-identity", "zoe"}, &env{
			stdin: strings.NewReader(""), stdout: outW, stderr: io.Discard, getenv: func(string) string { return "" },
		})
	}()
	var url, token string
	sc := bufio.NewScanner(outR)
	for sc.Scan() && (url == "" || token == "") {
		l := strings.TrimSpace(sc.Text())
		if u, ok := strings.CutPrefix(l, "URL:"); ok {
			url = strings.TrimSpace(u)
		}
		if strings.HasPrefix(l, "eyJ") {
			token = l
		}
	}
	require.NotEmpty(t, url, "the URL line")
	require.NotEmpty(t, token, "the token line")
	c, err := callstate.ParseToken(token, testSecret)
	require.NoError(t, err)
	assert.Equal(t, "zoe", c.Identity)
	assert.Equal(t, "r1", c.Grants.Room)

	jctx, jcancel := context.WithTimeout(ctx, 30*time.Second)
	defer jcancel()
	room, err := callstate.Join(jctx, url, token, nil)
	require.NoError(t, err)
	assert.Equal(t, "r1", room.Name())
	require.NoError(t, room.Close())

	go func() { _, _ = io.Copy(io.Discard, outR) }()
	cancel()
	select {
	case code := <-done:
		assert.Equal(t, exitOK, code)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	rs, err := callstate.NewRoomService(url, testKey, testSecret, nil)
	require.NoError(t, err)
	sctx, scancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer scancel()
	_, err = rs.ListRooms(sctx)
	assert.Error(t, err, "the server is stopped")
}
