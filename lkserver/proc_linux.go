package lkserver

import (
	"errors"
	"os/exec"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// setProcAttr puts the server in its own process group, so that a Ctrl-C
// meant for the parent does not start a graceful drain, and has the kernel
// kill it if the parent dies without calling Close.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// process tracks a started server process without a goroutine of its own,
// so that a running server leaves no goroutine behind for leak checkers.
type process struct {
	cmd  *exec.Cmd
	once sync.Once
	mu   sync.Mutex
	done bool
}

func newProcess(cmd *exec.Cmd) *process { return &process{cmd: cmd} }

// exited reports whether the process has exited, without reaping it.
func (p *process) exited() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done {
		return true
	}
	// WNOWAIT leaves the child waitable, so that wait (exec.Cmd.Wait) still
	// reaps it and collects its status; WNOHANG returns at once, with
	// si_signo left 0 while the child runs.
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, p.cmd.Process.Pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	switch {
	case errors.Is(err, unix.EINTR):
		return false
	case err != nil:
		return true // ECHILD: already reaped
	}
	return info.Signo != 0
}

// wait reaps the process, blocking until it has exited.
func (p *process) wait() {
	p.once.Do(func() {
		_ = p.cmd.Wait()
		p.mu.Lock()
		p.done = true
		p.mu.Unlock()
	})
}
