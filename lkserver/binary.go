package lkserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

const serverModule = "github.com/livekit/livekit-server/cmd/server"

// findBinary returns the livekit-server executable to run, installing it
// into the cache directory when there is none.
func findBinary(ctx context.Context, explicit string) (string, error) {
	if explicit != "" {
		return checkBinary(explicit, "Options.Binary")
	}
	if p := os.Getenv(EnvBinary); p != "" {
		return checkBinary(p, EnvBinary)
	}
	if p, err := exec.LookPath("livekit-server"); err == nil {
		return p, nil
	}
	cache, err := cacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "livekit-server-"+Version, "server")
	if isExecutable(bin) {
		return bin, nil
	}
	if err := install(ctx, cache, bin); err != nil {
		return "", err
	}
	return bin, nil
}

func checkBinary(p, from string) (string, error) {
	if !isExecutable(p) {
		return "", fmt.Errorf("lkserver: %s names %q, which is not an executable file", from, p)
	}
	return p, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// cacheDir returns the directory holding installed servers.
func cacheDir() (string, error) {
	if d := os.Getenv(EnvCacheDir); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		// No home directory (a bare CI container, say): a directory of
		// this user's under the system's temporary directory still lets
		// test binaries share one install.
		return filepath.Join(os.TempDir(), fmt.Sprintf("callstate-cache-%d", os.Getuid())), nil
	}
	return filepath.Join(d, "callstate"), nil
}

// install builds livekit-server into bin with "go install", under a file
// lock so that concurrent test binaries build it once.
func install(ctx context.Context, cache, bin string) error {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return fmt.Errorf("lkserver: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cache, "livekit-server-"+Version+".lock"))
	if err != nil {
		return fmt.Errorf("lkserver: waiting for the install lock: %w", err)
	}
	defer unlock()
	if isExecutable(bin) { // installed while we waited for the lock
		return nil
	}

	goCmd, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("lkserver: livekit-server not found and no go command to install it; "+
			"install it with \"go install %s@%s\" and set %s to its path: %w", serverModule, Version, EnvBinary, err)
	}
	final := filepath.Dir(bin)
	tmp, err := os.MkdirTemp(cache, "livekit-server-"+Version+".tmp-")
	if err != nil {
		return fmt.Errorf("lkserver: %w", err)
	}
	defer os.RemoveAll(tmp)

	fmt.Fprintf(os.Stderr, "lkserver: installing livekit-server %s into %s (first run, 1-3 minutes)\n", Version, final)
	start := time.Now()
	cmd := exec.CommandContext(ctx, goCmd, "install", serverModule+"@"+Version)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOOS=", "GOARCH=")
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("lkserver: installing livekit-server with \"go install %s@%s\" failed: %w", serverModule, Version, err)
	}
	if !isExecutable(filepath.Join(tmp, "server")) {
		return fmt.Errorf("lkserver: \"go install %s@%s\" produced no server binary in %s", serverModule, Version, tmp)
	}
	// Publish the directory in one step so that nobody sees a partial file.
	_ = os.Chmod(tmp, 0o755)
	_ = os.RemoveAll(final) // a leftover without a binary; we hold the lock
	if err := os.Rename(tmp, final); err != nil && !errors.Is(err, fs.ErrExist) && !isExecutable(bin) {
		return fmt.Errorf("lkserver: %w", err)
	}
	fmt.Fprintf(os.Stderr, "lkserver: installed livekit-server %s in %s\n", Version, time.Since(start).Round(time.Second))
	return nil
}
