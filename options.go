package callstate

import (
	"log/slog"
	"maps"
	"net/http"
	"time"

	"github.com/pion/webrtc/v4"
)

// Option configures Join.
type Option func(*options)

type options struct {
	loopback      bool
	settingEngine *webrtc.SettingEngine
	receiveOnly   bool
	autoSubscribe bool
	attributes    map[string]string
	metadata      *string
	name          string
	resumeWindow  time.Duration // < 0: no resume
	userData      any
	hasUserData   bool
	logger        *slog.Logger
	httpClient    *http.Client
	ownHTTP       bool
	maxMessage    int
	lossyTimeout  time.Duration
	streamTimeout time.Duration
	// rawHook, set by tests, sees every signalling frame ("signal") and
	// data channel message ("data") before it is decoded.
	rawHook func(source string, b []byte)
	// sendFilter, set by tests, sees every data packet before it is sent
	// and may drop it (fault injection).
	sendFilter func(reliable bool, pkt []byte) (keep bool)
}

func (o *options) withDefaults() *options {
	c := *o
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.httpClient == nil {
		// A client of the Room's own, whose idle connections Close
		// releases.
		c.httpClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		c.ownHTTP = true
	}
	if c.maxMessage <= 0 {
		c.maxMessage = DefaultMaxMessageSize
	}
	if c.resumeWindow == 0 {
		c.resumeWindow = DefaultResumeWindow
	}
	c.attributes = maps.Clone(c.attributes)
	return &c
}

// DefaultMaxMessageSize is the default largest data payload or app message
// the Room sends or accepts: 16 MiB.
const DefaultMaxMessageSize = 16 << 20

// WithLoopbackICE makes the Room connect to a server on the same machine
// over the loopback interface only (UDP on 127.0.0.1, no mDNS). Use it for a
// local development server and in tests; never for remote servers.
func WithLoopbackICE() Option { return func(o *options) { o.loopback = true } }

// WithSettingEngine sets the pion SettingEngine the Room's PeerConnections
// are built from, for advanced network settings (interfaces, ports, NAT
// mapping). It replaces callstate's own settings (a 100 ms DTLS
// retransmission interval, SCTP retransmissions at most 3 s apart, pion's
// logs routed to WithLogger's logger);
// WithLoopbackICE is applied on top of it.
func WithSettingEngine(se *webrtc.SettingEngine) Option {
	return func(o *options) { o.settingEngine = se }
}

// WithReceiveOnly joins without a publisher connection: the Room receives
// everything but cannot send data packets or app messages. Joins are faster
// and lighter; it suits recorders. A token without the canPublishData grant
// implies it.
func WithReceiveOnly() Option { return func(o *options) { o.receiveOnly = true } }

// WithAttributes sets attributes at join; they are merged over the token's.
func WithAttributes(attrs map[string]string) Option {
	return func(o *options) { o.attributes = maps.Clone(attrs) }
}

// WithMetadata sets the participant's metadata as part of Join: Join
// returns once the server has applied it. It needs the canUpdateOwnMetadata
// grant; metadata in the token needs no grant.
func WithMetadata(metadata string) Option {
	return func(o *options) { o.metadata = &metadata; o.hasUserData = false }
}

// WithName sets the participant's name as part of Join, like WithMetadata
// (a name in the token needs no grant).
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithUserData sets the participant's user data as part of Join, like
// WithMetadata with the JSON encoding of v.
func WithUserData(v any) Option {
	return func(o *options) { o.userData = v; o.hasUserData = true; o.metadata = nil }
}

// WithLogger sets the logger for the Room's diagnostics, pion's WebRTC
// logs included (at debug level). The default discards them.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithHTTPClient sets the HTTP client for the signalling handshake and for
// server API calls the Room makes (session data writes).
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.httpClient = c } }

// WithMaxMessageSize sets the largest data payload or app message the Room
// sends or accepts, in bytes. Larger received messages are discarded and
// counted in Stats. The default is DefaultMaxMessageSize.
func WithMaxMessageSize(n int) Option { return func(o *options) { o.maxMessage = n } }

// WithReassemblyTimeouts sets how long the Room keeps a partly received
// message: lossy for a fragmented lossy message (default 2 s after its first
// fragment), stream for a chunked reliable message (default 30 s after its
// last chunk). Zero keeps a default.
func WithReassemblyTimeouts(lossy, stream time.Duration) Option {
	return func(o *options) { o.lossyTimeout, o.streamTimeout = lossy, stream }
}

// WithResume sets how long the Room tries to resume its session after its
// signalling connection to the server is cut (a network failure): during
// that time it reports StateReconnecting, and if the server takes it back,
// StateConnected again, with no leave or join seen by others. The default
// is 15 seconds; 0 or less disables resuming: the Room then ends at once
// when the connection fails.
func WithResume(window time.Duration) Option {
	return func(o *options) {
		if window <= 0 {
			window = -1
		}
		o.resumeWindow = window
	}
}

// WithAutoSubscribe asks the server to subscribe the participant to
// published audio and video tracks. callstate does not consume media; this
// is off by default.
func WithAutoSubscribe(on bool) Option { return func(o *options) { o.autoSubscribe = on } }
