package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate/calltest"
)

// Two "callstate join" processes call each other's RPC methods, send a
// text stream, a file and chat lines.
func TestJoinPrimitives(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	bin := buildBinary(t)
	creds := []string{"-url", srv.URL(), "-api-key", srv.APIKey(), "-api-secret", srv.APISecret()}
	room := srv.RoomName(t)
	alice := startJoin(t, bin, "alice", append(creds, "-room", room, "-identity", "alice")...)
	alice.await("joined", nil)
	bob := startJoin(t, bin, "bob", append(creds, "-room", room, "-identity", "bob")...)
	bob.await("joined", nil)
	alice.await("participant_joined", func(m map[string]any) bool { return identityOf(m) == "bob" })

	// RPC: register, call, answer.
	bob.ok(1, `{"id":1,"cmd":"rpc_register","method":"greet","answer":"hello"}`)
	bob.ok(2, `{"id":2,"cmd":"rpc_register","method":"echo"}`)
	m := alice.ok(3, `{"id":3,"cmd":"rpc","to":["bob"],"method":"greet","text":"hi"}`)
	assert.Equal(t, "hello", m["text"])
	req := bob.await("rpc_request", nil)
	assert.Equal(t, "alice", req["from"])
	assert.Equal(t, "greet", req["method"])
	assert.Equal(t, "hi", req["text"])
	m = alice.ok(4, `{"id":4,"cmd":"rpc","to":["bob"],"method":"echo","text":"back"}`)
	assert.Equal(t, "back", m["text"])
	alice.send(`{"id":5,"cmd":"rpc","to":["bob"],"method":"nosuch"}`)
	m = alice.answer(5)
	assert.Equal(t, "error", m["type"])
	assert.Equal(t, "rpc_error", m["code"])
	assert.Equal(t, 1400.0, m["rpc_code"])
	bob.ok(6, `{"id":6,"cmd":"rpc_unregister","method":"echo"}`)
	alice.send(`{"id":7,"cmd":"rpc","to":["bob"],"method":"echo"}`)
	assert.Equal(t, 1400.0, alice.answer(7)["rpc_code"])

	// Streams arrive whole as data lines when nothing reads them.
	m = alice.ok(8, `{"id":8,"cmd":"send_text","text":"streamed","topic":"notes","attributes":{"k":"v"}}`)
	id := m["stream"].(map[string]any)["id"]
	d := bob.await("data", func(m map[string]any) bool { return m["topic"] == "notes" })
	assert.Equal(t, "streamed", d["text"])
	assert.Equal(t, id, d["stream"].(map[string]any)["id"])
	assert.Equal(t, true, d["stream"].(map[string]any)["text"])

	path := filepath.Join(t.TempDir(), "f.txt")
	require.NoError(t, os.WriteFile(path, []byte("file content"), 0o600))
	alice.ok(9, `{"id":9,"cmd":"send_file","path":"`+path+`","topic":"files"}`)
	d = bob.await("data", func(m map[string]any) bool { return m["topic"] == "files" })
	assert.Equal(t, "file content", d["text"])
	assert.Equal(t, "f.txt", d["stream"].(map[string]any)["name"])

	// Chat.
	alice.ok(10, `{"id":10,"cmd":"chat","text":"hi all"}`)
	c := bob.await("chat", nil)
	assert.Equal(t, "alice", c["from"])
	assert.Equal(t, "hi all", c["text"])
}
