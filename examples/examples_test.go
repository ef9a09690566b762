package examples_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

func TestMain(m *testing.M) { calltest.Main(m) }

// runTimeout bounds each example's run.
const runTimeout = time.Minute

// build builds the examples' main packages into a temporary directory.
func build(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, n := range names {
		args = append(args, "./"+n)
	}
	cmd := exec.Command("go", args...)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Run(), "go build")
	return dir
}

// runExample runs an example binary and requires exit status 0.
func runExample(t *testing.T, bin string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s %s: %v\n--- stdout\n%s--- stderr\n%s", filepath.Base(bin), strings.Join(args, " "), time.Since(start), out.String(), errOut.String())
	require.NoError(t, err, "%s must exit 0", filepath.Base(bin))
	return out.String(), errOut.String()
}

func TestExamples(t *testing.T) {
	dir := build(t, "quickstart", "pollbot", "recorder", "webhookbot")
	srv := calltest.Shared(t)
	existing := []string{"-url", srv.URL(), "-api-key", srv.APIKey(), "-api-secret", srv.APISecret()}

	t.Run("webhookbot", func(t *testing.T) {
		t.Parallel()
		// With a server of its own, configured to post to the bot.
		out, _ := runExample(t, filepath.Join(dir, "webhookbot"))
		assert.Contains(t, out, "alice received: welcome, alice")
	})

	t.Run("quickstart", func(t *testing.T) {
		t.Parallel()
		// With a local server of its own.
		out, _ := runExample(t, filepath.Join(dir, "quickstart"))
		for _, want := range []string{
			`bob joined and sees alice with user data {"color":"teal"}`,
			`bob: session data topic = "quickstart"`,
			`bob: app message from alice: {"text":"hello bob"}`,
			`bob: data from alice on topic "chat": ping`,
			`bob: alice's user data is now {"color":"green"}`,
		} {
			assert.Contains(t, out, want)
		}
	})

	t.Run("pollbot", func(t *testing.T) {
		t.Parallel()
		// With an existing server.
		out, _ := runExample(t, filepath.Join(dir, "pollbot"), existing...)
		assert.Contains(t, out, "pollbot: 3 of 3 voted")
		assert.Contains(t, out, "pollbot: announced sushi with map[pizza:1 sushi:2]")
		for _, voter := range []string{"alice", "bob", "carol"} {
			assert.Contains(t, out, voter+": the winner is sushi")
		}
	})

	t.Run("recorder", func(t *testing.T) {
		t.Parallel()
		file := filepath.Join(t.TempDir(), "rec.jsonl")
		// With a local server of its own and its bots.
		out, _ := runExample(t, filepath.Join(dir, "recorder"), "-o", file, "-duration", "30s")
		assert.Contains(t, out, "snapshot")

		f, err := os.Open(file)
		require.NoError(t, err)
		defer f.Close()
		var types []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var rec struct {
				Time time.Time `json:"time"`
				Type string    `json:"type"`
			}
			require.NoError(t, json.Unmarshal(sc.Bytes(), &rec), sc.Text())
			assert.False(t, rec.Time.IsZero(), "timestamped: %s", sc.Text())
			types = append(types, rec.Type)
			if rec.Type != "snapshot" {
				// Every later line is an event in callstate's encoding.
				_, err := callstate.UnmarshalEvent(sc.Bytes())
				assert.NoError(t, err, sc.Text())
			}
		}
		require.NoError(t, sc.Err())
		require.NotEmpty(t, types)
		assert.Equal(t, "snapshot", types[0])
		for _, want := range []string{"participant_joined", "session_data", "app_message", "data", "participant_left"} {
			assert.Contains(t, types, want)
		}

		timeline, _ := runExample(t, filepath.Join(dir, "recorder"), "-print", file)
		assert.Equal(t, out, timeline, "the printed timeline is the one shown after recording")
		assert.Contains(t, timeline, `alice sent the app message {"chat":"hi bob"}`)
		assert.Contains(t, timeline, `session data is now {"slide":2,"topic":"recording demo"}`)
	})
}
