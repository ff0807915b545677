package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// netnsList returns the names `ip netns list` shows.
func netnsList(t *testing.T) []string {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	out, err := runIP(ctx, "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

func TestCloseRemovesEverything(t *testing.T) {
	Require(t, "ip", "sleep")
	e, err := NewEnv("closetest")
	must(t, err)
	defer e.Close()
	a, b := mustHost(t, e, "a"), mustHost(t, e, "b")
	sw, err := e.Switch("sw")
	must(t, err)
	must(t, e.Link(a, "eth0", b, "eth0"))
	must(t, e.Plug(a, "eth1", sw))
	started, err := a.Start("sleep", "300")
	must(t, err)
	// A command the caller started itself, and forgot.
	forgotten := b.Command(context.Background(), "sleep", "300")
	must(t, forgotten.Start())
	forgottenDone := make(chan error, 1)
	go func() { forgottenDone <- forgotten.Wait() }()

	names := []string{a.NSName(), b.NSName(), sw.NSName()}
	for _, n := range names {
		if !slices.Contains(netnsList(t), n) {
			t.Fatalf("%s not in ip netns list", n)
		}
	}
	dir := e.Dir()
	must(t, os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644))

	must(t, e.Close())
	list := netnsList(t)
	for _, n := range names {
		if slices.Contains(list, n) {
			t.Errorf("%s still in ip netns list after Close", n)
		}
	}
	if !started.Exited() {
		t.Error("the started process survived Close")
	}
	select {
	case <-forgottenDone:
	case <-time.After(10 * time.Second):
		t.Error("the forgotten command survived Close")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s survived Close: %v", dir, err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := e.Host("c"); err == nil {
		t.Error("Host after Close succeeded")
	}
	if _, err := a.Start("true"); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestReapLeftovers(t *testing.T) {
	Require(t, "ip", "sleep")
	e := New(t) // a live owner whose namespace must survive
	live := mustHost(t, e, "live")
	ctx := testCtx(t, 60*time.Second)

	dead := strconv.Itoa(deadPID(t)) + ".1"
	self, err := selfOwner()
	must(t, err)
	pid, _, _ := strings.Cut(self, ".")
	reused := pid + ".zz" // this PID, but another start time
	leftovers := []string{
		Prefix + dead + "-deadbeef-left",
		Prefix + reused + "-deadbeef-reused",
	}
	foreign := Prefix + "notours"
	for _, ns := range append(leftovers, foreign) {
		if _, err := runIP(ctx, "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = runIP(context.Background(), "netns", "delete", ns) })
	}
	// A process still running in a leftover namespace must be killed.
	sleeper := exec.Command("ip", "netns", "exec", leftovers[0], "sleep", "300")
	sleeper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	must(t, sleeper.Start())
	sleeperDone := make(chan error, 1)
	go func() { sleeperDone <- sleeper.Wait() }()
	t.Cleanup(func() { _ = killGroup(sleeper.Process.Pid) })
	Eventually(t, 10*time.Second, "the sleeper in the leftover namespace", func() (bool, error) {
		out, err := runIP(ctx, "netns", "pids", leftovers[0])
		return strings.Contains(out, strconv.Itoa(sleeper.Process.Pid)), err
	})
	leftDir, err := os.MkdirTemp("", Prefix+dead+"-deadbeef-")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(leftDir, "f"), nil, 0o644))

	must(t, ReapLeftovers(ctx))

	list := netnsList(t)
	for _, ns := range leftovers {
		if slices.Contains(list, ns) {
			t.Errorf("leftover %s was not reaped", ns)
		}
	}
	for _, ns := range []string{live.NSName(), foreign} {
		if !slices.Contains(list, ns) {
			t.Errorf("%s was reaped but is not a dead run's", ns)
		}
	}
	if _, err := os.Stat(e.Dir()); err != nil {
		t.Errorf("the live env's dir was touched: %v", err)
	}
	if _, err := os.Stat(leftDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover dir %s was not removed: %v", leftDir, err)
	}
	select {
	case <-sleeperDone:
	case <-time.After(10 * time.Second):
		t.Error("the process in the leftover namespace was not killed")
	}
}

// The helper modes run in a child test binary (see runHelper).
const helperEnv = "SLTEST_TESTENV_HELPER"

// TestHelperProcess is not a test: it is the child of the crash tests.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("only runs as a child of the crash tests")
	}
	var e *Env
	if mode == "signal" {
		var err error
		e, err = NewEnv("signal-helper")
		must(t, err)
		defer e.Close()
		stop := e.CloseOnSignal(syscall.SIGTERM)
		defer stop()
	} else {
		e = New(t)
	}
	h := mustHost(t, e, "crash")
	p, err := h.Start("sleep", "300")
	must(t, err)
	info := fmt.Sprintf("%s %d %s\n", h.NSName(), p.PID(), e.Dir())
	must(t, os.WriteFile(os.Getenv(helperEnv+"_OUT"), []byte(info), 0o644))
	switch mode {
	case "panic":
		panic("testenv helper: deliberate panic")
	case "hang", "signal":
		<-testCtx(t, 60*time.Second).Done()
	}
}

// runHelper starts this test binary as a child in the given mode and
// returns the command and the file it writes its namespace, PID and dir to.
func runHelper(t *testing.T, mode string) (*exec.Cmd, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "info")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperEnv+"_OUT="+out)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd, out
}

func readHelperInfo(t *testing.T, path string) (ns string, pid int, dir string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("helper wrote no info: %v", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		t.Fatalf("helper info %q", b)
	}
	pid, err = strconv.Atoi(f[1])
	must(t, err)
	return f[0], pid, f[2]
}

func TestCleanupAfterPanic(t *testing.T) {
	Require(t, "ip", "sleep")
	cmd, info := runHelper(t, "panic")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "deliberate panic") {
		t.Fatalf("helper did not panic (%v): %s", err, out)
	}
	ns, pid, dir := readHelperInfo(t, info)
	if slices.Contains(netnsList(t), ns) {
		t.Errorf("namespace %s survived a panicking test", ns)
	}
	if alive(pid) {
		t.Errorf("process %d survived a panicking test", pid)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir %s survived a panicking test", dir)
	}
}

func TestKilledRunIsReaped(t *testing.T) {
	Require(t, "ip", "sleep")
	cmd, info := runHelper(t, "hang")
	must(t, cmd.Start())
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	Eventually(t, 30*time.Second, "the helper to set up", func() (bool, error) {
		_, err := os.Stat(info)
		return err == nil, nil
	})
	ns, pid, dir := readHelperInfo(t, info)
	must(t, cmd.Process.Kill())
	<-waited
	// Pdeathsig kills the background process with the test binary...
	Eventually(t, 10*time.Second, "the killed run's process to die", func() (bool, error) {
		return !alive(pid), nil
	})
	// ...but the namespace and dir stay until the next start reaps them.
	if !slices.Contains(netnsList(t), ns) {
		t.Fatalf("namespace %s vanished without reaping: the test proves nothing", ns)
	}
	must(t, ReapLeftovers(testCtx(t, 30*time.Second)))
	if slices.Contains(netnsList(t), ns) {
		t.Errorf("namespace %s of a killed run was not reaped", ns)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir %s of a killed run was not reaped", dir)
	}
}

func TestCloseOnSignal(t *testing.T) {
	Require(t, "ip", "sleep")
	cmd, info := runHelper(t, "signal")
	must(t, cmd.Start())
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	Eventually(t, 30*time.Second, "the helper to set up", func() (bool, error) {
		_, err := os.Stat(info)
		return err == nil, nil
	})
	ns, pid, dir := readHelperInfo(t, info)
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-waited:
		ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
			t.Errorf("helper ended with %v, want death by SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the helper did not exit on SIGTERM")
	}
	if slices.Contains(netnsList(t), ns) {
		t.Errorf("namespace %s survived SIGTERM", ns)
	}
	if alive(pid) {
		t.Errorf("process %d survived SIGTERM", pid)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir %s survived SIGTERM", dir)
	}
}
