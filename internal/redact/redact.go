// Package redact removes credentials from text that leaves callstate:
// errors, log lines and command output. Join, the server API client and the
// command all use it, so that an access token, a JWT or an API secret never
// reaches a user's logs, whatever path the text took (a dial URL with
// access_token, a server's 401 body quoting the token, a wrapped net error).
package redact

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
)

// Placeholder replaces what is removed.
const Placeholder = "[REDACTED]"

// jwtRE matches JWT-shaped strings: three base64url segments, the first a
// JSON header ("eyJ" is the encoding of `{"`). Tokens appear in text as
// query values, Authorization headers and inside server messages.
var jwtRE = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*`)

// paramRE matches credential-bearing parameters in URLs, query strings and
// headers, whatever their value looks like.
var paramRE = regexp.MustCompile(`(?i)((?:access_token|token|api_secret|secret|join_request)=)[^&\s"']+|((?:bearer)\s+)[^\s"']+`)

// String returns s with every JWT-shaped string and every credential
// parameter's value replaced by Placeholder, and each of secrets (API
// secrets and keys known to the caller; empty ones are ignored) too.
func String(s string, secrets ...string) string {
	if s == "" {
		return s
	}
	s = jwtRE.ReplaceAllString(s, Placeholder)
	s = paramRE.ReplaceAllStringFunc(s, func(m string) string {
		if i := strings.IndexByte(m, '='); i >= 0 && !strings.HasPrefix(strings.ToLower(m), "bearer") {
			return m[:i+1] + Placeholder
		}
		sp := strings.IndexAny(m, " \t")
		return m[:sp+1] + Placeholder
	})
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, Placeholder)
		}
	}
	return s
}

// URL returns u as a string without its query values for credentials and
// without user information.
func URL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	return String(c.String())
}

// Error returns err with a redacted message: errors.Is and errors.As still
// see the original chain, but Error() never shows a credential. It returns
// nil for nil.
func Error(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if red := String(msg, secrets...); red != msg {
		return &redacted{msg: red, err: err}
	}
	return err
}

type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

// Is lets errors.Is match the original error itself too.
func (e *redacted) Is(target error) bool { return errors.Is(e.err, target) }

// Handler wraps a slog.Handler so that every record's message and
// attributes (strings, errors, and any value printed as text) are redacted
// before they reach it, at every level.
func Handler(h slog.Handler) slog.Handler {
	if _, ok := h.(handler); ok {
		return h
	}
	return handler{h}
}

type handler struct{ h slog.Handler }

func (h handler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(attr(a))
		return true
	})
	return h.h.Handle(ctx, out)
}

func (h handler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = attr(a)
	}
	return handler{h.h.WithAttrs(red)}
}

func (h handler) WithGroup(name string) slog.Handler { return handler{h.h.WithGroup(name)} }

func attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, String(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]any, len(g))
		for i, x := range g {
			red[i] = attr(x)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, String(err.Error()))
		}
		return slog.String(a.Key, String(v.String()))
	}
	return slog.Attr{Key: a.Key, Value: v}
}
