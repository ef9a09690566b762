package lkserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// EnvRedisBinary names the redis-server executable that StartRedis runs.
const EnvRedisBinary = "CALLSTATE_REDIS_SERVER"

// ErrRedisNotFound is returned by StartRedis (and StartCluster) when no
// redis-server executable is found. On Debian and Ubuntu, "apt-get install
// redis-server" provides one.
var ErrRedisNotFound = errors.New("lkserver: redis-server not found (install Debian's redis-server package, or set " + EnvRedisBinary + ")")

// RedisOptions configure StartRedis. The zero value (or a nil
// *RedisOptions) is a good default.
type RedisOptions struct {
	// Binary is the path of the redis-server executable. When empty,
	// StartRedis uses the file named by CALLSTATE_REDIS_SERVER, else
	// redis-server on the PATH, else /usr/bin/redis-server or
	// /usr/sbin/redis-server.
	Binary string

	// LogOutput, when not nil, receives a copy of Redis's log.
	LogOutput io.Writer
}

// Redis is a redis-server process started by StartRedis, listening on
// 127.0.0.1 only, without persistence, for the nodes of a local LiveKit
// cluster. Its methods may be called from any goroutine.
type Redis struct {
	addr    string
	cmd     *exec.Cmd
	proc    *process
	dir     string
	logFile *os.File

	closeOnce sync.Once
	closeErr  error
}

// StartRedis starts a redis-server on a free port of 127.0.0.1 and returns
// when it answers PING. It keeps nothing on disk: persistence is off (no
// RDB snapshots, no append-only file) and its working directory is a
// temporary directory that Close removes. It returns an error matching
// ErrRedisNotFound when there is no redis-server to run.
//
// The caller must call Close when done with it.
func StartRedis(ctx context.Context, opts *RedisOptions) (*Redis, error) {
	var o RedisOptions
	if opts != nil {
		o = *opts
	}
	bin, err := findRedis(o.Binary)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range startAttempts {
		r, err := startRedisOnce(ctx, bin, o.LogOutput)
		if err == nil {
			return r, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// redisPaths are where findRedis looks after the PATH: Debian installs
// redis-server in /usr/bin, but a PATH without it is common in minimal
// environments. Tests replace it.
var redisPaths = []string{"/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server"}

func findRedis(explicit string) (string, error) {
	if explicit != "" {
		return checkBinary(explicit, "RedisOptions.Binary")
	}
	if p := os.Getenv(EnvRedisBinary); p != "" {
		return checkBinary(p, EnvRedisBinary)
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	for _, p := range redisPaths {
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", ErrRedisNotFound
}

func startRedisOnce(ctx context.Context, bin string, logOut io.Writer) (r *Redis, err error) {
	port, err := pickPort("tcp")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "lkredis-")
	if err != nil {
		return nil, fmt.Errorf("lkserver: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	logFile, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		return nil, fmt.Errorf("lkserver: %w", err)
	}
	var out io.Writer = logFile
	if logOut != nil {
		out = io.MultiWriter(logFile, logOut)
	}
	// The options on the command line, rather than a file, so that no
	// configuration of the machine's own Redis is read. protected-mode is
	// off because it refuses clients without a password on interfaces
	// other than loopback only; we bind loopback anyway.
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--daemonize", "no",
		"--logfile", "",
		"--databases", "1",
	)
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("lkserver: starting %s: %w", bin, err)
	}
	r = &Redis{
		addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		cmd:     cmd,
		proc:    newProcess(cmd),
		dir:     dir,
		logFile: logFile,
	}
	if err := r.waitReady(ctx); err != nil {
		r.kill()
		logFile.Close()
		tail := logTail(filepath.Join(dir, "redis.log"))
		if tail != "" {
			tail = "\n--- end of the redis log ---\n" + tail
		}
		return nil, fmt.Errorf("lkserver: redis-server (%s) did not start on %s: %w%s", bin, r.addr, err, tail)
	}
	return r, nil
}

func (r *Redis) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if r.proc.exited() {
			r.proc.wait()
			return fmt.Errorf("the process exited: %s", r.cmd.ProcessState)
		}
		reply, err := r.Do(ctx, "PING")
		if err == nil && reply == "PONG" {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("PING answered %q", reply)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// Addr returns the host:port Redis listens on, for example
// 127.0.0.1:40123.
func (r *Redis) Addr() string { return r.addr }

// ErrRedisNil is returned by Redis.Do for a nil reply (a missing key).
var ErrRedisNil = errors.New("lkserver: redis: nil")

// Do sends one command to Redis on a connection of its own and returns the
// reply when it is a simple string, a bulk string or an integer (as its
// decimal text). A nil reply is ErrRedisNil; an error reply is an error.
// It is meant for inspecting a test cluster (which node hosts a room), not
// for load: each call dials.
func (r *Redis) Do(ctx context.Context, args ...string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", r.addr)
	if err != nil {
		return "", fmt.Errorf("lkserver: redis: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return "", fmt.Errorf("lkserver: redis: %w", err)
	}
	return readRESP(bufio.NewReader(c))
}

// maxRESPBulk bounds the replies Do accepts.
const maxRESPBulk = 16 << 20

// readRESP reads one reply of the kinds Do supports.
func readRESP(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("lkserver: redis: reading the reply: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("lkserver: redis: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("lkserver: redis: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n > maxRESPBulk {
			return "", fmt.Errorf("lkserver: redis: bad bulk length %q", line[1:])
		}
		if n < 0 {
			return "", ErrRedisNil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return "", fmt.Errorf("lkserver: redis: reading the reply: %w", err)
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("lkserver: redis: unsupported reply %q", line)
}

// Close stops Redis (SIGTERM, then SIGKILL after a few seconds), waits for
// it and removes its files. It is idempotent.
func (r *Redis) Close() error {
	r.closeOnce.Do(func() {
		r.kill()
		if err := r.logFile.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			r.closeErr = fmt.Errorf("lkserver: %w", err)
		}
		if err := os.RemoveAll(r.dir); err != nil && r.closeErr == nil {
			r.closeErr = fmt.Errorf("lkserver: removing Redis's files: %w", err)
		}
	})
	return r.closeErr
}

func (r *Redis) kill() {
	defer r.proc.wait()
	if r.proc.exited() {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(forceStopWait)
	for !r.proc.exited() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !r.proc.exited() {
		_ = r.cmd.Process.Kill()
	}
}
