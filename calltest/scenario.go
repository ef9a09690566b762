package calltest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/callstate/callstate"
)

// JoinTimeout bounds the joins of Server.Join.
const JoinTimeout = 30 * time.Second

// Join joins room as identity, with a token of DefaultGrants, over the
// loopback interface, with opts (nil for the defaults), and closes the Room
// when the test ends. It fails the test if the join fails.
func (s *Server) Join(tb testing.TB, room, identity string, opts *callstate.JoinOptions) *callstate.Room {
	tb.Helper()
	return s.JoinWith(tb, callstate.Claims{Identity: identity, Grants: DefaultGrants(room)}, opts)
}

// JoinWith is Join with the token's claims given.
func (s *Server) JoinWith(tb testing.TB, claims callstate.Claims, opts *callstate.JoinOptions) *callstate.Room {
	tb.Helper()
	tok, err := s.TokenWith(claims)
	if err != nil {
		tb.Fatal(err)
	}
	// The test's context: a join still under way when the test ends
	// (another goroutine failed it) gives up at once.
	ctx, cancel := context.WithTimeout(tb.Context(), JoinTimeout)
	defer cancel()
	r, err := callstate.Join(ctx, s.URL(), tok, opts)
	if err != nil {
		tb.Fatalf("calltest: %s joining %s: %v", claims.Identity, claims.Grants.Room, err)
	}
	tb.Cleanup(func() { _ = r.Close() })
	return r
}

// AwaitTimeout is how long Await waits by default.
const AwaitTimeout = 20 * time.Second

// Await receives events from sub until one of type E satisfies match (nil
// matches any), and returns it. It fails the test if none arrives within
// AwaitTimeout or if the subscription ends first. Events of other types,
// and those match rejects, are discarded.
func Await[E callstate.Event](tb testing.TB, sub *callstate.Subscription, match func(E) bool) E {
	tb.Helper()
	e, err := AwaitEvent(tb.Context(), sub, AwaitTimeout, match)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// AwaitEvent is Await for code without a testing.TB: it returns an error
// instead of failing a test.
func AwaitEvent[E callstate.Event](ctx context.Context, sub *callstate.Subscription, timeout time.Duration, match func(E) bool) (E, error) {
	var zero E
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				return zero, fmt.Errorf("calltest: the subscription ended while waiting for %T", zero)
			}
			if e, ok := ev.(E); ok && (match == nil || match(e)) {
				return e, nil
			}
			if d, ok := ev.(callstate.Disconnected); ok {
				return zero, fmt.Errorf("calltest: the room ended (%s: %v) while waiting for %T", d.Reason, d.Err, zero)
			}
		case <-ctx.Done():
			if err := parent.Err(); err != nil {
				return zero, fmt.Errorf("calltest: waiting for %T: %w", zero, err)
			}
			return zero, fmt.Errorf("calltest: no %T within %v: %w", zero, timeout, ctx.Err())
		}
	}
}
