//go:build !linux

package lkserver

import (
	"os/exec"
)

// setProcAttr leaves the process attributes alone on this platform.
func setProcAttr(*exec.Cmd) {}

// process tracks a started server process with a goroutine waiting for it.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func newProcess(cmd *exec.Cmd) *process {
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait blocks until the process has exited.
func (p *process) wait() { <-p.done }
