//go:build unix

package lkserver

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
)

// needRedis skips the test when no redis-server is installed, unless the
// cluster tests are required (CALLSTATE_CLUSTER_TESTS=1).
func needRedis(t *testing.T) {
	t.Helper()
	if _, err := findRedis(""); err != nil {
		if os.Getenv("CALLSTATE_CLUSTER_TESTS") == "1" {
			t.Fatal(err)
		}
		t.Skipf("%v; bash calltest/setup-redis.sh installs it", err)
	}
}

func TestRedis(t *testing.T) {
	needRedis(t)
	ctx := context.Background()
	r, err := StartRedis(ctx, nil)
	require.NoError(t, err)
	pid, dir := r.cmd.Process.Pid, r.dir
	got, err := r.Do(ctx, "SET", "k", "v with spaces\r\n")
	require.NoError(t, err)
	assert.Equal(t, "OK", got)
	got, err = r.Do(ctx, "GET", "k")
	require.NoError(t, err)
	assert.Equal(t, "v with spaces\r\n", got)
	_, err = r.Do(ctx, "GET", "missing")
	assert.ErrorIs(t, err, ErrRedisNil)
	got, err = r.Do(ctx, "HSET", "h", "f", "1")
	require.NoError(t, err)
	assert.Equal(t, "1", got)
	_, err = r.Do(ctx, "NOSUCHCOMMAND")
	assert.ErrorContains(t, err, "unknown command")
	_, err = r.Do(ctx, "CONFIG", "GET", "appendonly")
	assert.ErrorContains(t, err, "unsupported reply", "array replies are refused")

	require.NoError(t, r.Close())
	require.NoError(t, r.Close(), "Close is idempotent")
	assert.True(t, processReaped(pid))
	assert.NoDirExists(t, dir)
	_, err = r.Do(ctx, "PING")
	assert.Error(t, err)
}

func TestRedisNotFound(t *testing.T) {
	t.Setenv(EnvRedisBinary, "")
	t.Setenv("PATH", t.TempDir())
	saved := redisPaths
	redisPaths = nil
	t.Cleanup(func() { redisPaths = saved })
	_, err := StartRedis(context.Background(), nil)
	assert.ErrorIs(t, err, ErrRedisNotFound)
	_, err = StartCluster(context.Background(), 2, &ClusterOptions{Binary: "/bin/true"})
	assert.ErrorIs(t, err, ErrRedisNotFound)

	t.Setenv(EnvRedisBinary, filepath.Join(t.TempDir(), "nope"))
	_, err = StartRedis(context.Background(), nil)
	assert.ErrorContains(t, err, EnvRedisBinary)
}

func TestReadRESP(t *testing.T) {
	for in, want := range map[string]string{
		"+OK\r\n":          "OK",
		":42\r\n":          "42",
		"$3\r\nabc\r\n":    "abc",
		"$0\r\n\r\n":       "",
		"$4\r\na\r\nb\r\n": "a\r\nb",
	} {
		got, err := readRESP(bufio.NewReader(strings.NewReader(in)))
		require.NoError(t, err, "%q", in)
		assert.Equal(t, want, got, "%q", in)
	}
	_, err := readRESP(bufio.NewReader(strings.NewReader("$-1\r\n")))
	assert.ErrorIs(t, err, ErrRedisNil)
	for _, in := range []string{"", "\r\n", "-ERR bad\r\n", "*1\r\n", "$x\r\n", "$99999999999\r\n", "$10\r\nshort\r\n", "+no end"} {
		_, err := readRESP(bufio.NewReader(strings.NewReader(in)))
		assert.Error(t, err, "%q", in)
		assert.False(t, errors.Is(err, ErrRedisNil), "%q", in)
	}
}

// FuzzReadRESP checks that no reply makes the decoder panic or allocate
// beyond its bound.
func FuzzReadRESP(f *testing.F) {
	for _, s := range []string{"+OK\r\n", ":1\r\n", "$3\r\nabc\r\n", "$-1\r\n", "-ERR x\r\n", "*2\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := readRESP(bufio.NewReader(strings.NewReader(string(b))))
		if err == nil && len(s) > len(b) {
			t.Fatalf("reply %d bytes from %d bytes of input", len(s), len(b))
		}
	})
}

// A cluster's nodes share their rooms: a room created through one node is
// listed by the others, placed on the node asked for, and a killed node is
// gone at once while the others keep answering.
func TestCluster(t *testing.T) {
	needRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, 2, nil)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, c.Close()) })
	require.Len(t, c.Nodes(), 2)
	n0, n1 := c.Node(0), c.Node(1)
	assert.NotEqual(t, n0.URL(), n1.URL())
	assert.Equal(t, n0.APIKey(), n1.APIKey())
	assert.Regexp(t, `^ND_\w+$`, n0.NodeID())
	assert.NotEqual(t, n0.NodeID(), n1.NodeID())
	nodes, err := c.Redis().Do(ctx, "HLEN", "nodes")
	require.NoError(t, err)
	assert.Equal(t, "2", nodes, "both nodes registered in Redis")

	_, err = n1.RoomService().CreateRoom(ctx, callstate.CreateRoomOptions{Name: "r", NodeID: n1.NodeID()})
	require.NoError(t, err)
	host, err := c.RoomNode(ctx, "r")
	require.NoError(t, err)
	assert.Equal(t, 1, host)
	rooms, err := n0.RoomService().ListRooms(ctx)
	require.NoError(t, err)
	require.Len(t, rooms, 1, "node 0 lists the room of node 1")
	_, err = c.RoomNode(ctx, "none")
	assert.ErrorContains(t, err, "no node hosts")

	pid := n1.PID()
	require.NoError(t, n1.Kill())
	require.NoError(t, n1.Kill(), "Kill is idempotent")
	require.NoError(t, n1.Close(), "Close after Kill does nothing")
	assert.True(t, processReaped(pid))
	_, err = probeClient.Get(n1.HTTPURL() + "/")
	assert.Error(t, err, "a killed node no longer answers")
	code, body := listRooms(t, n0.HTTPURL(), roomListToken(t, n0.APIKey(), n0.APISecret()))
	assert.Equal(t, http.StatusOK, code, body)

	redisPID := c.Redis().cmd.Process.Pid
	require.NoError(t, c.Close())
	assert.True(t, processReaped(redisPID), "Close stops Redis")
	assert.True(t, processReaped(n0.PID()), "Close stops the nodes")
}

func TestStartClusterRefusesNoNodes(t *testing.T) {
	_, err := StartCluster(context.Background(), 0, nil)
	assert.ErrorContains(t, err, "at least one node")
}
