package link

import (
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

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

func TestConfigurePrepareCleanup(t *testing.T) {
	tunneltest.RequireNamespace(t)
	ip(t, "link", "add", "lk0", "type", "veth", "peer", "name", "lk1")
	defer exec.Command("ip", "link", "del", "lk0").Run()
	ip(t, "addr", "add", "10.9.9.9/24", "dev", "lk0")
	addrs := []netip.Prefix{netip.MustParsePrefix("100.64.0.2/32"), netip.MustParsePrefix("fd00:64::2/128")}
	if err := Configure("lk0", 1420, addrs); err != nil {
		t.Fatal(err)
	}
	out := ip(t, "addr", "show", "dev", "lk0") + ip(t, "link", "show", "dev", "lk0")
	for _, s := range []string{"mtu 1420", "alias " + Alias, "inet 100.64.0.2/32", "inet6 fd00:64::2/128", "UP"} {
		if !strings.Contains(out, s) {
			t.Errorf("lk0 lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "10.9.9.9") {
		t.Errorf("an address not in the config stayed:\n%s", out)
	}
	// Idempotent, and silent: no netlink event when nothing changes.
	mon := exec.Command("ip", "monitor", "address", "link")
	var events strings.Builder
	mon.Stdout = &events
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := Configure("lk0", 1420, addrs); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	mon.Process.Kill()
	mon.Wait()
	if events.Len() != 0 {
		t.Errorf("a Configure that changes nothing made netlink events:\n%s", events.String())
	}
	// Another interface of the name is not removed.
	ip(t, "link", "add", "lk2", "type", "veth", "peer", "name", "lk3")
	defer exec.Command("ip", "link", "del", "lk2").Run()
	if _, err := Prepare("lk2"); err == nil || !strings.Contains(err.Error(), "is not Sitelink's") {
		t.Fatalf("foreign interface: %v", err)
	}
	if removed, err := Prepare("nosuch0"); err != nil || removed {
		t.Fatalf("missing interface: %v %v", removed, err)
	}
	// Cleanup removes marked interfaces only.
	removed, err := Cleanup()
	if err != nil || len(removed) != 1 || removed[0] != "interface lk0" {
		t.Fatalf("cleanup: %v %v", removed, err)
	}
	if _, err := exec.Command("ip", "link", "show", "lk2").CombinedOutput(); err != nil {
		t.Fatal("foreign interface removed")
	}
	// Prepare removes a marked leftover.
	ip(t, "link", "add", "lk4", "type", "veth", "peer", "name", "lk5")
	ip(t, "link", "set", "lk4", "alias", Alias)
	if removed, err := Prepare("lk4"); err != nil || !removed {
		t.Fatalf("leftover: %v %v", removed, err)
	}
	if _, err := exec.Command("ip", "link", "show", "lk4").CombinedOutput(); err == nil {
		t.Fatal("leftover still there")
	}
}
