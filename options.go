package callstate

import (
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/callstate/callstate/internal/redact"
	"github.com/callstate/callstate/internal/rtc"
	"github.com/callstate/callstate/internal/serverurl"
)

// Options in callstate are plain structs, one per kind of call, passed by
// pointer; nil, like the zero value of every field, means the defaults:
// JoinOptions for Join, PublishOptions for PublishData, SubscribeOptions for
// Subscribe, RoomServiceOptions for NewRoomService. Network knobs that are
// rarely changed live in a pion SettingEngine that NewSettingEngine returns
// pre-tuned.

// JoinOptions configures Join. The zero value (or nil) joins with the
// defaults: publishing, resuming for DefaultResumeWindow after a cut, the
// token's metadata, name and attributes.
type JoinOptions struct {
	// ReceiveOnly joins without a publisher connection: the Room receives
	// everything but cannot send data packets or app messages (those calls
	// return ErrReceiveOnly). Joins are faster and lighter; it suits
	// recorders. A token without the canPublishData grant implies it.
	ReceiveOnly bool

	// Name sets the participant's name as part of Join: Join returns once
	// the server has applied it. It needs the canUpdateOwnMetadata grant (a
	// name in the token needs none).
	Name string
	// Metadata sets the participant's metadata as part of Join, like Name.
	// Empty keeps the token's.
	Metadata string
	// UserData, when non-nil, sets the participant's user data (the JSON
	// encoding of the value, as its metadata) as part of Join, like Name.
	// It cannot be combined with Metadata.
	UserData any
	// Attributes are set at join, merged over the token's; no grant is
	// needed.
	Attributes map[string]string

	// Resume is how long the Room tries to resume its session after its
	// signalling connection to the server is cut (a network failure):
	// during that time it reports StateReconnecting, and if the server
	// takes it back, StateConnected again, with no leave or join seen by
	// others. Zero means DefaultResumeWindow; a negative value disables
	// resuming: the Room then ends at once when the connection fails.
	Resume time.Duration
	// ReconnectAttempts bounds the attempts of one recovery (resume, ICE
	// restart, rejoin, in that order as needed) within the Resume window;
	// zero means DefaultReconnectAttempts. When both run out the Room ends
	// with Disconnected, whose reason is the last failure's.
	ReconnectAttempts int
	// JoinAttempts bounds how many times Join tries a server that refuses
	// the join for its own, passing reasons: an HTTP 5xx answer, which
	// LiveKit gives when its nodes are overloaded ("could not find any
	// available nodes"), or the room's node did not answer in time. Join
	// waits 250 ms before the second attempt and twice as long before each
	// next one, within ctx. Refusals of the request itself (4xx: a bad
	// token, a missing grant) and unreachable servers are not tried again.
	// Zero means DefaultJoinAttempts; 1 tries once.
	JoinAttempts int
	// MaxQueuedBytes bounds the reliable payload bytes that PublishData
	// and SendAppMessage calls may hold waiting while the Room recovers;
	// a call that would exceed it returns ErrBackpressure at once. Zero
	// means DefaultMaxQueuedBytes.
	MaxQueuedBytes int

	// MaxParticipants bounds how many remote participants the Room keeps;
	// zero means DefaultMaxParticipants. MaxParticipantBytes bounds the
	// bytes of their state (metadata, names, attributes); zero means
	// DefaultMaxParticipantBytes. Participants and updates beyond them are
	// left out and counted (Stats.ParticipantsRefused).
	MaxParticipants     int
	MaxParticipantBytes int

	// MaxMessageSize is the largest data payload or app message the Room
	// sends or accepts, in bytes. Larger received messages are discarded
	// and counted in Stats. Zero means DefaultMaxMessageSize.
	MaxMessageSize int
	// LossyReassemblyTimeout is how long the Room keeps a partly received
	// fragmented lossy message after its first fragment; zero means 2 s.
	LossyReassemblyTimeout time.Duration
	// StreamReassemblyTimeout is how long the Room keeps a partly received
	// data stream after its last chunk; zero means 30 s.
	StreamReassemblyTimeout time.Duration

	// Logger receives the Room's diagnostics, pion's WebRTC logs included
	// (at debug level). Nil discards them. Nothing the Room logs contains a
	// token or a secret.
	Logger *slog.Logger
	// HTTPClient is used for the signalling handshake and for server API
	// calls the Room makes (session data writes). Nil means a client that
	// the process's Rooms share, whose idle connections are closed when
	// the last of them ends.
	HTTPClient *http.Client
	// SettingEngine is the base of the Room's PeerConnections, for network
	// settings (interfaces, ports, NAT mapping). Start from
	// NewSettingEngine, which carries callstate's tuning, and adjust it.
	// Nil means NewSettingEngine(). When its LoggerFactory is nil, pion's
	// logs go to Logger.
	SettingEngine *webrtc.SettingEngine
	// LoopbackICE forces ICE onto the loopback interface only (UDP on
	// 127.0.0.1, no mDNS). Join does this by itself when the server's host
	// is a loopback address or "localhost" (a local development server, the
	// calltest server), so it is needed only for a loopback server reached
	// through another name.
	LoopbackICE bool
	// AutoSubscribe asks the server to subscribe the participant to
	// published audio and video tracks. callstate does not consume media;
	// off by default.
	AutoSubscribe bool

	// TwoPeerConnections joins through LiveKit's /rtc path with two
	// PeerConnections (the server offers one for what the Room receives,
	// the Room offers the other for what it sends), as LiveKit's older
	// clients do. By default the Room joins through /rtc/v1 with one
	// PeerConnection that carries data both ways, offered in the join
	// request, and falls back to two when the server does not have that
	// path (servers before it answer its upgrade with 404). One connection
	// joins faster and costs fewer goroutines and less memory; two are for
	// servers or proxies that mishandle /rtc/v1.
	TwoPeerConnections bool
	// MaxReliablePacket is the largest reliable data packet the Room
	// sends, in bytes; a reliable payload whose packet would be larger
	// travels as a LiveKit data stream. Zero follows the SCTP maximum
	// message size that the server announced for the connection (65,535
	// bytes for LiveKit's server), less what the server adds to a packet
	// when it forwards it. Set it lower (for example 15,000) when some
	// receivers accept only smaller SCTP messages; larger values are
	// capped at the negotiated limit.
	MaxReliablePacket int

	// NoPresenceTrack joins without callstate's presence track. By default
	// a Room that can publish publishes a data track named
	// "_callstate.presence" as part of Join (no frame is ever sent on it):
	// it makes the server count the participant as a publisher, whose
	// join and leave it announces to the others at once, where those of a
	// participant that publishes nothing wait for the server's 3 s ticker.
	// The cost: one more signalling round trip in Join, the room's
	// publisher count includes the participant, and LiveKit clients list
	// the track among the participant's data tracks (callstate hides it).
	// In a room of thousands, set it: every join of a publisher is sent
	// to everyone at once, n²/2 updates as n participants join (two
	// million for 2,000), which the server batches for participants that
	// publish nothing (`callstate bench -only footprint2000` measures one
	// room of 2,000 so).
	NoPresenceTrack bool

	// Test hooks, set through export_test.go.
	//
	// rawHook sees every signalling frame ("signal") and data channel
	// message ("data") before it is decoded.
	rawHook func(source string, b []byte)
	// sendFilter sees every data packet before it is sent and may drop it
	// (fault injection).
	sendFilter func(reliable bool, pkt []byte) (keep bool)
	// dataTrackSendFilter and dataTrackRecvFilter see every data track
	// packet sent and received (before reassembly) and may drop it.
	dataTrackSendFilter func(pkt []byte) (keep bool)
	dataTrackRecvFilter func(pkt []byte) (keep bool)
	// withoutCapabilities joins advertising no ClientInfo capabilities, as
	// a client that cannot inflate compressed streams does.
	withoutCapabilities bool
}

// options are JoinOptions with the defaults applied, as the Room uses them.
type options struct {
	JoinOptions
	initialMetadata *string // Metadata or UserData's encoding, if any
	loopback        bool
	sharedNet       bool // the SettingEngine is callstate's: its Transports may share one interface list
	ownHTTP         bool // HTTPClient is the shared one: releaseHTTP when done
}

// sharedHTTP is the HTTP client of the Rooms whose JoinOptions name none.
// One per process rather than one per Room: a Transport and its HTTP/2
// set-up cost each participant kilobytes, and Rooms of one process talk to
// the same few servers, whose keep-alive connections they may as well
// share. Its idle connections (and their goroutines) are closed when the
// last Room using it ends, so that no goroutine outlives the Rooms.
var sharedHTTP struct {
	mu     sync.Mutex
	client *http.Client
	users  int
}

// acquireHTTP returns the shared HTTP client, counting one more user.
func acquireHTTP() *http.Client {
	sharedHTTP.mu.Lock()
	defer sharedHTTP.mu.Unlock()
	if sharedHTTP.client == nil {
		sharedHTTP.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	sharedHTTP.users++
	return sharedHTTP.client
}

// releaseHTTP ends one use of the shared HTTP client; the last closes its
// idle connections.
func releaseHTTP() {
	sharedHTTP.mu.Lock()
	defer sharedHTTP.mu.Unlock()
	sharedHTTP.users--
	if sharedHTTP.users == 0 {
		sharedHTTP.client.CloseIdleConnections()
	}
}

// resolve checks o and applies the defaults for a join to serverURL.
func (o *JoinOptions) resolve(serverURL string) (*options, error) {
	var c options
	if o != nil {
		c.JoinOptions = *o
	}
	c.Attributes = maps.Clone(c.Attributes)
	switch {
	case c.UserData != nil && c.Metadata != "":
		return nil, &JoinError{Kind: ErrInvalidArgument, Message: "JoinOptions: Metadata and UserData are exclusive"}
	case c.UserData != nil:
		s, err := marshalUserData(c.UserData)
		if err != nil {
			return nil, &JoinError{Kind: ErrInvalidArgument, Message: "initial user data", Err: err}
		}
		c.initialMetadata = &s
	case c.Metadata != "":
		c.initialMetadata = &c.Metadata
	}
	if c.initialMetadata != nil {
		if err := checkMetadata(*c.initialMetadata); err != nil {
			return nil, &JoinError{Kind: ErrInvalidArgument, Message: "initial metadata", Err: err}
		}
	}
	if len(c.Name) > MaxNameSize {
		return nil, &JoinError{Kind: ErrInvalidArgument, Message: "name",
			Err: &SizeError{What: "name", Size: len(c.Name), Limit: MaxNameSize}}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	} else {
		// No token or secret reaches the user's logs, at any level.
		c.Logger = slog.New(redact.Handler(c.Logger.Handler()))
	}
	if c.MaxParticipants <= 0 {
		c.MaxParticipants = DefaultMaxParticipants
	}
	if c.MaxParticipantBytes <= 0 {
		c.MaxParticipantBytes = DefaultMaxParticipantBytes
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.Resume == 0 {
		c.Resume = DefaultResumeWindow
	}
	if c.JoinAttempts <= 0 {
		c.JoinAttempts = DefaultJoinAttempts
	}
	if c.ReconnectAttempts <= 0 {
		c.ReconnectAttempts = DefaultReconnectAttempts
	}
	if c.MaxQueuedBytes <= 0 {
		c.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	var se webrtc.SettingEngine
	if c.SettingEngine != nil {
		se = *c.SettingEngine
	} else {
		se = *NewSettingEngine()
		c.sharedNet = true
	}
	if se.LoggerFactory == nil {
		se.LoggerFactory = rtc.LoggerFactory(c.Logger)
	}
	c.SettingEngine = &se
	c.loopback = c.LoopbackICE || isLoopbackURL(serverURL)
	return &c, nil
}

// resumes reports whether the Room resumes after a cut.
func (o *options) resumes() bool { return o.Resume > 0 }

// DefaultMaxMessageSize is the default largest data payload or app message
// the Room sends or accepts: 16 MiB.
const DefaultMaxMessageSize = 16 << 20

// NewSettingEngine returns the pion SettingEngine a Room uses unless
// JoinOptions.SettingEngine says otherwise: pion's defaults with a 100 ms
// DTLS retransmission interval (pion's 1 s makes a handshake message lost
// before ICE settles cost a second of join time) and SCTP retransmissions
// at most 3 s apart (pion backs off to 60 s, which can hold a reliable
// message that long after a stall), and no mDNS (LiveKit's servers name
// their candidates by IP address). Adjust it and pass it in JoinOptions.
func NewSettingEngine() *webrtc.SettingEngine {
	se := &webrtc.SettingEngine{}
	se.SetDTLSRetransmissionInterval(rtc.DTLSRetransmission)
	se.SetSCTPRTOMax(rtc.SCTPRTOMax)
	// LiveKit's servers announce their candidates as IP addresses, never
	// as mDNS names, so resolving .local names is never needed; pion's
	// default opens a multicast socket, and runs its readers, for every
	// PeerConnection.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return se
}

// parseServerURL checks a LiveKit server URL (ws, wss, http or https, with a
// host); every entry point that takes one uses it, through package
// serverurl, which the command and lkserver share.
func parseServerURL(serverURL string) (*url.URL, error) {
	u, err := serverurl.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	return u, nil
}

// isLoopbackURL reports whether serverURL names a server on this machine:
// a loopback address or "localhost". ICE must then use the loopback
// interface, which pion leaves out by default.
func isLoopbackURL(serverURL string) bool {
	u, err := serverurl.Parse(serverURL)
	return err == nil && serverurl.IsLoopback(u)
}
