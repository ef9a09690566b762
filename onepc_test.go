package callstate_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// exchange checks that a and b (a already known to b) reach each other
// reliably and lossily.
func exchange(t *testing.T, a, b *callstate.Room, aID, bID string) {
	t.Helper()
	ctx := ctxT(t)
	sa, sb := a.Subscribe(nil), b.Subscribe(nil)
	defer sa.Close()
	defer sb.Close()
	for _, kind := range []callstate.DataKind{callstate.Reliable, callstate.Lossy} {
		msg := fmt.Sprintf("%s to %s, %s", aID, bID, kind)
		match := func(e callstate.DataReceived) bool {
			return e.Data.From == aID && string(e.Data.Payload) == msg && e.Data.Kind == kind
		}
		// A lossy packet may be lost on the way: send again until one
		// arrives (a reliable one must arrive the first time).
		for attempt := 0; ; attempt++ {
			require.NoError(t, a.PublishData(ctx, []byte(msg), &callstate.PublishOptions{Kind: kind}))
			wait := calltest.AwaitTimeout
			if kind == callstate.Lossy {
				wait = time.Second
			}
			_, err := calltest.AwaitEvent(ctx, sb, wait, match)
			if err == nil {
				break
			}
			if kind == callstate.Reliable || attempt == 10 {
				t.Fatalf("%s: %v", msg, err)
			}
		}
		back := []byte("back " + msg)
		require.NoError(t, b.PublishData(ctx, back, nil))
		calltest.Await(t, sa, func(e callstate.DataReceived) bool {
			return e.Data.From == bID && bytes.Equal(e.Data.Payload, back)
		})
	}
}

func TestSinglePeerConnectionIsTheDefault(t *testing.T) {
	checkLeaks(t)
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", nil)
	b := srv.Join(t, room, "bob", nil)
	assert.True(t, a.SinglePC())
	assert.True(t, b.SinglePC())
	exchange(t, a, b, "alice", "bob")

	// A receive-only participant on one PeerConnection receives too.
	c := srv.Join(t, room, "carol", &callstate.JoinOptions{ReceiveOnly: true})
	assert.True(t, c.SinglePC())
	sc := c.Subscribe(nil)
	defer sc.Close()
	require.NoError(t, a.PublishData(ctxT(t), []byte("to all"), nil))
	calltest.Await(t, sc, func(e callstate.DataReceived) bool { return string(e.Data.Payload) == "to all" })
	assert.ErrorIs(t, c.PublishData(ctxT(t), []byte("x"), nil), callstate.ErrReceiveOnly)
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	require.NoError(t, c.Close())
}

func TestTwoPeerConnectionsWhenAsked(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", &callstate.JoinOptions{TwoPeerConnections: true})
	b := srv.Join(t, room, "bob", nil)
	assert.False(t, a.SinglePC())
	assert.True(t, b.SinglePC())
	exchange(t, a, b, "alice", "bob")
	exchange(t, b, a, "bob", "alice")
	c := srv.Join(t, room, "carol", &callstate.JoinOptions{TwoPeerConnections: true, ReceiveOnly: true})
	assert.False(t, c.SinglePC())
	sc := c.Subscribe(nil)
	defer sc.Close()
	require.NoError(t, b.PublishData(ctxT(t), []byte("to all"), nil))
	calltest.Await(t, sc, func(e callstate.DataReceived) bool { return string(e.Data.Payload) == "to all" })
}

// TestFallsBackToTwoPeerConnections joins through a proxy that answers
// /rtc/v1 with 404, as servers before it do.
func TestFallsBackToTwoPeerConnections(t *testing.T) {
	srv := calltest.Shared(t)
	target, err := url.Parse(srv.HTTPURL())
	require.NoError(t, err)
	var v1, v0 atomic.Int32
	var noV1 atomic.Bool
	noV1.Store(true)
	rp := httputil.NewSingleHostReverseProxy(target)
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/rtc/v1"):
			v1.Add(1)
			if noV1.Load() {
				http.NotFound(w, r)
				return
			}
		case r.URL.Path == "/rtc":
			v0.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	defer old.Close()
	room := srv.RoomName(t)
	a, err := callstate.Join(ctxT(t), old.URL, srv.Token(room, "alice"), nil)
	require.NoError(t, err)
	defer a.Close()
	assert.False(t, a.SinglePC(), "joined with two PeerConnections")
	assert.EqualValues(t, 1, v1.Load(), "tried /rtc/v1 first")
	assert.EqualValues(t, 1, v0.Load())
	b := srv.Join(t, room, "bob", nil)
	exchange(t, b, a, "bob", "alice")
	exchange(t, a, b, "alice", "bob")

	// A token the server refuses on /rtc/v1 is not a missing path: no
	// fallback.
	noV1.Store(false)
	_, err = callstate.Join(ctxT(t), old.URL, "not-a-token", nil)
	require.ErrorIs(t, err, callstate.ErrBadToken)
	assert.EqualValues(t, 2, v1.Load())
	assert.EqualValues(t, 1, v0.Load())
}

// TestFirstPacketAfterJoinIsDelivered: a packet published as soon as Join
// returns arrives, on either layout.
func TestFirstPacketAfterJoinIsDelivered(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	host := srv.Join(t, room, "host", nil)
	sub := host.Subscribe(nil)
	defer sub.Close()
	for i := range 10 {
		id := fmt.Sprint("joiner-", i)
		r := srv.Join(t, room, id, &callstate.JoinOptions{TwoPeerConnections: i%2 == 1})
		require.NoError(t, r.PublishData(ctxT(t), []byte("first "+id), nil))
		calltest.Await(t, sub, func(e callstate.DataReceived) bool { return string(e.Data.Payload) == "first "+id })
		require.NoError(t, r.Close())
	}
}

// TestLargestSinglePacket: the Room sends reliable payloads as one packet up
// to the negotiated SCTP message size, and as a data stream beyond, or
// beyond the limit WithMaxReliablePacket sets.
func TestLargestSinglePacket(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	var largest atomic.Int64
	a := srv.Join(t, room, "alice", callstate.WithSendFilter(nil, func(reliable bool, pkt []byte) bool {
		if reliable && int64(len(pkt)) > largest.Load() {
			largest.Store(int64(len(pkt)))
		}
		return true
	}))
	small := srv.Join(t, room, "small", &callstate.JoinOptions{MaxReliablePacket: 15000})
	b := srv.Join(t, room, "bob", nil)
	sub := b.Subscribe(nil)
	defer sub.Close()
	limit := a.MaxReliablePacket()
	assert.Greater(t, limit, 64000, "LiveKit's server takes 65,535-byte messages")
	assert.LessOrEqual(t, limit, 65535)
	assert.Equal(t, 15000, small.MaxReliablePacket())

	ctx := ctxT(t)
	one := bytes.Repeat([]byte{7}, limit-200)
	require.NoError(t, a.PublishData(ctx, one, nil))
	e := calltest.Await(t, sub, fromIs("alice"))
	assert.Nil(t, e.Data.Stream, "one packet")
	assert.Equal(t, one, e.Data.Payload)
	assert.Greater(t, largest.Load(), int64(limit-200))
	assert.LessOrEqual(t, largest.Load(), int64(limit))

	two := bytes.Repeat([]byte{8}, limit+1)
	require.NoError(t, a.PublishData(ctx, two, nil))
	e = calltest.Await(t, sub, fromIs("alice"))
	assert.NotNil(t, e.Data.Stream, "a data stream")
	assert.Equal(t, two, e.Data.Payload)
	assert.LessOrEqual(t, largest.Load(), int64(limit))

	mid := bytes.Repeat([]byte{9}, 20000)
	require.NoError(t, small.PublishData(ctx, mid, nil))
	e = calltest.Await(t, sub, fromIs("small"))
	assert.NotNil(t, e.Data.Stream, "over the Room's own limit: a data stream")
	assert.Equal(t, mid, e.Data.Payload)
}
