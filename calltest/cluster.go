package calltest

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/lkserver"
)

// EnvClusterTests controls the tests that need a cluster (NewCluster):
// "1" requires them to run, so that a missing redis-server fails them; "0"
// skips them; unset (or any other value) runs them when a redis-server is
// found and skips them, with a message, when not. test.sh sets it after
// its setup installed Redis.
const EnvClusterTests = "CALLSTATE_CLUSTER_TESTS"

// ClusterOptions configure StartCluster and NewCluster (see
// lkserver.ClusterOptions).
type ClusterOptions = lkserver.ClusterOptions

// Cluster is a LiveKit cluster on the loopback interface for tests: one
// Redis and nodes sharing it (see lkserver.Cluster). Each node is a Server,
// so that a test joins through a given node with Node(i).Join. Every node
// accepts the same API key, so any node's tokens are good on all of them.
//
// Its methods may be called from any goroutine.
type Cluster struct {
	*lkserver.Cluster
	nodes []*Server
}

// StartCluster starts a cluster of n nodes (see lkserver.StartCluster).
// It never uses a server named by the environment. The caller must call
// Close.
func StartCluster(ctx context.Context, n int, opts *ClusterOptions) (*Cluster, error) {
	lc, err := lkserver.StartCluster(ctx, n, opts)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Cluster: lc}
	for _, s := range lc.Nodes() {
		c.nodes = append(c.nodes, &Server{Server: s})
	}
	return c, nil
}

// NewCluster starts a cluster of n nodes for one test and stops it when the
// test ends. It skips the test when there is no redis-server (unless
// CALLSTATE_CLUSTER_TESTS=1, which fails it) or when
// CALLSTATE_CLUSTER_TESTS=0, and fails it when the cluster cannot start.
//
// A node takes a fraction of a second to start and some 40 MB of memory:
// keep clusters small (CI runs them on two cores).
func NewCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	mode := os.Getenv(EnvClusterTests)
	if mode == "0" {
		tb.Skip("calltest: cluster tests disabled by " + EnvClusterTests + "=0")
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c, err := StartCluster(ctx, n, nil)
	if errors.Is(err, lkserver.ErrRedisNotFound) && mode != "1" {
		tb.Skipf("calltest: cluster tests need Redis: %v; run test.sh (or bash calltest/setup-redis.sh) to install it", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Error(err)
		}
	})
	return c
}

// Node returns node i (from 0).
func (c *Cluster) Node(i int) *Server { return c.nodes[i] }

// Nodes returns the cluster's nodes, in the order they were started.
func (c *Cluster) Nodes() []*Server { return append([]*Server(nil), c.nodes...) }

// Len returns the number of nodes.
func (c *Cluster) Len() int { return len(c.nodes) }

// RoomName returns a room name unique to the test and this run (see
// Server.RoomName).
func (c *Cluster) RoomName(tb testing.TB) string {
	tb.Helper()
	return c.nodes[0].RoomName(tb)
}

// PlaceRoom creates room on node i (through node i's server API), so that
// the test knows which node hosts it. It fails the test on error.
func (c *Cluster) PlaceRoom(tb testing.TB, room string, i int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := c.nodes[i]
	if _, err := n.RoomService().CreateRoom(ctx, callstate.CreateRoomOptions{Name: room, NodeID: n.NodeID()}); err != nil {
		tb.Fatalf("calltest: creating room %s on node %d: %v", room, i, err)
	}
	got, err := c.Cluster.RoomNode(ctx, room)
	if err != nil {
		tb.Fatal(err)
	}
	if got != i {
		tb.Fatalf("calltest: room %s was placed on node %d, not %d", room, got, i)
	}
}

// HostOf returns the index of the node hosting room (see
// lkserver.Cluster.RoomNode). It fails the test when none does.
func (c *Cluster) HostOf(tb testing.TB, room string) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	i, err := c.Cluster.RoomNode(ctx, room)
	if err != nil {
		tb.Fatal(err)
	}
	return i
}

// Kill kills node i with SIGKILL (see lkserver.Server.Kill).
func (c *Cluster) Kill(tb testing.TB, i int) {
	tb.Helper()
	if err := c.nodes[i].Kill(); err != nil {
		tb.Error(err)
	}
}
