// Package e2e tests the vrrp plugin end to end: real plugin processes (driven over
// go-plugin like sitelinkd does, as an unprivileged user with only CAP_NET_ADMIN and
// CAP_NET_RAW), real keepalived peers, real kernels in network namespaces joined by a
// bridge, and a client on the LAN that checks who answers for the virtual IP.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sitelink/sitelink/plugins/vrrp/internal/harness"
	"github.com/sitelink/sitelink/testenv"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

func TestMain(m *testing.M) {
	harness.RunLauncher()
	flag.Parse()
	if run := flag.Lookup("test.run"); os.Geteuid() == 0 && (run == nil || run.Value.String() != "^$") {
		// Build everything before any test runs: compiling next to timing-sensitive
		// tests on 2 cores would starve them.
		pluginBinary(nil)
		buildDaemon(nil)
	}
	code := m.Run()
	if binary != "" {
		os.RemoveAll(strings.TrimSuffix(binary, "/vrrp"))
	}
	if daemonBins.dir != "" {
		os.RemoveAll(daemonBins.dir)
	}
	os.Exit(code)
}

// pluginBinary builds the plugin once per test binary.
func pluginBinary(t *testing.T) string {
	buildOnce.Do(func() {
		root, err := harness.ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		binary, buildErr = harness.Build(ctx, root)
	})
	if buildErr != nil && t != nil {
		t.Fatal(buildErr)
	}
	return binary
}

var vip = netip.MustParseAddr("10.0.0.50")

// lan is a switch with routers r1, r2 (10.0.0.1, .2) and a client (10.0.0.100).
type lan struct {
	t      *testing.T
	env    *testenv.Env
	sw     *testenv.Switch
	hosts  map[string]*testenv.Host
	client *testenv.Host
	arp    *harness.ARPWatch
	ctx    context.Context
}

// lanSlots bounds the topologies alive at once: timing assertions need CPU on
// this 2-core machine.
var lanSlots = make(chan struct{}, 4)

func newLAN(t *testing.T, routers ...string) *lan {
	t.Helper()
	testenv.Require(t, "ip", "nft")
	lanSlots <- struct{}{}
	t.Cleanup(func() { <-lanSlots })
	env := testenv.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	l := &lan{t: t, env: env, hosts: map[string]*testenv.Host{}, ctx: ctx}
	var err error
	if l.sw, err = env.Switch("sw"); err != nil {
		t.Fatal(err)
	}
	for i, name := range routers {
		h, err := env.Host(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Plug(h, "eth0", l.sw); err != nil {
			t.Fatal(err)
		}
		if err := h.AddAddr("eth0", fmt.Sprintf("10.0.0.%d/24", i+1)); err != nil {
			t.Fatal(err)
		}
		l.hosts[name] = h
	}
	if l.client, err = env.Host("client"); err != nil {
		t.Fatal(err)
	}
	if err := env.Plug(l.client, "eth0", l.sw); err != nil {
		t.Fatal(err)
	}
	if err := l.client.AddAddr("eth0", "10.0.0.100/24"); err != nil {
		t.Fatal(err)
	}
	if l.arp, err = harness.WatchARP(l.client, "eth0", netip.MustParseAddr("10.0.0.100")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.arp.Close() })
	return l
}

// addr is router i's address (1-based).
func addr(i int) string { return fmt.Sprintf("10.0.0.%d", i) }

type logWriter struct {
	t    *testing.T
	name string
}

func (w logWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Logf("%s: %s", w.name, strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// plugin starts the vrrp plugin on router name, configured with cfg, as nobody.
func (l *lan) plugin(name string, cfg any) *harness.Plugin {
	l.t.Helper()
	p, err := harness.StartPlugin(l.ctx, l.env, l.hosts[name], name, harness.PluginOptions{
		Binary: pluginBinary(l.t), User: "nobody", Log: logWriter{l.t, name}})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(p.Close)
	if err := p.Configure(l.ctx, cfg); err != nil {
		l.t.Fatalf("configure %s: %v", name, err)
	}
	if err := p.Start(l.ctx); err != nil {
		l.t.Fatalf("start %s: %v", name, err)
	}
	return p
}

// instance is a config section with one instance; opts are extra keys.
func instance(prio int, opts map[string]any) map[string]any {
	in := map[string]any{"name": "vi1", "interface": "eth0", "vrid": 51, "priority": prio,
		"virtual_ips": []string{"10.0.0.50/24"}, "advert_interval": 10}
	for k, v := range opts {
		in[k] = v
	}
	return map[string]any{"instances": []any{in}}
}

// waitState waits until the plugin's first instance is in state.
func (l *lan) waitState(p *harness.Plugin, state string, timeout time.Duration) {
	l.t.Helper()
	var last string
	testenv.Eventually(l.t, timeout, p.Name+" in state "+state, func() (bool, error) {
		s, err := p.State(l.ctx)
		last = s
		return s == state, err
	})
	_ = last
}

// hasVIP reports whether router name holds the virtual IP.
func (l *lan) hasVIP(name string) bool {
	l.t.Helper()
	ok, err := harness.HasAddr(l.hosts[name], "eth0", vip)
	if err != nil {
		l.t.Fatal(err)
	}
	return ok
}

// answerer asks who has the VIP and returns the set of MACs that answered.
func (l *lan) answerers() map[string]bool {
	l.t.Helper()
	since := time.Now()
	if err := l.arp.Ask(vip); err != nil {
		l.t.Fatal(err)
	}
	deadline := time.After(300 * time.Millisecond)
	for {
		select {
		case <-l.arp.Changed():
		case <-deadline:
			return l.arp.Answerers(vip, since)
		}
	}
}

func (l *lan) mac(name string) string {
	l.t.Helper()
	m, err := harness.MAC(l.hosts[name], "eth0")
	if err != nil {
		l.t.Fatal(err)
	}
	return m
}

// onlyOwner waits (up to a second) until exactly router name holds the VIP and only
// it answers ARP for it.
func (l *lan) onlyOwner(name string, routers ...string) {
	l.t.Helper()
	want := l.mac(name)
	testenv.Eventually(l.t, time.Second, "only "+name+" ("+want+") holding and answering for the VIP", func() (bool, error) {
		for _, r := range routers {
			ok, err := harness.HasAddr(l.hosts[r], "eth0", vip)
			if err != nil {
				return false, err
			}
			if ok != (r == name) {
				return false, fmt.Errorf("%s holds the VIP: %v", r, ok)
			}
		}
		ans := l.answerers()
		if len(ans) != 1 || !ans[want] {
			return false, fmt.Errorf("ARP answers from %v", ans)
		}
		return true, nil
	})
}

// partition drops VRRP between the switch's ports (ARP and the rest still flow), so
// that routers stop hearing each other while their links stay up: a split brain.
func (l *lan) partition(on bool) {
	l.t.Helper()
	if on {
		script := "add table bridge vrrptest\n" +
			"add chain bridge vrrptest forward_vrrp { type filter hook forward priority 0; }\n" +
			"add rule bridge vrrptest forward_vrrp ip protocol 112 drop\n"
		if _, err := l.sw.Run(l.ctx, "sh", "-c", "printf '"+script+"' | nft -f -"); err != nil {
			l.t.Fatal(err)
		}
		return
	}
	if _, err := l.sw.Run(l.ctx, "nft", "delete", "table", "bridge", "vrrptest"); err != nil {
		l.t.Fatal(err)
	}
}

// state returns the plugin's instance state now.
func (l *lan) state(p *harness.Plugin) string {
	l.t.Helper()
	s, err := p.State(l.ctx)
	if err != nil {
		l.t.Fatal(err)
	}
	return s
}

// status returns the plugin's first instance's status.
func (l *lan) status(p *harness.Plugin) harness.InstanceStatus {
	l.t.Helper()
	s, err := p.Status(l.ctx)
	if err != nil {
		l.t.Fatal(err)
	}
	if len(s.Instances) == 0 {
		l.t.Fatalf("%s has no instances", p.Name)
	}
	return s.Instances[0]
}

// waitRole waits for the plugin's last role event to be role.
func (l *lan) waitRole(p *harness.Plugin, role string, timeout time.Duration) {
	l.t.Helper()
	testenv.Eventually(l.t, timeout, p.Name+" role event "+role, func() (bool, error) { return p.Role() == role, nil })
}

// masterSince returns when the plugin's last MASTER role event was published.
func masterSince(p *harness.Plugin) time.Time {
	var at time.Time
	for _, ev := range p.Roles() {
		if ev.Attrs["role"] == "MASTER" {
			at = ev.Time
		}
	}
	return at
}
