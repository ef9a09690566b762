// Package signal is callstate's LiveKit signalling client: a WebSocket that
// carries protobuf SignalRequest frames up and SignalResponse frames down.
//
// A Client is created by Dial, which returns once the server's answer
// (the JoinResponse, or the ReconnectResponse of a resume) has arrived. The
// owner then calls Run, which reads frames and hands each one, in order, to
// the handler given in Options; Run also sends pings at the server's
// interval and treats a silence longer than the server's timeout as a dead
// connection. Send may be called from any goroutine.
package signal

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/callstate/callstate/internal/lkpb"
)

// ProtocolVersion is the LiveKit signalling protocol version callstate
// announces. Above 14 the server acknowledges successful requests
// (request_response with reason OK); above 15 it may move the participant to
// another room (room_moved), which callstate follows. 17 would add packet
// trailers to forwarded media, which a data-only client never receives, so
// 16 is all callstate needs.
const ProtocolVersion = 16

// Paths of the two signalling flavours: v0 (two PeerConnections, parameters
// in the query) and v1 (one PeerConnection, a WrappedJoinRequest in the
// query).
const (
	PathV0 = "/rtc"
	PathV1 = "/rtc/v1"
)

// ClientProtocol is the version of LiveKit's client-to-client protocol
// callstate speaks (ClientInfo.client_protocol): 1 adds RPC over data
// streams, 2 single-packet streams with their content in the header.
// Peers pick their formats for callstate by it, so it must not claim more
// than callstate understands.
const ClientProtocol = 2

// Capabilities are the optional features callstate advertises in its
// ClientInfo: it inflates raw-deflate data stream content (handlers' readers
// and whole messages alike, within the Assembler's decompression budgets).
// The server copies them to the participant's ParticipantInfo, where
// livekit-client reads them to decide whether to compress what it sends to
// callstate. Packet trailers concern media only and are not claimed.
var Capabilities = []lkpb.ClientInfo_Capability{lkpb.ClientInfo_CAP_COMPRESSION_DEFLATE_RAW}

// MaxFrameSize bounds one signalling frame read from the server. A
// JoinResponse carries every participant's metadata (up to 512 KiB each), so
// the limit is generous; a larger frame closes the connection.
const MaxFrameSize = 64 << 20

// Options configure Dial.
type Options struct {
	// URL is the server's base URL: ws://, wss://, http:// or https://.
	URL string
	// Token is the access token.
	Token string
	// SDKVersion is reported to the server.
	SDKVersion string
	// AutoSubscribe asks the server to subscribe the participant to tracks.
	AutoSubscribe bool
	// Reconnect and SID ask the server to resume an existing session.
	Reconnect bool
	SID       string
	// Attributes are set at join, merged over the token's.
	Attributes map[string]string
	// Metadata, when not empty, replaces the token's metadata (v1 only:
	// the v0 path has no such parameter).
	Metadata string
	// SinglePC joins through /rtc/v1: one PeerConnection, the join
	// parameters in a WrappedJoinRequest.
	SinglePC bool
	// PublisherOffer is the offer of the one PeerConnection, carried in the
	// v1 join request so that the server's answer needs no extra round
	// trip. Ignored on v0.
	PublisherOffer *lkpb.SessionDescription
	// HTTPClient is used for the WebSocket handshake; nil means the default.
	HTTPClient *http.Client
	// WithoutCapabilities advertises no Capabilities, as a client that
	// cannot inflate compressed streams would (for tests).
	WithoutCapabilities bool
	// Raw, when set, receives the bytes of every binary frame before it is
	// decoded (for capturing test vectors).
	Raw func([]byte)
	// Handler receives every frame after the first, in order, on the
	// goroutine that runs Run. It must not block for long.
	Handler func(*lkpb.SignalResponse)
}

// DialError is a failed handshake: a refused upgrade carries the HTTP status
// and the server's explanation.
type DialError struct {
	// StatusCode is the HTTP status of a refused upgrade, 0 otherwise.
	StatusCode int
	// Body is the server's explanation of a refusal (it may quote the
	// request: callers redact it).
	Body string
	// Err is the cause of a handshake that got no answer.
	Err error
}

func (e *DialError) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("signal: handshake refused with HTTP %d: %s", e.StatusCode, e.Body)
	}
	return "signal: " + e.Err.Error()
}

func (e *DialError) Unwrap() error { return e.Err }

// ErrClosed is returned by Send after Close, and by Run after a local Close.
var ErrClosed = errors.New("signal: closed")

// ErrTimeout is returned by Run when the server stayed silent for longer
// than its ping timeout.
var ErrTimeout = errors.New("signal: server stopped answering pings")

// Client is a connected signalling WebSocket.
type Client struct {
	conn    *websocket.Conn
	handler func(*lkpb.SignalResponse)
	raw     func([]byte)

	writeMu sync.Mutex

	pingInterval time.Duration
	pingTimeout  time.Duration
	lastRecv     atomic.Int64 // unix nanos of the last frame received
	rtt          atomic.Int64 // milliseconds
	malformed    atomic.Uint64

	closeOnce sync.Once
	closed    chan struct{}

	runMu     sync.Mutex
	cancelRun context.CancelFunc // ends Run's read; set by Run

	// early are frames that arrived before the first answer (see Dial);
	// Run hands them to the handler first, in order.
	early []*lkpb.SignalResponse
}

// maxEarly bounds the frames Dial keeps while it waits for the server's
// answer: the server sends at most a token refresh or two before it.
const maxEarly = 32

// isAnswer reports the frames that answer a join or resume: the join
// response, the reconnect response, or a leave refusing either.
func isAnswer(m *lkpb.SignalResponse) bool {
	switch m.GetMessage().(type) {
	case *lkpb.SignalResponse_Join, *lkpb.SignalResponse_Reconnect, *lkpb.SignalResponse_Leave:
		return true
	}
	return false
}

// JoinURL builds the signalling URL for opts: /rtc with query parameters,
// or, with SinglePC, /rtc/v1 with the join request.
func JoinURL(opts Options) (string, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		return "", fmt.Errorf("invalid URL %q: %w", opts.URL, err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("invalid URL %q: the scheme must be ws, wss, http or https", opts.URL)
	}
	if u.Host == "" {
		return "", fmt.Errorf("invalid URL %q: no host", opts.URL)
	}
	base := strings.TrimSuffix(u.Path, "/")
	q := url.Values{}
	q.Set("access_token", opts.Token)
	if opts.SinglePC {
		u.Path = base + PathV1
		jr, err := proto.Marshal(joinRequest(opts))
		if err != nil {
			return "", fmt.Errorf("encoding the join request: %w", err)
		}
		// Uncompressed: a data-only offer is well under a kilobyte, and
		// the server caps an uncompressed request at 1 MiB
		// (http.DefaultMaxHeaderBytes) as it does a gzipped one.
		w, err := proto.Marshal(&lkpb.WrappedJoinRequest{Compression: lkpb.WrappedJoinRequest_NONE, JoinRequest: jr})
		if err != nil {
			return "", fmt.Errorf("encoding the join request: %w", err)
		}
		q.Set("join_request", base64.URLEncoding.EncodeToString(w))
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	u.Path = base + PathV0
	q.Set("protocol", strconv.Itoa(ProtocolVersion))
	q.Set("client_protocol", strconv.Itoa(ClientProtocol))
	if caps := capabilities(opts); len(caps) > 0 {
		// The server reads a comma-separated list of the enum's names.
		names := make([]string, len(caps))
		for i, c := range caps {
			names[i] = c.String()
		}
		q.Set("capabilities", strings.Join(names, ","))
	}
	q.Set("sdk", "go")
	q.Set("version", opts.SDKVersion)
	q.Set("auto_subscribe", boolParam(opts.AutoSubscribe))
	q.Set("adaptive_stream", "0")
	if len(opts.Attributes) > 0 {
		b, err := json.Marshal(opts.Attributes)
		if err != nil {
			return "", fmt.Errorf("encoding the attributes: %w", err)
		}
		q.Set("attributes", base64.URLEncoding.EncodeToString(b))
	}
	if opts.Reconnect {
		q.Set("reconnect", "1")
		q.Set("sid", opts.SID)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// joinRequest is the v1 join request for opts.
func joinRequest(opts Options) *lkpb.JoinRequest {
	noDataTracks := false
	jr := &lkpb.JoinRequest{
		ClientInfo: &lkpb.ClientInfo{
			Sdk:      lkpb.ClientInfo_GO,
			Version:  opts.SDKVersion,
			Protocol: ProtocolVersion,

			ClientProtocol: ClientProtocol,
			Capabilities:   capabilities(opts),
		},
		ConnectionSettings: &lkpb.ConnectionSettings{
			AutoSubscribe: opts.AutoSubscribe,
			// callstate does not read data tracks yet: subscribing to
			// them would only make the server send frames nobody reads.
			AutoSubscribeDataTrack: &noDataTracks,
		},
		Metadata:              opts.Metadata,
		ParticipantAttributes: opts.Attributes,
		PublisherOffer:        opts.PublisherOffer,
	}
	if opts.Reconnect {
		jr.Reconnect = true
		jr.ParticipantSid = opts.SID
		// The publisher offer of a resume would restart ICE; a resume of
		// the signalling connection alone keeps the PeerConnection.
		jr.PublisherOffer = nil
	}
	return jr
}

// capabilities returns the capabilities to advertise with opts.
func capabilities(opts Options) []lkpb.ClientInfo_Capability {
	if opts.WithoutCapabilities {
		return nil
	}
	return Capabilities
}

func boolParam(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Dial connects and waits for the server's answer (a JoinResponse, a
// ReconnectResponse or a LeaveRequest), which it returns. ctx bounds the
// handshake and the wait only.
//
// The answer is not always the first frame: a server that resumes a
// session may send a token refresh first (observed with livekit-server
// 1.13 after a quick cut). Such frames are kept and handed to the handler
// by Run, before any later frame; taking one of them for the answer would
// treat a resume the server granted as refused.
func Dial(ctx context.Context, opts Options) (*Client, *lkpb.SignalResponse, error) {
	u, err := JoinURL(opts)
	if err != nil {
		return nil, nil, err
	}
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: opts.HTTPClient})
	if err != nil {
		de := &DialError{Err: err}
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			de.StatusCode = resp.StatusCode
			if resp.Body != nil {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
				de.Body = strings.TrimSpace(string(b))
			}
		}
		return nil, nil, de
	}
	conn.SetReadLimit(MaxFrameSize)
	c := &Client{
		conn:         conn,
		handler:      opts.Handler,
		raw:          opts.Raw,
		pingInterval: 5 * time.Second,
		pingTimeout:  15 * time.Second,
		closed:       make(chan struct{}),
	}
	var first *lkpb.SignalResponse
	for {
		first, err = c.read(ctx)
		if err != nil {
			c.conn.Close(websocket.StatusNormalClosure, "")
			return nil, nil, &DialError{Err: fmt.Errorf("waiting for the server's answer: %w", err)}
		}
		if isAnswer(first) {
			break
		}
		if len(c.early) == maxEarly {
			c.conn.Close(websocket.StatusNormalClosure, "")
			return nil, nil, &DialError{Err: fmt.Errorf("no answer among the server's first %d frames", maxEarly)}
		}
		c.early = append(c.early, first)
	}
	if j := first.GetJoin(); j != nil {
		if j.GetPingInterval() > 0 {
			c.pingInterval = time.Duration(j.GetPingInterval()) * time.Second
		}
		if j.GetPingTimeout() > 0 {
			c.pingTimeout = time.Duration(j.GetPingTimeout()) * time.Second
		}
	}
	return c, first, nil
}

func (c *Client) read(ctx context.Context) (*lkpb.SignalResponse, error) {
	for {
		typ, b, err := c.conn.Read(ctx)
		if err != nil {
			return nil, err
		}
		c.lastRecv.Store(time.Now().UnixNano())
		if typ != websocket.MessageBinary {
			continue // LiveKit speaks binary protobuf; JSON frames are not used
		}
		if c.raw != nil {
			c.raw(b)
		}
		msg := &lkpb.SignalResponse{}
		if err := proto.Unmarshal(b, msg); err != nil {
			// A frame that does not decode is dropped; the connection goes on.
			c.malformed.Add(1)
			continue
		}
		return msg, nil
	}
}

// Malformed returns the number of frames that could not be decoded and were
// dropped.
func (c *Client) Malformed() uint64 { return c.malformed.Load() }

// RTT returns the last measured round-trip time.
func (c *Client) RTT() time.Duration { return time.Duration(c.rtt.Load()) * time.Millisecond }

// Run reads frames until the connection ends, handing each to the handler,
// and keeps the connection alive with pings. It returns ErrClosed after
// Close, ErrTimeout when the server went silent, or the read error.
//
// Run is the Client's only long-lived goroutine: pings are sent from a
// timer's callback, and Close ends the read by cancelling its context, so
// that a participant costs one goroutine for its signalling, not three.
func (c *Client) Run() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.runMu.Lock()
	c.cancelRun = cancel
	c.runMu.Unlock()
	select {
	case <-c.closed:
		return ErrClosed
	default:
	}
	var timedOut atomic.Bool
	var pinger *time.Timer
	ping := func() {
		if ctx.Err() != nil {
			return
		}
		if time.Since(time.Unix(0, c.lastRecv.Load())) > c.pingTimeout {
			// The connection is dead: a close handshake would wait up to
			// 5 s for a lock that the blocked reader holds, eating into
			// the time left to resume.
			timedOut.Store(true)
			c.conn.CloseNow()
			cancel()
			return
		}
		req := &lkpb.SignalRequest{Message: &lkpb.SignalRequest_PingReq{PingReq: &lkpb.Ping{
			Timestamp: time.Now().UnixMilli(),
			Rtt:       c.rtt.Load(),
		}}}
		sctx, scancel := context.WithTimeout(ctx, c.pingTimeout)
		err := c.Send(sctx, req)
		scancel()
		if err != nil && ctx.Err() == nil {
			// The connection is unusable: a close handshake would wait up
			// to 5 s for a lock that the blocked reader holds, eating into
			// the time left to resume.
			c.conn.CloseNow()
			return
		}
		c.runMu.Lock()
		if ctx.Err() == nil {
			pinger.Reset(c.pingInterval)
		}
		c.runMu.Unlock()
	}
	c.runMu.Lock()
	pinger = time.AfterFunc(c.pingInterval, ping)
	c.runMu.Unlock()
	defer func() {
		c.runMu.Lock()
		pinger.Stop()
		c.runMu.Unlock()
	}()
	early := c.early
	c.early = nil
	for _, msg := range early {
		if c.handler != nil {
			c.handler(msg)
		}
	}
	for {
		msg, err := c.read(ctx)
		if err != nil {
			cancel()
			select {
			case <-c.closed:
				return ErrClosed
			default:
			}
			if timedOut.Load() {
				return ErrTimeout
			}
			return err
		}
		if pong := msg.GetPongResp(); pong != nil {
			if ts := pong.GetLastPingTimestamp(); ts > 0 {
				c.rtt.Store(time.Now().UnixMilli() - ts)
			}
		}
		if c.handler != nil {
			c.handler(msg)
		}
	}
}

// Send writes one request. Concurrent calls are serialised.
func (c *Client) Send(ctx context.Context, req *lkpb.SignalRequest) error {
	b, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	select {
	case <-c.closed:
		return ErrClosed
	default:
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.conn.Write(ctx, websocket.MessageBinary, b); err != nil {
		select {
		case <-c.closed:
			return ErrClosed
		default:
		}
		return err
	}
	return nil
}

// Close closes the WebSocket. If leave is true it first tells the server
// that the participant is leaving (bounded by ctx), and returns the error
// of sending that. Close is idempotent.
func (c *Client) Close(ctx context.Context, leave bool) error {
	var err error
	if leave {
		err = c.Send(ctx, &lkpb.SignalRequest{Message: &lkpb.SignalRequest_Leave{Leave: &lkpb.LeaveRequest{
			Reason: lkpb.DisconnectReason_CLIENT_INITIATED,
			Action: lkpb.LeaveRequest_DISCONNECT,
		}}})
	}
	c.closeOnce.Do(func() {
		close(c.closed)
		c.runMu.Lock()
		if c.cancelRun != nil {
			c.cancelRun()
		}
		c.runMu.Unlock()
		// The close handshake waits for the server for at most 5 s in
		// coder/websocket; CloseNow does not wait at all.
		done := make(chan struct{})
		go func() {
			c.conn.Close(websocket.StatusNormalClosure, "")
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			c.conn.CloseNow()
			<-done
		}
	})
	return err
}

// Drop closes the connection at once, without a close handshake and
// without marking the Client closed: Run returns a read error, as after a
// network failure, so that its owner recovers the session (resuming or
// rejoining) instead of ending it. It is safe to call from the handler,
// and on a nil Client (a Room that has no connection yet), where it does
// nothing.
func (c *Client) Drop() {
	if c == nil || c.conn == nil {
		return
	}
	c.conn.CloseNow()
}
