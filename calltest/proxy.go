package calltest

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
)

// Proxy relays TCP connections to a server's HTTP and WebSocket port, so
// that tests can cut the signalling connections of the participants that
// joined through it, or make the server unreachable, and watch how the
// SDK copes. WebRTC traffic (UDP) does not pass through it.
//
// Its methods may be called from any goroutine.
type Proxy struct {
	ln     net.Listener
	target string
	url    string

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	down   bool
	closed bool
	wg     sync.WaitGroup
}

// StartProxy starts a Proxy on 127.0.0.1 in front of the server, which
// must be reached over plain HTTP (a local server is). The caller must
// Close it.
func (s *Server) StartProxy() (*Proxy, error) {
	target, err := proxyTarget(s)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("calltest: starting a proxy: %w", err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.url = "ws://" + ln.Addr().String()
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func proxyTarget(s *Server) (string, error) {
	if !strings.HasPrefix(s.HTTPURL(), "http://") {
		return "", fmt.Errorf("calltest: a proxy needs a server reached over plain HTTP, not %s", s.HTTPURL())
	}
	return strings.TrimPrefix(s.HTTPURL(), "http://"), nil
}

// SetTarget makes the proxy relay its new connections to s instead, as a
// load balancer in front of a cluster (see Cluster) moves to another node
// when one fails; current connections are left alone. s must be reached
// over plain HTTP.
func (p *Proxy) SetTarget(s *Server) error {
	target, err := proxyTarget(s)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
	return nil
}

// URL returns the WebSocket URL of the server through the proxy; join with
// it (and the server's tokens) to be subject to the proxy's faults.
func (p *Proxy) URL() string { return p.url }

// Cut closes every connection currently relayed, as a network failure
// would; later connections are relayed as before.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// SetDown makes the server unreachable through the proxy (new connections
// are closed at once, and current ones are cut) while down is true.
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
	if down {
		p.Cut()
	}
}

// Close stops the proxy and closes every connection it relays. It is
// idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.Cut()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down || p.closed {
			p.mu.Unlock()
			c.Close()
			continue
		}
		target := p.target
		p.mu.Unlock()
		up, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.conns[up] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// pipe copies from src to dst until either fails, then closes both.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src) // a cut is an expected end
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}
