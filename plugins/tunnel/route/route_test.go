package route

import (
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/sitelink/sitelink/plugins/tunnel/tunneltest"
)

func TestMain(m *testing.M) { os.Exit(tunneltest.RunInNamespace(m)) }

func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// setup makes a veth pair "rt0"/"rt1" (up, with addresses) to route into.
func setup(t *testing.T) {
	t.Helper()
	ip(t, "link", "add", "rt0", "type", "veth", "peer", "name", "rt1")
	t.Cleanup(func() { exec.Command("ip", "link", "del", "rt0").Run() })
	ip(t, "link", "set", "rt0", "up")
	ip(t, "link", "set", "rt1", "up")
	ip(t, "addr", "add", "100.64.0.2/32", "dev", "rt0")
	ip(t, "addr", "add", "fd00:64::2/128", "dev", "rt0", "nodad")
	ip(t, "addr", "add", "192.0.2.2/24", "dev", "rt1")
	ip(t, "route", "add", "default", "via", "192.0.2.1", "dev", "rt1")
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestApplyAndCleanup(t *testing.T) {
	tunneltest.RequireNamespace(t)
	setup(t)
	m := Manager{Table: 254, Link: "rt0"}
	src4 := netip.MustParseAddr("100.64.0.2")
	want := []Route{
		{Prefix: pfx("10.200.0.0/16"), Metric: 50, Src: src4},
		{Prefix: pfx("100.64.1.1/32"), Metric: 50, Src: src4},
		{Prefix: pfx("10.200.0.0/16"), Blackhole: true, Metric: 51},
		{Prefix: pfx("fd00:200::/48"), Metric: 0},
		{Prefix: pfx("fd00:200::/48"), Blackhole: true, Metric: 51},
	}
	res, err := m.Apply(want)
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 5 || res.Removed != 0 {
		t.Fatalf("first apply: %+v", res)
	}
	out := ip(t, "route", "show", "proto", "83")
	for _, s := range []string{"10.200.0.0/16 dev rt0 scope link src 100.64.0.2 metric 50", "blackhole 10.200.0.0/16 metric 51",
		"100.64.1.1 dev rt0 scope link src 100.64.0.2 metric 50"} {
		if !strings.Contains(out, s) {
			t.Errorf("ip route lacks %q:\n%s", s, out)
		}
	}
	out6 := ip(t, "-6", "route", "show", "proto", "83")
	if !strings.Contains(out6, "fd00:200::/48 dev rt0 metric 1024") || !strings.Contains(out6, "blackhole fd00:200::/48 dev lo metric 51") {
		t.Errorf("ip -6 route:\n%s", out6)
	}
	// The tunnel route wins over the blackhole one.
	if got := ip(t, "route", "get", "10.200.1.1"); !strings.Contains(got, "dev rt0") {
		t.Fatalf("route get: %s", got)
	}
	// Idempotent, including the IPv6 metric 0 that the kernel reports as 1024.
	if res, err := m.Apply(want); err != nil || res.Added != 0 || res.Removed != 0 {
		t.Fatalf("second apply: %+v %v", res, err)
	}
	// Down with blackhole: only the blackhole and probe routes remain, traffic is dropped.
	down := []Route{want[1], want[2], want[4]}
	if res, err := m.Apply(down); err != nil || res.Added != 0 || res.Removed != 2 {
		t.Fatalf("down: %+v %v", res, err)
	}
	if out, err := exec.Command("ip", "route", "get", "10.200.1.1").CombinedOutput(); err == nil && !strings.Contains(string(out), "blackhole") {
		t.Fatalf("10.200.1.1 is not blackholed: %s", out)
	}
	got, err := m.List()
	if err != nil || len(got) != 3 {
		t.Fatalf("list: %v %v", got, err)
	}
	// Routes that are not Sitelink's are never touched, in this table or another.
	ip(t, "route", "add", "10.99.0.0/16", "dev", "rt0")
	ip(t, "route", "add", "10.98.0.0/16", "dev", "rt0", "proto", "83", "table", "100")
	removed, err := CleanupOtherTables(254)
	if err != nil || len(removed) != 1 || !strings.Contains(removed[0], "10.98.0.0/16") {
		t.Fatalf("cleanup other tables: %v %v", removed, err)
	}
	removed, err = Cleanup()
	if err != nil || len(removed) != 3 {
		t.Fatalf("cleanup: %v %v", removed, err)
	}
	if out := ip(t, "route", "show", "proto", "83") + ip(t, "-6", "route", "show", "proto", "83"); strings.TrimSpace(out) != "" {
		t.Fatalf("routes left: %s", out)
	}
	if out := ip(t, "route", "show", "10.99.0.0/16"); !strings.Contains(out, "10.99.0.0/16") {
		t.Fatal("a foreign route was removed")
	}
	if out := ip(t, "route", "show", "default"); !strings.Contains(out, "192.0.2.1") {
		t.Fatal("the default route was removed")
	}
}

// TestRepairsDrift: a route removed by someone else comes back at the next Apply, and
// one changed by hand is replaced.
func TestRepairsDrift(t *testing.T) {
	tunneltest.RequireNamespace(t)
	setup(t)
	defer Cleanup()
	m := Manager{Table: 254, Link: "rt0"}
	want := []Route{{Prefix: pfx("10.200.0.0/16"), Metric: 50}}
	if _, err := m.Apply(want); err != nil {
		t.Fatal(err)
	}
	ip(t, "route", "del", "10.200.0.0/16", "proto", "83")
	if res, err := m.Apply(want); err != nil || res.Added != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	ip(t, "route", "replace", "10.200.0.0/16", "dev", "rt1", "proto", "83", "metric", "50")
	if res, err := m.Apply(want); err != nil || res.Added != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	if out := ip(t, "route", "show", "10.200.0.0/16"); !strings.Contains(out, "dev rt0") || strings.Contains(out, "rt1") {
		t.Fatalf("not repaired: %s", out)
	}
}

func TestMissingInterface(t *testing.T) {
	tunneltest.RequireNamespace(t)
	m := Manager{Table: 254, Link: "nosuch0"}
	res, err := m.Apply([]Route{{Prefix: pfx("10.200.0.0/16"), Metric: 50}, {Prefix: pfx("10.200.0.0/16"), Blackhole: true, Metric: 51}})
	defer Cleanup()
	if err == nil || !strings.Contains(err.Error(), "nosuch0 does not exist") || res.Added != 1 {
		t.Fatalf("%+v %v", res, err)
	}
}
