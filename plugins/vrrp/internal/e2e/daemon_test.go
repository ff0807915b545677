package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/daemon/ctl"
	"github.com/sitelink/sitelink/plugins/vrrp/internal/harness"
	"github.com/sitelink/sitelink/testenv"
)

// daemonBins are sitelinkd, sitelinkctl and a plugin directory with vrrp and the
// daemon's test plugin, built once.
var daemonBins struct {
	once                            sync.Once
	err                             error
	dir, sitelinkd, sitelinkctl, pd string
}

func buildDaemon(t *testing.T) {
	daemonBins.once.Do(func() {
		root, err := harness.ModuleRoot()
		if err != nil {
			daemonBins.err = err
			return
		}
		dir, err := os.MkdirTemp("", "sitelink-vrrp-daemon-")
		if err != nil {
			daemonBins.err = err
			return
		}
		daemonBins.dir, daemonBins.pd = dir, filepath.Join(dir, "plugins")
		daemonBins.sitelinkd, daemonBins.sitelinkctl = filepath.Join(dir, "sitelinkd"), filepath.Join(dir, "sitelinkctl")
		for _, b := range []struct{ out, pkg string }{
			{daemonBins.sitelinkd, "./daemon/cmd/sitelinkd"},
			{daemonBins.sitelinkctl, "./daemon/cmd/sitelinkctl"},
			{filepath.Join(daemonBins.pd, "testplugin"), "./daemon/internal/testplugin"},
			{filepath.Join(daemonBins.pd, "vrrp"), "./plugins/vrrp"},
		} {
			cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				daemonBins.err = fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
				return
			}
		}
		for _, d := range []string{dir, daemonBins.pd} {
			_ = os.Chmod(d, 0o755)
		}
	})
	if daemonBins.err != nil && t != nil {
		t.Fatal(daemonBins.err)
	}
}

// site is a sitelinkd running in a router's namespace.
type site struct {
	l      *lan
	name   string
	dir    string
	proc   *testenv.Process
	client *ctl.Client
}

func (l *lan) sitelinkd(name string, prio int) *site {
	l.t.Helper()
	buildDaemon(l.t)
	dir := filepath.Join(l.env.Dir(), "site-"+name)
	if err := os.MkdirAll(filepath.Join(dir, "plugins.d"), 0o755); err != nil {
		l.t.Fatal(err)
	}
	if err := os.Chmod(l.env.Dir(), 0o755); err != nil {
		l.t.Fatal(err)
	}
	cfg := fmt.Sprintf(`daemon:
  plugin_dir: %s
  plugins_d: %s
  state_dir: %s
  runtime_dir: %s
  socket: %s
  plugin_user: nobody
  health_interval: 500ms
  health_timeout: 400ms
  stop_timeout: 3s
plugins:
  vrrp:
    config:
      instances:
        - name: vi1
          interface: eth0
          vrid: 51
          priority: %d
          virtual_ips: [10.0.0.50/24]
          advert_interval: 10
  testplugin:
    required: false
    active_when: master
    after: [vrrp]
`, daemonBins.pd, filepath.Join(dir, "plugins.d"), filepath.Join(dir, "state"), filepath.Join(dir, "run"),
		filepath.Join(dir, "admin.sock"), prio)
	conf := filepath.Join(dir, "sitelink.yaml")
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		l.t.Fatal(err)
	}
	p, err := l.hosts[name].Start(daemonBins.sitelinkd, "--config", conf, "--log-format", "json")
	if err != nil {
		l.t.Fatal(err)
	}
	s := &site{l: l, name: name, dir: dir, proc: p, client: ctl.NewClient(filepath.Join(dir, "admin.sock"))}
	l.t.Cleanup(func() {
		if l.t.Failed() {
			l.t.Logf("sitelinkd %s log:\n%s", name, p.Output())
		}
	})
	testenv.Eventually(l.t, 20*time.Second, "sitelinkd "+name+" running", func() (bool, error) {
		st, err := s.client.Status(l.ctx)
		return err == nil && (st.State == api.DaemonRunning || st.State == api.DaemonDegraded), err
	})
	return s
}

// gated reports the node's role and the test plugin's state.
func (s *site) gated() (role, state string, err error) {
	ctx, cancel := context.WithTimeout(s.l.ctx, 5*time.Second)
	defer cancel()
	st, err := s.client.Status(ctx)
	if err != nil {
		return "", "", err
	}
	p, err := s.client.Plugin(ctx, "testplugin")
	return st.Role, p.State, err
}

func (s *site) waitGated(role, state string, timeout time.Duration) {
	s.l.t.Helper()
	testenv.Eventually(s.l.t, timeout, fmt.Sprintf("%s role %s with testplugin %s", s.name, role, state), func() (bool, error) {
		r, st, err := s.gated()
		if err != nil {
			return false, err
		}
		if r != role || st != state {
			return false, fmt.Errorf("role %s, testplugin %s", r, st)
		}
		return true, nil
	})
}

// TestRoleGating runs the real sitelinkd on two routers, each with the vrrp plugin and
// a plugin marked active_when: master: the latter runs only on the master and moves
// on failover (SIGTERM of the master's daemon, then SIGKILL of its processes).
func TestRoleGating(t *testing.T) {
	t.Parallel()
	l := newLAN(t, "r1", "r2")
	s1 := l.sitelinkd("r1", 100)
	s2 := l.sitelinkd("r2", 200)
	s2.waitGated("MASTER", api.PluginRunning, 10*time.Second)
	s1.waitGated("BACKUP", api.PluginStandby, 5*time.Second)
	l.onlyOwner("r2", "r1", "r2")

	// sitelinkctl vrrp status shows the instance through the daemon.
	out, err := exec.CommandContext(l.ctx, daemonBins.sitelinkctl, "--socket", filepath.Join(s2.dir, "admin.sock"),
		"vrrp", "status").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "MASTER") || !strings.Contains(string(out), "vi1") {
		t.Fatalf("sitelinkctl vrrp status: %v\n%s", err, out)
	}

	// Maintenance through the CLI: hand over for a second, the test plugin follows
	// the role to r1 and back.
	out, err = exec.CommandContext(l.ctx, daemonBins.sitelinkctl, "--socket", filepath.Join(s2.dir, "admin.sock"),
		"vrrp", "handover", "--for", "1s").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "vi1") {
		t.Fatalf("sitelinkctl vrrp handover: %v\n%s", err, out)
	}
	s1.waitGated("MASTER", api.PluginRunning, 5*time.Second)
	s2.waitGated("MASTER", api.PluginRunning, 5*time.Second)
	s1.waitGated("BACKUP", api.PluginStandby, 5*time.Second)

	// Graceful: SIGTERM to the master's daemon stops its plugins; vrrp resigns.
	term := time.Now()
	if err := s2.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	s1.waitGated("MASTER", api.PluginRunning, 5*time.Second)
	t.Logf("backup's test plugin running %v after SIGTERM of the master's sitelinkd", time.Since(term))
	l.onlyOwner("r1", "r1", "r2")
	if err := s2.proc.Wait(l.ctx); err != nil {
		t.Logf("sitelinkd r2 exit: %v", err)
	}

	// r2 comes back, preempts, and the test plugin moves back.
	s2 = l.sitelinkd("r2", 200)
	s2.waitGated("MASTER", api.PluginRunning, 10*time.Second)
	s1.waitGated("BACKUP", api.PluginStandby, 5*time.Second)

	// Crash: SIGKILL of the master's daemon and plugins.
	kill := time.Now()
	if err := s2.proc.Kill(); err != nil {
		t.Fatal(err)
	}
	s1.waitGated("MASTER", api.PluginRunning, 5*time.Second)
	t.Logf("backup's test plugin running %v after SIGKILL of the master's processes", time.Since(kill))
	if !l.hasVIP("r1") {
		t.Fatal("r1 is master without the VIP")
	}
}
