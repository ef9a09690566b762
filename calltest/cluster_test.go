//go:build unix

package calltest

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A test cluster: participants join through each node, PlaceRoom and
// HostOf agree, a proxy moves to another node, Kill ends a node.
func TestNewCluster(t *testing.T) {
	c := NewCluster(t, 2)
	require.Equal(t, 2, c.Len())
	room := c.RoomName(t)
	c.PlaceRoom(t, room, 1)
	assert.Equal(t, 1, c.HostOf(t, room))
	a := c.Node(0).Join(t, room, "alice", nil)
	b := c.Node(1).Join(t, room, "bob", nil)
	assert.Equal(t, a.SID(), b.SID(), "one room, whichever node the participants signal through")

	p, err := c.Node(0).StartProxy()
	require.NoError(t, err)
	defer p.Close()
	httpURL := "http://" + strings.TrimPrefix(p.URL(), "ws://")
	require.NoError(t, p.SetTarget(c.Node(1)))
	c.Kill(t, 0)
	// New connections go to node 1, which answers.
	code, body := listRooms(t, httpURL, roomListToken(t, c.Node(1).APIKey(), c.Node(1).APISecret()))
	assert.Equal(t, http.StatusOK, code, body)
	_, err = http.Get(c.Node(0).HTTPURL())
	assert.Error(t, err, "node 0 is gone")
}

func TestNewClusterDisabled(t *testing.T) {
	t.Setenv(EnvClusterTests, "0")
	ran := false
	t.Run("skipped", func(t *testing.T) {
		NewCluster(t, 1)
		ran = true
	})
	assert.False(t, ran, "NewCluster skips with CALLSTATE_CLUSTER_TESTS=0")
}
