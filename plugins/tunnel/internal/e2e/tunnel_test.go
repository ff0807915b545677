package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sitelink/sitelink/daemon/proc"
	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/tunnel/identity"
	"github.com/sitelink/sitelink/plugins/tunnel/tunneltest"
)

var fast = map[string]any{"window": "2s", "probe_interval": "500ms", "hold": "5s"}

// TestEndToEnd: handshake with stock wireguard-go, traffic both ways, the remote client
// reaches the app through the tunnel and nothing crosses the internet in clear, an
// unprivileged process with only its capabilities, the key file, status and
// metrics.
func TestEndToEnd(t *testing.T) {
	f := newFixture(t, 2, true, fast, nil)
	f.waitEvent(0, "up", "gw1", 15*time.Second)
	gw1 := f.topo.Gateways[0]
	// The gateway (stock wireguard-go) reports the handshake with the connector's key.
	dump, err := gw1.Show(f.ctx)
	if err != nil || !strings.Contains(dump, f.pub.String()) {
		t.Fatalf("wg show on gw1: %v\n%s", err, dump)
	}
	// Site to gateway.
	f.ask("gw1")
	// Remote client to the app, through gw1 and the tunnel, in clear nowhere on the
	// internet switch.
	stop := capture(t, f.topo.Internet.Host, "br0")
	f.run(f.topo.Client, "ping", "-c", "3", "-i", "0.2", "-W", "2", tunneltest.AppAddr)
	pkts := stop()
	var tunnelPkts int
	for _, p := range pkts {
		// (IPv6 neighbour discovery and MLD of the namespaces' links are not traffic.)
		if strings.Contains(p, tunneltest.AppAddr) || strings.Contains(p, tunneltest.ClientAddr) ||
			(strings.Contains(p, " IP ") && strings.Contains(p, "ICMP")) {
			t.Errorf("clear packet on the internet link: %s", p)
		}
		if strings.Contains(p, fmt.Sprintf(".%d: UDP", tunneltest.GatewayPort)) || strings.Contains(p, fmt.Sprintf(".%d >", tunneltest.GatewayPort)) {
			tunnelPkts++
		}
	}
	if tunnelPkts == 0 {
		t.Errorf("no WireGuard packets seen on the internet link: %v", pkts)
	}

	// The process runs as nobody with exactly its two capabilities.
	pc, err := proc.ReadProcCaps(f.plugin.PID)
	if err != nil {
		t.Fatal(err)
	}
	if pc.UID != 65534 || strings.Join(pc.Eff.Names(), ",") != "CAP_NET_ADMIN,CAP_NET_RAW" {
		t.Fatalf("plugin uid %d caps %v", pc.UID, pc.Eff.Names())
	}
	// Key file: 0600, owned by the plugin's user.
	st, err := os.Stat(filepath.Join(f.stateDir, identity.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Sys().(*syscall.Stat_t).Uid != 65534 {
		t.Fatalf("key file mode %04o uid %d", st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Uid)
	}

	// Kernel state in the connector: routes of protocol 83, the nftables table, the
	// interface with its MTU and mark.
	routes := f.run(f.topo.Conn, "ip", "route", "show", "proto", "83")
	for _, want := range []string{tunneltest.ServicePrefix + " dev " + f.iface, tunneltest.ClientPrefix + " dev " + f.iface,
		"blackhole " + tunneltest.ServicePrefix, tunneltest.GatewayTunnel(2) + " dev " + f.iface} {
		if !strings.Contains(routes, want) {
			t.Errorf("routes lack %q:\n%s", want, routes)
		}
	}
	link := f.run(f.topo.Conn, "ip", "link", "show", f.iface)
	if !strings.Contains(link, "mtu 1420") || !strings.Contains(link, "alias sitelink:tunnel") {
		t.Errorf("interface: %s", link)
	}

	// Status, show and metrics.
	st2, err := f.plugin.Client.Status(f.ctx)
	if err != nil || st2.GetSummary() != "tunnel Online via gw1" {
		t.Fatalf("status: %v %v", st2, err)
	}
	show, _ := f.plugin.Show(f.ctx)
	if show["state"] != "Online" || show["backend"] != "userspace" || show["active_gateway"] != "gw1" {
		t.Fatalf("show: %v", show)
	}
	gws := show["gateways"].([]any)
	g2 := gws[1].(map[string]any)
	if g2["alive"] != true || g2["last_handshake"] == nil {
		t.Fatalf("gw2 (standby) is not kept alive: %v", g2)
	}
	m, err := f.plugin.Client.Metrics(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sitelink_tunnel_up 1", `sitelink_tunnel_gateway_active{gateway="gw1"} 1`, `sitelink_tunnel_gateway_alive{gateway="gw2"} 1`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestMSSClamp: a TCP SYN from the app (MSS 1460 on its 1500-byte LAN) arrives at the
// gateway with the MSS clamped to the tunnel's MTU-40.
func TestMSSClamp(t *testing.T) {
	f := newFixture(t, 1, true, fast, nil)
	f.waitEvent(0, "up", "gw1", 15*time.Second)
	gw1 := f.topo.Gateways[0]
	stop := capture(t, gw1.Host, gw1.Iface, "tcp[tcpflags] & tcp-syn != 0 and dst port 9")
	f.topo.App.Do(func() error {
		c, err := net.DialTimeout("tcp", tunneltest.ServiceAddr+":9", 2*time.Second)
		if err == nil {
			c.Close()
		}
		return nil
	})
	syn := strings.Join(stop(), "\n")
	if !strings.Contains(syn, "mss 1380") {
		t.Fatalf("SYN at the gateway is not clamped to 1380:\n%s", syn)
	}
	// Control: without clamping, the SYN keeps its 1460.
	f.config = f.topo.ConnectorConfig(f.iface, true, fast, map[string]any{"mss_clamp": false})
	if err := f.plugin.Client.Configure(f.ctx, f.config, false); err != nil {
		t.Fatal(err)
	}
	stop = capture(t, gw1.Host, gw1.Iface, "tcp[tcpflags] & tcp-syn != 0 and dst port 9")
	f.topo.App.Do(func() error {
		c, err := net.DialTimeout("tcp", tunneltest.ServiceAddr+":9", 2*time.Second)
		if err == nil {
			c.Close()
		}
		return nil
	})
	if syn := strings.Join(stop(), "\n"); !strings.Contains(syn, "mss 1460") {
		t.Fatalf("without clamping the SYN should keep mss 1460:\n%s", syn)
	}
}

// TestFailover: the active gateway dies (wireguard-go killed); traffic resumes through
// the second within the window; the first comes back and is taken back only after the
// hold time; then its link is cut and traffic moves again.
func TestFailover(t *testing.T) {
	f := newFixture(t, 2, true, fast, nil)
	f.waitEvent(0, "up", "gw1", 15*time.Second)
	f.ask("gw1")
	tr, err := tunneltest.StartTraffic(f.topo.App, tunneltest.ServiceAddr, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Stop()
	time.Sleep(500 * time.Millisecond)
	window := 2 * time.Second
	gw1 := f.topo.Gateways[0]

	n := f.events()
	killed := time.Now()
	if err := gw1.Kill(f.ctx); err != nil {
		t.Fatal(err)
	}
	ev := f.waitEvent(n, "up", "gw2", window+5*time.Second)
	if ev.Attrs["reason"] != "dead" || ev.Attrs["previous"] != "gw1" {
		t.Fatalf("event %+v", ev)
	}
	eventually(t, 5*time.Second, func() bool { _, ok := tunneltest.FirstFrom(tr.Replies(), "gw2", killed); return ok })
	first, _ := tunneltest.FirstFrom(tr.Replies(), "gw2", killed)
	last, _ := tunneltest.LastFrom(tr.Replies(), "gw1", killed.Add(time.Minute))
	gap := first.At.Sub(killed)
	t.Logf("gw1 killed; last answer from gw1 %s before, first from gw2 %s after (window %s)", killed.Sub(last.At), gap, window)
	if gap > window+1500*time.Millisecond {
		t.Errorf("traffic resumed through gw2 %s after gw1 died; want within the %s window (+1.5 s)", gap, window)
	}

	// gw1 comes back: traffic stays on gw2 for the hold time, then returns.
	n = f.events()
	if err := gw1.Start(f.ctx, f.topo.Env.Dir()); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	ev = f.waitEvent(n, "up", "gw1", 20*time.Second)
	took := time.Since(back)
	t.Logf("gw1 restarted; taken back after %s (hold 5s)", took)
	if ev.Attrs["reason"] != "preferred" || took < 5*time.Second {
		t.Fatalf("gw1 taken back after %s, before the 5 s hold: %+v", took, ev)
	}
	if r, ok := tunneltest.FirstFrom(tr.Replies(), "gw1", back); ok && r.At.Sub(back) < 5*time.Second {
		t.Fatalf("gw1 answered %s after its return, within the hold time", r.At.Sub(back))
	}
	f.ask("gw1")

	// Cut gw1's cable: traffic moves to gw2 again.
	port, _ := f.topo.Internet.Port(f.topo.GatewayHosts[0], "wan0")
	n = f.events()
	cut := time.Now()
	if err := f.topo.Internet.LinkDown(port); err != nil {
		t.Fatal(err)
	}
	f.waitEvent(n, "up", "gw2", window+5*time.Second)
	eventually(t, 5*time.Second, func() bool { _, ok := tunneltest.FirstFrom(tr.Replies(), "gw2", cut); return ok })
	first, _ = tunneltest.FirstFrom(tr.Replies(), "gw2", cut)
	t.Logf("gw1's link cut; first answer from gw2 after %s", first.At.Sub(cut))
	if first.At.Sub(cut) > window+1500*time.Millisecond {
		t.Errorf("traffic resumed %s after the cut", first.At.Sub(cut))
	}
}

// TestHandshakeProbes: without probe addresses, liveness comes from handshakes the
// plugin starts on silent gateways: an idle tunnel stays up, and a dead gateway is
// replaced within the window.
func TestHandshakeProbes(t *testing.T) {
	f := newFixture(t, 2, false, map[string]any{"window": "7s", "probe_interval": "1s", "hold": "30s"}, nil)
	f.waitEvent(0, "up", "gw1", 15*time.Second)
	n := f.events()
	time.Sleep(10 * time.Second) // idle, longer than the window
	for _, ev := range f.plugin.Host.Events()[n:] {
		t.Errorf("idle tunnel changed state: %+v", ev)
	}
	f.ask("gw1")
	killed := time.Now()
	if err := f.topo.Gateways[0].Kill(f.ctx); err != nil {
		t.Fatal(err)
	}
	f.waitEvent(n, "up", "gw2", 12*time.Second)
	took := time.Since(killed)
	t.Logf("failover by handshake probes after %s (window 7s)", took)
	if took > 9500*time.Millisecond {
		t.Errorf("failover took %s", took)
	}
	f.ask("gw2")
}

func eventually(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOnDown: with withdraw the routes go and traffic follows the default route (the
// control: a capture on the internet link sees it); with blackhole nothing leaves in
// clear, also while the plugin is dead after kill -9.
func TestOnDown(t *testing.T) {
	for _, mode := range []string{"withdraw", "blackhole"} {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, 1, true, fast, map[string]any{"on_down": mode})
			f.waitEvent(0, "up", "gw1", 15*time.Second)
			f.ask("gw1")
			n := f.events()
			if err := f.topo.Gateways[0].Kill(f.ctx); err != nil {
				t.Fatal(err)
			}
			f.waitEvent(n, "down", "gw1", 10*time.Second)
			routes := f.run(f.topo.Conn, "ip", "route", "show", "proto", "83")
			leakCheck := func() []string {
				stop := capture(t, f.topo.Internet.Host, "br0", "net", tunneltest.ServicePrefix, "or", "net", tunneltest.AppPrefix)
				for i := 0; i < 3; i++ {
					tunneltest.Ask(f.topo.App, tunneltest.ServiceAddr, 200*time.Millisecond)
				}
				return stop()
			}
			switch mode {
			case "withdraw":
				if strings.Contains(routes, tunneltest.ServicePrefix) {
					t.Fatalf("routes not withdrawn:\n%s", routes)
				}
				if leaked := leakCheck(); len(leaked) == 0 {
					t.Fatal("control failed: with the routes withdrawn, the default route should carry the traffic in clear")
				}
			case "blackhole":
				if !strings.Contains(routes, "blackhole "+tunneltest.ServicePrefix) || strings.Contains(routes, tunneltest.ServicePrefix+" dev") {
					t.Fatalf("routes not blackholed:\n%s", routes)
				}
				if leaked := leakCheck(); len(leaked) != 0 {
					t.Fatalf("clear packets on the internet link: %v", leaked)
				}
				if _, err := tunneltest.Ask(f.topo.App, tunneltest.ServiceAddr, 300*time.Millisecond); err == nil {
					t.Fatal("traffic got an answer through a blackhole")
				}
				// The plugin crashes: the blackhole routes hold.
				if err := f.plugin.Kill9(); err != nil {
					t.Fatal(err)
				}
				if leaked := leakCheck(); len(leaked) != 0 {
					t.Fatalf("clear packets after the plugin crashed: %v", leaked)
				}
			}
		})
	}
}

// TestCrashRestartCleanup: kill -9 of the plugin; a new process restores the tunnel
// with the same key; after another crash, Cleanup (without config, as `sitelinkd
// --cleanup` calls it) removes the routes, the nftables table and the socket.
func TestCrashRestartCleanup(t *testing.T) {
	f := newFixture(t, 2, true, fast, nil)
	f.waitEvent(0, "up", "gw1", 15*time.Second)
	f.ask("gw1")
	if err := f.plugin.Kill9(); err != nil {
		t.Fatal(err)
	}
	// The userspace interface died with the process; blackhole routes and MSS clamping stay.
	if _, err := f.topo.Conn.IP(f.ctx, "link", "show", f.iface); err == nil {
		t.Fatal("interface survived the process")
	}
	routes := f.run(f.topo.Conn, "ip", "route", "show", "proto", "83")
	if !strings.Contains(routes, "blackhole "+tunneltest.ServicePrefix) {
		t.Fatalf("blackhole routes gone after the crash:\n%s", routes)
	}

	// Restart: same key, tunnel back.
	f.start(true)
	show, err := f.plugin.Show(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if show["public_key"] != f.pub.String() {
		t.Fatalf("public key changed across the restart: %v -> %v", f.pub, show["public_key"])
	}
	f.waitEvent(0, "up", "gw1", 15*time.Second)
	f.ask("gw1")

	// Bad config through the real process: clear errors, the running config stays.
	bad := strings.Replace(string(f.config), f.topo.Gateways[1].Key.PublicKey().String(), "bm90LWEta2V5", 1)
	bad = strings.Replace(bad, tunneltest.GatewayWAN(1)+":51820", tunneltest.GatewayWAN(1), 1)
	err = f.plugin.Client.Configure(f.ctx, []byte(bad), false)
	var fes sdk.FieldErrors
	if !errors.As(err, &fes) || !strings.Contains(fes.Error(), "gateways[1].public_key: not a WireGuard public key") ||
		!strings.Contains(fes.Error(), "gateways[0].endpoint: want host:port") {
		t.Fatalf("bad config: %v", err)
	}
	f.ask("gw1")

	// Crash again, then clean up with a fresh process that is never configured.
	sock := show["uapi_socket"]
	if err := f.plugin.Kill9(); err != nil {
		t.Fatal(err)
	}
	f.start(false)
	removed, err := f.plugin.Client.Cleanup(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cleanup removed: %v", removed)
	joined := strings.Join(removed, "\n")
	for _, want := range []string{"blackhole " + tunneltest.ServicePrefix, "nftables table ip sitelink-tunnel", "nftables table ip6 sitelink-tunnel"} {
		if !strings.Contains(joined, want) {
			t.Errorf("cleanup did not report %q", want)
		}
	}
	if sock, _ := sock.(string); sock != "" {
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Errorf("socket %s left: %v", sock, err)
		}
	}
	if out := f.run(f.topo.Conn, "ip", "route", "show", "proto", "83"); strings.TrimSpace(out) != "" {
		t.Errorf("routes left:\n%s", out)
	}
	if out := f.run(f.topo.Conn, "nft", "list", "tables"); strings.Contains(out, "sitelink-tunnel") {
		t.Errorf("nftables tables left:\n%s", out)
	}
}
