// Package rtc is callstate's WebRTC transport. It speaks both of LiveKit's
// layouts:
//
//   - one PeerConnection (the /rtc/v1 path, the default): we offer it, with
//     our `_reliable` and `_lossy` data channels, and those two channels
//     carry data both ways. The server creates no channels of its own on it.
//   - two PeerConnections (the /rtc path): a subscriber PeerConnection that
//     the server offers and that carries the server's data channels to us,
//     and a publisher PeerConnection that we offer and that carries our
//     `_reliable` and `_lossy` data channels to the server.
//
// The PeerConnections carry data only: they are built without a media
// engine and without interceptors (pion's defaults register every codec and
// run NACK, RTCP report and TWCC loops per PeerConnection, none of which a
// data channel uses). A media section the server offers is rejected.
//
// The Transport does not own the signalling connection: it is handed the
// server's offers, answers and candidates, and sends its own through the
// SendSignal function in Config. Received data-channel messages are handed
// to OnMessage on pion's goroutines; OnMessage must not block.
package rtc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/pion/datachannel"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/transport/v4/stdnet"
	"github.com/pion/webrtc/v4"

	"github.com/callstate/callstate/internal/lkpb"
)

// Labels of LiveKit's data channels.
const (
	ReliableLabel = "_reliable"
	LossyLabel    = "_lossy"
	// DataTrackLabel carries data track packets (unordered, no
	// retransmissions), apart from the other two so that its buffer is its
	// own: a burst of frames never delays reliable data.
	DataTrackLabel = "_data_track"
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
	// SharedNet lets the PeerConnections use the process's shared list of
	// network interfaces (see sharedNet) instead of listing them again:
	// set it when SettingEngine sets no Net of its own.
	SharedNet bool
	// Logger receives pion's logs, at debug level; nil discards them.
	Logger *slog.Logger
	// SinglePC builds the one-PeerConnection layout (/rtc/v1); otherwise
	// the two-PeerConnection one (/rtc).
	SinglePC bool
	// SendSignal sends a request to the server. It may block briefly. In
	// the one-PeerConnection layout it is not called before Attach.
	SendSignal func(*lkpb.SignalRequest) error
	// OnMessage receives every message the server sends on a data channel.
	// reliable tells the channel. data is the Transport's to give: pion
	// allocates it for this message alone, so the receiver may keep it (or
	// slices of it) without copying.
	OnMessage func(reliable bool, data []byte)
	// OnDataTrack receives every data track packet the server sends, in a
	// buffer the receiver may keep, like OnMessage's.
	OnDataTrack func(data []byte)
	// OnState receives connection state changes of either PeerConnection.
	// The one PeerConnection of the single layout reports as the
	// subscriber (publisher false): it is the one that carries what others
	// send.
	OnState func(publisher bool, state webrtc.PeerConnectionState)
}

// MaxReceiveMessage is the largest data channel message a Transport reads;
// a larger one (which a peer that honours our SDP never sends) closes its
// channel. readBufferStart is a reader's buffer until a message needs more.
const (
	MaxReceiveMessage = 256 << 10
	readBufferStart   = 2 << 10
)

// GatherWait bounds how long Offer waits for ICE gathering, so that the
// offer in the join request carries our candidates; candidates gathered
// later are trickled once the signalling connection is up.
const GatherWait = time.Second

// Transport is the PeerConnection, or the pair of them.
type Transport struct {
	cfg Config
	api *webrtc.API

	sub *peer // nil in the single layout
	pub *peer // the one PeerConnection in the single layout

	sigMu    sync.Mutex
	attached bool                  // SendSignal may be called
	held     []*lkpb.SignalRequest // candidates gathered before Attach
	offered  bool                  // Offer has run (single layout)
	sending  bool                  // Publish has run

	subChannels chan struct{} // closed when the server's two channels are open
	subOnce     sync.Once
	subReliable bool
	subLossy    bool

	readers sync.WaitGroup // the data channel readers

	mu          sync.Mutex
	offerID     uint32
	lastOfferID uint32                // of the server's last subscriber offer
	subDCs      []*webrtc.DataChannel // the server's channels to us
	reliable    *channel
	lossy       *channel
	dataTrack   *channel
	closed      bool
}

type peer struct {
	pc        *webrtc.PeerConnection
	target    lkpb.SignalTarget
	mu        sync.Mutex
	remoteSet bool
	pending   []webrtc.ICECandidateInit
}

// maxHeld bounds the candidates kept before Attach: a host gathers a
// handful; more is a misconfiguration, not worth memory.
const maxHeld = 64

// New creates the transport. In the two-PeerConnection layout it creates
// the subscriber PeerConnection, and Publish the publisher one; in the
// single layout it creates the one PeerConnection with both data channels,
// which Offer then offers.
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
		// LiveKit's servers announce their candidates as IP addresses,
		// never as mDNS names, so resolving .local names is never needed;
		// pion's default would open a multicast socket, and run its
		// readers, for every PeerConnection.
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		logger := cfg.Logger
		if logger == nil {
			logger = slog.New(slog.DiscardHandler)
		}
		se.LoggerFactory = slogFactory{l: logger}
	}
	// Detached data channels are read by the Transport's own readers,
	// whose buffers start at 2 KiB and grow only for large messages: pion's
	// reader holds a 64 KiB buffer per channel for the channel's life,
	// a third of an idle participant's memory.
	se.DetachDataChannels()
	// The most a peer may send us in one message, announced in our SDP
	// and enforced by the readers: LiveKit's server forwards at most its
	// own 65,535-byte limit plus what it stamps into a packet; pion's
	// default (1 GiB) would let a peer grow a reader's buffer without
	// bound.
	se.SetSCTPMaxMessageSize(MaxReceiveMessage)
	var shared *stdnet.Net
	if cfg.SharedNet || cfg.SettingEngine == nil {
		if shared = sharedNet(); shared != nil {
			se.SetNet(shared)
		}
	}
	if cfg.Loopback {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	}
	var api *webrtc.API
	// With the default settings and no logs to keep, every Transport's
	// settings are the same but for Loopback (and the Net, shared too).
	if cfg.SettingEngine == nil && shared != nil && (cfg.Logger == nil || cfg.Logger.Handler() == slog.DiscardHandler) {
		api = sharedAPI(se, cfg.Loopback, shared)
	} else {
		api = dataOnlyAPI(se)
	}
	t := &Transport{cfg: cfg, api: api, subChannels: make(chan struct{})}
	if cfg.SinglePC {
		p, err := t.newPeer(lkpb.SignalTarget_PUBLISHER)
		if err != nil {
			return nil, err
		}
		t.pub = p
		if err := t.createChannels(p, true); err != nil {
			_ = p.pc.Close()
			return nil, err
		}
		return t, nil
	}
	t.attached = true // the signalling connection exists before New
	sub, err := t.newPeer(lkpb.SignalTarget_SUBSCRIBER)
	if err != nil {
		return nil, err
	}
	t.sub = sub
	sub.pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		reliable := dc.Label() == ReliableLabel
		// Other server channels are not used, but they are read and their
		// messages dropped: unread data would fill the association's
		// receive window that all channels share.
		used := reliable || dc.Label() == LossyLabel
		track := dc.Label() == DataTrackLabel
		if used || track {
			t.mu.Lock()
			t.subDCs = append(t.subDCs, dc)
			t.mu.Unlock()
		}
		dc.OnOpen(func() {
			deliver := t.deliverer(reliable, used)
			if track {
				deliver = t.cfg.OnDataTrack
			}
			t.startReader(dc, deliver, nil)
			if used {
				t.channelOpen(reliable)
			}
		})
	})
	return t, nil
}

// channelOpen records that a receiving channel opened, and closes
// subChannels once both have.
func (t *Transport) channelOpen(reliable bool) {
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
}

// netCache holds the network interfaces that Transports share. pion's ICE
// agent otherwise lists them (a netlink dump) for every PeerConnection and
// keeps its own copy; a process that runs many Rooms needs one list, read
// again once it is 10 s old so that a Room joining after a network
// change sees the new interfaces. A stdnet.Net is not modified after it is
// made (pion refreshes it only with continual gathering, which callstate
// does not use), so sharing one is safe.
var netCache = refreshing[*stdnet.Net]{every: 10 * time.Second, make: stdnet.NewNet}

func sharedNet() *stdnet.Net { return netCache.get() } // nil: pion makes its own

// refreshing is a value the process shares, made again once it is older
// than every; a value that cannot be made is nil (the caller then does
// without), and making it is tried again on the next get.
type refreshing[T comparable] struct {
	every time.Duration
	make  func() (T, error)

	mu sync.Mutex
	v  T
	at time.Time
}

func (c *refreshing[T]) get() T {
	c.mu.Lock()
	defer c.mu.Unlock()
	var zero T
	if c.v == zero || time.Since(c.at) > c.every {
		v, err := c.make()
		if err != nil {
			return zero
		}
		c.v, c.at = v, time.Now()
	}
	return c.v
}

// certCache holds the DTLS certificate that the process's PeerConnections
// share. pion otherwise generates an ECDSA key and signs a certificate for
// every PeerConnection: CPU on every join (it shows when hundreds of
// participants join at once) and a key and a parsed certificate kept for
// the PeerConnection's life. WebRTC authenticates a DTLS certificate by
// the fingerprint in the SDP, which the signalling connection carries, not
// by who issued it, so one certificate serves any number of connections
// (pion documents sharing one; browsers do the same per origin). It is
// replaced once certRefresh old, well before pion's one-month expiry, so
// a long-running process never offers an expired one.
var certCache = refreshing[*webrtc.Certificate]{every: certRefresh, make: func() (*webrtc.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return webrtc.GenerateCertificate(key)
}}

const certRefresh = 24 * time.Hour

// sharedCertificate returns the process's DTLS certificate, or nil (pion
// then makes one for the PeerConnection) if none could be made.
func sharedCertificate() *webrtc.Certificate { return certCache.get() }

// apiCache holds the pion APIs that Transports with the default settings
// share, one per Loopback value: an API (its SettingEngine copy and media
// engine) is made for any number of PeerConnections, and making one per
// Transport cost each participant a kilobyte for nothing. An entry is
// valid while sharedNet returns the Net it was made with.
var apiCache struct {
	mu  sync.Mutex
	api [2]*webrtc.API
	net [2]*stdnet.Net
}

// sharedAPI returns the shared API for se, which must be New's default
// settings for loopback with Net n.
func sharedAPI(se webrtc.SettingEngine, loopback bool, n *stdnet.Net) *webrtc.API {
	i := 0
	if loopback {
		i = 1
	}
	apiCache.mu.Lock()
	defer apiCache.mu.Unlock()
	if apiCache.api[i] == nil || apiCache.net[i] != n {
		apiCache.api[i], apiCache.net[i] = dataOnlyAPI(se), n
	}
	return apiCache.api[i]
}

// dataOnlyAPI builds a pion API without codecs and without interceptors:
// webrtc.NewAPI registers both by default, and the interceptors alone run
// several goroutines per PeerConnection (NACK, RTCP reports, TWCC) that a
// data-only connection never feeds.
func dataOnlyAPI(se webrtc.SettingEngine) *webrtc.API {
	return webrtc.NewAPI(
		webrtc.WithSettingEngine(se),
		webrtc.WithMediaEngine(&webrtc.MediaEngine{}),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}),
	)
}

// SinglePC reports whether the transport is the one-PeerConnection layout.
func (t *Transport) SinglePC() bool { return t.cfg.SinglePC }

// Offer creates the single layout's offer, sets it as the local
// description and returns it once ICE gathering is done (bounded by ctx
// and GatherWait), so that it carries our candidates: it goes in the join
// request, before any signalling connection exists.
func (t *Transport) Offer(ctx context.Context) (*lkpb.SessionDescription, error) {
	if !t.cfg.SinglePC {
		return nil, errors.New("rtc: Offer needs the single-PeerConnection layout")
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, ErrClosed
	}
	t.mu.Unlock()
	pc := t.pub.pc
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, fmt.Errorf("rtc: creating the offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return nil, fmt.Errorf("rtc: setting the offer: %w", err)
	}
	wait := time.NewTimer(GatherWait)
	defer wait.Stop()
	select {
	case <-gathered:
	case <-wait.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// From here on, a new candidate may miss the SDP read below: hold it
	// for Attach (one that made it into the SDP too is sent twice, which
	// ICE ignores).
	t.sigMu.Lock()
	t.offered = true
	t.sigMu.Unlock()
	sdp := offer.SDP
	if ld := pc.LocalDescription(); ld != nil {
		sdp = ld.SDP // with the candidates gathered so far
	}
	t.mu.Lock()
	t.offerID++
	id := t.offerID
	t.mu.Unlock()
	return &lkpb.SessionDescription{Type: "offer", Sdp: sdp, Id: id}, nil
}

// Attach tells the transport that the signalling connection is up: from
// now on it sends its candidates through SendSignal, first those gathered
// after Offer returned (earlier ones are in the offer). iceServers are the
// server's, from the JoinResponse: the single layout's PeerConnection was
// created before they were known, and keeps them for an ICE restart.
func (t *Transport) Attach(iceServers []webrtc.ICEServer) {
	if t.cfg.SinglePC && len(iceServers) > 0 {
		cfg := t.pub.pc.GetConfiguration()
		cfg.ICEServers = iceServers
		if err := t.pub.pc.SetConfiguration(cfg); err != nil && t.cfg.Logger != nil {
			t.cfg.Logger.Debug("rtc: keeping the server's ICE servers", "err", err)
		}
	}
	t.sigMu.Lock()
	t.attached = true
	held := t.held
	t.held = nil
	t.sigMu.Unlock()
	for _, req := range held {
		_ = t.cfg.SendSignal(req)
	}
}

// RestartICE offers the single layout's PeerConnection again with new ICE
// credentials, so that it gathers candidates again, with the ICE servers
// Attach gave it (its first offer went out before the server named them:
// a network that needs the server's TURN relays connects only after this).
// The server's answer arrives through HandleAnswer.
func (t *Transport) RestartICE() error {
	if !t.cfg.SinglePC {
		return errors.New("rtc: RestartICE needs the single-PeerConnection layout")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	pc := t.pub.pc
	return t.sendOffer(pc, &webrtc.OfferOptions{ICERestart: true}, "ICE restart")
}

// sendOffer creates an offer on pc, sets it as the local description and
// sends it to the server with the next offer id; what names the offer in
// errors.
func (t *Transport) sendOffer(pc *webrtc.PeerConnection, opts *webrtc.OfferOptions, what string) error {
	offer, err := pc.CreateOffer(opts)
	if err != nil {
		return fmt.Errorf("rtc: creating the %s offer: %w", what, err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("rtc: setting the %s offer: %w", what, err)
	}
	t.offerID++
	return t.signal(&lkpb.SignalRequest{Message: &lkpb.SignalRequest_Offer{Offer: &lkpb.SessionDescription{
		Type: "offer",
		Sdp:  offer.SDP,
		Id:   t.offerID,
	}}}, false)
}

// signal sends req, or holds it until Attach.
func (t *Transport) signal(req *lkpb.SignalRequest, candidate bool) error {
	t.sigMu.Lock()
	if !t.attached {
		if candidate && t.offered && len(t.held) < maxHeld {
			t.held = append(t.held, req)
		}
		// Candidates gathered before the offer was taken are in it.
		t.sigMu.Unlock()
		return nil
	}
	t.sigMu.Unlock()
	return t.cfg.SendSignal(req)
}

// createChannels creates our two data channels on p. In the single layout
// they also carry the server's messages to us.
func (t *Transport) createChannels(p *peer, receive bool) error {
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
	track, err := p.pc.CreateDataChannel(DataTrackLabel, &webrtc.DataChannelInit{Ordered: &unordered, MaxRetransmits: &zero})
	if err != nil {
		return fmt.Errorf("rtc: creating %s: %w", DataTrackLabel, err)
	}
	t.reliable = newChannel(rel, MaxBuffered, LowWater)
	t.lossy = newChannel(lossy, LossyMaxBuffered, LossyLowWater)
	t.dataTrack = newChannel(track, LossyMaxBuffered, LossyLowWater)
	for _, c := range []*channel{t.reliable, t.lossy, t.dataTrack} {
		c := c
		reliable := c == t.reliable
		c.dc.OnOpen(func() {
			// The reader runs in both layouts: in the two-PC one the
			// server sends nothing on our channels, but reading is how a
			// detached channel learns that it closed.
			deliver := t.deliverer(reliable, receive)
			if c == t.dataTrack {
				deliver = nil
				if receive {
					deliver = t.cfg.OnDataTrack
				}
			}
			t.startReader(c.dc, deliver, c.closed)
			c.opened()
			if receive && c != t.dataTrack {
				t.channelOpen(reliable)
			}
		})
	}
	return nil
}

func (t *Transport) newPeer(target lkpb.SignalTarget) (*peer, error) {
	conf := webrtc.Configuration{
		ICEServers:   t.cfg.ICEServers,
		BundlePolicy: webrtc.BundlePolicyMaxBundle,
	}
	if c := sharedCertificate(); c != nil {
		conf.Certificates = []webrtc.Certificate{*c}
	}
	pc, err := t.api.NewPeerConnection(conf)
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
		_ = t.signal(&lkpb.SignalRequest{Message: &lkpb.SignalRequest_Trickle{Trickle: &lkpb.TrickleRequest{
			CandidateInit: string(b),
			Target:        target,
		}}}, true)
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if t.cfg.OnState != nil {
			t.cfg.OnState(target == lkpb.SignalTarget_PUBLISHER && !t.cfg.SinglePC, s)
		}
	})
	return p, nil
}

// HandleOffer answers the server's offer for the subscriber PeerConnection
// (in the single layout, for the one PeerConnection). Media sections in it
// are rejected: the API has no codecs to accept them with.
func (t *Transport) HandleOffer(sd *lkpb.SessionDescription) error {
	t.mu.Lock()
	t.lastOfferID = sd.GetId()
	t.mu.Unlock()
	p := t.sub
	if t.cfg.SinglePC {
		p = t.pub
	}
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
	return t.signal(&lkpb.SignalRequest{Message: &lkpb.SignalRequest_Answer{Answer: &lkpb.SessionDescription{
		Type: "answer",
		Sdp:  answer.SDP,
		Id:   sd.GetId(),
	}}}, false)
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
	if tr.GetTarget() == lkpb.SignalTarget_PUBLISHER || t.cfg.SinglePC {
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

// Publish makes the transport ready to send. In the two-PeerConnection
// layout it creates the publisher PeerConnection with its two data channels
// and sends the offer; it returns once the offer is sent, and WaitReady
// reports when both channels are open. In the single layout the channels
// exist from New on, and Publish only allows Send.
func (t *Transport) Publish() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if t.cfg.SinglePC {
		t.sending = true
		return nil
	}
	if t.pub != nil {
		return nil
	}
	p, err := t.newPeer(lkpb.SignalTarget_PUBLISHER)
	if err != nil {
		return err
	}
	t.pub = p
	t.sending = true
	if err := t.createChannels(p, false); err != nil {
		return err
	}
	return t.sendOffer(p.pc, nil, "publisher")
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
// the last offer and answer, and the data channels. In the two-PC layout
// they are the subscriber's (the server's offer, our answer); in the single
// layout the one PeerConnection's (our offer, the server's answer), as the
// server reads them.
func (t *Transport) SyncState() *lkpb.SyncState {
	st := &lkpb.SyncState{}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cfg.SinglePC {
		if ld := t.pub.pc.LocalDescription(); ld != nil {
			st.Offer = &lkpb.SessionDescription{Type: ld.Type.String(), Sdp: ld.SDP, Id: t.offerID}
		}
		if rd := t.pub.pc.RemoteDescription(); rd != nil {
			st.Answer = &lkpb.SessionDescription{Type: rd.Type.String(), Sdp: rd.SDP, Id: t.offerID}
		}
	} else {
		if ld := t.sub.pc.LocalDescription(); ld != nil {
			st.Answer = &lkpb.SessionDescription{Type: ld.Type.String(), Sdp: ld.SDP}
		}
		if rd := t.sub.pc.RemoteDescription(); rd != nil {
			st.Offer = &lkpb.SessionDescription{Type: rd.Type.String(), Sdp: rd.SDP, Id: t.lastOfferID}
		}
	}
	info := func(dc *webrtc.DataChannel, target lkpb.SignalTarget) {
		if id := dc.ID(); id != nil {
			st.DataChannels = append(st.DataChannels, &lkpb.DataChannelInfo{Label: dc.Label(), Id: uint32(*id), Target: target})
		}
	}
	for _, c := range []*channel{t.reliable, t.lossy, t.dataTrack} {
		if c != nil {
			info(c.dc, lkpb.SignalTarget_PUBLISHER)
		}
	}
	for _, dc := range t.subDCs {
		info(dc, lkpb.SignalTarget_SUBSCRIBER)
	}
	return st
}

// MaxMessageSize is the largest message the remote end accepts on our data
// channels, from its SDP's max-message-size (RFC 8841; 65,535 when the SDP
// says nothing), once the SCTP association is up; 0 before.
func (t *Transport) MaxMessageSize() int {
	t.mu.Lock()
	p := t.pub
	t.mu.Unlock()
	if p == nil {
		return 0
	}
	sctp := p.pc.SCTP()
	if sctp == nil {
		return 0
	}
	return int(sctp.GetCapabilities().MaxMessageSize)
}

// SubscriberReady returns a channel closed once the data channels that
// bring others' data to us (the server's in the two-PC layout, ours in the
// single one) are open: from then on, others' data reaches us.
func (t *Transport) SubscriberReady() <-chan struct{} { return t.subChannels }

// Publishing reports whether Publish was called.
func (t *Transport) Publishing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sending
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
	if c == nil || !t.Publishing() {
		return errors.New("rtc: not publishing")
	}
	return c.send(ctx, data)
}

// SendDataTrack writes one data track packet on the `_data_track` channel.
// Like Send on the lossy channel it waits while LossyMaxBuffered bytes are
// queued on that channel, which has its own buffer: the reliable and lossy
// channels never wait behind it.
func (t *Transport) SendDataTrack(ctx context.Context, pkt []byte) error {
	t.mu.Lock()
	c, closed := t.dataTrack, t.closed
	t.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if c == nil || !t.Publishing() {
		return errors.New("rtc: not publishing")
	}
	return c.send(ctx, pkt)
}

// DataTrackBuffered is how many bytes wait in the `_data_track` channel's
// send buffer.
func (t *Transport) DataTrackBuffered() uint64 {
	t.mu.Lock()
	c := t.dataTrack
	t.mu.Unlock()
	if c == nil {
		return 0
	}
	return c.dc.BufferedAmount()
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
	if t.sub != nil {
		errs = append(errs, t.sub.pc.GracefulClose())
	}
	// Closing the PeerConnections ended the SCTP associations, and so the
	// readers' reads.
	t.readers.Wait()
	return errors.Join(errs...)
}

// channel is a publisher data channel with send-side flow control.
type channel struct {
	dc          *webrtc.DataChannel
	maxBuffered uint64
	open        chan struct{}
	gone        chan struct{}

	openOnce, goneOnce sync.Once

	mu  sync.Mutex
	low chan struct{} // closed and replaced when the buffer drains
}

// newChannel wraps dc; the caller's OnOpen handler calls opened, and the
// channel's reader closed when it ends.
func newChannel(dc *webrtc.DataChannel, maxBuffered, lowWater uint64) *channel {
	c := &channel{dc: dc, maxBuffered: maxBuffered, open: make(chan struct{}), gone: make(chan struct{}), low: make(chan struct{})}
	dc.OnClose(c.closed)
	dc.SetBufferedAmountLowThreshold(lowWater)
	dc.OnBufferedAmountLow(func() {
		c.mu.Lock()
		close(c.low)
		c.low = make(chan struct{})
		c.mu.Unlock()
	})
	return c
}

func (c *channel) opened() { c.openOnce.Do(func() { close(c.open) }) }
func (c *channel) closed() { c.goneOnce.Do(func() { close(c.gone) }) }

// deliverer returns the function that hands a reliable or lossy channel's
// messages to OnMessage, or nil when they are dropped.
func (t *Transport) deliverer(reliable, deliver bool) func([]byte) {
	if !deliver || t.cfg.OnMessage == nil {
		return nil
	}
	return func(b []byte) { t.cfg.OnMessage(reliable, b) }
}

// startReader detaches dc, which has just opened, and reads it on a
// goroutine of its own until it closes, handing its messages to deliver
// (nil drops them); done, when not nil, runs when the reader ends.
func (t *Transport) startReader(dc *webrtc.DataChannel, deliver func([]byte), done func()) {
	raw, err := dc.Detach()
	if err != nil {
		if t.cfg.Logger != nil {
			t.cfg.Logger.Debug("rtc: detaching a data channel", "label", dc.Label(), "err", err)
		}
		if done != nil {
			done()
		}
		return
	}
	t.mu.Lock()
	if t.closed {
		// Close may be waiting for the readers already: start none.
		t.mu.Unlock()
		_ = raw.Close()
		if done != nil {
			done()
		}
		return
	}
	t.readers.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.readers.Done()
		if done != nil {
			defer done()
		}
		t.read(raw, deliver)
	}()
}

// read reads raw until it fails. Each message is handed over in a buffer
// of its own, of its exact size (OnMessage may keep it); the reading buffer
// starts at readBufferStart and doubles, up to MaxReceiveMessage, while a
// message does not fit (SCTP keeps the message queued until it does).
func (t *Transport) read(raw datachannel.ReadWriteCloser, deliver func([]byte)) {
	buf := make([]byte, readBufferStart)
	for {
		n, _, err := raw.ReadDataChannel(buf)
		if errors.Is(err, io.ErrShortBuffer) {
			if len(buf) >= MaxReceiveMessage {
				if t.cfg.Logger != nil {
					t.cfg.Logger.Warn("rtc: a data channel message over the limit closes its channel", "limit", MaxReceiveMessage)
				}
				_ = raw.Close()
				return
			}
			buf = make([]byte, min(2*len(buf), MaxReceiveMessage))
			continue
		}
		if err != nil {
			return
		}
		if deliver != nil {
			deliver(append([]byte(nil), buf[:n]...))
		}
	}
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

// State returns the connection state of the PeerConnection that carries
// others' data to us (the one PeerConnection in the single layout, the
// subscriber in the two-PC one).
func (t *Transport) State() webrtc.PeerConnectionState {
	if t.cfg.SinglePC {
		return t.pub.pc.ConnectionState()
	}
	return t.sub.pc.ConnectionState()
}

// ReliableBuffered returns the bytes written to the reliable channel that
// the remote SCTP stack has not acknowledged yet; 0 before the channel
// exists.
func (t *Transport) ReliableBuffered() uint64 {
	t.mu.Lock()
	c := t.reliable
	t.mu.Unlock()
	if c == nil {
		return 0
	}
	return c.dc.BufferedAmount()
}
