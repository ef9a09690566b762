package callstate_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// frameOf is a frame of n bytes whose content depends on n and seed.
func frameOf(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31) ^ seed ^ byte(n)
	}
	return b
}

// dataTrackSizes are the frame sizes the data track tests send: one
// packet, the edges of the first packets, and frames of many packets up
// to the default limit.
var dataTrackSizes = []int{1, 100, 1375, 1376, 1377, 4000, 16 << 10, 100 << 10, 176128}

// maxSentPacket records the largest data track packet a Room sends.
type maxSentPacket struct {
	mu  sync.Mutex
	max int
	n   int
}

func (m *maxSentPacket) filter(pkt []byte) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.max = max(m.max, len(pkt))
	m.n++
	return true
}

func TestDataTrackBetweenRooms(t *testing.T) {
	checkLeaks(t)
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	var sent maxSentPacket
	a := srv.Join(t, room, "alice", callstate.WithDataTrackFilters(nil, sent.filter, nil))
	b := srv.Join(t, room, "bob", nil)
	ctx := ctxT(t)
	sub := b.Subscribe(nil)
	defer sub.Close()

	tr, err := a.PublishDataTrack(ctx, "position", nil)
	require.NoError(t, err)
	assert.NotEmpty(t, tr.Info().SID)
	assert.Equal(t, "position", tr.Info().Name)
	assert.Equal(t, 176128, tr.MaxFrameSize())

	ev := calltest.Await(t, sub, func(e callstate.DataTrackPublished) bool { return e.Participant.Identity == "alice" })
	assert.Equal(t, tr.Info(), ev.Track)
	p, ok := b.Participant("alice")
	require.True(t, ok)
	require.Equal(t, []callstate.DataTrackInfo{tr.Info()}, p.DataTracks, "the presence track is not listed")

	rs, err := b.SubscribeDataTrack(ctx, "alice", "position", nil)
	require.NoError(t, err)
	for i, n := range dataTrackSizes {
		want := frameOf(n, byte(i))
		// A frame on a lossy track may be lost on loopback too (rarely):
		// send again until it arrives, and check what arrives.
		for attempt := 0; ; attempt++ {
			require.NoError(t, tr.Push(ctx, want, &callstate.FrameOptions{UserTimestamp: uint64(1000 + i)}))
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			f, err := rs.Next(wctx)
			cancel()
			if err == nil {
				require.Equal(t, len(want), len(f.Payload), "frame %d", i)
				require.True(t, bytes.Equal(want, f.Payload), "frame of %d bytes differs", n)
				assert.Equal(t, uint64(1000+i), f.UserTimestamp)
				break
			}
			require.Less(t, attempt, 5, "frame of %d bytes never arrived: %+v", n, rs.Stats())
		}
	}
	sent.mu.Lock()
	assert.LessOrEqual(t, sent.max, 1400, "no data track packet over 1,400 bytes")
	assert.Greater(t, sent.n, 130)
	sent.mu.Unlock()

	// Frames too large are refused before anything is sent.
	err = tr.Push(ctx, make([]byte, tr.MaxFrameSize()+1), &callstate.FrameOptions{UserTimestamp: 1})
	var se *callstate.SizeError
	require.ErrorAs(t, err, &se)
	assert.ErrorIs(t, err, callstate.ErrTooLarge)

	// Larger packets carry larger frames.
	big, err := a.PublishDataTrack(ctx, "big", &callstate.DataTrackOptions{MaxPacketSize: 16000})
	require.NoError(t, err)
	calltest.Await(t, sub, func(e callstate.DataTrackPublished) bool { return e.Track.Name == "big" })
	bs, err := b.SubscribeDataTrack(ctx, "alice", big.Info().SID, nil)
	require.NoError(t, err)
	mib := frameOf(1<<20, 9)
	for attempt := 0; ; attempt++ {
		require.NoError(t, big.Push(ctx, mib, nil))
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		f, err := bs.Next(wctx)
		cancel()
		if err == nil {
			require.True(t, bytes.Equal(mib, f.Payload), "1 MiB frame differs")
			break
		}
		require.Less(t, attempt, 5, "1 MiB frame never arrived: %+v", bs.Stats())
	}

	// Unpublishing ends the subscription and is announced.
	require.NoError(t, tr.Unpublish(ctx))
	calltest.Await(t, sub, func(e callstate.DataTrackUnpublished) bool { return e.Track.Name == "position" })
	_, err = rs.Next(ctx)
	assert.ErrorIs(t, err, callstate.ErrUnpublished)
	assert.ErrorIs(t, tr.Push(ctx, []byte("x"), nil), callstate.ErrUnpublished)

	require.NoError(t, bs.Unsubscribe(ctx))
	_, ok = <-bs.C()
	assert.False(t, ok, "C is closed after Unsubscribe")
}

func TestDataTrackRefusals(t *testing.T) {
	checkLeaks(t)
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", nil)
	ctx := ctxT(t)

	_, err := a.PublishDataTrack(ctx, "t", nil)
	require.NoError(t, err)
	_, err = a.PublishDataTrack(ctx, "t", nil)
	var re *callstate.RequestError
	require.ErrorAs(t, err, &re)
	assert.ErrorIs(t, err, callstate.ErrDuplicateName)
	assert.Equal(t, "DUPLICATE_NAME", re.Reason, "refused by the server")

	_, err = a.PublishDataTrackWithHandle(ctx, "zero", 0xffff)
	require.NoError(t, err)
	_, err = a.PublishDataTrackWithHandle(ctx, "again", 0xffff)
	assert.ErrorIs(t, err, callstate.ErrInvalidHandle)

	_, err = a.PublishDataTrack(ctx, "", nil)
	assert.ErrorIs(t, err, callstate.ErrInvalidArgument)
	_, err = a.PublishDataTrack(ctx, string(make([]byte, 257)), nil)
	assert.ErrorIs(t, err, callstate.ErrInvalidArgument)
	_, err = a.PublishDataTrack(ctx, "_callstate.mine", nil)
	assert.ErrorIs(t, err, callstate.ErrInvalidArgument)
	_, err = a.PublishDataTrack(ctx, "p", &callstate.DataTrackOptions{MaxPacketSize: 20000})
	assert.ErrorIs(t, err, callstate.ErrInvalidArgument)

	g := calltest.DefaultGrants(room)
	no := false
	g.CanPublishData = &no
	c := srv.JoinWith(t, callstate.Claims{Identity: "carol", Grants: g}, nil)
	_, err = c.PublishDataTrack(ctx, "t", nil)
	assert.ErrorIs(t, err, callstate.ErrNotPermitted)

	_, err = c.SubscribeDataTrack(ctx, "nobody", "t", nil)
	assert.ErrorIs(t, err, callstate.ErrUnknownParticipant)
	_, err = c.WaitForParticipant(ctx, "alice")
	require.NoError(t, err)
	_, err = c.SubscribeDataTrack(ctx, "alice", "nope", nil)
	assert.ErrorIs(t, err, callstate.ErrNotFound)
}

// TestDataTrackLostPacketDropsFrame drops one packet of a frame on the
// receiving side: the frame is dropped whole and counted, the next ones
// arrive.
func TestDataTrackLostPacketDropsFrame(t *testing.T) {
	checkLeaks(t)
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	var mu sync.Mutex
	seen := 0
	drop := func(pkt []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		seen++
		return seen != 3 // the third packet of the first frame
	}
	a := srv.Join(t, room, "alice", nil)
	b := srv.Join(t, room, "bob", callstate.WithDataTrackFilters(nil, nil, drop))
	ctx := ctxT(t)
	tr, err := a.PublishDataTrack(ctx, "t", nil)
	require.NoError(t, err)
	_, err = b.WaitForParticipant(ctx, "alice")
	require.NoError(t, err)
	sub := b.Subscribe(nil)
	defer sub.Close()
	if p, _ := b.Participant("alice"); len(p.DataTracks) == 0 {
		calltest.Await(t, sub, func(e callstate.DataTrackPublished) bool { return e.Track.Name == "t" })
	}
	rs, err := b.SubscribeDataTrack(ctx, "alice", "t", nil)
	require.NoError(t, err)
	first, second := frameOf(5000, 1), frameOf(5000, 2)
	require.NoError(t, tr.Push(ctx, first, nil))
	require.NoError(t, tr.Push(ctx, second, nil))
	// Later frames push the incomplete one out of the depacketizer.
	for i := range 6 {
		require.NoError(t, tr.Push(ctx, frameOf(3000, byte(10+i)), nil))
	}
	f, err := rs.Next(ctx)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(second, f.Payload), "the first frame, missing a packet, is not delivered")
	for range 6 {
		_, err := rs.Next(ctx)
		require.NoError(t, err)
	}
	assert.Equal(t, uint64(1), rs.Stats().Incomplete)
}

// TestDataTrackOverflowDropsOldest fills a subscription's buffer without
// reading it.
func TestDataTrackOverflowDropsOldest(t *testing.T) {
	checkLeaks(t)
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", nil)
	b := srv.Join(t, room, "bob", nil)
	ctx := ctxT(t)
	tr, err := a.PublishDataTrack(ctx, "t", nil)
	require.NoError(t, err)
	sub := b.Subscribe(nil)
	defer sub.Close()
	if p, _ := b.Participant("alice"); len(p.DataTracks) == 0 {
		calltest.Await(t, sub, func(e callstate.DataTrackPublished) bool { return e.Track.Name == "t" })
	}
	rs, err := b.SubscribeDataTrack(ctx, "alice", "t", &callstate.DataTrackSubscribeOptions{Buffer: 4})
	require.NoError(t, err)
	for i := range 20 {
		require.NoError(t, tr.Push(ctx, []byte{byte(i)}, nil))
	}
	// Wait until the last frame is in (it is the newest in the buffer).
	deadline := time.Now().Add(10 * time.Second)
	for rs.Stats().Frames+rs.Stats().Overflowed < 20 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	st := rs.Stats()
	assert.GreaterOrEqual(t, st.Overflowed, uint64(16-2), "%+v", st)
	var last byte
	for range 4 {
		f, err := rs.Next(ctx)
		require.NoError(t, err)
		last = f.Payload[0]
	}
	assert.Equal(t, byte(19), last, "the newest frames are kept")
}

// TestPresenceAtOnce measures how soon a Room's join and leave reach
// another Room: before the server's 3 s ticker, thanks to the presence
// track.
func TestPresenceAtOnce(t *testing.T) {
	checkLeaks(t)
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "watcher", &callstate.JoinOptions{NoPresenceTrack: true})
	sub := a.Subscribe(nil)
	defer sub.Close()
	ctx := ctxT(t)
	b, err := callstate.Join(ctx, srv.URL(), srv.Token(room, "arriving"), nil)
	require.NoError(t, err)
	joined := time.Now()
	calltest.Await(t, sub, func(e callstate.ParticipantJoined) bool { return e.Participant.Identity == "arriving" })
	in := time.Since(joined)
	p, _ := a.Participant("arriving")
	assert.True(t, p.IsPublisher)
	assert.Empty(t, p.DataTracks)
	require.NoError(t, b.Close())
	closed := time.Now()
	calltest.Await(t, sub, func(e callstate.ParticipantLeft) bool { return e.Participant.Identity == "arriving" })
	out := time.Since(closed)
	t.Logf("join announced %v after Join returned, leave %v after Close", in, out)
	assert.Less(t, in, 2*time.Second, "announced before the 3 s tick")
	assert.Less(t, out, 2*time.Second, "leave announced before the 3 s tick")
}

// BenchmarkPresence measures how long after Join returns another Room sees
// the participant join, and after Close sees it leave, with callstate's
// presence track (the default) and without it (the server's 3 s ticker).
func BenchmarkPresence(b *testing.B) {
	for _, c := range []struct {
		name string
		opts *callstate.JoinOptions
	}{{"presence-track", nil}, {"no-presence-track", &callstate.JoinOptions{NoPresenceTrack: true}}} {
		b.Run(c.name, func(b *testing.B) {
			srv := calltest.Shared(b)
			room := srv.RoomName(b)
			w := srv.Join(b, room, "watcher", &callstate.JoinOptions{NoPresenceTrack: true})
			sub := w.Subscribe(nil)
			defer sub.Close()
			ctx := b.Context()
			var in, out time.Duration
			n := 0
			for i := 0; b.Loop(); i++ {
				id := fmt.Sprintf("p%d", i)
				r, err := callstate.Join(ctx, srv.URL(), srv.Token(room, id), c.opts)
				if err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				calltest.Await(b, sub, func(e callstate.ParticipantJoined) bool { return e.Participant.Identity == id })
				in += time.Since(t0)
				_ = r.Close()
				t1 := time.Now()
				calltest.Await(b, sub, func(e callstate.ParticipantLeft) bool { return e.Participant.Identity == id })
				out += time.Since(t1)
				n++
			}
			b.ReportMetric(float64(in.Microseconds())/float64(n)/1000, "join-ms")
			b.ReportMetric(float64(out.Microseconds())/float64(n)/1000, "leave-ms")
		})
	}
}
