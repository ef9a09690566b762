package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate/calltest"
)

func TestMain(m *testing.M) { calltest.Main(m) }

// raceEnabled is set when the tests run with the race detector; the binary
// they build then has it too.
var raceEnabled bool

// runResult is the outcome of an in-process run.
type runResult struct {
	code           int
	stdout, stderr string
}

// runCmd runs the command line in process with the given environment
// variables (and no others).
func runCmd(ctx context.Context, stdin io.Reader, vars map[string]string, args ...string) runResult {
	var out, errOut bytes.Buffer
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	code := run(ctx, args, &env{
		stdin:  stdin,
		stdout: &out,
		stderr: &errOut,
		getenv: func(k string) string { return vars[k] },
	})
	return runResult{code: code, stdout: out.String(), stderr: errOut.String()}
}

// buildBinary builds the callstate command into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "callstate")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Run(), "building the callstate command")
	return bin
}

func TestUsage(t *testing.T) {
	ctx := t.Context()

	r := runCmd(ctx, nil, nil)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "Usage:")

	r = runCmd(ctx, nil, nil, "help")
	assert.Equal(t, exitOK, r.code)
	for _, name := range []string{"demo", "serve", "token", "join"} {
		assert.Contains(t, r.stdout, "\t"+name)
	}

	r = runCmd(ctx, nil, nil, "help", "join")
	assert.Equal(t, exitOK, r.code)
	assert.Contains(t, r.stdout, "Usage: callstate join")
	assert.Contains(t, r.stdout, "-receive-only")

	secrets := map[string]string{envAPISecret: "s3cr3t-value", envToken: "t0ken-value"}
	r = runCmd(ctx, nil, secrets, "token", "-h")
	assert.Equal(t, exitOK, r.code)
	assert.Contains(t, r.stderr, "-can-publish-data")
	assert.Contains(t, r.stderr, "$"+envAPISecret)
	assert.NotContains(t, r.stderr, "s3cr3t-value", "usage never shows secrets from the environment")
	r = runCmd(ctx, nil, secrets, "help", "join")
	assert.NotContains(t, r.stdout, "s3cr3t-value")
	assert.NotContains(t, r.stdout, "t0ken-value")

	r = runCmd(ctx, nil, nil, "frobnicate")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, `unknown command "frobnicate"`)

	r = runCmd(ctx, nil, nil, "help", "frobnicate")
	assert.Equal(t, exitUsage, r.code)

	r = runCmd(ctx, nil, nil, "token", "-no-such-flag")
	assert.Equal(t, exitUsage, r.code)

	r = runCmd(ctx, nil, nil, "demo", "-url", "ws://127.0.0.1:1")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "must be given together")

	r = runCmd(ctx, nil, nil, "join", "-room", "r")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "-url")

	r = runCmd(ctx, nil, nil, "token", "extra")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, `unexpected argument "extra"`)
}

func TestBenchQuickOnly(t *testing.T) {
	srv := calltest.Shared(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	r := runCmd(ctx, nil, nil, "bench", "-quick", "-only", "join,lossy", "-url", srv.URL(), "-api-key", srv.APIKey(), "-api-secret", srv.APISecret())
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "== join")
	assert.Contains(t, r.stdout, "== lossy")
	assert.NotContains(t, r.stdout, "== session")

	// The server named by LiveKit's standard variables, as for lk.
	lkEnv := map[string]string{envLiveKitURL: srv.URL(), envLiveKitAPIKey: srv.APIKey(), envLiveKitAPISecret: srv.APISecret()}
	r = runCmd(ctx, nil, lkEnv, "bench", "-quick", "-only", "join")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "existing server at "+srv.URL())
	assert.Contains(t, r.stdout, "== join")

	r = runCmd(ctx, nil, nil, "bench", "-only", "nope")
	assert.NotEqual(t, exitOK, r.code)
}
