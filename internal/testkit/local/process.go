package local

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/virtmesh/virtmesh/internal/controlplane"
)

// Process is a running virtmesh binary.
type Process struct {
	cmd     *exec.Cmd
	dir     string
	done    chan struct{}
	err     error
	stopped bool
}

// Start runs binary with args, authenticated as virtmesh's ServiceAccount
// (a --kubeconfig flag is added), its output going to out. env (KEY=value)
// is added to this process's environment.
func Start(cp *controlplane.ControlPlane, binary string, args, env []string, out io.Writer) (*Process, error) {
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("%s: %w (run make build)", binary, err)
	}
	kubeconfig, err := cp.KubeConfigFor(Namespace, ServiceAccount)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "virtmesh-local-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	p := &Process{cmd: exec.Command(binary, append([]string{"--kubeconfig=" + path}, args...)...), dir: dir, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	if err := p.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM, waits up to 30 seconds for a graceful stop, then kills.
// It reports a process that did not stop by itself.
func (p *Process) Stop() error {
	defer func() { _ = os.RemoveAll(p.dir) }()
	if p.stopped {
		return nil
	}
	p.stopped = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("virtmesh did not stop within 30s of SIGTERM and was killed")
	}
}
