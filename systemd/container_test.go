package systemd_test

// Helpers that build the binaries, install them with the unit into a copy of the cached
// Debian 12 rootfs and boot it with systemd-nspawn (testenv), so that sitelinkd runs
// under a real systemd, journald and D-Bus system bus.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/testenv"
)

// In the container.
const (
	unitName         = "sitelinkd.service"
	configPath       = "/etc/sitelink/sitelink.yaml"
	slowBinary       = "/usr/libexec/sitelink/plugins/slow"    // built-in plugin "slow"
	kernBinary       = "/usr/local/libexec/sitelink-test/kern" // vendor plugin "kern"
	testDropIn       = "/etc/systemd/system/sitelinkd.service.d/90-test.conf"
	busName          = "org.sitelink.Sitelink1"
	busPath          = "/org/sitelink/Sitelink1"
	vethName         = "slt0"                  // the veth pair kern creates (and its peer slt0-p)
	startDelay       = 1500 * time.Millisecond // how long slow's Start takes
	watchdogInterval = 2 * time.Second         // WatchdogSec of the test drop-in
	adminUser        = "sladmin"               // a member of sitelink-admin
)

// site is a booted container with sitelinkd installed (not started).
type site struct {
	tb   testing.TB
	m    *testenv.Machine
	root string
}

// on is the site for a subtest: failures end the subtest, not its parent.
func (s *site) on(tb testing.TB) *site {
	c := *s
	c.tb = tb
	return &c
}

// moduleRoot is the repository's root (this package is one level down).
func moduleRoot(tb testing.TB) string {
	tb.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		tb.Fatalf("module root: %v", err)
	}
	return root
}

// buildBinaries builds sitelinkd, sitelinkctl and the test plugin, statically.
func buildBinaries(tb testing.TB, dir string) {
	tb.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version=systemd-test", "-o", dir+"/",
		"./daemon/cmd/sitelinkd", "./daemon/cmd/sitelinkctl", "./daemon/internal/testplugin")
	cmd.Dir = moduleRoot(tb)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
}

// bootSite builds, installs and boots. Everything is removed when the test ends.
func bootSite(tb testing.TB) *site {
	tb.Helper()
	testenv.Require(tb, "go", "systemd-nspawn", "nsenter", "debootstrap", "chroot")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := tb.TempDir()
	buildBinaries(tb, bin)
	root, err := testenv.CopyRootfs(ctx, tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	s := &site{tb: tb, root: root}
	s.install(ctx, bin)
	s.m = testenv.BootTest(tb, root, fmt.Sprintf("sltest-sd-%d", os.Getpid()))
	tb.Cleanup(func() {
		if tb.Failed() {
			out, _ := s.m.Exec(context.Background(), "journalctl", "--no-pager", "-o", "short-precise", "-n", "300")
			tb.Logf("container journal (last 300 lines):\n%s", out)
		}
	})
	return s
}

// install puts the binaries, the unit, the bus policy, users and a config into the rootfs.
func (s *site) install(ctx context.Context, bin string) {
	tb := s.tb
	tb.Helper()
	mod := moduleRoot(tb)
	copies := []struct {
		src, dst string
		mode     os.FileMode
	}{
		{filepath.Join(bin, "sitelinkd"), "/usr/sbin/sitelinkd", 0o755},
		{filepath.Join(bin, "sitelinkctl"), "/usr/bin/sitelinkctl", 0o755},
		{filepath.Join(bin, "testplugin"), slowBinary, 0o755},
		{filepath.Join(bin, "testplugin"), kernBinary, 0o755},
		{"sitelinkd.service", "/etc/systemd/system/sitelinkd.service", 0o644},
		{"sitelinkd.service.d/50-hardening.conf", "/etc/systemd/system/sitelinkd.service.d/50-hardening.conf", 0o644},
		{"sitelinkd.sysconfig", "/etc/sysconfig/sitelinkd", 0o644},
		{filepath.Join(mod, "packaging/dbus/org.sitelink.Sitelink1.conf"), "/usr/share/dbus-1/system.d/org.sitelink.Sitelink1.conf", 0o644},
	}
	for _, c := range copies {
		b, err := os.ReadFile(c.src)
		if err != nil {
			tb.Fatal(err)
		}
		s.writeFile(c.dst, string(b), c.mode)
	}
	sum := sha256.Sum256(mustRead(tb, filepath.Join(bin, "testplugin")))
	s.writeFile("/etc/sitelink/plugins.d/kern.yaml", fmt.Sprintf(`name: kern
path: %s
sha256: %s
api_version: 1
capabilities: [CAP_NET_ADMIN]
args: [--kernel-facing, --caps, CAP_NET_ADMIN]
`, kernBinary, hex.EncodeToString(sum[:])), 0o644)
	s.writeFile(testDropIn, fmt.Sprintf("[Service]\nWatchdogSec=%ds\nEnvironment=SITELINK_TEST_HOOKS=1\n", int(watchdogInterval.Seconds())), 0o644)
	s.writeConfig("first", "")
	for _, args := range [][]string{
		{"groupadd", "--system", "sitelink"},
		{"groupadd", "--system", "sitelink-admin"},
		{"useradd", "--system", "--gid", "sitelink", "--no-create-home", "--home-dir", "/var/lib/sitelink",
			"--shell", "/usr/sbin/nologin", "sitelink"},
		{"useradd", "--no-create-home", "--groups", "sitelink-admin,sitelink", adminUser},
	} {
		if out, err := exec.CommandContext(ctx, "chroot", append([]string{s.root}, args...)...).CombinedOutput(); err != nil {
			tb.Fatalf("chroot %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func mustRead(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// writeFile writes a file at a path inside the container (through the rootfs).
func (s *site) writeFile(path, content string, mode os.FileMode) {
	s.tb.Helper()
	p := filepath.Join(s.root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		s.tb.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		s.tb.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		s.tb.Fatal(err)
	}
}

// writeConfig writes sitelink.yaml: slow (a plugin whose Start takes startDelay, with
// greeting) and kern (kernel-facing: creates the veth pair vethName); extraSlow is added
// to slow's entry (to make the file invalid).
func (s *site) writeConfig(greeting, extraSlow string) {
	s.writeFile(configPath, fmt.Sprintf(`daemon:
  health_interval: 1s
  health_timeout: 500ms
  metrics_listen: 127.0.0.1:9101
plugins:
  slow:
    config:
      start_delay: %s
      greeting: %s
%s  kern:
    config:
      link: %s
`, startDelay, greeting, extraSlow, vethName), 0o644)
}

// exec runs a command in the container and fails the test when it fails.
func (s *site) exec(ctx context.Context, args ...string) string {
	s.tb.Helper()
	out, err := s.m.Exec(ctx, args...)
	if err != nil {
		s.tb.Fatal(err)
	}
	return out
}

// exitCode runs a command in the container and returns its output and exit status.
func (s *site) exitCode(ctx context.Context, args ...string) (string, int) {
	s.tb.Helper()
	out, err := s.m.Exec(ctx, args...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &ee):
		return out, ee.ExitCode()
	default:
		s.tb.Fatal(err)
		return "", -1
	}
}

// mainPID is the unit's MainPID (in the container's PID namespace), 0 when none.
func (s *site) mainPID(ctx context.Context) int {
	s.tb.Helper()
	out := s.exec(ctx, "systemctl", "show", "--value", "-p", "MainPID", unitName)
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		s.tb.Fatalf("MainPID %q: %v", out, err)
	}
	return pid
}

// status is `sitelinkctl status --json`.
func (s *site) status(ctx context.Context) (api.Status, error) {
	out, err := s.m.Exec(ctx, "sitelinkctl", "status", "--json")
	if err != nil {
		return api.Status{}, err
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return api.Status{}, fmt.Errorf("sitelinkctl status --json: %w: %q", err, out)
	}
	return st, nil
}

// allRunning says whether every plugin of st runs, and lists them.
func allRunning(st api.Status) (bool, string) {
	var b strings.Builder
	ok := len(st.Plugins) > 0
	for _, p := range st.Plugins {
		fmt.Fprintf(&b, "%s=%s ", p.Name, p.State)
		ok = ok && p.State == api.PluginRunning
	}
	return ok, b.String()
}

// entry is one journal record (string fields only).
type entry map[string]string

func (e entry) time() time.Time {
	us, _ := strconv.ParseInt(e["__REALTIME_TIMESTAMP"], 10, 64)
	return time.UnixMicro(us)
}

// journal is the unit's journal (its processes' lines and systemd's lines about it).
func (s *site) journal(ctx context.Context) []entry {
	s.tb.Helper()
	out := s.exec(ctx, "journalctl", "--no-pager", "-u", unitName, "-o", "json")
	var entries []entry
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var raw map[string]any
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			s.tb.Fatalf("journal line %q: %v", sc.Text(), err)
		}
		e := entry{}
		for k, v := range raw {
			if str, ok := v.(string); ok {
				e[k] = str
			}
		}
		entries = append(entries, e)
	}
	return entries
}

// find returns the first entry after since that matches.
func find(entries []entry, since time.Time, match func(entry) bool) (entry, bool) {
	for _, e := range entries {
		if !e.time().Before(since) && match(e) {
			return e, true
		}
	}
	return nil, false
}

// waitJournal polls the journal until an entry after since matches.
func (s *site) waitJournal(ctx context.Context, what string, since time.Time, match func(entry) bool) entry {
	s.tb.Helper()
	var found entry
	err := testenv.WaitFor(ctx, what, func() (bool, error) {
		e, ok := find(s.journal(ctx), since, match)
		found = e
		return ok, nil
	})
	if err != nil {
		s.tb.Fatal(err)
	}
	return found
}

// processes lists the container's processes as "PID ARGS" lines.
func (s *site) processes(ctx context.Context) []string {
	s.tb.Helper()
	out := s.exec(ctx, "ps", "-eo", "pid=,args=")
	return strings.Split(strings.TrimSpace(out), "\n")
}

// sitelinkProcesses are the processes that run sitelinkd or a plugin binary.
func (s *site) sitelinkProcesses(ctx context.Context) []string {
	var out []string
	for _, p := range s.processes(ctx) {
		if strings.Contains(p, "/usr/sbin/sitelinkd") || strings.Contains(p, slowBinary) || strings.Contains(p, kernBinary) {
			out = append(out, strings.TrimSpace(p))
		}
	}
	return out
}

// linkExists says whether the container has a network link of that name.
func (s *site) linkExists(ctx context.Context, name string) bool {
	out := s.exec(ctx, "ip", "-o", "link", "show")
	return strings.Contains(out, " "+name+"@") || strings.Contains(out, " "+name+":")
}

// procMemory reads the memory fields (VmRSS, RssAnon, RssFile, VmHWM, …, in KiB) of a
// process in the container from /proc/PID/status.
func (s *site) procMemory(ctx context.Context, pid int) map[string]int {
	s.tb.Helper()
	out := s.exec(ctx, "cat", fmt.Sprintf("/proc/%d/status", pid))
	mem := map[string]int{}
	for _, l := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(l, ":")
		v = strings.TrimSpace(v)
		if !ok || !strings.HasSuffix(v, " kB") {
			continue
		}
		kb, err := strconv.Atoi(strings.TrimSuffix(v, " kB"))
		if err != nil {
			s.tb.Fatalf("/proc/%d/status: %q: %v", pid, l, err)
		}
		mem[k] = kb
	}
	if mem["VmRSS"] == 0 {
		s.tb.Fatalf("no VmRSS in /proc/%d/status:\n%s", pid, out)
	}
	return mem
}

// start runs `systemctl start` and returns how long it took.
func (s *site) start(ctx context.Context) time.Duration {
	s.tb.Helper()
	t0 := time.Now()
	s.exec(ctx, "systemctl", "start", unitName)
	return time.Since(t0)
}

// hang sends SIGUSR2 (the test hook) to the main PID and waits until systemd's watchdog
// killed it and the restarted daemon is active with every plugin running. It returns, from
// the journal's timestamps, the time from the hang to systemd's "Watchdog timeout" line,
// to the new daemon's first line (its new MainPID) and to "Started" (active again).
func (s *site) hang(ctx context.Context) (detect, newPID, active time.Duration) {
	s.tb.Helper()
	// A watchdog that never fires should fail in seconds, not at the test's deadline.
	ctx, cancel := context.WithTimeout(ctx, 10*watchdogInterval+30*time.Second)
	defer cancel()
	oldPID := s.mainPID(ctx)
	since := time.Now()
	s.exec(ctx, "kill", "-USR2", strconv.Itoa(oldPID))
	hung := s.waitJournal(ctx, "the daemon to log the test hang", since, func(e entry) bool {
		return e["EVENT"] == "test_hang" && e["_PID"] == strconv.Itoa(oldPID)
	})
	wd := s.waitJournal(ctx, "systemd's watchdog timeout", since, func(e entry) bool {
		return strings.Contains(e["MESSAGE"], "Watchdog timeout")
	})
	s.waitJournal(ctx, "systemd to kill the hung daemon with SIGABRT", since, func(e entry) bool {
		return strings.Contains(e["MESSAGE"], fmt.Sprintf("Killing process %d (sitelinkd) with signal SIGABRT", oldPID))
	})
	var pid int
	err := testenv.WaitFor(ctx, "a new active sitelinkd", func() (bool, error) {
		out, _ := s.m.Exec(ctx, "systemctl", "is-active", unitName)
		pid = s.mainPID(ctx)
		return strings.TrimSpace(out) == "active" && pid != 0 && pid != oldPID, nil
	})
	if err != nil {
		s.tb.Fatal(err)
	}
	first := s.waitJournal(ctx, "the new daemon's first line", since, func(e entry) bool {
		return e["_PID"] == strconv.Itoa(pid)
	})
	started := s.waitJournal(ctx, "systemd's Started line", wd.time(), func(e entry) bool {
		return e["_PID"] == "1" && strings.HasPrefix(e["MESSAGE"], "Started ")
	})
	return wd.time().Sub(hung.time()), first.time().Sub(hung.time()), started.time().Sub(hung.time())
}
