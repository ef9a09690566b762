package redact

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
)

const jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"

func TestString(t *testing.T) {
	for _, in := range []string{
		"dial ws://h/rtc?access_token=" + jwt + "&protocol=16: refused",
		"GET /rtc?access_token=opaque-not-a-jwt&x=1",
		"invalid token: " + jwt + ", error: go-jose/go-jose: error in cryptographic primitive",
		"Authorization: Bearer abc.def.ghi",
		`{"token":"` + jwt + `"}`,
		"/rtc/v1?join_request=Q0FJU0JBZ0JFQUU",
	} {
		out := String(in)
		if strings.Contains(out, jwt) || strings.Contains(out, "opaque-not-a-jwt") ||
			strings.Contains(out, "abc.def.ghi") || strings.Contains(out, "Q0FJU0JBZ0JFQUU") {
			t.Errorf("String(%q) = %q: a credential is left", in, out)
		}
		if !strings.Contains(out, Placeholder) {
			t.Errorf("String(%q) = %q: no placeholder", in, out)
		}
	}
	if got := String("plain text, room=abc"); got != "plain text, room=abc" {
		t.Errorf("plain text changed: %q", got)
	}
	if got := String("key devkey secret s3cr3t-value", "s3cr3t-value"); strings.Contains(got, "s3cr3t-value") {
		t.Errorf("secret left: %q", got)
	}
}

func TestURL(t *testing.T) {
	u, _ := url.Parse("wss://user:pw@example.com/rtc?access_token=" + jwt + "&protocol=16")
	got := URL(u)
	if strings.Contains(got, jwt) || strings.Contains(got, "pw@") || !strings.Contains(got, "protocol=16") {
		t.Errorf("URL = %q", got)
	}
}

var errBase = errors.New("base")

func TestErrorKeepsChain(t *testing.T) {
	err := Error(fmt.Errorf("dial ?access_token=%s: %w", jwt, errBase))
	if strings.Contains(err.Error(), jwt) {
		t.Errorf("Error() = %q", err)
	}
	if !errors.Is(err, errBase) {
		t.Error("chain lost")
	}
	if Error(nil) != nil {
		t.Error("Error(nil) != nil")
	}
	plain := errors.New("nothing secret")
	if Error(plain) != plain {
		t.Error("an error without credentials should be returned as is")
	}
}

func TestHandler(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(Handler(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l = l.With("url", "ws://h/rtc?access_token="+jwt)
	l.Debug("dial "+jwt, "err", errors.New("401: "+jwt), "group", slog.GroupValue(slog.String("t", jwt)), "n", 3)
	if strings.Contains(buf.String(), jwt) {
		t.Errorf("log line holds the token: %s", buf.String())
	}
	if !strings.Contains(buf.String(), "n=3") {
		t.Errorf("other attributes lost: %s", buf.String())
	}
}
