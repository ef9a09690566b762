package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
)

const (
	testKey    = "APItest"
	testSecret = "0123456789abcdef0123456789abcdef0123456789"
)

// mint runs the token command and parses its output.
func mint(t *testing.T, vars map[string]string, args ...string) *callstate.Claims {
	t.Helper()
	r := runCmd(t.Context(), nil, vars, append([]string{"token"}, args...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	tok := strings.TrimSuffix(r.stdout, "\n")
	require.NotContains(t, tok, "\n", "one line of output")
	c, err := callstate.ParseToken(tok, testSecret)
	require.NoError(t, err)
	return c
}

func TestTokenJoin(t *testing.T) {
	before := time.Now().Add(-time.Second)
	c := mint(t, nil, "-api-key", testKey, "-api-secret", testSecret,
		"-identity", "alice", "-room", "standup", "-name", "Alice",
		"-metadata", `{"role":"host"}`, "-attr", "team=blue", "-attr", "lang=fr=ca",
		"-can-update-metadata", "-admin", "-valid-for", "90m")

	assert.Equal(t, "alice", c.Identity)
	assert.Equal(t, "Alice", c.Name)
	assert.Equal(t, `{"role":"host"}`, c.Metadata)
	assert.Equal(t, map[string]string{"team": "blue", "lang": "fr=ca"}, c.Attributes)
	assert.Equal(t, 90*time.Minute, c.ValidFor)
	assert.True(t, c.NotBefore.After(before), "not before %v", c.NotBefore)
	g := c.Grants
	assert.Equal(t, "standup", g.Room)
	assert.True(t, g.RoomJoin)
	assert.True(t, g.RoomAdmin)
	assert.True(t, g.CanUpdateOwnMetadata)
	assert.False(t, g.Hidden)
	assert.False(t, g.RoomCreate)
	assert.False(t, g.RoomList)
	assert.Nil(t, g.CanPublish, "absent unless given")
	assert.Nil(t, g.CanSubscribe, "absent unless given")
	assert.Nil(t, g.CanPublishData, "absent unless given")
}

func TestTokenTriStateAndHidden(t *testing.T) {
	c := mint(t, nil, "-api-key", testKey, "-api-secret", testSecret,
		"-identity", "rec", "-room", "r", "-can-publish-data=false", "-can-publish=false",
		"-can-subscribe", "-hidden")
	g := c.Grants
	require.NotNil(t, g.CanPublishData)
	assert.False(t, *g.CanPublishData)
	require.NotNil(t, g.CanPublish)
	assert.False(t, *g.CanPublish)
	require.NotNil(t, g.CanSubscribe)
	assert.True(t, *g.CanSubscribe)
	assert.True(t, g.Hidden)
	assert.True(t, g.RoomJoin)
	assert.Equal(t, callstate.DefaultTokenValidity, c.ValidFor)
}

func TestTokenServerAPIFromEnvironment(t *testing.T) {
	vars := map[string]string{envAPIKey: testKey, envAPISecret: testSecret}
	c := mint(t, vars, "-room-list", "-room-create")
	assert.Empty(t, c.Identity)
	assert.False(t, c.Grants.RoomJoin, "no roomJoin without an identity")
	assert.True(t, c.Grants.RoomList)
	assert.True(t, c.Grants.RoomCreate)

	c = mint(t, vars, "-identity", "bob", "-room", "r", "-join=false", "-admin")
	assert.False(t, c.Grants.RoomJoin)
	assert.True(t, c.Grants.RoomAdmin)
}

func TestTokenErrors(t *testing.T) {
	ctx := t.Context()
	r := runCmd(ctx, nil, nil, "token", "-identity", "a", "-room", "r")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "-api-key and -api-secret")
	assert.Empty(t, r.stdout)

	r = runCmd(ctx, nil, nil, "token", "-api-key", testKey, "-api-secret", testSecret, "-identity", "a", "-room", "r", "-join", "-valid-for", "-1h")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "negative validity")
	assert.Empty(t, r.stdout)

	r = runCmd(ctx, nil, nil, "token", "-api-key", testKey, "-api-secret", testSecret, "-room", "r", "-join")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "needs an identity")

	r = runCmd(ctx, nil, nil, "token", "-api-key", testKey, "-api-secret", testSecret, "-attr", "novalue")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "key=value")
}

// TestTokenKeyFromLiveKitEnvironment checks that the token command reads
// LiveKit's standard variables, as lk does, and that the CALLSTATE_ ones
// override them.
func TestTokenKeyFromLiveKitEnvironment(t *testing.T) {
	vars := map[string]string{envLiveKitAPIKey: testKey, envLiveKitAPISecret: testSecret}
	c := mint(t, vars, "-identity", "carol", "-room", "r")
	assert.Equal(t, "carol", c.Identity)
	assert.Equal(t, "r", c.Grants.Room)

	// The CALLSTATE_ secret wins: the token no longer verifies with the
	// LiveKit one.
	vars[envAPISecret] = testSecret + "-override"
	r := runCmd(t.Context(), nil, vars, "token", "-identity", "carol", "-room", "r")
	require.Equal(t, exitOK, r.code, r.stderr)
	tok := strings.TrimSpace(r.stdout)
	_, err := callstate.ParseToken(tok, testSecret)
	assert.Error(t, err, "signed with the overriding secret")
	_, err = callstate.ParseToken(tok, testSecret+"-override")
	assert.NoError(t, err)

	// An empty CALLSTATE_ variable does not hide the LiveKit one.
	vars[envAPISecret] = ""
	mint(t, vars, "-identity", "carol", "-room", "r")

	// The usage names both variables.
	r = runCmd(t.Context(), nil, nil, "token", "-h")
	assert.Contains(t, r.stderr, "$"+envAPISecret+", else $"+envLiveKitAPISecret)
	r = runCmd(t.Context(), nil, nil, "token", "-identity", "a", "-room", "r")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "$"+envLiveKitAPIKey)
}
