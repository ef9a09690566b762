// Package rtc is callstate's WebRTC transport for LiveKit's two-PeerConnection
// signalling (the /rtc path): a subscriber PeerConnection that the server
// offers and that carries the server's data channels to us, and a publisher
// PeerConnection that we offer and that carries our `_reliable` and `_lossy`
// data channels to the server.
//
// The Transport does not own the signalling connection: it is handed the
// server's offers, answers and candidates, and sends its own through the
// SendSignal function in Config. Received data-channel messages are handed
// to OnMessage on pion's goroutines; OnMessage must not block.
package rtc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/callstate/callstate/internal/lkpb"
)

// Labels of LiveKit's data channels.
const (
	ReliableLabel = "_reliable"
	LossyLabel    = "_lossy"
)

// MaxBuffered is how many bytes may wait in the reliable data channel's
// send buffer before Send blocks until the buffer drains below LowWater.
// The lossy channel keeps much less waiting (LossyMaxBuffered,
// LossyLowWater): LiveKit drops lossy packets it cannot forward within a
// target latency, so a burst (a large fragmented lossy message) is paced
// at the pace the connection drains rather than queued.
const (
	MaxBuffered      = 1 << 20
	LowWater         = 256 << 10
	LossyMaxBuffered = 64 << 10
	LossyLowWater    = 16 << 10
)

// DTLSRetransmission is the DTLS retransmission interval used unless the
// caller supplies its own SettingEngine.
const DTLSRetransmission = 100 * time.Millisecond

// SCTPRTOMax caps the SCTP retransmission timeout unless the caller
// supplies its own SettingEngine.
const SCTPRTOMax = 3 * time.Second

// ErrClosed is returned after Close.
var ErrClosed = errors.New("rtc: transport closed")

// Config configures a Transport.
type Config struct {
	// ICEServers from the JoinResponse.
	ICEServers []webrtc.ICEServer
	// Loopback gathers loopback UDP4 host candidates only, without mDNS:
	// for servers on the same machine (tests, a local dev server).
	Loopback bool
	// SettingEngine, when non-nil, is used as the base for both
	// PeerConnections (the Loopback settings are applied on a copy).
	SettingEngine *webrtc.SettingEngine
	// Logger receives pion's logs, at debug level; nil discards them.
	Logger *slog.Logger
	// SendSignal sends a request to the server. It may block briefly.
	SendSignal func(*lkpb.SignalRequest) error
	// OnMessage receives every message of the server's data channels on
	// the subscriber PeerConnection. reliable tells the channel.
	OnMessage func(reliable bool, data []byte)
	// OnState receives connection state changes of either PeerConnection.
	OnState func(publisher bool, state webrtc.PeerConnectionState)
}

// Transport is the pair of PeerConnections.
type Transport struct {
	cfg Config
	api *webrtc.API

	sub *peer
	pub *peer

	subChannels chan struct{} // closed when the server's two channels are open
	subOnce     sync.Once
	subReliable bool
	subLossy    bool

	mu          sync.Mutex
	offerID     uint32
	lastOfferID uint32                // of the server's last subscriber offer
	subDCs      []*webrtc.DataChannel // the server's channels to us
	reliable    *channel
	lossy       *channel
	closed      bool
}

type peer struct {
	pc        *webrtc.PeerConnection
	target    lkpb.SignalTarget
	mu        sync.Mutex
	remoteSet bool
	pending   []webrtc.ICECandidateInit
}

// New creates the transport and its subscriber PeerConnection; the publisher
// is created by Publish.
func New(cfg Config) (*Transport, error) {
	se := webrtc.SettingEngine{}
	if cfg.SettingEngine != nil {
		se = *cfg.SettingEngine
	} else {
		// pion's default of 1 s makes a DTLS handshake message lost before
		// ICE settles cost a second of join time.
		se.SetDTLSRetransmissionInterval(DTLSRetransmission)
		// pion's SCTP backs its retransmission timer off up to 60 s: after
		// a stall (a loaded machine, a brief outage) a reliable message
		// could wait that long. Real-time data wants it retried sooner.
		se.SetSCTPRTOMax(SCTPRTOMax)
		logger := cfg.Logger
		if logger == nil {
			logger = slog.New(slog.DiscardHandler)
		}
		se.LoggerFactory = slogFactory{l: logger}
	}
	if cfg.Loopback {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	}
	t := &Transport{cfg: cfg, api: webrtc.NewAPI(webrtc.WithSettingEngine(se)), subChannels: make(chan struct{})}
	sub, err := t.newPeer(lkpb.SignalTarget_SUBSCRIBER)
	if err != nil {
		return nil, err
	}
	t.sub = sub
	sub.pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		reliable := dc.Label() == ReliableLabel
		if !reliable && dc.Label() != LossyLabel {
			return // other server channels (data tracks) are not used
		}
		t.mu.Lock()
		t.subDCs = append(t.subDCs, dc)
		t.mu.Unlock()
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			if cfg.OnMessage != nil {
				cfg.OnMessage(reliable, m.Data)
			}
		})
		dc.OnOpen(func() {
			t.mu.Lock()
			if reliable {
				t.subReliable = true
			} else {
				t.subLossy = true
			}
			both := t.subReliable && t.subLossy
			t.mu.Unlock()
			if both {
				t.subOnce.Do(func() { close(t.subChannels) })
			}
		})
	})
	return t, nil
}

func (t *Transport) newPeer(target lkpb.SignalTarget) (*peer, error) {
	pc, err := t.api.NewPeerConnection(webrtc.Configuration{
		ICEServers:   t.cfg.ICEServers,
		BundlePolicy: webrtc.BundlePolicyMaxBundle,
	})
	if err != nil {
		return nil, fmt.Errorf("rtc: creating a PeerConnection: %w", err)
	}
	p := &peer{pc: pc, target: target}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		b, err := json.Marshal(c.ToJSON())
		if err != nil {
			return
		}
		_ = t.cfg.SendSignal(&lkpb.SignalRequest{Message: &lkpb.SignalRequest_Trickle{Trickle: &lkpb.TrickleRequest{
			CandidateInit: string(b),
			Target:        target,
		}}})
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if t.cfg.OnState != nil {
			t.cfg.OnState(target == lkpb.SignalTarget_PUBLISHER, s)
		}
	})
	return p, nil
}

// HandleOffer answers the server's offer for the subscriber PeerConnection.
func (t *Transport) HandleOffer(sd *lkpb.SessionDescription) error {
	t.mu.Lock()
	t.lastOfferID = sd.GetId()
	t.mu.Unlock()
	p := t.sub
	if err := p.setRemote(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sd.GetSdp()}); err != nil {
		return err
	}
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return fmt.Errorf("rtc: creating the subscriber answer: %w", err)
	}
	if err := p.pc.SetLocalDescription(answer); err != nil {
		return fmt.Errorf("rtc: setting the subscriber answer: %w", err)
	}
	return t.cfg.SendSignal(&lkpb.SignalRequest{Message: &lkpb.SignalRequest_Answer{Answer: &lkpb.SessionDescription{
		Type: "answer",
		Sdp:  answer.SDP,
		Id:   sd.GetId(),
	}}})
}

// HandleAnswer applies the server's answer to our publisher offer.
func (t *Transport) HandleAnswer(sd *lkpb.SessionDescription) error {
	t.mu.Lock()
	p := t.pub
	t.mu.Unlock()
	if p == nil {
		return errors.New("rtc: answer without a publisher offer")
	}
	return p.setRemote(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sd.GetSdp()})
}

// HandleTrickle adds a remote ICE candidate, queueing it until the remote
// description is set.
func (t *Transport) HandleTrickle(tr *lkpb.TrickleRequest) error {
	var p *peer
	if tr.GetTarget() == lkpb.SignalTarget_PUBLISHER {
		t.mu.Lock()
		p = t.pub
		t.mu.Unlock()
	} else {
		p = t.sub
	}
	if p == nil {
		return errors.New("rtc: candidate for a publisher that does not exist")
	}
	if tr.GetFinal() && tr.GetCandidateInit() == "" {
		return nil
	}
	var c webrtc.ICECandidateInit
	if err := json.Unmarshal([]byte(tr.GetCandidateInit()), &c); err != nil {
		return fmt.Errorf("rtc: malformed candidate: %w", err)
	}
	p.mu.Lock()
	if !p.remoteSet {
		if len(p.pending) < 256 {
			p.pending = append(p.pending, c)
		}
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	return p.pc.AddICECandidate(c)
}

func (p *peer) setRemote(sd webrtc.SessionDescription) error {
	if err := p.pc.SetRemoteDescription(sd); err != nil {
		return fmt.Errorf("rtc: setting the remote %s: %w", sd.Type, err)
	}
	p.mu.Lock()
	p.remoteSet = true
	pending := p.pending
	p.pending = nil
	p.mu.Unlock()
	for _, c := range pending {
		if err := p.pc.AddICECandidate(c); err != nil {
			return fmt.Errorf("rtc: adding a candidate: %w", err)
		}
	}
	return nil
}

// Publish creates the publisher PeerConnection with its two data channels
// and sends the offer. It returns once the offer is sent; Ready reports when
// both channels are open.
func (t *Transport) Publish() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if t.pub != nil {
		return nil
	}
	p, err := t.newPeer(lkpb.SignalTarget_PUBLISHER)
	if err != nil {
		return err
	}
	t.pub = p
	ordered := true
	rel, err := p.pc.CreateDataChannel(ReliableLabel, &webrtc.DataChannelInit{Ordered: &ordered})
	if err != nil {
		return fmt.Errorf("rtc: creating %s: %w", ReliableLabel, err)
	}
	unordered := false
	var zero uint16
	lossy, err := p.pc.CreateDataChannel(LossyLabel, &webrtc.DataChannelInit{Ordered: &unordered, MaxRetransmits: &zero})
	if err != nil {
		return fmt.Errorf("rtc: creating %s: %w", LossyLabel, err)
	}
	t.reliable = newChannel(rel, MaxBuffered, LowWater)
	t.lossy = newChannel(lossy, LossyMaxBuffered, LossyLowWater)
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("rtc: creating the publisher offer: %w", err)
	}
	if err := p.pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("rtc: setting the publisher offer: %w", err)
	}
	t.offerID++
	return t.cfg.SendSignal(&lkpb.SignalRequest{Message: &lkpb.SignalRequest_Offer{Offer: &lkpb.SessionDescription{
		Type: "offer",
		Sdp:  offer.SDP,
		Id:   t.offerID,
	}}})
}

// WaitReady blocks until both publisher data channels are open, ctx is done
// or the transport is closed.
func (t *Transport) WaitReady(ctx context.Context) error {
	t.mu.Lock()
	rel, lossy := t.reliable, t.lossy
	t.mu.Unlock()
	if rel == nil {
		return errors.New("rtc: not publishing")
	}
	for _, c := range []*channel{rel, lossy} {
		select {
		case <-c.open:
		case <-c.gone:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// SyncState describes the transport to a server the session resumes with:
// the subscriber's last offer and answer, and the data channels.
func (t *Transport) SyncState() *lkpb.SyncState {
	st := &lkpb.SyncState{}
	if ld := t.sub.pc.LocalDescription(); ld != nil {
		st.Answer = &lkpb.SessionDescription{Type: ld.Type.String(), Sdp: ld.SDP}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if rd := t.sub.pc.RemoteDescription(); rd != nil {
		st.Offer = &lkpb.SessionDescription{Type: rd.Type.String(), Sdp: rd.SDP, Id: t.lastOfferID}
	}
	info := func(dc *webrtc.DataChannel, target lkpb.SignalTarget) {
		if id := dc.ID(); id != nil {
			st.DataChannels = append(st.DataChannels, &lkpb.DataChannelInfo{Label: dc.Label(), Id: uint32(*id), Target: target})
		}
	}
	for _, c := range []*channel{t.reliable, t.lossy} {
		if c != nil {
			info(c.dc, lkpb.SignalTarget_PUBLISHER)
		}
	}
	for _, dc := range t.subDCs {
		info(dc, lkpb.SignalTarget_SUBSCRIBER)
	}
	return st
}

// SubscriberReady returns a channel closed once the server's reliable and
// lossy data channels to us are open: from then on, others' data reaches us.
func (t *Transport) SubscriberReady() <-chan struct{} { return t.subChannels }

// Publishing reports whether Publish was called.
func (t *Transport) Publishing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pub != nil
}

// Send writes one message on the reliable or lossy publisher channel. It
// blocks while more than MaxBuffered (LossyMaxBuffered) bytes wait to be
// sent, until the buffer drains, ctx is done or the transport closes. pion copies data before Send
// returns, so the caller may reuse it.
func (t *Transport) Send(ctx context.Context, reliable bool, data []byte) error {
	t.mu.Lock()
	c := t.lossy
	if reliable {
		c = t.reliable
	}
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if c == nil {
		return errors.New("rtc: not publishing")
	}
	return c.send(ctx, data)
}

// Close closes both PeerConnections. It is idempotent.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	pub := t.pub
	t.mu.Unlock()
	var errs []error
	if pub != nil {
		errs = append(errs, pub.pc.GracefulClose())
	}
	errs = append(errs, t.sub.pc.GracefulClose())
	return errors.Join(errs...)
}

// channel is a publisher data channel with send-side flow control.
type channel struct {
	dc          *webrtc.DataChannel
	maxBuffered uint64
	open        chan struct{}
	gone        chan struct{}

	mu  sync.Mutex
	low chan struct{} // closed and replaced when the buffer drains
}

func newChannel(dc *webrtc.DataChannel, maxBuffered, lowWater uint64) *channel {
	c := &channel{dc: dc, maxBuffered: maxBuffered, open: make(chan struct{}), gone: make(chan struct{}), low: make(chan struct{})}
	var openOnce, goneOnce sync.Once
	dc.OnOpen(func() { openOnce.Do(func() { close(c.open) }) })
	dc.OnClose(func() { goneOnce.Do(func() { close(c.gone) }) })
	dc.SetBufferedAmountLowThreshold(lowWater)
	dc.OnBufferedAmountLow(func() {
		c.mu.Lock()
		close(c.low)
		c.low = make(chan struct{})
		c.mu.Unlock()
	})
	return c
}

func (c *channel) send(ctx context.Context, data []byte) error {
	select {
	case <-c.open:
	case <-c.gone:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	for {
		c.mu.Lock()
		low := c.low
		c.mu.Unlock()
		if c.dc.BufferedAmount() <= c.maxBuffered {
			break
		}
		select {
		case <-low:
		case <-c.gone:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := c.dc.Send(data); err != nil {
		select {
		case <-c.gone:
			return ErrClosed
		default:
		}
		return fmt.Errorf("rtc: sending on %s: %w", c.dc.Label(), err)
	}
	return nil
}
