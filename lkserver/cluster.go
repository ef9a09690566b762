package lkserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// ClusterOptions configure StartCluster. The zero value (or a nil
// *ClusterOptions) is a good default.
type ClusterOptions struct {
	// Binary is the path of the livekit-server executable (see
	// Options.Binary).
	Binary string
	// RedisBinary is the path of the redis-server executable (see
	// RedisOptions.Binary).
	RedisBinary string
	// LogOutput, when not nil, receives a copy of every node's log.
	LogOutput io.Writer
	// APIKey and APISecret are the credentials every node accepts; random
	// when empty.
	APIKey    string
	APISecret string
	// StopGrace is each node's Options.StopGrace.
	StopGrace time.Duration
}

// Cluster is a LiveKit cluster on the loopback interface: one Redis and
// nodes (livekit-server processes) sharing it and one API key, each with its
// own HTTP and WebRTC ports.
//
// In such a cluster, as in a production one, a room lives on one node (the
// node LiveKit selects when the room is created, recorded in Redis), and a
// participant may connect its signalling to any node: that node relays it
// to the room's node over Redis (LiveKit's psrpc). The participant's WebRTC
// transport, and so its data, goes to the room's node directly, whatever
// node it signals through. The server API, on any node, acts on rooms of
// every node.
//
// Its methods may be called from any goroutine.
type Cluster struct {
	redis *Redis
	nodes []*Server

	closeOnce sync.Once
	closeErr  error
}

// StartCluster starts Redis and n nodes sharing it, and returns when every
// node answers authenticated requests. n must be at least 1. It returns an
// error matching ErrRedisNotFound when there is no redis-server to run.
//
// The caller must call Close when done with the cluster.
func StartCluster(ctx context.Context, n int, opts *ClusterOptions) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("lkserver: a cluster needs at least one node, not %d", n)
	}
	var o ClusterOptions
	if opts != nil {
		o = *opts
	}
	// Find both binaries first, so that a missing one is reported before
	// anything starts (and the server installs before Redis runs).
	bin, err := findBinary(ctx, o.Binary)
	if err != nil {
		return nil, err
	}
	if _, err := findRedis(o.RedisBinary); err != nil {
		return nil, err
	}
	if o.APIKey == "" {
		o.APIKey = "API" + randomHex(6)
	}
	if o.APISecret == "" {
		o.APISecret = randomHex(32)
	}
	rd, err := StartRedis(ctx, &RedisOptions{Binary: o.RedisBinary})
	if err != nil {
		return nil, err
	}
	c := &Cluster{redis: rd, nodes: make([]*Server, n)}
	// The nodes start in parallel: each takes a fraction of a second, most
	// of it waiting for its listener.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.nodes[i], errs[i] = Start(ctx, &Options{
				Binary:    bin,
				LogOutput: o.LogOutput,
				APIKey:    o.APIKey,
				APISecret: o.APISecret,
				StopGrace: o.StopGrace,
				Redis:     rd.Addr(),
			})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// Nodes returns the cluster's nodes, in the order they were started. A
// killed or closed node stays in the list.
func (c *Cluster) Nodes() []*Server { return append([]*Server(nil), c.nodes...) }

// Node returns node i (from 0).
func (c *Cluster) Node(i int) *Server { return c.nodes[i] }

// Redis returns the cluster's Redis.
func (c *Cluster) Redis() *Redis { return c.redis }

// Endpoint returns node 0's URL and the cluster's credentials.
func (c *Cluster) Endpoint() Endpoint { return c.nodes[0].Endpoint() }

// RoomNode returns the index of the node hosting room, as recorded in
// LiveKit's Redis (the hash room_node_map of livekit-server v1.13.5), or an
// error when no node hosts it, or when the recorded node is not one of the
// cluster's.
func (c *Cluster) RoomNode(ctx context.Context, room string) (int, error) {
	id, err := c.redis.Do(ctx, "HGET", "room_node_map", room)
	if errors.Is(err, ErrRedisNil) {
		return -1, fmt.Errorf("lkserver: no node hosts room %q", room)
	}
	if err != nil {
		return -1, err
	}
	for i, s := range c.nodes {
		if s.NodeID() == id {
			return i, nil
		}
	}
	return -1, fmt.Errorf("lkserver: room %q is on node %s, which is not one of the cluster's", room, id)
}

// Close stops every node that is still running, then Redis, and removes
// their files. It is idempotent.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, s := range c.nodes {
			if s == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.Close(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		errs = append(errs, c.redis.Close())
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}
