package probe

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sitelink/sitelink/plugins/tunnel/tunneltest"
	"github.com/sitelink/sitelink/testenv"
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

func TestChecksum(t *testing.T) {
	// An echo request (id 1, seq 1, no data) has checksum 0xf7fd.
	msg := []byte{8, 0, 0, 0, 0, 1, 0, 1}
	if c := checksum(msg); c != 0xf7fd {
		t.Fatalf("checksum %#x", c)
	}
}

// capture runs tcpdump on an interface and returns what it printed once stop is called.
func capture(t *testing.T, ifname, filter string) func() string {
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "tcpdump", "-n", "-l", "-i", ifname, filter)
	cmd.Stdout = &out
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "tcpdump to listen", func() (bool, error) {
		return strings.Contains(errb.String(), "listening on"), nil
	})
	return func() string {
		time.Sleep(200 * time.Millisecond) // let the last packets reach tcpdump
		cancel()
		cmd.Wait()
		return out.String()
	}
}

// TestSendsThroughBoundInterface: probes leave through the interface they are bound
// to, even when the routing table would send them elsewhere.
func TestSendsThroughBoundInterface(t *testing.T) {
	tunneltest.RequireNamespace(t)
	testenv.RequireTools(t, "tcpdump")
	ip(t, "link", "add", "pr0", "type", "veth", "peer", "name", "pr1")
	ip(t, "link", "add", "pr2", "type", "veth", "peer", "name", "pr3")
	defer exec.Command("ip", "link", "del", "pr0").Run()
	defer exec.Command("ip", "link", "del", "pr2").Run()
	for _, l := range []string{"pr0", "pr1", "pr2", "pr3"} {
		ip(t, "link", "set", l, "up")
	}
	ip(t, "addr", "add", "100.64.0.2/32", "dev", "pr0")
	ip(t, "addr", "add", "fd00:64::2/128", "dev", "pr0", "nodad")
	ip(t, "addr", "add", "192.0.2.2/24", "dev", "pr2")
	ip(t, "route", "add", "default", "via", "192.0.2.1")
	ip(t, "neigh", "add", "192.0.2.1", "lladdr", "02:00:00:00:00:01", "dev", "pr2")
	ip(t, "neigh", "add", "100.64.1.1", "lladdr", "02:00:00:00:00:02", "dev", "pr0")
	ip(t, "neigh", "add", "fd00:64::1", "lladdr", "02:00:00:00:00:02", "dev", "pr0")
	ip(t, "-6", "route", "add", "fd00:64::1/128", "dev", "pr0")

	right := capture(t, "pr1", "icmp or icmp6")
	wrong := capture(t, "pr3", "icmp or icmp6")
	p := New("pr0")
	defer p.Close()
	for i := 0; i < 3; i++ {
		if err := p.Send(netip.MustParseAddr("100.64.1.1")); err != nil {
			t.Fatal(err)
		}
		if err := p.Send(netip.MustParseAddr("fd00:64::1")); err != nil {
			t.Fatal(err)
		}
	}
	got, bad := right(), wrong()
	if n := strings.Count(got, "100.64.0.2 > 100.64.1.1: ICMP echo request"); n != 3 {
		t.Errorf("saw %d IPv4 probes on the bound interface:\n%s", n, got)
	}
	if n := strings.Count(got, "fd00:64::2 > fd00:64::1: ICMP6, echo request"); n != 3 {
		t.Errorf("saw %d IPv6 probes on the bound interface:\n%s", n, got)
	}
	if strings.Contains(bad, "echo request") {
		t.Errorf("probes left through another interface:\n%s", bad)
	}
}

func TestMissingInterface(t *testing.T) {
	tunneltest.RequireNamespace(t)
	p := New("nosuch0")
	defer p.Close()
	if err := p.Send(netip.MustParseAddr("100.64.1.1")); err == nil || !strings.Contains(err.Error(), "bind ICMP socket to nosuch0") {
		t.Fatalf("got %v", err)
	}
}
