package calltest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v4"
	"github.com/pion/transport/v4/stdnet"
	"github.com/pion/webrtc/v4"

	"github.com/callstate/callstate"
)

// FaultyNet injects faults into the data path (WebRTC over UDP) of the
// participants that join with it, on real sockets and without privileges:
// it is the network pion's ICE agent opens its UDP sockets on (a
// transport.Net given to the Room's SettingEngine), and it discards
// datagrams on their way out of and into those sockets. Signalling
// (WebSocket over TCP) does not pass through it; cut that with a Proxy.
//
// Give each participant to be disturbed a FaultyNet of its own (its
// JoinOptions from Options), so that faults hit that participant alone, as
// nftables rules on its UDP ports would.
//
// Its methods may be called from any goroutine.
type FaultyNet struct {
	transport.Net

	mu           sync.Mutex
	blockedUntil time.Time
	drop         float64

	sent, received, blocked, dropped atomic.Uint64
}

// FaultStats are a FaultyNet's counters of datagrams.
type FaultStats struct {
	// Sent and Received count the datagrams that passed.
	Sent, Received uint64
	// Blocked counts the datagrams, both ways, discarded by Block.
	Blocked uint64
	// Dropped counts the data datagrams discarded by DropData.
	Dropped uint64
}

// NewFaultyNet returns a FaultyNet over the machine's network, passing
// everything until told otherwise.
func NewFaultyNet() (*FaultyNet, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("calltest: listing the network interfaces: %w", err)
	}
	return &FaultyNet{Net: n}, nil
}

// SettingEngine returns callstate's default SettingEngine
// (callstate.NewSettingEngine) on this network.
func (f *FaultyNet) SettingEngine() *webrtc.SettingEngine {
	se := callstate.NewSettingEngine()
	se.SetNet(f)
	return se
}

// Options returns o (a new JoinOptions when nil) with its SettingEngine on
// this network; a SettingEngine already in o is kept, moved onto it.
func (f *FaultyNet) Options(o *callstate.JoinOptions) *callstate.JoinOptions {
	if o == nil {
		o = &callstate.JoinOptions{}
	}
	if o.SettingEngine == nil {
		o.SettingEngine = f.SettingEngine()
	} else {
		se := *o.SettingEngine
		se.SetNet(f)
		o.SettingEngine = &se
	}
	return o
}

// Block discards every datagram, both ways (ICE checks, DTLS and data), for
// d from now, as a network outage would: the participant's PeerConnection
// goes disconnected, then failed, and the server's side of it too. A later
// call replaces the end of the outage; Block(0) ends it.
func (f *FaultyNet) Block(d time.Duration) {
	f.mu.Lock()
	f.blockedUntil = time.Now().Add(d)
	f.mu.Unlock()
}

// Unblock ends an outage begun with Block.
func (f *FaultyNet) Unblock() { f.Block(0) }

// Blocked reports whether an outage is under way.
func (f *FaultyNet) Blocked() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Now().Before(f.blockedUntil)
}

// DropData discards the given fraction (0 to 1) of the data datagrams the
// participant sends, at random: the DTLS application-data records, which
// carry the data channels' SCTP packets. The encryption hides which channel
// a datagram belongs to, so reliable data is hit too, but SCTP retransmits
// it and it arrives (later); lossy data, sent without retransmission, is
// lost in that proportion. Connectivity checks and handshakes are never
// dropped. DropData(0) stops dropping.
func (f *FaultyNet) DropData(fraction float64) {
	f.mu.Lock()
	f.drop = min(max(fraction, 0), 1)
	f.mu.Unlock()
}

// Stats returns the counters of datagrams passed and discarded.
func (f *FaultyNet) Stats() FaultStats {
	return FaultStats{Sent: f.sent.Load(), Received: f.received.Load(), Blocked: f.blocked.Load(), Dropped: f.dropped.Load()}
}

// ListenUDP opens a UDP socket whose datagrams the FaultyNet controls.
func (f *FaultyNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := f.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &faultyConn{UDPConn: c, f: f}, nil
}

// ListenPacket opens a packet socket whose datagrams the FaultyNet
// controls.
func (f *FaultyNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := f.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	return &faultyPacketConn{PacketConn: c, f: f}, nil
}

// pass decides the fate of one datagram: out is true for one being sent.
func (f *FaultyNet) pass(b []byte, out bool) bool {
	f.mu.Lock()
	blocked := time.Now().Before(f.blockedUntil)
	drop := f.drop
	f.mu.Unlock()
	switch {
	case blocked:
		f.blocked.Add(1)
		return false
	case out && drop > 0 && isDTLSAppData(b) && rand.Float64() < drop:
		f.dropped.Add(1)
		return false
	}
	if out {
		f.sent.Add(1)
	} else {
		f.received.Add(1)
	}
	return true
}

// isDTLSAppData reports whether b is a DTLS 1.2 application-data record
// (content type 23, version 254.253): the record header is in the clear.
func isDTLSAppData(b []byte) bool {
	return len(b) >= 13 && b[0] == 23 && b[1] == 254 && b[2] == 253
}

type faultyConn struct {
	transport.UDPConn
	f *FaultyNet
}

func (c *faultyConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := c.UDPConn.ReadFrom(b)
		if err != nil || c.f.pass(b[:n], false) {
			return n, a, err
		}
	}
}

func (c *faultyConn) ReadFromUDP(b []byte) (int, *net.UDPAddr, error) {
	for {
		n, a, err := c.UDPConn.ReadFromUDP(b)
		if err != nil || c.f.pass(b[:n], false) {
			return n, a, err
		}
	}
}

func (c *faultyConn) ReadMsgUDP(b, oob []byte) (int, int, int, *net.UDPAddr, error) {
	for {
		n, oobn, flags, a, err := c.UDPConn.ReadMsgUDP(b, oob)
		if err != nil || c.f.pass(b[:n], false) {
			return n, oobn, flags, a, err
		}
	}
}

// A discarded datagram is reported as sent, as the network would.

func (c *faultyConn) WriteTo(b []byte, a net.Addr) (int, error) {
	if !c.f.pass(b, true) {
		return len(b), nil
	}
	return c.UDPConn.WriteTo(b, a)
}

func (c *faultyConn) WriteToUDP(b []byte, a *net.UDPAddr) (int, error) {
	if !c.f.pass(b, true) {
		return len(b), nil
	}
	return c.UDPConn.WriteToUDP(b, a)
}

func (c *faultyConn) WriteMsgUDP(b, oob []byte, a *net.UDPAddr) (int, int, error) {
	if !c.f.pass(b, true) {
		return len(b), len(oob), nil
	}
	return c.UDPConn.WriteMsgUDP(b, oob, a)
}

func (c *faultyConn) Write(b []byte) (int, error) {
	if !c.f.pass(b, true) {
		return len(b), nil
	}
	return c.UDPConn.Write(b)
}

func (c *faultyConn) Read(b []byte) (int, error) {
	for {
		n, err := c.UDPConn.Read(b)
		if err != nil || c.f.pass(b[:n], false) {
			return n, err
		}
	}
}

type faultyPacketConn struct {
	net.PacketConn
	f *FaultyNet
}

func (c *faultyPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := c.PacketConn.ReadFrom(b)
		if err != nil || c.f.pass(b[:n], false) {
			return n, a, err
		}
	}
}

func (c *faultyPacketConn) WriteTo(b []byte, a net.Addr) (int, error) {
	if !c.f.pass(b, true) {
		return len(b), nil
	}
	return c.PacketConn.WriteTo(b, a)
}
