package sitelinkd_test

// End-to-end tests of the real sitelinkd binary with real plugin processes: the daemon,
// sitelinkctl's client, the test plugin and the example vendor plugin (built from its own
// module). They need root (plugins run as user nobody with dropped capabilities).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/daemon/ctl"
	"github.com/sitelink/sitelink/daemon/proc"
	"github.com/sitelink/sitelink/testenv"
)

// bins holds the binaries built once for all tests.
var bins struct {
	dir, sitelinkd, sitelinkctl, testplugin, hello, logcache string
}

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			return m.Run() // each test skips or fails by itself
		}
		dir, err := os.MkdirTemp("", "sitelinkd-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if err := os.Chmod(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		bins.dir = dir
		bins.sitelinkd = filepath.Join(dir, "sitelinkd")
		bins.sitelinkctl = filepath.Join(dir, "sitelinkctl")
		bins.testplugin = filepath.Join(dir, "plugins", "testplugin")
		bins.hello = filepath.Join(dir, "vendor", "hello")
		bins.logcache = filepath.Join(dir, "plugins", "logcache")
		root := moduleRoot()
		for _, b := range []struct{ out, pkg, dir string }{
			{bins.sitelinkd, "./daemon/cmd/sitelinkd", root},
			{bins.sitelinkctl, "./daemon/cmd/sitelinkctl", root},
			{bins.testplugin, "./daemon/internal/testplugin", root},
			{bins.logcache, "./plugins/logcache", root},
			{bins.hello, ".", filepath.Join(root, "plugins/examples/hello")},
		} {
			cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
			cmd.Dir = b.dir
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b.pkg, err, out)
				return 1
			}
		}
		for _, d := range []string{filepath.Dir(bins.testplugin), filepath.Dir(bins.hello)} {
			_ = os.Chmod(d, 0o755)
		}
		return m.Run()
	}()
	os.Exit(code)
}

func moduleRoot() string {
	wd, _ := os.Getwd()
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil && !strings.Contains(d, "examples") {
			return d
		}
	}
	return wd
}

// site is one daemon under test.
type site struct {
	t      *testing.T
	dir    string
	config string
	socket string
	cmd    *exec.Cmd
	logMu  sync.Mutex
	logs   *strings.Builder
	client *ctl.Client
	exited chan struct{}
}

func newSite(t *testing.T) *site {
	t.Helper()
	testenv.Require(t)
	dir, err := os.MkdirTemp("", "sitelinkd-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &site{t: t, dir: dir, config: filepath.Join(dir, "sitelink.yaml"), socket: filepath.Join(dir, "admin.sock")}
	if err := os.MkdirAll(filepath.Join(dir, "plugins.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.client = ctl.NewClient(s.socket)
	return s
}

// daemonSection is the daemon part of every test config.
func (s *site) daemonSection() string {
	return fmt.Sprintf(`daemon:
  plugin_dir: %s
  plugins_d: %s
  state_dir: %s
  runtime_dir: %s
  socket: %s
  plugin_user: nobody
  health_interval: 300ms
  health_timeout: 200ms
  stop_timeout: 3s
  restart:
    max: 3
    window: 30s
    backoff_max: 1s
`, filepath.Dir(bins.testplugin), filepath.Join(s.dir, "plugins.d"), filepath.Join(s.dir, "state"),
		filepath.Join(s.dir, "run"), s.socket)
}

func (s *site) writeConfig(plugins string) {
	s.t.Helper()
	if err := os.WriteFile(s.config, []byte(s.daemonSection()+"plugins:\n"+plugins), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s *site) writeManifest(name, path, sum string, caps string) {
	s.t.Helper()
	m := fmt.Sprintf("name: %s\npath: %s\nsha256: %s\napi_version: 1\ncapabilities: [%s]\n", name, path, sum, caps)
	if err := os.WriteFile(filepath.Join(s.dir, "plugins.d", name+".yaml"), []byte(m), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func sha(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (s *site) start() {
	s.t.Helper()
	s.cmd = exec.Command(bins.sitelinkd, "--config", s.config, "--log-format", "json")
	s.logs = &strings.Builder{}
	lw := &lockedWriter{mu: &s.logMu, b: s.logs}
	s.cmd.Stdout, s.cmd.Stderr = lw, lw
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	s.t.Cleanup(s.stop)
	s.waitState(api.DaemonRunning, api.DaemonDegraded)
}

func (s *site) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
	if s.t.Failed() {
		s.t.Logf("sitelinkd log:\n%s", s.logText())
	}
}

func (s *site) logText() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.logs.String()
}

func (s *site) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 20*time.Second)
}

func (s *site) status() api.Status {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	st, err := s.client.Status(ctx)
	if err != nil {
		s.t.Fatalf("status: %v\nlog:\n%s", err, s.logText())
	}
	return st
}

func (s *site) waitState(states ...string) {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	err := testenv.WaitFor(ctx, "sitelinkd "+strings.Join(states, " or "), func() (bool, error) {
		st, err := s.client.Status(ctx)
		if err != nil {
			return false, err
		}
		return slices.Contains(states, st.State), nil
	})
	if err != nil {
		s.t.Fatalf("%v\nlog:\n%s", err, s.logText())
	}
}

func (s *site) plugin(name string) api.PluginStatus {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	p, err := s.client.Plugin(ctx, name)
	if err != nil {
		s.t.Fatalf("plugin %s: %v", name, err)
	}
	return p
}

func (s *site) waitPlugin(name, what string, cond func(api.PluginStatus) bool) api.PluginStatus {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	var last api.PluginStatus
	err := testenv.WaitFor(ctx, name+" "+what, func() (bool, error) {
		p, err := s.client.Plugin(ctx, name)
		last = p
		return err == nil && cond(p), err
	})
	if err != nil {
		s.t.Fatalf("%v (last: %+v)\nlog:\n%s", err, last, s.logText())
	}
	return last
}

func (s *site) action(plugin, action string, args map[string]string, out any) error {
	ctx, cancel := s.ctx()
	defer cancel()
	b, err := s.client.Action(ctx, plugin, action, args, nil)
	if err != nil {
		return err
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (s *site) sitelinkctl(args ...string) (string, int) {
	cmd := exec.Command(bins.sitelinkctl, append([]string{"--socket", s.socket}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return string(out), code
}

type state struct {
	PID      int      `json:"pid"`
	Role     string   `json:"role"`
	Starts   int      `json:"starts"`
	Greeting string   `json:"greeting"`
	UID      int      `json:"uid"`
	CapEff   []string `json:"cap_eff"`
	CapBnd   []string `json:"cap_bnd"`
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

const twoPlugins = `  alpha:
    binary: TESTPLUGIN
    config:
      greeting: hello from alpha
  beta:
    binary: TESTPLUGIN
    after: [alpha]
    active_when: master
    config:
      greeting: hello from beta
`

func withBinary(s string) string { return strings.ReplaceAll(s, "TESTPLUGIN", bins.testplugin) }

func TestDaemonLifecycle(t *testing.T) {
	s := newSite(t)
	s.writeConfig(withBinary(twoPlugins))
	s.start()

	// beta waits for the MASTER role: standby until a plugin publishes it.
	if p := s.plugin("beta"); p.State != api.PluginStandby {
		t.Fatalf("beta is %s before any role event, want standby", p.State)
	}
	var a state
	if err := s.action("alpha", "state", nil, &a); err != nil {
		t.Fatal(err)
	}
	if a.Greeting != "hello from alpha" || a.UID != 65534 {
		t.Fatalf("alpha state = %+v, want its greeting and uid 65534 (nobody)", a)
	}
	if len(a.CapEff) != 0 || len(a.CapBnd) != 0 {
		t.Fatalf("alpha declared no capabilities but has eff=%v bnd=%v", a.CapEff, a.CapBnd)
	}
	if err := s.action("alpha", "publish", map[string]string{"type": "role", "attrs": "role=MASTER", "retain": "true"}, nil); err != nil {
		t.Fatal(err)
	}
	s.waitPlugin("beta", "running as master", func(p api.PluginStatus) bool { return p.State == api.PluginRunning })
	if st := s.status(); st.Role != "MASTER" || !strings.Contains(st.StatusLine, "2/2 plugins running; role MASTER") {
		t.Fatalf("status role %q line %q", st.Role, st.StatusLine)
	}

	// kill -9 of beta: restarted, config and role restored.
	old := s.plugin("beta")
	if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p := s.waitPlugin("beta", "restarted", func(p api.PluginStatus) bool {
		return p.State == api.PluginRunning && p.PID != old.PID && p.Restarts == old.Restarts+1
	})
	var b state
	if err := s.action("beta", "state", nil, &b); err != nil {
		t.Fatal(err)
	}
	if b.PID != p.PID || b.Role != "MASTER" || b.Greeting != "hello from beta" {
		t.Fatalf("after restart beta state = %+v, want role MASTER and its greeting", b)
	}

	// The role leaves: beta stands by again.
	if err := s.action("alpha", "publish", map[string]string{"type": "role", "attrs": "role=BACKUP", "retain": "true"}, nil); err != nil {
		t.Fatal(err)
	}
	s.waitPlugin("beta", "standby as backup", func(p api.PluginStatus) bool { return p.State == api.PluginStandby })

	// A config change reaches the running plugin without a restart (same pid).
	alphaPID := s.plugin("alpha").PID
	s.writeConfig(strings.Replace(withBinary(twoPlugins), "hello from alpha", "hello again", 1))
	if out, code := s.sitelinkctl("reload"); code != 0 {
		t.Fatalf("sitelinkctl reload: exit %d: %s", code, out)
	}
	if err := s.action("alpha", "state", nil, &a); err != nil {
		t.Fatal(err)
	}
	if a.Greeting != "hello again" || a.PID != alphaPID {
		t.Fatalf("after reload alpha = %+v (pid was %d), want the new greeting in the same process", a, alphaPID)
	}

	// A bad reload (SIGHUP) is rejected with its position; the old config stays.
	s.writeConfig(withBinary(twoPlugins) + "  gamma:\n    binary: " + bins.testplugin + "\n    colour: red\n")
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	err := testenv.WaitFor(ctx, "config error in status", func() (bool, error) {
		return strings.Contains(s.status().ConfigError, "sitelink.yaml:"), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ce := s.status().ConfigError; !strings.Contains(ce, "colour") {
		t.Fatalf("config error %q does not name the unknown key", ce)
	}
	if err := s.action("alpha", "state", nil, &a); err != nil || a.Greeting != "hello again" {
		t.Fatalf("after a rejected reload alpha = %+v, %v; want the old config", a, err)
	}
	if _, err := s.client.Plugin(ctx, "gamma"); err == nil {
		t.Fatal("gamma from the rejected config was started")
	}

	// A plugin schema violation is rejected too, positioned at the field.
	s.writeConfig(strings.Replace(withBinary(twoPlugins), "hello from alpha", strings.Repeat("x", 80), 1))
	out, code := s.sitelinkctl("reload")
	if code == 0 || !strings.Contains(out, "sitelink.yaml:") || !strings.Contains(out, "greeting") {
		t.Fatalf("reload with a too-long greeting: exit %d, output %q; want a positioned error", code, out)
	}
	// … and so is one the plugin's own Configure refuses.
	s.writeConfig(strings.Replace(withBinary(twoPlugins), "hello from alpha", "forbidden words", 1))
	out, code = s.sitelinkctl("reload")
	if code == 0 || !strings.Contains(out, "must not say forbidden") {
		t.Fatalf("reload refused by the plugin: exit %d, output %q", code, out)
	}
	if err := s.action("alpha", "state", nil, &a); err != nil || a.Greeting != "hello again" {
		t.Fatalf("after rejected reloads alpha = %+v, %v; want the old config", a, err)
	}
}

func TestKillDaemonLeavesNoPlugins(t *testing.T) {
	s := newSite(t)
	s.writeConfig(withBinary(twoPlugins))
	s.start()
	pids := []int{s.plugin("alpha").PID, s.plugin("beta").PID}
	if err := syscall.Kill(s.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.exited
	ctx, cancel := s.ctx()
	defer cancel()
	err := testenv.WaitFor(ctx, "plugins gone after kill -9 of sitelinkd", func() (bool, error) {
		for _, pid := range pids {
			if alive(pid) {
				return false, fmt.Errorf("pid %d alive", pid)
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A new daemon starts cleanly over the leftovers (stale socket, pid records).
	s.start()
	if st := s.status(); st.State != api.DaemonRunning {
		t.Fatalf("second daemon state %s", st.State)
	}
}

func TestVendorPlugin(t *testing.T) {
	s := newSite(t)
	s.writeManifest("hello", bins.hello, sha(t, bins.hello), "")
	s.writeManifest("capped", bins.testplugin, sha(t, bins.testplugin), "CAP_NET_ADMIN")
	s.writeConfig("  hello:\n    config:\n      greeting: Hi\n  capped:\n    required: false\n")
	// capped's binary declares no capability; give it one through args so it declares
	// CAP_NET_ADMIN and CAP_NET_RAW, of which the manifest grants only the first.
	m := fmt.Sprintf("name: capped\npath: %s\nsha256: %s\napi_version: 1\ncapabilities: [CAP_NET_ADMIN, CAP_NET_RAW]\nargs: [--caps, \"CAP_NET_ADMIN,CAP_NET_RAW\"]\n",
		bins.testplugin, sha(t, bins.testplugin))
	if err := os.WriteFile(filepath.Join(s.dir, "plugins.d", "capped.yaml"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	s.start()
	var out map[string]string
	if err := s.action("hello", "greet", map[string]string{"name": "e2e"}, &out); err != nil {
		t.Fatal(err)
	}
	if out["message"] != "Hi, e2e!" {
		t.Fatalf("greet = %v", out)
	}
	// capped is not required: the daemon may report running before it is.
	s.waitPlugin("capped", "running", func(p api.PluginStatus) bool { return p.State == api.PluginRunning })
	var c state
	if err := s.action("capped", "state", nil, &c); err != nil {
		t.Fatal(err)
	}
	want := []string{"CAP_NET_ADMIN", "CAP_NET_RAW"}
	if fmt.Sprint(c.CapEff) != fmt.Sprint(want) || fmt.Sprint(c.CapBnd) != fmt.Sprint(want) {
		t.Fatalf("capped runs with eff=%v bnd=%v, want exactly %v", c.CapEff, c.CapBnd, want)
	}
	pc, err := proc.ReadProcCaps(c.PID)
	if err != nil {
		t.Fatal(err)
	}
	if pc.UID != 65534 || pc.Prm.String() != "CAP_NET_ADMIN,CAP_NET_RAW" {
		t.Fatalf("/proc/%d/status: uid %d permitted %s", c.PID, pc.UID, pc.Prm)
	}
}

func TestTamperedVendorPluginRefused(t *testing.T) {
	s := newSite(t)
	tampered := filepath.Join(s.dir, "hello-copy")
	b, err := os.ReadFile(bins.hello)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tampered, b, 0o755); err != nil {
		t.Fatal(err)
	}
	s.writeManifest("hello", tampered, sha(t, tampered), "")
	if err := os.WriteFile(tampered, append(b, 0), 0o755); err != nil { // one byte more
		t.Fatal(err)
	}
	s.writeConfig("  hello:\n    required: false\n")
	s.start()
	p := s.waitPlugin("hello", "refused", func(p api.PluginStatus) bool { return p.State == api.PluginFailed })
	if !strings.Contains(p.LastExit, "sha256") || !strings.Contains(p.LastExit, tampered) {
		t.Fatalf("refusal reason %q does not say which binary failed its checksum", p.LastExit)
	}
	if st := s.status(); st.State != api.DaemonDegraded {
		t.Fatalf("daemon %s with a failed plugin, want degraded", st.State)
	}
}

func TestCheckConfig(t *testing.T) {
	testenv.Require(t)
	s := newSite(t)
	cases := []struct {
		name, plugins, want string
	}{
		{"unknown key", "  alpha:\n    binary: TESTPLUGIN\n    colour: red\n", ":18:5: "},
		{"bad active_when", "  alpha:\n    binary: TESTPLUGIN\n    active_when: sometimes\n", ":18:18: "},
		{"unknown dependency", "  alpha:\n    binary: TESTPLUGIN\n    after: [nothere]\n", "nothere"},
		{"schema: wrong type", "  alpha:\n    binary: TESTPLUGIN\n    config:\n      hang_status: maybe\n", ":19:20: "},
		{"schema: unknown field", "  alpha:\n    binary: TESTPLUGIN\n    config:\n      colour: red\n", "colour"},
		{"missing binary", "  alpha:\n    binary: /nonexistent/plugin\n", "/nonexistent/plugin"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.writeConfig(withBinary(c.plugins))
			out, err := exec.Command(bins.sitelinkd, "--check-config", s.config).CombinedOutput()
			if err == nil {
				t.Fatalf("--check-config accepted it:\n%s", out)
			}
			if !strings.Contains(string(out), s.config) || !strings.Contains(string(out), c.want) {
				t.Fatalf("--check-config output lacks %q:\n%s", c.want, out)
			}
		})
	}
	s.writeConfig(withBinary(twoPlugins))
	if out, err := exec.Command(bins.sitelinkd, "--check-config", s.config).CombinedOutput(); err != nil {
		t.Fatalf("a good config was refused: %v\n%s", err, out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRoleForgottenWhenSourceDies: when the plugin that published the role (vrrp in a
// real site) dies, its MASTER no longer holds: master-only plugins stand by.
func TestRoleForgottenWhenSourceDies(t *testing.T) {
	s := newSite(t)
	s.writeConfig(withBinary(twoPlugins))
	s.start()
	if err := s.action("alpha", "publish", map[string]string{"type": "role", "attrs": "role=MASTER", "retain": "true"}, nil); err != nil {
		t.Fatal(err)
	}
	s.waitPlugin("beta", "running as master", func(p api.PluginStatus) bool { return p.State == api.PluginRunning })
	if err := syscall.Kill(s.plugin("alpha").PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.waitPlugin("beta", "standby after the role's source died", func(p api.PluginStatus) bool { return p.State == api.PluginStandby })
	s.waitPlugin("alpha", "restarted", func(p api.PluginStatus) bool { return p.State == api.PluginRunning })
	if st := s.status(); st.Role != "UNKNOWN" {
		t.Fatalf("role %s after its source restarted without saying it again, want UNKNOWN", st.Role)
	}
}
