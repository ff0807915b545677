package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// outputHead and outputTail bound a process's captured output: the first
	// outputHead bytes and the last outputTail bytes are kept.
	outputHead = 64 << 10
	outputTail = 1 << 20
	// killTimeout bounds the wait for a killed process group's leader.
	killTimeout = 10 * time.Second
)

// Command returns a command that runs name inside the host's namespace
// (through `ip netns exec`, which also gives it the namespace's view of
// /sys). It runs in its own process group, gets SIGKILL if the test binary
// dies (Pdeathsig), and when ctx is done its whole process group is killed.
// The caller owns the command: use [Host.Start] for one that Close kills.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = time.Second
	return cmd
}

// Run runs name inside the namespace to completion and returns its combined
// output. On failure the error names the command and host and carries the
// output.
func (h *Host) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := h.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("testenv: host %s: %s: %w\n%s",
			h.name, strings.Join(append([]string{name}, args...), " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Start starts name in the background inside the namespace, capturing its
// stdout and stderr. The process (its whole group) is killed by Close, or
// earlier by [Process.Kill].
func (h *Host) Start(name string, args ...string) (*Process, error) {
	return h.StartCmd(h.Command(h.env.ctx, name, args...))
}

// StartCmd starts a command made by [Host.Command] (to set Env, Dir or
// Stdin first) as with [Host.Start]. Stdout and Stderr are captured; if they
// were set, output goes there too.
func (h *Host) StartCmd(cmd *exec.Cmd) (*Process, error) {
	p := newProcess(cmd, h.name)
	if err := h.env.addProcess(p); err != nil {
		return nil, fmt.Errorf("testenv: host %s: start %s: %w", h.name, p.label, err)
	}
	if err := p.start(); err != nil {
		return nil, fmt.Errorf("testenv: host %s: %w", h.name, err)
	}
	return p, nil
}

// Process is a background process with captured output.
type Process struct {
	cmd   *exec.Cmd
	label string // command line, for errors
	where string // host name, for errors
	out   *outputBuffer
	done  chan struct{}
	err   error // valid after done is closed
}

func newProcess(cmd *exec.Cmd, where string) *Process {
	label := strings.Join(cmd.Args, " ")
	if len(cmd.Args) > 4 && cmd.Args[1] == "netns" && cmd.Args[2] == "exec" {
		label = strings.Join(cmd.Args[4:], " ")
	}
	return &Process{cmd: cmd, label: label, where: where, out: newOutputBuffer(), done: make(chan struct{})}
}

func (p *Process) start() error {
	if p.cmd.SysProcAttr == nil {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	p.cmd.SysProcAttr.Setpgid = true
	p.cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	p.cmd.Stdout = teeWriter(p.out, p.cmd.Stdout)
	if p.cmd.Stderr == nil {
		p.cmd.Stderr = p.cmd.Stdout
	} else {
		p.cmd.Stderr = teeWriter(p.out, p.cmd.Stderr)
	}
	if err := p.cmd.Start(); err != nil {
		close(p.done)
		p.err = err
		return fmt.Errorf("start %s: %w", p.label, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return nil
}

func teeWriter(buf *outputBuffer, w io.Writer) io.Writer {
	if w == nil {
		return buf
	}
	return io.MultiWriter(buf, w)
}

// PID returns the process ID (0 if it never started).
func (p *Process) PID() int {
	if p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Output returns the captured stdout and stderr: the first 64 KiB and the
// last 1 MiB, with a marker where bytes were dropped.
func (p *Process) Output() string { return p.out.String() }

// Done is closed when the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits until the process exits or ctx is done. It returns nil if the
// process exited with status 0, its exit error otherwise (an
// *exec.ExitError), or an error wrapping ctx.Err().
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("%s in %s: %w", p.label, p.where, p.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s in %s to exit: %w", p.label, p.where, ctx.Err())
	}
}

// Signal sends sig to the process (not to its group).
func (p *Process) Signal(sig os.Signal) error {
	if p.cmd.Process == nil {
		return fmt.Errorf("signal %s in %s: not started", p.label, p.where)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s in %s: %w", p.label, p.where, err)
	}
	return nil
}

// Kill sends SIGKILL to the process's whole group and waits until the
// process has been reaped. Killing an exited process is not an error.
func (p *Process) Kill() error {
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	return p.kill(ctx)
}

func (p *Process) kill(ctx context.Context) error {
	if p.cmd.Process == nil {
		return nil
	}
	// Kill the group even if the leader has exited: children may remain.
	_ = killGroup(p.cmd.Process.Pid)
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kill %s (pid %d) in %s: still running: %w", p.label, p.PID(), p.where, ctx.Err())
	}
}

// WaitOutput waits until the captured output contains substr. It fails when
// ctx is done or the process exits without printing it; the error carries
// the end of the output.
func (p *Process) WaitOutput(ctx context.Context, substr string) error {
	for {
		changed := p.out.changedChan()
		if p.out.Contains(substr) {
			return nil
		}
		select {
		case <-changed:
		case <-p.done:
			if p.out.Contains(substr) {
				return nil
			}
			return fmt.Errorf("%s in %s exited (%v) without printing %q; output ends:\n%s",
				p.label, p.where, p.err, substr, p.out.Last(2048))
		case <-ctx.Done():
			return fmt.Errorf("waiting for %q from %s in %s: %w; output ends:\n%s",
				substr, p.label, p.where, ctx.Err(), p.out.Last(2048))
		}
	}
}

func killGroup(pid int) error {
	if pid <= 0 {
		return nil
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// outputBuffer keeps the first outputHead and the last outputTail bytes
// written to it and signals every write.
type outputBuffer struct {
	mu      sync.Mutex
	head    []byte
	tail    []byte // may grow to 2*outputTail before being compacted
	dropped int64
	changed chan struct{}
}

func newOutputBuffer() *outputBuffer {
	return &outputBuffer{changed: make(chan struct{})}
}

func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := outputHead - len(b.head); room > 0 {
		take := min(room, len(p))
		b.head = append(b.head, p[:take]...)
		p = p[take:]
	}
	if len(p) > 0 {
		b.tail = append(b.tail, p...)
		if len(b.tail) > 2*outputTail {
			over := len(b.tail) - outputTail
			b.dropped += int64(over)
			b.tail = append(b.tail[:0], b.tail[over:]...)
		}
	}
	close(b.changed)
	b.changed = make(chan struct{})
	return n, nil
}

func (b *outputBuffer) changedChan() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// visible returns the kept tail and the number of bytes dropped before it.
func (b *outputBuffer) visible() ([]byte, int64) {
	if over := len(b.tail) - outputTail; over > 0 {
		return b.tail[over:], b.dropped + int64(over)
	}
	return b.tail, b.dropped
}

func (b *outputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	tail, dropped := b.visible()
	if dropped == 0 {
		return string(b.head) + string(tail)
	}
	return fmt.Sprintf("%s\n[... %d bytes dropped ...]\n%s", b.head, dropped, tail)
}

// Contains reports whether substr is in the kept output. Text that spans
// dropped bytes cannot be found.
func (b *outputBuffer) Contains(substr string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	tail, dropped := b.visible()
	if dropped == 0 {
		if len(b.head)+len(tail) == 0 {
			return substr == ""
		}
		all := make([]byte, 0, len(b.head)+len(tail))
		all = append(append(all, b.head...), tail...)
		return bytes.Contains(all, []byte(substr))
	}
	return bytes.Contains(b.head, []byte(substr)) || bytes.Contains(tail, []byte(substr))
}

// Last returns at most n bytes from the end of the output.
func (b *outputBuffer) Last(n int) string {
	s := b.String()
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
