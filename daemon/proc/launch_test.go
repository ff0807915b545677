package proc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as sitelinkd's launcher, and as a stand-in daemon that starts
// a plugin and waits to be killed (parentEnv).
const parentEnv = "SITELINK_PROC_TEST_PARENT"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == LauncherArg {
		if err := ExecMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(127)
		}
		os.Exit(0)
	}
	if os.Getenv(parentEnv) != "" {
		os.Exit(runParent())
	}
	os.Exit(m.Run())
}

// runParent launches `sleep 600` as nobody through the launcher, prints its pid and
// waits until it is killed.
func runParent() int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cmd, err := Launch{Self: self, Binary: "/bin/sleep", Args: []string{"600"}, Priv: Privileges{User: "nobody"}}.Command()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(cmd.Process.Pid)
	_ = cmd.Wait()
	return 0
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (CI=true)")
	}
	t.Skip("needs root")
}

func self(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startLaunched starts cmd (a `cat` that waits on its stdin) and waits until the
// launcher has exec'd it.
func startLaunched(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		<-done
	})
	pid := cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if strings.HasSuffix(exe, "/cat") {
			return pid
		}
		select {
		case err := <-done:
			t.Fatalf("launcher ended before exec: %v: %s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("launcher did not exec cat within 10s (exe %q)", exe)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func statusField(t *testing.T, pid int, key string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", key, pid)
	return ""
}

func TestLaunchAsUserWithCaps(t *testing.T) {
	needRoot(t)
	if !AmbientSupported() {
		t.Skip("kernel without ambient capabilities")
	}
	want, err := ParseCaps([]string{"CAP_NET_ADMIN", "CAP_NET_RAW"})
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := Launch{Self: self(t), Binary: "/bin/cat", Priv: Privileges{User: "nobody", Caps: want}}.Command()
	if err != nil {
		t.Fatal(err)
	}
	if cmd.SysProcAttr == nil || !cmd.SysProcAttr.Setpgid || cmd.SysProcAttr.Pdeathsig != syscall.SIGKILL {
		t.Fatalf("SysProcAttr = %+v, want its own process group and SIGKILL on the daemon's death", cmd.SysProcAttr)
	}
	pid := startLaunched(t, cmd)
	pc, err := ReadProcCaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	uid, gid, err := UserIDs("nobody")
	if err != nil {
		t.Fatal(err)
	}
	if pc.UID != uid || pc.GID != gid {
		t.Fatalf("uid/gid = %d/%d, want nobody's %d/%d", pc.UID, pc.GID, uid, gid)
	}
	for name, set := range map[string]CapSet{"CapEff": pc.Eff, "CapPrm": pc.Prm, "CapBnd": pc.Bnd, "CapAmb": pc.Amb} {
		if set != want {
			t.Errorf("%s = %s, want exactly %s", name, set, want)
		}
	}
	if v := statusField(t, pid, "NoNewPrivs"); v != "1" {
		t.Errorf("NoNewPrivs = %s, want 1", v)
	}
	if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid {
		t.Errorf("process group = %d (%v), want its own (%d)", pgid, err, pid)
	}
	// Supplementary groups are nobody's, not root's.
	if v := statusField(t, pid, "Groups"); strings.Contains(" "+v+" ", " 0 ") {
		t.Errorf("Groups = %q still holds root's group", v)
	}
}

func TestLaunchAsRootDropsOtherCaps(t *testing.T) {
	needRoot(t)
	want, err := ParseCaps([]string{"CAP_NET_BIND_SERVICE"})
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := Launch{Self: self(t), Binary: "/bin/cat", Priv: Privileges{Caps: want}}.Command()
	if err != nil {
		t.Fatal(err)
	}
	pid := startLaunched(t, cmd)
	pc, err := ReadProcCaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	if pc.UID != 0 {
		t.Fatalf("uid = %d, want 0 (no user asked for)", pc.UID)
	}
	for name, set := range map[string]CapSet{"CapEff": pc.Eff, "CapPrm": pc.Prm, "CapBnd": pc.Bnd} {
		if set != want {
			t.Errorf("%s = %s, want exactly %s", name, set, want)
		}
	}
}

func TestLaunchNoCaps(t *testing.T) {
	needRoot(t)
	cmd, err := Launch{Self: self(t), Binary: "/bin/cat", Priv: Privileges{User: "nobody"}}.Command()
	if err != nil {
		t.Fatal(err)
	}
	pid := startLaunched(t, cmd)
	pc, err := ReadProcCaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	if pc.Eff != 0 || pc.Prm != 0 || pc.Bnd != 0 || pc.Amb != 0 || pc.Inh != 0 {
		t.Fatalf("caps = %+v, want none at all", pc)
	}
}

func TestLaunchUnknownUser(t *testing.T) {
	needRoot(t)
	_, err := Launch{Self: self(t), Binary: "/bin/cat", Priv: Privileges{User: "no-such-user-sitelink"}}.Command()
	if err == nil || !strings.Contains(err.Error(), "no-such-user-sitelink") {
		t.Fatalf("err = %v, want one naming the user", err)
	}
}

func TestLaunchNotRootExecsDirectly(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("as root the launcher is used")
	}
	cmd, err := Launch{Self: "/nonexistent", Binary: "/bin/cat", Args: []string{"-u"}}.Command()
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Path != "/bin/cat" || strings.Join(cmd.Args, " ") != "/bin/cat -u" {
		t.Fatalf("cmd = %s %v, want /bin/cat -u", cmd.Path, cmd.Args)
	}
}

func TestExecMainErrors(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no binary", []string{"--caps", ""}, "no plugin binary"},
		{"bad cap", []string{"--caps", "CAP_FLY", "--", "/bin/true"}, "unknown capability"},
		{"daemon gone", []string{"--ppid", "1", "--", "/bin/true"}, "sitelinkd exited before the plugin started"},
		{"exec fails", []string{"--", "/nonexistent/plugin"}, "exec /nonexistent/plugin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(self(t), append([]string{LauncherArg}, tc.args...)...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 127 {
				t.Fatalf("launcher = %v (%s), want exit status 127", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("launcher said %q, want %q", out, tc.want)
			}
		})
	}
}

// The credential change clears the parent-death signal; the launcher re-arms it, so a
// plugin running as another user still dies with a `kill -9`ed daemon.
func TestPluginDiesWithDaemon(t *testing.T) {
	needRoot(t)
	parent := exec.Command(self(t), "-test.run=^$")
	parent.Env = append(os.Environ(), parentEnv+"=1")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	parent.Stderr = os.Stderr
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = parent.Wait(); close(done) }()
	t.Cleanup(func() { _ = parent.Process.Kill(); <-done })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read plugin pid: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !gone(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	// Wait until the plugin runs as nobody (after the launcher's exec).
	uid, _, err := UserIDs("nobody")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if pc, err := ReadProcCaps(pid); err == nil && pc.UID == uid && strings.HasSuffix(exe, "/sleep") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the plugin did not start as nobody")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := parent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid, 10*time.Second)
}

// TestLaunchWithoutAmbientCaps takes the CentOS 7 path (no ambient capabilities): the
// plugin stays root, with only its capabilities in the bounding, permitted and effective
// sets.
func TestLaunchWithoutAmbientCaps(t *testing.T) {
	needRoot(t)
	want, err := ParseCaps([]string{"CAP_NET_ADMIN", "CAP_NET_RAW"})
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := Launch{Self: self(t), Binary: "/bin/cat", Env: append(os.Environ(), NoAmbientEnv+"=1"),
		Priv: Privileges{User: "nobody", Caps: want}}.Command()
	if err != nil {
		t.Fatal(err)
	}
	pid := startLaunched(t, cmd)
	pc, err := ReadProcCaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	if pc.UID != 0 {
		t.Fatalf("uid = %d, want 0: without ambient capabilities the plugin stays root", pc.UID)
	}
	for name, set := range map[string]CapSet{"CapEff": pc.Eff, "CapPrm": pc.Prm, "CapBnd": pc.Bnd} {
		if set != want {
			t.Errorf("%s = %s, want exactly %s", name, set, want)
		}
	}
	if pc.Amb != 0 {
		t.Errorf("CapAmb = %s, want none", pc.Amb)
	}
}
