package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// lkVars names the shared server with LiveKit's environment variables.
func lkVars(srv *calltest.Server) map[string]string {
	return map[string]string{"LIVEKIT_URL": srv.URL(), "LIVEKIT_API_KEY": srv.APIKey(), "LIVEKIT_API_SECRET": srv.APISecret()}
}

// jsonLines decodes each line of out.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var ls []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		ls = append(ls, m)
	}
	return ls
}

func TestRoomCommands(t *testing.T) {
	srv := calltest.Shared(t)
	vars := lkVars(srv)
	ctx := t.Context()
	room := srv.RoomName(t)

	r := runCmd(ctx, nil, vars, "room", "create", "-max-participants", "4", room, "-metadata", `{"a":1}`)
	require.Equal(t, exitOK, r.code, r.stderr)
	ls := jsonLines(t, r.stdout)
	require.Len(t, ls, 1)
	assert.Equal(t, room, ls[0]["name"])
	assert.Equal(t, float64(4), ls[0]["max_participants"])
	assert.Equal(t, `{"a":1}`, ls[0]["metadata"])

	r = runCmd(ctx, nil, vars, "room", "update-metadata", room, `{"a":2}`)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, `{"a":2}`, jsonLines(t, r.stdout)[0]["metadata"])

	r = runCmd(ctx, nil, vars, "room", "list", room)
	require.Equal(t, exitOK, r.code, r.stderr)
	ls = jsonLines(t, r.stdout)
	require.Len(t, ls, 1)
	assert.Equal(t, `{"a":2}`, ls[0]["metadata"])

	r = runCmd(ctx, nil, vars, "room", "list", "-table", room)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, strings.HasPrefix(r.stdout, "NAME "), r.stdout)
	assert.Contains(t, r.stdout, room)

	// CALLSTATE_ variables override LiveKit's.
	bad := map[string]string{envURL: "ws://127.0.0.1:1"}
	for k, v := range vars {
		bad[k] = v
	}
	r = runCmd(ctx, nil, bad, "room", "list")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "unreachable")

	r = runCmd(ctx, nil, vars, "room", "delete", room)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Empty(t, r.stdout)
	r = runCmd(ctx, nil, vars, "room", "list", room)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Empty(t, r.stdout)

	r = runCmd(ctx, nil, vars, "room", "delete")
	assert.Equal(t, exitUsage, r.code)
	r = runCmd(ctx, nil, nil, "room", "list")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "LIVEKIT_URL")
	r = runCmd(ctx, nil, nil, "room", "frob")
	assert.Equal(t, exitUsage, r.code)

	// No output names the secret, even on failure.
	r = runCmd(ctx, nil, map[string]string{"LIVEKIT_URL": srv.URL(), "LIVEKIT_API_KEY": srv.APIKey(), "LIVEKIT_API_SECRET": "wrong-secret-wrong-secret-wrong!!"}, "room", "list")
	assert.Equal(t, exitFailure, r.code)
	assert.NotContains(t, r.stderr, "wrong-secret")
	assert.NotContains(t, r.stderr, "eyJ")
}

func TestParticipantAndSendCommands(t *testing.T) {
	srv := calltest.Shared(t)
	vars := lkVars(srv)
	ctx := t.Context()
	room := srv.RoomName(t)
	alice := srv.Join(t, room, "alice", nil)
	sub := alice.Subscribe(nil)
	t.Cleanup(sub.Close)
	srv.Join(t, room, "bob", nil)

	r := runCmd(ctx, nil, vars, "participant", "list", room)
	require.Equal(t, exitOK, r.code, r.stderr)
	ids := []any{}
	for _, l := range jsonLines(t, r.stdout) {
		ids = append(ids, l["identity"])
	}
	assert.ElementsMatch(t, []any{"alice", "bob"}, ids)

	r = runCmd(ctx, nil, vars, "participant", "update", room, "bob", "-metadata", `{"role":"host"}`, "-attr", "team=blue", "-can-publish-data=false")
	require.Equal(t, exitOK, r.code, r.stderr)
	l := jsonLines(t, r.stdout)[0]
	assert.Equal(t, `{"role":"host"}`, l["metadata"])
	assert.Equal(t, map[string]any{"team": "blue"}, l["attributes"])
	perms := l["permissions"].(map[string]any)
	assert.Equal(t, false, perms["can_publish_data"])
	assert.Equal(t, true, perms["can_subscribe"], "permissions not given keep their value")

	r = runCmd(ctx, nil, vars, "participant", "get", "-table", room, "bob")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, strings.HasPrefix(r.stdout, "IDENTITY"), r.stdout)
	assert.Contains(t, r.stdout, "team=blue")

	r = runCmd(ctx, nil, vars, "participant", "update", room, "bob")
	assert.Equal(t, exitUsage, r.code)

	// Data from the argument, an app message from standard input.
	r = runCmd(ctx, nil, vars, "send", "-topic", "chat", "-to", "alice", room, "hello")
	require.Equal(t, exitOK, r.code, r.stderr)
	d := calltest.Await[callstate.DataReceived](t, sub, nil)
	assert.Equal(t, "hello", string(d.Data.Payload))
	assert.Equal(t, "chat", d.Data.Topic)

	r = runCmd(ctx, strings.NewReader(`{"poll":"lunch?"}`), vars, "send", "-app", room)
	require.Equal(t, exitOK, r.code, r.stderr)
	m := calltest.Await[callstate.AppMessage](t, sub, nil)
	assert.JSONEq(t, `{"poll":"lunch?"}`, string(m.Data))

	r = runCmd(ctx, nil, vars, "send", "-app", room, "not json")
	assert.Equal(t, exitUsage, r.code)

	r = runCmd(ctx, nil, vars, "participant", "remove", room, "bob")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runCmd(ctx, nil, vars, "participant", "get", room, "bob")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "not_found")
}

// freeAddr returns a loopback address with a free port.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestWebhookListen(t *testing.T) {
	addr := freeAddr(t)
	key, secret := "APIhook", "hook-secret-0123456789abcdef0123456789"
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"webhook", "listen", "-addr", addr}, &env{
			stdin: strings.NewReader(""), stdout: outW, stderr: errW,
			getenv: func(k string) string {
				return map[string]string{"LIVEKIT_API_KEY": key, "LIVEKIT_API_SECRET": secret}[k]
			},
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		outW.Close()
		errW.Close()
	})
	stderr := bufio.NewScanner(errR)
	require.True(t, stderr.Scan())
	require.Contains(t, stderr.Text(), "listening on http://"+addr)
	stdout := bufio.NewScanner(outR)

	post := func(body, auth string) int {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	sign := func(body, secret string) string {
		sum := sha256.Sum256([]byte(body))
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"iss": key, "nbf": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix(),
			"sha256": base64.StdEncoding.EncodeToString(sum[:]),
		}).SignedString([]byte(secret))
		require.NoError(t, err)
		return tok
	}

	// A forged delivery is refused and reported with its reason only.
	body := `{"event":"participant_joined","id":"EV_cli","createdAt":"1700000000","room":{"name":"r","sid":"RM_1"},"participant":{"identity":"alice","sid":"PA_1"}}`
	forged := sign(body, "another-secret")
	codes := make(chan int, 1)
	go func() { codes <- post(body, forged) }()
	require.True(t, stderr.Scan())
	assert.Contains(t, stderr.Text(), "401 bad_signature")
	assert.NotContains(t, stderr.Text(), "eyJ")
	assert.Equal(t, http.StatusUnauthorized, <-codes)

	go func() { codes <- post(body, sign(body, secret)) }()
	require.True(t, stdout.Scan())
	var l map[string]any
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &l))
	assert.Equal(t, "participant_joined", l["event"])
	assert.Equal(t, "EV_cli", l["id"])
	assert.Equal(t, "alice", l["participant"].(map[string]any)["identity"])
	assert.Equal(t, "r", l["room"].(map[string]any)["name"])
	assert.Equal(t, http.StatusOK, <-codes)
}
