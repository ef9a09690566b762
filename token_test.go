package callstate

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	testKey    = "APIkey"
	testSecret = "0123456789abcdef0123456789abcdef"
)

// payload decodes the claims segment of a JWT into a generic map.
func payload(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

func TestNewTokenWireClaims(t *testing.T) {
	nbf := time.Unix(1_700_000_000, 0)
	tok, err := NewToken(testKey, testSecret, Claims{
		Identity:   "alice",
		Name:       "Alice",
		Metadata:   `{"a":1}`,
		Attributes: map[string]string{"k": "v"},
		NotBefore:  nbf,
		ValidFor:   time.Hour,
		Grants: Grants{
			Room:                 "r1",
			RoomJoin:             true,
			RoomAdmin:            true,
			RoomCreate:           true,
			RoomList:             true,
			CanPublish:           Bool(true),
			CanSubscribe:         Bool(false),
			CanPublishData:       Bool(false),
			CanUpdateOwnMetadata: true,
			Hidden:               true,
		},
	})
	require.NoError(t, err)

	header := strings.Split(tok, ".")[0]
	hb, err := base64.RawURLEncoding.DecodeString(header)
	require.NoError(t, err)
	assert.JSONEq(t, `{"alg":"HS256","typ":"JWT"}`, string(hb))

	want := map[string]any{
		"iss":        testKey,
		"sub":        "alice",
		"name":       "Alice",
		"metadata":   `{"a":1}`,
		"attributes": map[string]any{"k": "v"},
		"nbf":        float64(1_700_000_000),
		"exp":        float64(1_700_003_600),
		"video": map[string]any{
			"room":                 "r1",
			"roomJoin":             true,
			"roomAdmin":            true,
			"roomCreate":           true,
			"roomList":             true,
			"canPublish":           true,
			"canSubscribe":         false,
			"canPublishData":       false,
			"canUpdateOwnMetadata": true,
			"hidden":               true,
		},
	}
	assert.Equal(t, want, payload(t, tok))
}

func TestNewTokenOmitsUnsetClaims(t *testing.T) {
	tok, err := NewToken(testKey, testSecret, Claims{
		Identity: "bob",
		Grants:   Grants{Room: "r", RoomJoin: true},
	})
	require.NoError(t, err)
	m := payload(t, tok)
	assert.Equal(t, map[string]any{"room": "r", "roomJoin": true}, m["video"],
		"unset grants, including the tri-state ones, must be omitted")
	for _, k := range []string{"name", "metadata", "attributes", "jti", "aud", "iat"} {
		assert.NotContains(t, m, k)
	}
}

func TestNewTokenDefaults(t *testing.T) {
	before := time.Now().Truncate(time.Second)
	tok, err := NewToken(testKey, testSecret, Claims{Grants: Grants{RoomList: true}})
	require.NoError(t, err)
	after := time.Now()

	c, err := ParseToken(tok, testSecret)
	require.NoError(t, err)
	assert.Equal(t, DefaultTokenValidity, c.ValidFor)
	assert.False(t, c.NotBefore.Before(before), "not-before %v is before %v", c.NotBefore, before)
	assert.False(t, c.NotBefore.After(after), "not-before %v is after %v", c.NotBefore, after)
	assert.Equal(t, Grants{RoomList: true}, c.Grants)
	assert.Empty(t, c.Identity)
}

func TestTokenRoundTrip(t *testing.T) {
	in := Claims{
		Identity:   "carol",
		Name:       "Carol",
		Metadata:   "meta",
		Attributes: map[string]string{"x": "1", "y": ""},
		ValidFor:   90 * time.Minute,
		NotBefore:  time.Now().Add(-time.Minute).Truncate(time.Second),
		Grants: Grants{
			Room:                 "room",
			RoomJoin:             true,
			CanPublishData:       Bool(false),
			CanSubscribe:         Bool(true),
			CanUpdateOwnMetadata: true,
		},
	}
	tok, err := NewToken(testKey, testSecret, in)
	require.NoError(t, err)
	out, err := ParseToken(tok, testSecret)
	require.NoError(t, err)
	assert.True(t, in.NotBefore.Equal(out.NotBefore))
	out.NotBefore = in.NotBefore
	assert.Equal(t, in, *out)

	// The unverified decoder sees the same claims and the issuer.
	uc, iss, err := parseTokenUnverified(tok)
	require.NoError(t, err)
	assert.Equal(t, testKey, iss)
	uc.NotBefore = in.NotBefore
	assert.Equal(t, in, uc)
}

func TestNewTokenInvalidArguments(t *testing.T) {
	join := Grants{Room: "r", RoomJoin: true}
	cases := []struct {
		name        string
		key, secret string
		claims      Claims
	}{
		{"empty key", "", testSecret, Claims{Identity: "a", Grants: join}},
		{"empty secret", testKey, "", Claims{Identity: "a", Grants: join}},
		{"join without identity", testKey, testSecret, Claims{Grants: join}},
		{"join without room", testKey, testSecret, Claims{Identity: "a", Grants: Grants{RoomJoin: true}}},
		{"negative validity", testKey, testSecret, Claims{Identity: "a", Grants: join, ValidFor: -time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := NewToken(tc.key, tc.secret, tc.claims)
			require.ErrorIs(t, err, ErrInvalidArgument)
			assert.Empty(t, tok)
			assert.True(t, strings.HasPrefix(err.Error(), "callstate: "), err.Error())
		})
	}
}

func TestParseTokenRejects(t *testing.T) {
	good, err := NewToken(testKey, testSecret, Claims{Identity: "a", Grants: Grants{Room: "r", RoomJoin: true}})
	require.NoError(t, err)
	expired, err := NewToken(testKey, testSecret, Claims{NotBefore: time.Now().Add(-2 * time.Hour), ValidFor: time.Hour})
	require.NoError(t, err)
	future, err := NewToken(testKey, testSecret, Claims{NotBefore: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	hs512, err := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"iss": testKey}).SignedString([]byte(testSecret))
	require.NoError(t, err)
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": testKey}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"APIkey","sub":"mallory","video":{"roomAdmin":true}}`)) + "." + parts[2]

	cases := []struct {
		name, token, secret string
	}{
		{"wrong secret", good, testSecret + "x"},
		{"empty secret", good, ""},
		{"expired", expired, testSecret},
		{"not yet valid", future, testSecret},
		{"other algorithm", hs512, testSecret},
		{"alg none", none, testSecret},
		{"tampered claims", tampered, testSecret},
		{"malformed", "not.a.jwt", testSecret},
		{"empty", "", testSecret},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseToken(tc.token, tc.secret)
			require.ErrorIs(t, err, ErrBadToken)
			assert.Nil(t, c)
		})
	}
}

func TestParseTokenUnverifiedMalformed(t *testing.T) {
	_, _, err := parseTokenUnverified("garbage")
	require.ErrorIs(t, err, ErrBadToken)
}

func FuzzParseToken(f *testing.F) {
	tok, err := NewToken(testKey, testSecret, Claims{Identity: "a", Grants: Grants{Room: "r", RoomJoin: true}})
	require.NoError(f, err)
	f.Add(tok)
	f.Add("")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseToken(s, testSecret)
		if (c == nil) == (err == nil) {
			t.Fatalf("ParseToken returned claims %v and error %v", c, err)
		}
		if err != nil && !strings.Contains(err.Error(), "callstate: ") {
			t.Fatalf("error without prefix: %v", err)
		}
		_, _, _ = parseTokenUnverified(s)
	})
}

func BenchmarkNewToken(b *testing.B) {
	c := Claims{Identity: "alice", Grants: Grants{Room: "r", RoomJoin: true, CanUpdateOwnMetadata: true}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewToken(testKey, testSecret, c); err != nil {
			b.Fatal(err)
		}
	}
}
