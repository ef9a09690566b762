package calltest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds the start of the servers of NewServer and Shared,
// which may include a first-time installation of the server binary.
const startTimeout = 10 * time.Minute

// NewServer starts a server for one test (see Start) and stops it when the
// test and its subtests end. It fails the test if the server cannot start.
// opts may be nil.
//
// Starting a server takes a fraction of a second; tests that need no server
// of their own should use Shared instead.
func NewServer(tb testing.TB, opts *Options) *Server {
	tb.Helper()
	// The test's context bounds the start only: Start does not tie the
	// server's life to it, and Cleanup stops the server.
	ctx, cancel := context.WithTimeout(tb.Context(), startTimeout)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

var shared struct {
	mu  sync.Mutex
	srv *Server
	err error
}

// Shared returns the server shared by all the tests of the test binary,
// starting it on first use. It fails the test if the server cannot start
// (and every later call fails the same way, without another attempt).
//
// Tests sharing the server must use their own rooms (see RoomName). The
// shared server's Close does nothing; it is stopped by Main or CloseShared.
// Without either, it is stopped when the test binary exits (on Linux, where
// the kernel kills it; elsewhere it is left running).
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv == nil && shared.err == nil {
		// Not the test's context: a failure to start is remembered for
		// every later test, so it must not be the first test's end.
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		s, err := Start(ctx, nil)
		if err != nil {
			shared.err = err
		} else {
			s.shared = true
			shared.srv = s
		}
	}
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.srv
}

// CloseShared stops the server started by Shared, if any. A later call to
// Shared starts a new one.
func CloseShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	s := shared.srv
	shared.srv, shared.err = nil, nil
	if s == nil {
		return nil
	}
	return s.Server.Close()
}

// Main runs the tests and stops the shared server before the test binary
// exits. Call it from TestMain:
//
//	func TestMain(m *testing.M) { calltest.Main(m) }
//
// A TestMain with more to do can call m.Run and CloseShared itself.
func Main(m *testing.M) {
	code := m.Run()
	if err := CloseShared(); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// RoomName returns a room name unique to the test and to this run: the
// test's name, shortened and cleaned of characters other than letters,
// digits, '-' and '_', followed by a random suffix.
func (s *Server) RoomName(tb testing.TB) string {
	tb.Helper()
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '-'
	}, tb.Name())
	if len(name) > 48 {
		name = name[len(name)-48:]
	}
	return name + "-" + randomSuffix()
}

// randomSuffix returns 8 random hexadecimal digits.
func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
