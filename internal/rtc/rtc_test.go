package rtc

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callstate/callstate/internal/lkpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSFU plays the server's side of LiveKit's two PeerConnections with
// plain pion: it offers the subscriber connection (with its own _reliable
// and _lossy channels) and answers the publisher's offer.
type fakeSFU struct {
	t        *testing.T
	api      *webrtc.API
	sub, pub *webrtc.PeerConnection
	tr       *Transport

	mu       sync.Mutex
	received chan []byte
	block    chan struct{} // while open, the SFU does not read published data
	toClient *webrtc.DataChannel
}

func loopbackAPI() *webrtc.API {
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

func newFakeSFU(t *testing.T, onMessage func(bool, []byte)) *fakeSFU {
	f := &fakeSFU{t: t, api: loopbackAPI(), received: make(chan []byte, 1024)}
	var err error
	f.sub, err = f.api.NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	f.pub, err = f.api.NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	f.pub.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			f.mu.Lock()
			block := f.block
			f.mu.Unlock()
			if block != nil {
				<-block
			}
			f.received <- m.Data
		})
	})
	f.tr, err = New(Config{Loopback: true, SendSignal: f.fromClient, OnMessage: onMessage})
	require.NoError(t, err)
	trickle := func(pc *webrtc.PeerConnection, target lkpb.SignalTarget) {
		pc.OnICECandidate(func(c *webrtc.ICECandidate) {
			if c == nil {
				return
			}
			b, _ := json.Marshal(c.ToJSON())
			go func() { _ = f.tr.HandleTrickle(&lkpb.TrickleRequest{CandidateInit: string(b), Target: target}) }()
		})
	}
	trickle(f.sub, lkpb.SignalTarget_SUBSCRIBER)
	trickle(f.pub, lkpb.SignalTarget_PUBLISHER)
	t.Cleanup(func() {
		f.mu.Lock()
		if f.block != nil {
			close(f.block)
			f.block = nil
		}
		f.mu.Unlock()
		_ = f.tr.Close()
		_ = f.sub.GracefulClose()
		_ = f.pub.GracefulClose()
	})
	return f
}

// fromClient handles the client's signalling requests.
func (f *fakeSFU) fromClient(req *lkpb.SignalRequest) error {
	switch m := req.GetMessage().(type) {
	case *lkpb.SignalRequest_Answer:
		return f.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.Answer.GetSdp()})
	case *lkpb.SignalRequest_Offer:
		go func() {
			if err := f.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.Offer.GetSdp()}); err != nil {
				f.t.Error(err)
				return
			}
			ans, err := f.pub.CreateAnswer(nil)
			if err == nil {
				err = f.pub.SetLocalDescription(ans)
			}
			if err == nil {
				err = f.tr.HandleAnswer(&lkpb.SessionDescription{Type: "answer", Sdp: ans.SDP, Id: m.Offer.GetId()})
			}
			if err != nil {
				f.t.Error(err)
			}
		}()
	case *lkpb.SignalRequest_Trickle:
		var c webrtc.ICECandidateInit
		if err := json.Unmarshal([]byte(m.Trickle.GetCandidateInit()), &c); err != nil {
			return err
		}
		pc := f.sub
		if m.Trickle.GetTarget() == lkpb.SignalTarget_PUBLISHER {
			pc = f.pub
		}
		go func() { _ = pc.AddICECandidate(c) }()
	}
	return nil
}

// connect negotiates both PeerConnections and waits until data can flow
// both ways.
func (f *fakeSFU) connect(ctx context.Context) {
	var err error
	f.toClient, err = f.sub.CreateDataChannel(ReliableLabel, nil)
	require.NoError(f.t, err)
	unordered, zero := false, uint16(0)
	_, err = f.sub.CreateDataChannel(LossyLabel, &webrtc.DataChannelInit{Ordered: &unordered, MaxRetransmits: &zero})
	require.NoError(f.t, err)
	offer, err := f.sub.CreateOffer(nil)
	require.NoError(f.t, err)
	require.NoError(f.t, f.sub.SetLocalDescription(offer))
	require.NoError(f.t, f.tr.HandleOffer(&lkpb.SessionDescription{Type: "offer", Sdp: offer.SDP, Id: 7}))
	require.NoError(f.t, f.tr.Publish())
	select {
	case <-f.tr.SubscriberReady():
	case <-ctx.Done():
		f.t.Fatal("subscriber channels did not open")
	}
	require.NoError(f.t, f.tr.WaitReady(ctx))
}

func TestTransportCarriesDataBothWays(t *testing.T) {
	got := make(chan string, 4)
	f := newFakeSFU(t, func(reliable bool, b []byte) {
		if reliable {
			got <- string(b)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f.connect(ctx)
	assert.True(t, f.tr.Publishing())

	require.NoError(t, f.tr.Send(ctx, true, []byte("up")))
	select {
	case b := <-f.received:
		assert.Equal(t, "up", string(b))
	case <-ctx.Done():
		t.Fatal("published data did not arrive")
	}
	require.NoError(t, f.toClient.SendText("down"))
	select {
	case s := <-got:
		assert.Equal(t, "down", s)
	case <-ctx.Done():
		t.Fatal("subscribed data did not arrive")
	}
}

func TestSendBlocksOnAFullBufferUntilCancelledOrClosed(t *testing.T) {
	f := newFakeSFU(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f.connect(ctx)
	f.mu.Lock()
	f.block = make(chan struct{})
	f.mu.Unlock()

	// With the receiver stalled, the send buffer fills up to MaxBuffered and
	// Send then blocks: it must honour its context.
	chunk := make([]byte, 60<<10)
	sendCtx, sendCancel := context.WithTimeout(ctx, 5*time.Second)
	defer sendCancel()
	var err error
	sent := 0
	for err == nil && sent < 64<<20 {
		err = f.tr.Send(sendCtx, true, chunk)
		sent += len(chunk)
	}
	require.ErrorIs(t, err, context.DeadlineExceeded, "Send blocked until its deadline (after %d bytes)", sent)
	assert.Less(t, sent, 32<<20, "the buffer is bounded")

	// A blocked Send is released by Close: keep sending until Send blocks
	// on the full buffer, then close.
	errc := make(chan error, 1)
	go func() {
		for {
			if err := f.tr.Send(ctx, true, chunk); err != nil {
				errc <- err
				return
			}
		}
	}()
	require.Eventually(t, func() bool { return f.tr.reliable.dc.BufferedAmount() > MaxBuffered }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, f.tr.Close())
	select {
	case err := <-errc:
		assert.True(t, errors.Is(err, ErrClosed), "got %v", err)
	case <-ctx.Done():
		t.Fatal("Close did not release Send")
	}
	assert.ErrorIs(t, f.tr.Send(ctx, true, chunk), ErrClosed)
}

// TestTransportsShareCertificateAndAPI checks what each Transport no
// longer pays for: with the default settings, Transports share one pion
// API per Loopback value and offer the same DTLS certificate (the same
// fingerprint), which is refreshed once it is certRefresh old.
func TestTransportsShareCertificateAndAPI(t *testing.T) {
	newT := func(loopback bool) *Transport {
		tr, err := New(Config{SinglePC: true, Loopback: loopback})
		require.NoError(t, err)
		t.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	a, b, c := newT(true), newT(true), newT(false)
	assert.Same(t, a.api, b.api, "one API for equal settings")
	assert.NotSame(t, a.api, c.api, "Loopback settings differ")

	fingerprint := func(tr *Transport) string {
		offer, err := tr.pub.pc.CreateOffer(nil)
		require.NoError(t, err)
		for _, line := range strings.Split(offer.SDP, "\r\n") {
			if strings.HasPrefix(line, "a=fingerprint:") {
				return line
			}
		}
		t.Fatal("no fingerprint in the offer")
		return ""
	}
	assert.Equal(t, fingerprint(a), fingerprint(c), "one certificate for every PeerConnection")

	// An old certificate is replaced.
	certCache.mu.Lock()
	old := certCache.v
	certCache.at = time.Now().Add(-certRefresh - time.Minute)
	certCache.mu.Unlock()
	renewed := sharedCertificate()
	require.NotNil(t, renewed)
	assert.NotSame(t, old, renewed)
	assert.NotEqual(t, fingerprint(a), fingerprint(newT(true)), "a Transport made after the refresh offers the new one")

	// A caller's own settings or logs get an API of their own.
	se := webrtc.SettingEngine{}
	own, err := New(Config{SinglePC: true, SettingEngine: &se})
	require.NoError(t, err)
	defer own.Close()
	assert.NotSame(t, a.api, own.api)
}
