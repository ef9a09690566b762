package serverurl

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBases(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][2]string{
		"ws://h:7880":          {"ws://h:7880", "http://h:7880"},
		"wss://h":              {"wss://h", "https://h"},
		"http://h:1/":          {"ws://h:1", "http://h:1"},
		"HTTPS://h/p/":         {"wss://h/p", "https://h/p"},
		" ws://h?x=1#f ":       {"ws://h", "http://h"},
		"ws://user:pw@h:1/":    {"ws://h:1", "http://h:1"},
		"wss://[::1]:7880/rtc": {"wss://[::1]:7880/rtc", "https://[::1]:7880/rtc"},
	} {
		u, err := Parse(in)
		require.NoError(t, err, in)
		ws, h := Bases(u)
		assert.Equal(t, want, [2]string{ws, h}, in)
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"
	for _, in := range []string{
		"", "h:1", "tcp://h", "ftp://h", "ws://", "http://%zz",
		"ftp://user:hunter2@h/?access_token=" + jwt,
		"ws://user:hunter2@/?access_token=" + jwt,
		"ws://h:hunter2@%zz/?access_token=" + jwt,
	} {
		_, err := Parse(in)
		require.Error(t, err, in)
		assert.True(t, strings.HasPrefix(err.Error(), "invalid server URL"), err.Error())
		assert.NotContains(t, err.Error(), "hunter2", in)
		assert.NotContains(t, err.Error(), jwt, in)
	}
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		"ws://127.0.0.1:7880": true, "ws://127.1.2.3": true, "wss://localhost": true,
		"ws://[::1]:1": true, "ws://example.com": false, "ws://10.0.0.1": false,
	} {
		u, err := Parse(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, IsLoopback(u), in)
	}
}
