package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || !bytes.HasPrefix(b[i+1:], []byte(" Z"))
}

func TestProcessStartWaitOutputKill(t *testing.T) {
	Require(t, "ip", "sh", "sleep")
	e := New(t)
	ctx := testCtx(t, 60*time.Second)
	h := mustHost(t, e, "a")

	// The child of the shell is in the same process group.
	p, err := h.Start("sh", "-c", `sleep 300 & echo "child $!"; echo ready >&2; wait`)
	must(t, err)
	must(t, p.WaitOutput(ctx, "ready"))
	if nsInode(t, fmt.Sprintf("/proc/%d/ns/net", p.PID())) != nsInode(t, h.NSPath()) {
		t.Fatal("the process does not run in the host's namespace")
	}
	var child int
	for _, line := range strings.Split(p.Output(), "\n") {
		if s, ok := strings.CutPrefix(line, "child "); ok {
			child, _ = strconv.Atoi(s)
		}
	}
	if child == 0 || !alive(child) {
		t.Fatalf("no live child in output %q", p.Output())
	}
	if p.Exited() {
		t.Fatal("Exited() before it exited")
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := p.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a running process = %v", err)
	}
	if err := p.WaitOutput(short, "never printed"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitOutput(never printed) = %v", err)
	}

	must(t, p.Kill())
	if !p.Exited() {
		t.Fatal("Kill returned before the process exited")
	}
	var exitErr *exec.ExitError
	if err := p.Wait(ctx); !errors.As(err, &exitErr) {
		t.Fatalf("Wait after Kill = %v, want an exit error", err)
	}
	Eventually(t, 10*time.Second, "the grandchild to die with its group", func() (bool, error) {
		return !alive(child), nil
	})
	must(t, p.Kill()) // again: no error
}

func TestProcessExitWithoutOutput(t *testing.T) {
	Require(t, "ip", "sh")
	e := New(t)
	ctx := testCtx(t, 30*time.Second)
	h := mustHost(t, e, "a")
	p, err := h.Start("sh", "-c", "echo something else; exit 3")
	must(t, err)
	err = p.WaitOutput(ctx, "ready")
	if err == nil || !strings.Contains(err.Error(), "something else") || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitOutput on an exited process = %v", err)
	}
	err = p.Wait(ctx)
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 3 {
		t.Fatalf("Wait = %v, want exit status 3", err)
	}
	// ip netns exec starts, then fails to exec: that shows as a failed exit.
	bad, err := h.Start("/nonexistent/binary")
	must(t, err)
	if err := bad.Wait(ctx); err == nil {
		t.Fatal("a missing binary exited with status 0")
	}
}

func TestProcessSignalAndStartCmd(t *testing.T) {
	Require(t, "ip", "sh")
	e := New(t)
	ctx := testCtx(t, 30*time.Second)
	h := mustHost(t, e, "a")
	var extra bytes.Buffer
	cmd := h.Command(ctx, "sh", "-c", `trap 'echo got TERM; exit 0' TERM; echo "var=$SLTEST_VAR"; while :; do sleep 0.05; done`)
	cmd.Env = append(os.Environ(), "SLTEST_VAR=xyz")
	cmd.Stdout = &extra
	p, err := h.StartCmd(cmd)
	must(t, err)
	must(t, p.WaitOutput(ctx, "var=xyz"))
	must(t, p.Signal(syscall.SIGTERM))
	must(t, p.WaitOutput(ctx, "got TERM"))
	must(t, p.Wait(ctx))
	if !strings.Contains(extra.String(), "got TERM") {
		t.Fatalf("the command's own Stdout missed output: %q", extra.String())
	}
}

func TestRunReportsOutput(t *testing.T) {
	Require(t, "ip", "sh")
	e := New(t)
	ctx := testCtx(t, 30*time.Second)
	h := mustHost(t, e, "a")
	out, err := h.Run(ctx, "sh", "-c", "echo hello")
	if err != nil || out != "hello\n" {
		t.Fatalf("Run = %q, %v", out, err)
	}
	_, err = h.Run(ctx, "sh", "-c", "echo bad thing >&2; exit 4")
	if err == nil || !strings.Contains(err.Error(), "bad thing") || !strings.Contains(err.Error(), "host a") {
		t.Fatalf("Run error = %v, want the output and the host in it", err)
	}
	// Cancelling the context kills the command's whole group.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := h.Run(short, "sh", "-c", "sleep 300 & sleep 300; wait"); err == nil {
		t.Fatal("Run of a command past its deadline succeeded")
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("Run returned %v after its deadline", el)
	}
	Eventually(t, 10*time.Second, "no process left in the namespace", func() (bool, error) {
		out, err := runIP(ctx, "netns", "pids", h.NSName())
		return strings.TrimSpace(out) == "", err
	})
}
