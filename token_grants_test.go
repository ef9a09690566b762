package callstate

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// signRaw signs a JSON claims object exactly as given, with HS256, the way
// LiveKit's auth package (golang-jwt) does: base64url without padding of
// the header and the claims, joined by a dot, then the HMAC.
func signRaw(t *testing.T, claimsJSON, secret string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(claimsJSON))
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(head))
	return head + "." + enc.EncodeToString(m.Sum(nil))
}

// allGrants sets every grant and claim callstate knows.
func allGrants(nbf time.Time) Claims {
	return Claims{
		Identity:   "agent-1",
		Name:       "Agent",
		Metadata:   "m",
		Attributes: map[string]string{"a": "b"},
		NotBefore:  nbf,
		ValidFor:   time.Hour,
		Kind:       KindAgent,
		KindDetails: []ParticipantKindDetail{
			KindDetailCloudAgent, KindDetailForwarded,
		},
		SIP:        &SIPGrants{Admin: true, Call: true},
		RoomPreset: "preset",
		RoomConfig: &RoomConfig{
			Name:             "cfg",
			EmptyTimeout:     77 * time.Second,
			DepartureTimeout: 9 * time.Second,
			MaxParticipants:  5,
			Metadata:         "room-meta",
			MinPlayoutDelay:  10 * time.Millisecond,
			MaxPlayoutDelay:  200 * time.Millisecond,
			SyncStreams:      true,
			Agents: []AgentDispatch{
				{AgentName: "helper", Metadata: "job", Attributes: map[string]string{"x": "y"}},
			},
			Tags: map[string]string{"team": "blue"},
		},
		Grants: Grants{
			Room:                  "r1",
			RoomJoin:              true,
			RoomAdmin:             true,
			RoomCreate:            true,
			RoomList:              true,
			RoomRecord:            true,
			IngressAdmin:          true,
			CanPublish:            Bool(true),
			CanSubscribe:          Bool(true),
			CanPublishData:        Bool(true),
			CanPublishSources:     []TrackSource{SourceCamera, SourceMicrophone, SourceScreenShare, SourceScreenShareAudio},
			CanUpdateOwnMetadata:  true,
			Hidden:                true,
			Recorder:              true,
			Agent:                 true,
			CanSubscribeMetrics:   Bool(true),
			CanManageAgentSession: Bool(false),
			DestinationRoom:       "r2",
		},
	}
}

// liveKitJSON is the claims object LiveKit's auth package emits for
// allGrants (its ClaimGrants, with the room configuration in protobuf
// JSON), plus "iat" and "identity", which LiveKit writes and callstate does
// not.
const liveKitJSON = `{
 "iss":"APIkey","sub":"agent-1","iat":1700000000,"nbf":1700000000,"exp":1700003600,
 "identity":"agent-1","name":"Agent","kind":"agent","kindDetails":["cloud_agent","forwarded"],
 "video":{"roomCreate":true,"roomList":true,"roomRecord":true,"roomAdmin":true,"roomJoin":true,"room":"r1",
  "canPublish":true,"canSubscribe":true,"canPublishData":true,
  "canPublishSources":["camera","microphone","screen_share","screen_share_audio"],
  "canUpdateOwnMetadata":true,"ingressAdmin":true,"hidden":true,"recorder":true,"agent":true,
  "canSubscribeMetrics":true,"canManageAgentSession":false,"destinationRoom":"r2"},
 "sip":{"admin":true,"call":true},
 "roomConfig":{"name":"cfg","emptyTimeout":77,"departureTimeout":9,"maxParticipants":5,
  "egress":{"room":{"roomName":"ignored"}},"minPlayoutDelay":10,"maxPlayoutDelay":200,"syncStreams":true,
  "agents":[{"agentName":"helper","metadata":"job","attributes":{"x":"y"}}],"metadata":"room-meta","tags":{"team":"blue"}},
 "roomPreset":"preset","metadata":"m","attributes":{"a":"b"}
}`

func TestParseTokenInLiveKitFormat(t *testing.T) {
	tok := signRaw(t, liveKitJSON, testSecret)
	// The token is from 2023: only its signature and claims are checked
	// here, through the unverified decoder and a verifier without expiry.
	got, iss, err := parseTokenUnverified(tok)
	require.NoError(t, err)
	assert.Equal(t, testKey, iss)
	want := allGrants(time.Unix(1_700_000_000, 0))
	assert.True(t, want.NotBefore.Equal(got.NotBefore))
	got.NotBefore = want.NotBefore
	assert.Equal(t, want, got)

	// The same claims, current, through ParseToken.
	now := time.Now().Unix()
	fresh := strings.NewReplacer(`"iat":1700000000,"nbf":1700000000,"exp":1700003600`,
		`"iat":`+itoa(now)+`,"nbf":`+itoa(now)+`,"exp":`+itoa(now+3600)).Replace(liveKitJSON)
	c, err := ParseToken(signRaw(t, fresh, testSecret), testSecret)
	require.NoError(t, err)
	assert.Equal(t, want.Grants, c.Grants)
	assert.Equal(t, want.RoomConfig, c.RoomConfig)
	assert.Equal(t, want.SIP, c.SIP)
	assert.Equal(t, KindAgent, c.Kind)

	_, err = ParseToken(signRaw(t, fresh, testSecret+"x"), testSecret)
	require.ErrorIs(t, err, ErrBadToken)
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func TestNewTokenEmitsLiveKitClaims(t *testing.T) {
	tok, err := NewToken(testKey, testSecret, allGrants(time.Unix(1_700_000_000, 0)))
	require.NoError(t, err)
	got := payload(t, tok)
	want := payload(t, signRaw(t, liveKitJSON, testSecret))
	// callstate writes neither "iat" nor "identity" (the server reads the
	// identity from "sub"), nor the egress part of the room configuration.
	delete(want, "iat")
	delete(want, "identity")
	delete(want["roomConfig"].(map[string]any), "egress")
	assert.Equal(t, want, got)
}

func TestTokenRoundTripAllGrants(t *testing.T) {
	in := allGrants(time.Now().Add(-time.Minute).Truncate(time.Second))
	tok, err := NewToken(testKey, testSecret, in)
	require.NoError(t, err)
	out, err := ParseToken(tok, testSecret)
	require.NoError(t, err)
	assert.True(t, in.NotBefore.Equal(out.NotBefore))
	out.NotBefore = in.NotBefore
	assert.Equal(t, in, *out)
}

func TestNewTokenRefusesUnknownValues(t *testing.T) {
	base := Claims{Identity: "a", Grants: Grants{Room: "r", RoomJoin: true}}
	cases := map[string]func(c *Claims){
		"kind":            func(c *Claims) { c.Kind = 99 },
		"kind detail":     func(c *Claims) { c.KindDetails = []ParticipantKindDetail{42} },
		"source":          func(c *Claims) { c.Grants.CanPublishSources = []TrackSource{17} },
		"unknown source":  func(c *Claims) { c.Grants.CanPublishSources = []TrackSource{SourceUnknown} },
		"negative delay":  func(c *Claims) { c.RoomConfig = &RoomConfig{MinPlayoutDelay: -time.Millisecond} },
		"negative empty":  func(c *Claims) { c.RoomConfig = &RoomConfig{EmptyTimeout: -time.Second} },
		"too many people": func(c *Claims) { c.RoomConfig = &RoomConfig{MaxParticipants: -1} },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			c := base
			mutate(&c)
			_, err := NewToken(testKey, testSecret, c)
			require.ErrorIs(t, err, ErrInvalidArgument)
		})
	}
}

func TestParseTokenTolerance(t *testing.T) {
	now := time.Now().Unix()
	times := `"nbf":` + itoa(now) + `,"exp":` + itoa(now+60)
	// Unknown kinds, details and sources are dropped, as LiveKit drops them;
	// a malformed room configuration makes the token unreadable.
	c, err := ParseToken(signRaw(t, `{"iss":"k",`+times+`,"kind":"robot","kindDetails":["nope","simulation"],"video":{"canPublishSources":["hologram","camera"]}}`, testSecret), testSecret)
	require.NoError(t, err)
	assert.Equal(t, KindStandard, c.Kind)
	assert.Equal(t, []ParticipantKindDetail{KindDetailSimulation}, c.KindDetails)
	assert.Equal(t, []TrackSource{SourceCamera}, c.Grants.CanPublishSources)

	_, err = ParseToken(signRaw(t, `{"iss":"k",`+times+`,"roomConfig":{"emptyTimeout":"soon"}}`, testSecret), testSecret)
	require.ErrorIs(t, err, ErrBadToken)

	// The identity claim stands in for a missing subject.
	c, err = ParseToken(signRaw(t, `{"iss":"k",`+times+`,"identity":"only-here"}`, testSecret), testSecret)
	require.NoError(t, err)
	assert.Equal(t, "only-here", c.Identity)
}

// TestTrackSourceText checks the text form that the canPublishSources
// grant is written and read with.
func TestTrackSourceText(t *testing.T) {
	t.Parallel()
	for _, s := range []TrackSource{SourceUnknown, SourceCamera, SourceMicrophone, SourceScreenShare, SourceScreenShareAudio} {
		b, err := s.MarshalText()
		require.NoError(t, err)
		var back TrackSource = 99
		require.NoError(t, back.UnmarshalText(bytes.ToUpper(b)))
		assert.Equal(t, s, back)
	}
	_, err := TrackSource(17).MarshalText()
	assert.ErrorIs(t, err, ErrInvalidArgument)
	var s TrackSource = SourceCamera
	require.NoError(t, s.UnmarshalText([]byte("hologram")))
	assert.Equal(t, SourceUnknown, s)
}
