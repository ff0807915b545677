package tunnel

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/sdk/pluginpb"
	"github.com/sitelink/sitelink/plugins/sdk/sdktest"
	"github.com/sitelink/sitelink/plugins/tunnel/identity"
)

var keyA, keyB = mustKey(), mustKey()

func mustKey() wgtypes.Key {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		panic(err)
	}
	return k.PublicKey()
}

func cfgJSON(onDown string, extra string) string {
	return fmt.Sprintf(`{"interface":"sltest0","addresses":["100.64.0.2/32"],"on_down":%q,
		"health":{"window":"1s","probe_interval":"200ms","hold":"1s"}%s,
		"gateways":[
			{"name":"gw-a","endpoint":"192.0.2.11:51820","public_key":%q,"allowed_prefixes":["10.200.0.0/16","10.9.0.0/24"],"probe":"100.64.1.1"},
			{"name":"gw-b","endpoint":"gw-b.example.net:51820","public_key":%q,"allowed_prefixes":["10.200.0.0/16"],"probe":"100.64.2.1"}]}`,
		onDown, extra, keyA, keyB)
}

func harness(t *testing.T) (*sdktest.Harness, *fakeSystem) {
	t.Helper()
	sys := newFakeSystem()
	h := sdktest.NewWithOptions(t, NewWithSystem(sys), sdktest.Options{Name: "tunnel"})
	t.Cleanup(func() { h.Stop() })
	return h, sys
}

func waitTunnelEvent(t *testing.T, h *sdktest.Harness, after int, state, gateway string, timeout time.Duration) sdk.Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		evs := h.Events()
		for _, ev := range evs[min(after, len(evs)):] {
			if ev.Type == sdk.EventTunnel && ev.Attrs["state"] == state && ev.Attrs["gateway"] == gateway {
				return ev
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no tunnel event state=%s gateway=%s after #%d; events: %+v", state, gateway, after, h.Events())
	return sdk.Event{}
}

func details(t *testing.T, st *pluginpb.StatusResponse) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(st.GetDetailsJson(), &m); err != nil {
		t.Fatalf("status details: %v", err)
	}
	return m
}

func TestInfo(t *testing.T) {
	h, _ := harness(t)
	info := h.Info()
	if info.GetName() != "tunnel" || info.GetVersion() != "0.1.0" || !info.GetKernelFacing() ||
		!slices.Equal(info.GetCapabilities(), []string{"CAP_NET_ADMIN", "CAP_NET_RAW"}) || info.GetConfigSchema() == "" {
		t.Fatalf("%+v", info)
	}
	var names []string
	for _, a := range info.GetActions() {
		names = append(names, a.GetName())
	}
	if !slices.Equal(names, []string{"show", "switch", "rotate-key"}) {
		t.Fatalf("actions %v", names)
	}
}

func TestConfigErrors(t *testing.T) {
	h, _ := harness(t)
	bad := strings.Replace(cfgJSON("blackhole", ""), "192.0.2.11:51820", "192.0.2.11", 1)
	bad = strings.Replace(bad, keyB.String(), "bm90LWEta2V5", 1)
	err := h.Configure(bad)
	var fes sdk.FieldErrors
	if !errors.As(err, &fes) {
		t.Fatalf("want field errors, got %v", err)
	}
	got := fes.Error()
	if !strings.Contains(got, "gateways[0].endpoint: want host:port") || !strings.Contains(got, "gateways[1].public_key: not a WireGuard public key") {
		t.Fatalf("%s", got)
	}
	if err := h.Start(sdk.RoleUnknown); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("start without config: %v", err)
	}
	if err := h.Validate(cfgJSON("blackhole", "")); err != nil {
		t.Fatal(err)
	}
}

func TestLifecycle(t *testing.T) {
	h, sys := harness(t)
	if err := h.Configure(cfgJSON("blackhole", "")); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(sdk.RoleMaster); err != nil {
		t.Fatal(err)
	}
	// Key file: created, 0600, and the public key is what show reports.
	st, err := os.Stat(filepath.Join(h.StateDir, identity.FileName))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	var show map[string]any
	if err := h.Action("show", nil, &show); err != nil {
		t.Fatal(err)
	}
	pub, _ := show["public_key"].(string)
	if _, err := wgtypes.ParseKey(pub); err != nil || show["state"] != "Offline" {
		t.Fatalf("show: %v", show)
	}
	// Nothing is announced before the gateways had a window (1 s) to answer.
	time.Sleep(500 * time.Millisecond)
	if len(h.Events()) != 0 {
		t.Fatalf("announced before the window: %+v", h.Events())
	}
	waitTunnelEvent(t, h, 0, "down", "", 2*time.Second)
	if st := h.Status(); st.GetHealth() != pluginpb.Health_HEALTH_DOWN || !strings.Contains(st.GetSummary(), "Offline") {
		t.Fatalf("status before any gateway: %v %s", st.GetHealth(), st.GetSummary())
	}
	// Down with blackhole: only blackhole and probe routes; probes are sent.
	if r := sys.routesOf(254); !slices.Equal(r, []string{"100.64.1.1/32 metric 50", "100.64.2.1/32 metric 50",
		"blackhole 10.200.0.0/16 metric 51", "blackhole 10.9.0.0/24 metric 51"}) {
		t.Fatalf("routes while down: %v", r)
	}
	if sys.mss == nil || sys.mss.Interface != "sltest0" || sys.mss.MTU != 1420 {
		t.Fatalf("mss: %+v", sys.mss)
	}
	b := sys.backend()
	if b.priv.PublicKey().String() != pub {
		t.Fatal("the interface does not use the stored key")
	}
	// Endpoints: an address as given, a DNS name resolved.
	b.mu.Lock()
	epA, epB := b.peers[keyA].Endpoint.String(), b.peers[keyB].Endpoint.String()
	b.mu.Unlock()
	if epA != "192.0.2.11:51820" || epB != "192.0.2.12:51820" {
		t.Fatalf("endpoints %s %s", epA, epB)
	}

	// gw-b answers first, then gw-a: gw-a is preferred within the grace period.
	sys.setAlive(keyB, true)
	sys.setAlive(keyA, true)
	n := len(h.Events())
	waitTunnelEvent(t, h, n, "up", "gw-a", 2*time.Second)
	if r := sys.routesOf(254); !slices.Contains(r, "10.200.0.0/16 metric 50") || !slices.Contains(r, "10.9.0.0/24 metric 50") {
		t.Fatalf("routes while up: %v", r)
	}
	if a := b.allowed(keyA); !slices.Equal(a, []string{"10.200.0.0/16", "10.9.0.0/24", "100.64.1.1/32"}) {
		t.Fatalf("gw-a allowed %v", a)
	}
	if a := b.allowed(keyB); !slices.Equal(a, []string{"100.64.2.1/32"}) {
		t.Fatalf("gw-b allowed %v", a)
	}
	st2 := h.Status()
	if st2.GetHealth() != pluginpb.Health_HEALTH_OK || st2.GetSummary() != "tunnel Online via gw-a" {
		t.Fatalf("%v %s %v", st2.GetHealth(), st2.GetSummary(), st2.GetReasons())
	}
	d := details(t, st2)
	if d["state"] != "Online" || d["active_gateway"] != "gw-a" {
		t.Fatalf("details %v", d)
	}

	// gw-a dies: gw-b within the window (1 s) plus a poll.
	n = len(h.Events())
	died := time.Now()
	sys.setAlive(keyA, false)
	ev := waitTunnelEvent(t, h, n, "up", "gw-b", 3*time.Second)
	if took := time.Since(died); took < 900*time.Millisecond || ev.Attrs["reason"] != "dead" || ev.Attrs["previous"] != "gw-a" {
		t.Fatalf("failover after %s: %+v", took, ev)
	}
	if a := b.allowed(keyB); !slices.Equal(a, []string{"10.200.0.0/16", "100.64.2.1/32"}) {
		t.Fatalf("gw-b allowed after failover %v", a)
	}
	if r := sys.routesOf(254); slices.Contains(r, "10.9.0.0/24 metric 50") || !slices.Contains(r, "10.200.0.0/16 metric 50") {
		t.Fatalf("routes follow gw-b's prefixes: %v", r)
	}
	// Manual switch to a dead gateway is refused; auto stays on gw-b while gw-a is dead.
	if err := h.Action("switch", map[string]string{"gateway": "gw-a"}, nil); err == nil || !strings.Contains(err.Error(), "gw-a is dead") {
		t.Fatalf("switch to dead: %v", err)
	}
	if err := h.Action("switch", map[string]string{"gateway": "nope"}, nil); err == nil {
		t.Fatal("switch to unknown gateway")
	}

	// gw-a back: taken again only after hold (1 s).
	n = len(h.Events())
	back := time.Now()
	sys.setAlive(keyA, true)
	ev = waitTunnelEvent(t, h, n, "up", "gw-a", 4*time.Second)
	if took := time.Since(back); took < time.Second || ev.Attrs["reason"] != "preferred" {
		t.Fatalf("return after %s: %+v", took, ev)
	}
	// Operator switch to gw-b holds while gw-b lives.
	var sw map[string]any
	if err := h.Action("switch", map[string]string{"gateway": "gw-b"}, &sw); err != nil || sw["to"] != "gw-b" {
		t.Fatalf("switch: %v %v", sw, err)
	}
	time.Sleep(1500 * time.Millisecond) // longer than hold: a pin is not undone by preference
	if d := details(t, h.Status()); d["active_gateway"] != "gw-b" || d["pinned"] != true {
		t.Fatalf("pin lost: %v", d)
	}
	if err := h.Action("switch", map[string]string{"gateway": "auto"}, nil); err != nil {
		t.Fatal(err)
	}
	if d := details(t, h.Status()); d["active_gateway"] != "gw-a" {
		t.Fatalf("auto: %v", d)
	}

	// All die: down, blackhole only.
	n = len(h.Events())
	sys.setAlive(keyA, false)
	sys.setAlive(keyB, false)
	waitTunnelEvent(t, h, n, "down", "gw-a", 3*time.Second)
	if r := sys.routesOf(254); slices.Contains(r, "10.200.0.0/16 metric 50") || !slices.Contains(r, "blackhole 10.200.0.0/16 metric 51") {
		t.Fatalf("routes when down: %v", r)
	}
	m := h.Metrics()
	for _, s := range []string{"sitelink_tunnel_up 0", `sitelink_tunnel_switches_total{reason="dead"} 1`,
		`sitelink_tunnel_switches_total{reason="manual"} 1`, `sitelink_tunnel_gateway_alive{gateway="gw-a"} 0`,
		`sitelink_tunnel_gateway_active{gateway="gw-a"} 1`, `sitelink_tunnel_probes_total{gateway="gw-a",kind="icmp"}`,
		`sitelink_tunnel_routes{state="blackhole"} 2`, `sitelink_tunnel_gateway_receive_bytes_total{gateway="gw-b"}`} {
		if !strings.Contains(m, s) {
			t.Errorf("metrics lack %q", s)
		}
	}
	if sys.pings[netip.MustParseAddr("100.64.1.1")] == 0 {
		t.Error("no ICMP probes to gw-a")
	}

	// Key rotation: the interface gets the new key, the file holds it.
	var rot map[string]string
	if err := h.Action("rotate-key", nil, &rot); err != nil {
		t.Fatal(err)
	}
	if rot["public_key"] == pub || b.priv.PublicKey().String() != rot["public_key"] {
		t.Fatalf("rotation: %v", rot)
	}
	k, _, _ := identity.New(h.StateDir).LoadOrCreate()
	if k.PublicKey().String() != rot["public_key"] {
		t.Fatal("rotated key not stored")
	}

	// Stop: routes, MSS clamping and interface removed; a final down event.
	n = len(h.Events())
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if r := sys.routesOf(254); len(r) != 0 || sys.mss != nil || !b.closed {
		t.Fatalf("after stop: routes %v mss %v closed %v", r, sys.mss, b.closed)
	}
	ev = waitTunnelEvent(t, h, n, "down", "gw-a", time.Second)
	if !ev.Retain || ev.Attrs["reason"] != "stopped" {
		t.Fatalf("%+v", ev)
	}
	// Start again: same key, tunnel comes back.
	sys.setAlive(keyA, true)
	if err := h.Start(sdk.RoleMaster); err != nil {
		t.Fatal(err)
	}
	waitTunnelEvent(t, h, n, "up", "gw-a", 2*time.Second)
	if sys.backend().priv.PublicKey().String() != rot["public_key"] {
		t.Fatal("restart changed the key")
	}
}

func TestWithdraw(t *testing.T) {
	h, sys := harness(t)
	if err := h.Configure(cfgJSON("withdraw", `,"mss_clamp":false`)); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(sdk.RoleUnknown); err != nil {
		t.Fatal(err)
	}
	if r := sys.routesOf(254); !slices.Equal(r, []string{"100.64.1.1/32 metric 50", "100.64.2.1/32 metric 50"}) {
		t.Fatalf("routes while down: %v", r)
	}
	if sys.mss != nil {
		t.Fatal("mss_clamp false but clamping programmed")
	}
	sys.setAlive(keyA, true)
	waitTunnelEvent(t, h, 0, "up", "gw-a", 2*time.Second)
	if r := sys.routesOf(254); len(r) != 4 {
		t.Fatalf("routes while up: %v", r)
	}
	sys.setAlive(keyA, false)
	waitTunnelEvent(t, h, 1, "down", "gw-a", 3*time.Second)
	if r := sys.routesOf(254); len(r) != 2 {
		t.Fatalf("routes after withdraw: %v", r)
	}
	var d map[string]any
	h.Action("show", nil, &d)
	if d["routes"].(map[string]any)["state"] != "withdrawn" {
		t.Fatalf("%v", d["routes"])
	}
}

func TestReconfigure(t *testing.T) {
	h, sys := harness(t)
	if err := h.Configure(cfgJSON("blackhole", "")); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(sdk.RoleUnknown); err != nil {
		t.Fatal(err)
	}
	sys.setAlive(keyA, true)
	waitTunnelEvent(t, h, 0, "up", "gw-a", 2*time.Second)
	b := sys.backend()
	// The same config again changes nothing.
	if err := h.Configure(cfgJSON("blackhole", "")); err != nil {
		t.Fatal(err)
	}
	if sys.backend() != b || b.closed {
		t.Fatal("same config rebuilt the interface")
	}
	// Drop gw-b in place: its peer is removed, the tunnel stays up on the same interface.
	one := strings.Replace(cfgJSON("blackhole", ""), fmt.Sprintf(`,
			{"name":"gw-b","endpoint":"gw-b.example.net:51820","public_key":%q,"allowed_prefixes":["10.200.0.0/16"],"probe":"100.64.2.1"}`, keyB), "", 1)
	if one == cfgJSON("blackhole", "") {
		t.Fatal("test config edit failed")
	}
	if err := h.Configure(one); err != nil {
		t.Fatal(err)
	}
	if sys.backend() != b || b.allowed(keyB) != nil {
		t.Fatalf("gw-b not removed in place: %v", b.allowed(keyB))
	}
	if d := details(t, h.Status()); d["state"] != "Online" || len(d["gateways"].([]any)) != 1 {
		t.Fatalf("%v", d)
	}
	// A new MTU rebuilds the interface.
	if err := h.Configure(strings.Replace(one, `"interface"`, `"mtu":1380,"interface"`, 1)); err != nil {
		t.Fatal(err)
	}
	if sys.backend() == b || !b.closed {
		t.Fatal("MTU change did not rebuild the interface")
	}
	if sys.mss == nil || sys.mss.MTU != 1380 {
		t.Fatalf("mss %+v", sys.mss)
	}
}

func TestBadKeyFile(t *testing.T) {
	h, _ := harness(t)
	if err := os.WriteFile(filepath.Join(h.StateDir, identity.FileName), []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.Configure(cfgJSON("blackhole", "")); err != nil {
		t.Fatal(err)
	}
	err := h.Start(sdk.RoleUnknown)
	if err == nil || !strings.Contains(err.Error(), "does not hold a WireGuard private key") {
		t.Fatalf("got %v", err)
	}
}

func TestCleanup(t *testing.T) {
	h, sys := harness(t)
	sock := filepath.Join(h.RuntimeDir, "stale.sock")
	os.WriteFile(sock, nil, 0o600)
	b, _ := json.Marshal(record{Interface: "sltest0", Socket: sock})
	os.WriteFile(filepath.Join(h.StateDir, recordFile), b, 0o600)
	removed, err := h.Cleanup()
	if err != nil || sys.cleanups != 1 || !slices.Contains(removed, "socket "+sock) {
		t.Fatalf("%v %v", removed, err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatal("stale socket left")
	}
}

func TestUnresolvableGateway(t *testing.T) {
	h, sys := harness(t)
	if err := h.Configure(strings.Replace(cfgJSON("blackhole", ""), "gw-b.example.net", "nohost.example.net", 1)); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(sdk.RoleUnknown); err != nil {
		t.Fatal(err)
	}
	sys.setAlive(keyA, true)
	waitTunnelEvent(t, h, 0, "up", "gw-a", 2*time.Second)
	st := h.Status()
	if st.GetHealth() != pluginpb.Health_HEALTH_DEGRADED || !strings.Contains(strings.Join(st.GetReasons(), ";"), "gateway gw-b: no such host") {
		t.Fatalf("%v %v", st.GetHealth(), st.GetReasons())
	}
}
