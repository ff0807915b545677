package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RootfsCache is where Rootfs keeps the debootstrap'ed tree between runs.
const RootfsCache = "/var/cache/sitelink-testenv"

// rootfsPackages are installed into the cached rootfs: systemd to boot, dbus, and the
// tools the tests look through.
const rootfsPackages = "systemd,systemd-sysv,dbus,iproute2,procps"

// Rootfs returns the cached Debian 12 rootfs (debootstrap, minbase + systemd), making it
// first when missing (about 35 s and 240 MB). Callers copy it before changing it (see
// CopyRootfs).
func Rootfs(ctx context.Context) (string, error) {
	dir := filepath.Join(RootfsCache, "rootfs-bookworm")
	if _, err := os.Stat(filepath.Join(dir, "usr/lib/systemd/systemd")); err == nil {
		return dir, nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("testenv: make rootfs: %w (apt-get install debootstrap)", err)
	}
	if err := os.MkdirAll(RootfsCache, 0o755); err != nil {
		return "", err
	}
	// Test packages run in parallel: one makes the rootfs, the others wait for it.
	lock, err := os.OpenFile(filepath.Join(RootfsCache, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("testenv: lock the rootfs cache: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "usr/lib/systemd/systemd")); err == nil {
		return dir, nil // made while we waited
	}
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	out, err := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+rootfsPackages,
		"bookworm", tmp, "http://deb.debian.org/debian").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("testenv: debootstrap: %w\n%s", err, lastN(string(out), 2000))
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// CopyRootfs copies the cached rootfs into a new directory under parent.
func CopyRootfs(ctx context.Context, parent string) (string, error) {
	src, err := Rootfs(ctx)
	if err != nil {
		return "", err
	}
	dst, err := os.MkdirTemp(parent, Prefix+"rootfs-")
	if err != nil {
		return "", err
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", src+"/.", dst).CombinedOutput(); err != nil {
		return "", fmt.Errorf("testenv: copy rootfs: %w\n%s", err, out)
	}
	return dst, nil
}

func lastN(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Machine is a container booted with systemd-nspawn -b: real systemd as PID 1 in its own
// namespaces (and a private network), so tests exercise units, notify, the watchdog and
// the journal without touching the host's systemd.
type Machine struct {
	Name   string
	Root   string
	cmd    *exec.Cmd
	done   chan struct{}
	leader int
	out    *outputBuffer
}

// Boot boots root in a container and waits until its systemd is up.
func Boot(ctx context.Context, root, name string) (*Machine, error) {
	m := &Machine{Name: name, Root: root, done: make(chan struct{}), out: newOutputBuffer()}
	m.cmd = exec.Command("systemd-nspawn", "-D", root, "-b", "--register=no", "--keep-unit",
		"--private-network", "--console=read-only", "-M", name)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("testenv: systemd-nspawn: %w", err)
	}
	go func() { _ = m.cmd.Wait(); close(m.done) }()
	err := WaitFor(ctx, "container "+name+" booted", func() (bool, error) {
		select {
		case <-m.done:
			return false, fmt.Errorf("systemd-nspawn exited:\n%s", lastN(m.out.String(), 3000))
		default:
		}
		m.leader = initOf(m.cmd.Process.Pid)
		if m.leader == 0 {
			return false, errors.New("no container init yet")
		}
		out, _ := m.Exec(ctx, "systemctl", "is-system-running")
		if s := strings.TrimSpace(out); s != "running" && s != "degraded" {
			return false, fmt.Errorf("system is %q", s)
		}
		return true, nil
	})
	if err != nil {
		_ = m.Close()
		return nil, err
	}
	return m, nil
}

// BootTest boots for a test and shuts the container down with it.
func BootTest(t testing.TB, root, name string) *Machine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := Boot(ctx, root, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("shut down container %s: %v", name, err)
		}
	})
	return m
}

// initOf finds the container's init: the child of systemd-nspawn that runs systemd
// (nspawn forks short-lived helpers first).
func initOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(b)) {
		n, _ := strconv.Atoi(f)
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", n))
		if strings.TrimSpace(string(comm)) == "systemd" {
			return n
		}
	}
	return 0
}

// Exec runs a command inside the container (all its namespaces) and returns its
// combined output.
func (m *Machine) Exec(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(m.leader), "-a", "--"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s: %w\n%s", m.Name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Leader is the container's PID 1 as seen from the host.
func (m *Machine) Leader() int { return m.leader }

// Output is what systemd-nspawn printed (the container's console).
func (m *Machine) Output() string { return m.out.String() }

// Close powers the container off; when it does not go down within 10 s its PID 1 is
// killed (which ends every process in the container) and then systemd-nspawn.
func (m *Machine) Close() error {
	select {
	case <-m.done:
		return nil
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := m.Exec(ctx, "systemctl", "poweroff", "--no-block"); err != nil || m.leader == 0 {
		_ = m.cmd.Process.Signal(syscall.SIGTERM) // nspawn passes it on as a poweroff request
	}
	select {
	case <-m.done:
		return nil
	case <-time.After(10 * time.Second):
	}
	if m.leader != 0 {
		_ = syscall.Kill(m.leader, syscall.SIGKILL)
	}
	select {
	case <-m.done:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-m.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("container %s: systemd-nspawn (pid %d) does not exit", m.Name, m.cmd.Process.Pid)
	}
}
