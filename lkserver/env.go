package lkserver

import (
	"cmp"
	"os"
)

// Environment variables naming an existing server. LiveKit's own tools
// (the lk CLI, the server SDKs) read LIVEKIT_URL, LIVEKIT_API_KEY and
// LIVEKIT_API_SECRET; callstate's CALLSTATE_ variables, when set, take
// precedence over them, so that one shell can point callstate elsewhere
// than lk.
const (
	EnvURL       = "CALLSTATE_URL"
	EnvAPIKey    = "CALLSTATE_API_KEY"
	EnvAPISecret = "CALLSTATE_API_SECRET"

	EnvLiveKitURL       = "LIVEKIT_URL"
	EnvLiveKitAPIKey    = "LIVEKIT_API_KEY"
	EnvLiveKitAPISecret = "LIVEKIT_API_SECRET"
)

// Endpoint names a LiveKit server and the credentials of its server API.
type Endpoint struct {
	// URL is the server's URL: ws://, wss://, http:// or https://.
	URL string
	// APIKey and APISecret are an API key the server accepts and its
	// secret.
	APIKey, APISecret string
}

// EndpointFromEnv reads an Endpoint from the environment through getenv
// (os.Getenv when nil). Each field comes from its CALLSTATE_ variable when
// that is set and not empty, else from LiveKit's standard variable:
//
//	URL        CALLSTATE_URL,        else LIVEKIT_URL
//	APIKey     CALLSTATE_API_KEY,    else LIVEKIT_API_KEY
//	APISecret  CALLSTATE_API_SECRET, else LIVEKIT_API_SECRET
//
// Fields whose variables are both unset are empty; the caller decides
// whether a partial Endpoint is an error.
func EndpointFromEnv(getenv func(string) string) Endpoint {
	if getenv == nil {
		getenv = os.Getenv
	}
	return Endpoint{
		URL:       cmp.Or(getenv(EnvURL), getenv(EnvLiveKitURL)),
		APIKey:    cmp.Or(getenv(EnvAPIKey), getenv(EnvLiveKitAPIKey)),
		APISecret: cmp.Or(getenv(EnvAPISecret), getenv(EnvLiveKitAPISecret)),
	}
}
