package calltest

import (
	"os/exec"
	"sync"
	"syscall"
	"unsafe"
)

// setProcAttr puts the server in its own process group, so that a Ctrl-C
// meant for the test binary does not start a graceful drain, and has the
// kernel kill it if the test binary dies without calling Close.
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
	// waitid(P_PID, pid, WEXITED|WNOHANG|WNOWAIT) leaves the child
	// waitable; si_signo stays 0 when the child has not exited.
	var info [128]byte
	const pPID = 1
	_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(p.cmd.Process.Pid),
		uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|syscall.WNOHANG|syscall.WNOWAIT, 0, 0)
	if errno == syscall.EINTR {
		return false
	}
	if errno != 0 {
		return true // ECHILD: already reaped
	}
	return *(*int32)(unsafe.Pointer(&info[0])) != 0
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
