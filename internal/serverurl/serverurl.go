// Package serverurl checks and converts the LiveKit server URLs that
// callstate's entry points take (Join, NewRoomService, lkserver's external
// server and the command), so that they all accept the same URLs and say
// the same thing about the others.
//
// A server URL has the scheme ws, wss, http or https and a host; the
// WebSocket and HTTP forms name the same server, as LiveKit's SDKs and its
// lk CLI accept either. Errors never hold credentials: a URL in an error is
// written without its user info and credential query values.
package serverurl

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/callstate/callstate/internal/redact"
)

// Parse checks a server URL and returns it parsed. Surrounding white space
// is ignored (URLs pasted from a shell or a file often carry some); the
// scheme is lower case in the result.
func Parse(s string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		// url.Parse reads "host:port" as a scheme or a path and says
		// something unhelpful; without "://" there is no user info to hide.
		return nil, fmt.Errorf("invalid server URL %q: the scheme must be ws, wss, http or https", redact.String(s))
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid server URL: %s", parseReason(s, err))
	}
	switch u.Scheme {
	case "ws", "wss", "http", "https":
	default:
		return nil, fmt.Errorf("invalid server URL %q: the scheme must be ws, wss, http or https", redact.URL(u))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("invalid server URL %q: no host", redact.URL(u))
	}
	return u, nil
}

// parseReason is why url.Parse refused s, without credentials: url.Error
// quotes the whole input, and the reason it wraps can quote a part of it
// (an escape, a port), so the user info and JWT-shaped strings are removed.
func parseReason(s string, err error) string {
	var ue *url.Error
	msg := err.Error()
	if errors.As(err, &ue) {
		msg = ue.Err.Error()
	}
	if _, rest, ok := strings.Cut(s, "://"); ok {
		authority := rest
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			authority = rest[:i]
		}
		if i := strings.LastIndex(authority, "@"); i >= 0 {
			userinfo := authority[:i]
			msg = strings.ReplaceAll(msg, userinfo, redact.Placeholder)
			if _, pw, ok := strings.Cut(userinfo, ":"); ok && pw != "" {
				msg = strings.ReplaceAll(msg, pw, redact.Placeholder)
			}
		}
	}
	return redact.String(msg)
}

// Secure reports whether u uses TLS (wss or https).
func Secure(u *url.URL) bool { return u.Scheme == "wss" || u.Scheme == "https" }

// Bases returns the WebSocket and HTTP base URLs of the server u names:
// without user info, query or fragment, and without a trailing slash, so
// that API paths can be appended.
func Bases(u *url.URL) (wsBase, httpBase string) {
	b := *u
	b.User, b.RawQuery, b.ForceQuery, b.Fragment, b.RawFragment = nil, "", false, "", ""
	ws, http := "ws", "http"
	if Secure(u) {
		ws, http = "wss", "https"
	}
	b.Scheme = ws
	wsBase = strings.TrimRight(b.String(), "/")
	b.Scheme = http
	httpBase = strings.TrimRight(b.String(), "/")
	return wsBase, httpBase
}

// IsLoopback reports whether u names a server on this machine: a loopback
// address or "localhost". ICE must then use the loopback interface, which
// pion leaves out by default.
func IsLoopback(u *url.URL) bool {
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
