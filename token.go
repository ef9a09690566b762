package callstate

import (
	"fmt"
	"maps"
	"time"

	"github.com/golang-jwt/jwt/v5"
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
}

// Bool returns a pointer to b, for the tri-state grants of Grants.
func Bool(b bool) *bool { return &b }

// videoGrant is the JSON form of Grants in the "video" claim.
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
}

// tokenClaims is the JSON form of a token's claims.
type tokenClaims struct {
	jwt.RegisteredClaims
	Name       string            `json:"name,omitempty"`
	Metadata   string            `json:"metadata,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Video      *videoGrant       `json:"video,omitempty"`
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
		Name:       c.Name,
		Metadata:   c.Metadata,
		Attributes: c.Attributes,
		Video: &videoGrant{
			Room:                 g.Room,
			RoomJoin:             g.RoomJoin,
			RoomAdmin:            g.RoomAdmin,
			RoomCreate:           g.RoomCreate,
			RoomList:             g.RoomList,
			CanPublish:           g.CanPublish,
			CanSubscribe:         g.CanSubscribe,
			CanPublishData:       g.CanPublishData,
			CanUpdateOwnMetadata: g.CanUpdateOwnMetadata,
			Hidden:               g.Hidden,
		},
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
	c := tc.claims()
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
	return tc.claims(), tc.Issuer, nil
}

// claims converts the JSON form into Claims.
func (tc *tokenClaims) claims() Claims {
	c := Claims{
		Identity:   tc.Subject,
		Name:       tc.Name,
		Metadata:   tc.Metadata,
		Attributes: maps.Clone(tc.Attributes),
	}
	if tc.NotBefore != nil {
		c.NotBefore = tc.NotBefore.Time
	}
	if tc.NotBefore != nil && tc.ExpiresAt != nil {
		c.ValidFor = tc.ExpiresAt.Sub(tc.NotBefore.Time)
	}
	if v := tc.Video; v != nil {
		c.Grants = Grants{
			Room:                 v.Room,
			RoomJoin:             v.RoomJoin,
			RoomAdmin:            v.RoomAdmin,
			RoomCreate:           v.RoomCreate,
			RoomList:             v.RoomList,
			CanPublish:           v.CanPublish,
			CanSubscribe:         v.CanSubscribe,
			CanPublishData:       v.CanPublishData,
			CanUpdateOwnMetadata: v.CanUpdateOwnMetadata,
			Hidden:               v.Hidden,
		}
	}
	return c
}
