package rtc

import (
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate/internal/lkpb"
)

// singleSFU plays the server's side of LiveKit's one-PeerConnection layout
// with plain pion (its default API, codecs and interceptors included, as
// the real server has): it answers the client's offer and uses the
// client's own data channels to send back, creating none of its own.
type singleSFU struct {
	t        *testing.T
	pc       *webrtc.PeerConnection
	tr       *Transport
	attached atomic.Bool
	early    atomic.Int32 // signals sent before Attach

	mu       sync.Mutex
	channels map[string]*webrtc.DataChannel
	open     chan string
	received chan string
	offers   chan string // offers after the first (ICE restarts)
}

func newSingleSFU(t *testing.T, onMessage func(bool, []byte)) *singleSFU {
	f := &singleSFU{t: t, channels: map[string]*webrtc.DataChannel{}, open: make(chan string, 4), received: make(chan string, 16), offers: make(chan string, 4)}
	var err error
	f.pc, err = loopbackAPI().NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	f.pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		f.mu.Lock()
		f.channels[dc.Label()] = dc
		f.mu.Unlock()
		dc.OnOpen(func() { f.open <- dc.Label() })
		dc.OnMessage(func(m webrtc.DataChannelMessage) { f.received <- dc.Label() + ":" + string(m.Data) })
	})
	f.tr, err = New(Config{SinglePC: true, Loopback: true, SendSignal: f.fromClient, OnMessage: onMessage})
	require.NoError(t, err)
	f.pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		b, _ := json.Marshal(c.ToJSON())
		go func() {
			_ = f.tr.HandleTrickle(&lkpb.TrickleRequest{CandidateInit: string(b), Target: lkpb.SignalTarget_PUBLISHER})
		}()
	})
	t.Cleanup(func() {
		_ = f.tr.Close()
		_ = f.pc.GracefulClose()
	})
	return f
}

func (f *singleSFU) fromClient(req *lkpb.SignalRequest) error {
	if !f.attached.Load() {
		f.early.Add(1)
	}
	if o := req.GetOffer(); o != nil {
		f.offers <- o.GetSdp()
		go func() {
			if err := f.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: o.GetSdp()}); err != nil {
				f.t.Error(err)
				return
			}
			ans, err := f.pc.CreateAnswer(nil)
			if err == nil {
				err = f.pc.SetLocalDescription(ans)
			}
			if err == nil {
				err = f.tr.HandleAnswer(&lkpb.SessionDescription{Type: "answer", Sdp: ans.SDP, Id: o.GetId()})
			}
			if err != nil {
				f.t.Error(err)
			}
		}()
	}
	if tr := req.GetTrickle(); tr != nil {
		var c webrtc.ICECandidateInit
		if err := json.Unmarshal([]byte(tr.GetCandidateInit()), &c); err != nil {
			return err
		}
		go func() { _ = f.pc.AddICECandidate(c) }()
	}
	return nil
}

// join does what the server does with a join request that carries the
// offer: it answers, and the answer reaches the client after the join
// response (after Attach).
func (f *singleSFU) join(ctx context.Context) {
	offer, err := f.tr.Offer(ctx)
	require.NoError(f.t, err)
	assert.Equal(f.t, "offer", offer.GetType())
	assert.Contains(f.t, offer.GetSdp(), "a=candidate", "the offer carries the gathered candidates")
	assert.NotContains(f.t, offer.GetSdp(), "m=audio")
	assert.NotContains(f.t, offer.GetSdp(), "m=video")
	require.NoError(f.t, f.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.GetSdp()}))
	answer, err := f.pc.CreateAnswer(nil)
	require.NoError(f.t, err)
	require.NoError(f.t, f.pc.SetLocalDescription(answer))
	f.attached.Store(true)
	f.tr.Attach(nil)
	require.NoError(f.t, f.tr.HandleAnswer(&lkpb.SessionDescription{Type: "answer", Sdp: answer.SDP, Id: offer.GetId()}))
}

func TestSinglePeerConnectionCarriesDataBothWays(t *testing.T) {
	got := make(chan string, 4)
	f := newSingleSFU(t, func(reliable bool, b []byte) {
		got <- strconv.FormatBool(reliable) + ":" + string(b)
	})
	f.tr.cfg.OnDataTrack = func(b []byte) { got <- "track:" + string(b) }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	assert.True(t, f.tr.SinglePC())
	f.join(ctx)
	select {
	case <-f.tr.SubscriberReady():
	case <-ctx.Done():
		t.Fatal("the channels did not open")
	}
	assert.False(t, f.tr.Publishing(), "receive-only until Publish")
	assert.Error(t, f.tr.Send(ctx, true, []byte("x")), "Send before Publish")
	require.NoError(t, f.tr.Publish())
	require.NoError(t, f.tr.WaitReady(ctx))
	assert.Zero(t, f.early.Load(), "nothing was signalled before Attach")

	require.NoError(t, f.tr.Send(ctx, true, []byte("up")))
	require.NoError(t, f.tr.Send(ctx, false, []byte("up-lossy")))
	require.NoError(t, f.tr.SendDataTrack(ctx, []byte("up-track")))
	want := map[string]bool{"_reliable:up": true, "_lossy:up-lossy": true, "_data_track:up-track": true}
	for len(want) > 0 {
		select {
		case s := <-f.received:
			assert.True(t, want[s], "unexpected %q", s)
			delete(want, s)
		case <-ctx.Done():
			t.Fatalf("still waiting for %v", want)
		}
	}
	// The server answers on the client's channels: the same two carry
	// data down.
	for len(f.open) < 3 {
		select {
		case <-ctx.Done():
			t.Fatal("the server's side of the channels did not open")
		case <-time.After(10 * time.Millisecond):
		}
	}
	f.mu.Lock()
	rel, lossy, track := f.channels[ReliableLabel], f.channels[LossyLabel], f.channels[DataTrackLabel]
	f.mu.Unlock()
	require.NotNil(t, rel)
	require.NotNil(t, lossy)
	require.NotNil(t, track)
	assert.False(t, track.Ordered(), "the data track channel is unordered")
	require.NotNil(t, track.MaxRetransmits())
	assert.Zero(t, *track.MaxRetransmits(), "and never retransmits")
	require.NoError(t, rel.SendText("down"))
	require.NoError(t, lossy.SendText("down-lossy"))
	require.NoError(t, track.Send([]byte("down-track")))
	want = map[string]bool{"true:down": true, "false:down-lossy": true, "track:down-track": true}
	for len(want) > 0 {
		select {
		case s := <-got:
			assert.True(t, want[s], "unexpected %q", s)
			delete(want, s)
		case <-ctx.Done():
			t.Fatalf("still waiting for %v", want)
		}
	}

	// The negotiated message size is the server's a=max-message-size.
	m := regexp.MustCompile(`a=max-message-size:(\d+)`).FindStringSubmatch(f.pc.LocalDescription().SDP)
	require.NotNil(t, m, "the answer states its limit")
	n, _ := strconv.Atoi(m[1])
	assert.Equal(t, n, f.tr.MaxMessageSize())

	st := f.tr.SyncState()
	assert.Equal(t, "offer", st.GetOffer().GetType())
	assert.Equal(t, "answer", st.GetAnswer().GetType())
	require.Len(t, st.GetDataChannels(), 3)
	for _, dc := range st.GetDataChannels() {
		assert.Equal(t, lkpb.SignalTarget_PUBLISHER, dc.GetTarget())
	}
}

func TestCandidatesGatheredBeforeAttachAreTrickledAfter(t *testing.T) {
	var mu sync.Mutex
	var sent []*lkpb.SignalRequest
	tr, err := New(Config{SinglePC: true, Loopback: true, SendSignal: func(r *lkpb.SignalRequest) error {
		mu.Lock()
		sent = append(sent, r)
		mu.Unlock()
		return nil
	}})
	require.NoError(t, err)
	defer tr.Close()
	// A candidate found after Offer returned is held, then sent by Attach.
	tr.sigMu.Lock()
	tr.offered = true
	tr.sigMu.Unlock()
	req := &lkpb.SignalRequest{Message: &lkpb.SignalRequest_Trickle{Trickle: &lkpb.TrickleRequest{CandidateInit: "{}"}}}
	require.NoError(t, tr.signal(req, true))
	mu.Lock()
	assert.Empty(t, sent)
	mu.Unlock()
	tr.Attach(nil)
	mu.Lock()
	assert.Len(t, sent, 1)
	mu.Unlock()
}

// TestServerMediaOfferIsRejected: a server offer with audio and video (a
// subscription the participant asked for) is answered without error, with
// its media sections rejected (port 0) and its data section accepted.
func TestServerMediaOfferIsRejected(t *testing.T) {
	answers := make(chan string, 1)
	tr, err := New(Config{Loopback: true, SendSignal: func(r *lkpb.SignalRequest) error {
		if a := r.GetAnswer(); a != nil {
			answers <- a.GetSdp()
		}
		return nil
	}})
	require.NoError(t, err)
	defer tr.Close()
	server, err := loopbackAPI().NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	defer server.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		_, err = server.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		require.NoError(t, err)
	}
	_, err = server.CreateDataChannel(ReliableLabel, nil)
	require.NoError(t, err)
	offer, err := server.CreateOffer(nil)
	require.NoError(t, err)
	require.NoError(t, server.SetLocalDescription(offer))
	require.NoError(t, tr.HandleOffer(&lkpb.SessionDescription{Type: "offer", Sdp: offer.SDP, Id: 1}))
	answer := <-answers
	for _, kind := range []string{"audio", "video"} {
		line := regexp.MustCompile(`(?m)^m=` + kind + ` (\d+)`).FindStringSubmatch(answer)
		require.NotNil(t, line, "the answer keeps the %s section, as SDP requires", kind)
		assert.Equal(t, "0", line[1], "the %s section is rejected:\n%s", kind, answer)
	}
	assert.Regexp(t, `(?m)^m=application 9 `, answer)
	assert.NotContains(t, answer, "a=rtpmap", "no codec is accepted")
}

// TestRestartICEKeepsTheChannels: an ICE restart offers new credentials and
// the data channels carry on.
func TestRestartICEKeepsTheChannels(t *testing.T) {
	f := newSingleSFU(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f.join(ctx)
	require.NoError(t, f.tr.Publish())
	require.NoError(t, f.tr.WaitReady(ctx))
	ufrag := regexp.MustCompile(`a=ice-ufrag:(\S+)`)
	first := ufrag.FindStringSubmatch(f.tr.pub.pc.LocalDescription().SDP)
	require.NotNil(t, first)
	require.NoError(t, f.tr.RestartICE())
	var again string
	select {
	case again = <-f.offers:
	case <-ctx.Done():
		t.Fatal("no ICE restart offer")
	}
	second := ufrag.FindStringSubmatch(again)
	require.NotNil(t, second)
	assert.NotEqual(t, first[1], second[1], "new ICE credentials")
	require.NoError(t, f.tr.Send(ctx, true, []byte("after restart")))
	select {
	case s := <-f.received:
		assert.Equal(t, "_reliable:after restart", s)
	case <-ctx.Done():
		t.Fatal("data did not arrive after the restart")
	}
	assert.Error(t, (&Transport{cfg: Config{}}).RestartICE(), "two-PC transports do not restart this way")
}
