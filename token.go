package callstate

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/callstate/callstate/internal/lkpb"
)

// DefaultTokenValidity is how long a token minted by NewToken stays valid
// when Claims.ValidFor is zero.
const DefaultTokenValidity = 6 * time.Hour

// Grants are the permissions an access token carries, LiveKit's "video"
// grants. The zero value grants nothing, except the three tri-state grants
// CanPublish, CanSubscribe and CanPublishData, which the server treats as
// true when they are nil. Use Bool to set them.
type Grants struct {
	// Room is the room the grants apply to. It is required with RoomJoin
	// and, for the server API, with RoomAdmin.
	Room string
	// RoomJoin allows joining Room.
	RoomJoin bool
	// RoomAdmin allows the server API calls on Room's participants, data
	// and metadata (and so session data writes through the server API).
	RoomAdmin bool
	// RoomCreate allows creating and deleting rooms through the server API.
	RoomCreate bool
	// RoomList allows listing rooms through the server API.
	RoomList bool
	// CanPublish allows publishing tracks; nil means the server default
	// (true).
	CanPublish *bool
	// CanSubscribe allows subscribing to others' tracks; nil means the
	// server default (true).
	CanSubscribe *bool
	// CanPublishData allows sending data packets and app messages; nil
	// means the server default (true).
	CanPublishData *bool
	// CanUpdateOwnMetadata allows a participant to change its own metadata,
	// name, attributes and user data.
	CanUpdateOwnMetadata bool
	// Hidden makes the participant invisible to the others in the room.
	Hidden bool
	// RoomRecord allows the egress (recording) server API.
	RoomRecord bool
	// IngressAdmin allows the ingress server API, for every room.
	IngressAdmin bool
	// CanPublishSources limits publishing to these track sources; empty
	// means any source.
	CanPublishSources []TrackSource
	// Recorder marks the participant as a recorder (deprecated by LiveKit
	// in favour of the egress kind; the server still reads it).
	Recorder bool
	// Agent marks the participant as an agent (deprecated by LiveKit in
	// favour of Claims.Kind; the server still reads it).
	Agent bool
	// CanSubscribeMetrics allows receiving the room's metrics; nil means
	// the server default (false).
	CanSubscribeMetrics *bool
	// CanManageAgentSession allows controlling an agent's session; nil
	// means the server default.
	CanManageAgentSession *bool
	// DestinationRoom is the room RoomService.ForwardParticipant and
	// MoveParticipant may send participants of Room to.
	DestinationRoom string
}

// SIPGrants are the permissions over LiveKit's SIP (telephony) server API.
type SIPGrants struct {
	// Admin allows managing SIP trunks and dispatch rules.
	Admin bool
	// Call allows making outbound calls.
	Call bool
}

// ParticipantKindDetail refines a participant's kind, as LiveKit classifies
// it.
type ParticipantKindDetail int32

// Participant kind details.
const (
	KindDetailCloudAgent        ParticipantKindDetail = ParticipantKindDetail(lkpb.ParticipantInfo_CLOUD_AGENT)
	KindDetailForwarded         ParticipantKindDetail = ParticipantKindDetail(lkpb.ParticipantInfo_FORWARDED)
	KindDetailConnectorWhatsApp ParticipantKindDetail = ParticipantKindDetail(lkpb.ParticipantInfo_CONNECTOR_WHATSAPP)
	KindDetailConnectorTwilio   ParticipantKindDetail = ParticipantKindDetail(lkpb.ParticipantInfo_CONNECTOR_TWILIO)
	KindDetailBridgeRTSP        ParticipantKindDetail = ParticipantKindDetail(lkpb.ParticipantInfo_BRIDGE_RTSP)
	KindDetailSimulation        ParticipantKindDetail = ParticipantKindDetail(lkpb.ParticipantInfo_SIMULATION)
)

// String returns the detail's name in lower case, as tokens spell it, for
// example "cloud_agent".
func (d ParticipantKindDetail) String() string {
	if name, ok := lkpb.ParticipantInfo_KindDetail_name[int32(d)]; ok {
		return strings.ToLower(name)
	}
	return fmt.Sprintf("kind_detail(%d)", int32(d))
}

// RoomConfig is the room a participant's join creates when the room does
// not exist yet (the token's "roomConfig" claim), including the agents
// dispatched to it.
type RoomConfig struct {
	// Name names the configuration (LiveKit uses it as an id).
	Name string
	// EmptyTimeout and DepartureTimeout are those of CreateRoomOptions;
	// they are rounded up to whole seconds.
	EmptyTimeout, DepartureTimeout time.Duration
	// MaxParticipants limits the number of participants; zero means no
	// limit.
	MaxParticipants int
	// Metadata is the room's initial metadata.
	Metadata string
	// MinPlayoutDelay and MaxPlayoutDelay bound the receivers' playout
	// delay; they are rounded up to whole milliseconds.
	MinPlayoutDelay, MaxPlayoutDelay time.Duration
	// SyncStreams asks receivers to synchronise the audio and video of a
	// participant.
	SyncStreams bool
	// Agents are dispatched to the room when it is created.
	Agents []AgentDispatch
	// Tags label the room (LiveKit Cloud reads them).
	Tags map[string]string
}

// AgentDispatch asks for an agent to be dispatched to a room.
type AgentDispatch struct {
	// AgentName is the name the agent registered with.
	AgentName string
	// Metadata is handed to the agent's job.
	Metadata string
	// Attributes are set on the agent's participant.
	Attributes map[string]string
}

// Claims are the contents of an access token: who the participant is and
// what it may do.
type Claims struct {
	// Identity is the participant's identity, unique in a room. It is
	// required when Grants.RoomJoin is set.
	Identity string
	// Name is the participant's initial display name.
	Name string
	// Metadata is the participant's initial metadata.
	Metadata string
	// Attributes are the participant's initial attributes.
	Attributes map[string]string
	// Grants are the token's permissions.
	Grants Grants
	// ValidFor is how long the token is valid from NotBefore. Zero means
	// DefaultTokenValidity (6 hours).
	ValidFor time.Duration
	// NotBefore is when the token becomes valid. The zero value means now.
	// Times are kept with a precision of one second.
	NotBefore time.Time
	// Kind is the participant's kind; the zero value is KindStandard. The
	// server trusts it: a token minted with KindAgent joins as an agent.
	Kind ParticipantKind
	// KindDetails refine Kind.
	KindDetails []ParticipantKindDetail
	// SIP are the SIP server API grants; nil grants none.
	SIP *SIPGrants
	// RoomConfig configures the room the participant's join creates; nil
	// leaves the server's defaults.
	RoomConfig *RoomConfig
	// RoomPreset names a room configuration stored on the server (LiveKit
	// Cloud only); RoomConfig overrides its parameters.
	RoomPreset string
}

// Bool returns a pointer to b, for the tri-state grants of Grants.
func Bool(b bool) *bool { return &b }

// videoGrant is the JSON form of Grants in the "video" claim. It has the
// fields of Grants, in the same order and of the same types, so that the two
// convert into each other with a type conversion: a grant added to one and
// not the other is a compile error, not a grant silently dropped.
type videoGrant struct {
	Room                 string `json:"room,omitempty"`
	RoomJoin             bool   `json:"roomJoin,omitempty"`
	RoomAdmin            bool   `json:"roomAdmin,omitempty"`
	RoomCreate           bool   `json:"roomCreate,omitempty"`
	RoomList             bool   `json:"roomList,omitempty"`
	CanPublish           *bool  `json:"canPublish,omitempty"`
	CanSubscribe         *bool  `json:"canSubscribe,omitempty"`
	CanPublishData       *bool  `json:"canPublishData,omitempty"`
	CanUpdateOwnMetadata bool   `json:"canUpdateOwnMetadata,omitempty"`
	Hidden               bool   `json:"hidden,omitempty"`

	RoomRecord   bool `json:"roomRecord,omitempty"`
	IngressAdmin bool `json:"ingressAdmin,omitempty"`
	// CanPublishSources are written by TrackSource's MarshalText, the
	// lower-case names LiveKit's tokens use.
	CanPublishSources     []TrackSource `json:"canPublishSources,omitempty"`
	Recorder              bool          `json:"recorder,omitempty"`
	Agent                 bool          `json:"agent,omitempty"`
	CanSubscribeMetrics   *bool         `json:"canSubscribeMetrics,omitempty"`
	CanManageAgentSession *bool         `json:"canManageAgentSession,omitempty"`
	DestinationRoom       string        `json:"destinationRoom,omitempty"`
}

// sipGrant is the JSON form of SIPGrants in the "sip" claim; like
// videoGrant, it converts to and from SIPGrants.
type sipGrant struct {
	Admin bool `json:"admin,omitempty"`
	Call  bool `json:"call,omitempty"`
}

// tokenClaims is the JSON form of a token's claims. Names are LiveKit's
// (its auth package's ClaimGrants).
type tokenClaims struct {
	jwt.RegisteredClaims
	// Identity duplicates "sub" in LiveKit's own tokens; it is read when
	// "sub" is absent and never written.
	Identity    string            `json:"identity,omitempty"`
	Name        string            `json:"name,omitempty"`
	Kind        string            `json:"kind,omitempty"`
	KindDetails []string          `json:"kindDetails,omitempty"`
	Metadata    string            `json:"metadata,omitempty"`
	Attributes  map[string]string `json:"attributes,omitempty"`
	Video       *videoGrant       `json:"video,omitempty"`
	SIP         *sipGrant         `json:"sip,omitempty"`
	// RoomConfig is LiveKit's RoomConfiguration in protobuf JSON.
	RoomConfig json.RawMessage `json:"roomConfig,omitempty"`
	RoomPreset string          `json:"roomPreset,omitempty"`
	// Sha256 is set only in the tokens that sign webhooks.
	Sha256 string `json:"sha256,omitempty"`
}

// NewToken mints an access token for a LiveKit server: a JWT signed with
// HS256 using apiSecret, issued by apiKey and carrying c.
//
// It returns an error wrapping ErrInvalidArgument when apiKey or apiSecret is
// empty, when ValidFor is negative, or when c grants RoomJoin without an
// Identity or a Room.
func NewToken(apiKey, apiSecret string, c Claims) (string, error) {
	switch {
	case apiKey == "":
		return "", fmt.Errorf("%w: NewToken: empty API key", ErrInvalidArgument)
	case apiSecret == "":
		return "", fmt.Errorf("%w: NewToken: empty API secret", ErrInvalidArgument)
	case c.ValidFor < 0:
		return "", fmt.Errorf("%w: NewToken: negative validity %v", ErrInvalidArgument, c.ValidFor)
	case c.Grants.RoomJoin && c.Identity == "":
		return "", fmt.Errorf("%w: NewToken: the roomJoin grant needs an identity", ErrInvalidArgument)
	case c.Grants.RoomJoin && c.Grants.Room == "":
		return "", fmt.Errorf("%w: NewToken: the roomJoin grant needs a room", ErrInvalidArgument)
	case !knownKind(c.Kind):
		return "", fmt.Errorf("%w: NewToken: unknown participant kind %v", ErrInvalidArgument, c.Kind)
	}
	for _, s := range c.Grants.CanPublishSources {
		if _, ok := lkpb.TrackSource_name[int32(s)]; !ok || s == SourceUnknown {
			return "", fmt.Errorf("%w: NewToken: unknown track source %v in canPublishSources", ErrInvalidArgument, s)
		}
	}
	for _, d := range c.KindDetails {
		if _, ok := lkpb.ParticipantInfo_KindDetail_name[int32(d)]; !ok {
			return "", fmt.Errorf("%w: NewToken: unknown kind detail %v", ErrInvalidArgument, d)
		}
	}
	roomConfig, err := encodeRoomConfig(c.RoomConfig)
	if err != nil {
		return "", err
	}
	nbf := c.NotBefore
	if nbf.IsZero() {
		nbf = time.Now()
	}
	validFor := c.ValidFor
	if validFor == 0 {
		validFor = DefaultTokenValidity
	}
	g := c.Grants
	tc := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    apiKey,
			Subject:   c.Identity,
			NotBefore: jwt.NewNumericDate(nbf),
			ExpiresAt: jwt.NewNumericDate(nbf.Add(validFor)),
		},
		Name:        c.Name,
		Metadata:    c.Metadata,
		Attributes:  c.Attributes,
		RoomConfig:  roomConfig,
		RoomPreset:  c.RoomPreset,
		KindDetails: kindDetailNames(c.KindDetails),
		Video:       (*videoGrant)(&g),
	}
	// The standard kind is LiveKit's default: it is left out, as LiveKit's
	// own tokens for standard participants leave it out.
	if c.Kind != KindStandard {
		tc.Kind = c.Kind.String()
	}
	if c.SIP != nil && (c.SIP.Admin || c.SIP.Call) {
		tc.SIP = (*sipGrant)(c.SIP)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, tc).SignedString([]byte(apiSecret))
	if err != nil {
		return "", fmt.Errorf("%w: NewToken: %v", ErrInvalidArgument, err)
	}
	return s, nil
}

// ParseToken verifies an access token's HS256 signature with apiSecret and
// its validity period, and returns its claims. ValidFor is the span from the
// token's not-before time to its expiry (zero when either is absent).
//
// Errors wrap ErrBadToken.
func ParseToken(token, apiSecret string) (*Claims, error) {
	if apiSecret == "" {
		return nil, fmt.Errorf("%w: ParseToken: empty API secret", ErrBadToken)
	}
	var tc tokenClaims
	_, err := jwt.ParseWithClaims(token, &tc, func(*jwt.Token) (any, error) {
		return []byte(apiSecret), nil
	}, jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	c, err := tc.claims()
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// parseTokenUnverified decodes a token without verifying its signature or
// validity, for a participant that holds its own token but not the secret.
// It returns the claims and the API key that issued the token.
func parseTokenUnverified(token string) (Claims, string, error) {
	var tc tokenClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &tc); err != nil {
		return Claims{}, "", fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	c, err := tc.claims()
	return c, tc.Issuer, err
}

// claims converts the JSON form into Claims.
func (tc *tokenClaims) claims() (Claims, error) {
	c := Claims{
		Identity:   tc.Subject,
		Name:       tc.Name,
		Metadata:   tc.Metadata,
		Attributes: maps.Clone(tc.Attributes),
		RoomPreset: tc.RoomPreset,
		Kind:       parseKind(tc.Kind),
	}
	if c.Identity == "" {
		c.Identity = tc.Identity
	}
	for _, name := range tc.KindDetails {
		// Unknown details are dropped, as LiveKit's server drops them.
		if v, ok := lkpb.ParticipantInfo_KindDetail_value[strings.ToUpper(name)]; ok {
			c.KindDetails = append(c.KindDetails, ParticipantKindDetail(v))
		}
	}
	if tc.SIP != nil {
		sip := SIPGrants(*tc.SIP)
		c.SIP = &sip
	}
	rc, err := decodeRoomConfig(tc.RoomConfig)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: roomConfig claim: %v", ErrBadToken, err)
	}
	c.RoomConfig = rc
	if tc.NotBefore != nil {
		c.NotBefore = tc.NotBefore.Time
	}
	if tc.NotBefore != nil && tc.ExpiresAt != nil {
		c.ValidFor = tc.ExpiresAt.Sub(tc.NotBefore.Time)
	}
	if v := tc.Video; v != nil {
		c.Grants = Grants(*v)
		// Unknown sources read as SourceUnknown and are dropped, as
		// LiveKit's server drops them.
		c.Grants.CanPublishSources = slices.DeleteFunc(c.Grants.CanPublishSources, func(s TrackSource) bool { return s == SourceUnknown })
		if len(c.Grants.CanPublishSources) == 0 {
			c.Grants.CanPublishSources = nil
		}
	}
	return c, nil
}

func knownKind(k ParticipantKind) bool {
	_, ok := lkpb.ParticipantInfo_Kind_name[int32(k)]
	return ok
}

// parseKind reads the "kind" claim; like LiveKit's server, it takes an
// unknown kind for the standard one.
func parseKind(s string) ParticipantKind {
	return ParticipantKind(lkpb.ParticipantInfo_Kind_value[strings.ToUpper(s)])
}

func kindDetailNames(ds []ParticipantKindDetail) []string {
	if len(ds) == 0 {
		return nil
	}
	names := make([]string, len(ds))
	for i, d := range ds {
		names[i] = d.String()
	}
	return names
}

// encodeRoomConfig returns the protobuf JSON of rc, as LiveKit writes the
// "roomConfig" claim; nil for nil.
func encodeRoomConfig(rc *RoomConfig) (json.RawMessage, error) {
	if rc == nil {
		return nil, nil
	}
	const what = "NewToken: RoomConfig"
	seconds := func(field string, d time.Duration) (uint32, error) {
		ms, err := millis(what, field, d)
		return (ms + 999) / 1000, err
	}
	empty, err := seconds("EmptyTimeout", rc.EmptyTimeout)
	if err != nil {
		return nil, err
	}
	departure, err := seconds("DepartureTimeout", rc.DepartureTimeout)
	if err != nil {
		return nil, err
	}
	minDelay, err := millis(what, "MinPlayoutDelay", rc.MinPlayoutDelay)
	if err != nil {
		return nil, err
	}
	maxDelay, err := millis(what, "MaxPlayoutDelay", rc.MaxPlayoutDelay)
	if err != nil {
		return nil, err
	}
	if rc.MaxParticipants < 0 || int64(rc.MaxParticipants) > math.MaxUint32 {
		return nil, fmt.Errorf("%w: %s: MaxParticipants %d out of range", ErrInvalidArgument, what, rc.MaxParticipants)
	}
	pb := &lkpb.RoomConfiguration{
		Name:             rc.Name,
		EmptyTimeout:     empty,
		DepartureTimeout: departure,
		MaxParticipants:  uint32(rc.MaxParticipants),
		Metadata:         rc.Metadata,
		MinPlayoutDelay:  minDelay,
		MaxPlayoutDelay:  maxDelay,
		SyncStreams:      rc.SyncStreams,
		Tags:             rc.Tags,
	}
	for _, a := range rc.Agents {
		pb.Agents = append(pb.Agents, &lkpb.RoomAgentDispatch{AgentName: a.AgentName, Metadata: a.Metadata, Attributes: a.Attributes})
	}
	b, err := protojson.Marshal(pb)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidArgument, what, err)
	}
	return b, nil
}

// decodeRoomConfig reads the "roomConfig" claim; fields callstate does not
// know (egress, for example) are ignored.
func decodeRoomConfig(b json.RawMessage) (*RoomConfig, error) {
	if len(b) == 0 || string(b) == "null" {
		return nil, nil
	}
	var pb lkpb.RoomConfiguration
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &pb); err != nil {
		return nil, err
	}
	rc := &RoomConfig{
		Name:             pb.GetName(),
		EmptyTimeout:     time.Duration(pb.GetEmptyTimeout()) * time.Second,
		DepartureTimeout: time.Duration(pb.GetDepartureTimeout()) * time.Second,
		MaxParticipants:  int(pb.GetMaxParticipants()),
		Metadata:         pb.GetMetadata(),
		MinPlayoutDelay:  time.Duration(pb.GetMinPlayoutDelay()) * time.Millisecond,
		MaxPlayoutDelay:  time.Duration(pb.GetMaxPlayoutDelay()) * time.Millisecond,
		SyncStreams:      pb.GetSyncStreams(),
		Tags:             maps.Clone(pb.GetTags()),
	}
	for _, a := range pb.GetAgents() {
		rc.Agents = append(rc.Agents, AgentDispatch{AgentName: a.GetAgentName(), Metadata: a.GetMetadata(), Attributes: maps.Clone(a.GetAttributes())})
	}
	return rc, nil
}

// millis converts a delay to whole milliseconds, rounding up.
func millis(what, field string, d time.Duration) (uint32, error) {
	if d < 0 {
		return 0, fmt.Errorf("%w: %s: negative %s %v", ErrInvalidArgument, what, field, d)
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > math.MaxUint32 {
		return 0, fmt.Errorf("%w: %s: %s %v out of range", ErrInvalidArgument, what, field, d)
	}
	return uint32(ms), nil
}
