package vip

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sitelink/sitelink/plugins/vrrp/internal/harness"
	"github.com/sitelink/sitelink/testenv"
)

func has(t *testing.T, h *testenv.Host, a string) bool {
	t.Helper()
	ok, err := harness.HasAddr(h, "eth0", netip.MustParseAddr(a))
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestAddRemoveJournal(t *testing.T) {
	env := testenv.New(t)
	a, err := env.Host("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Host("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Link(a, "eth0", b, "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := a.AddAddr("eth0", "10.9.0.1/24"); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	dir := t.TempDir()
	v4 := netip.MustParsePrefix("10.9.0.50/24")
	v6 := netip.MustParsePrefix("fd09::50/64")
	var m *Manager
	err = a.Do(func() error {
		var err error
		if m, err = Open(dir, nil); err != nil {
			return err
		}
		if err := m.Add(ctx, "vi1", "eth0", 51, []netip.Prefix{v4}); err != nil {
			return err
		}
		// Idempotent: adding again changes nothing.
		if err := m.Add(ctx, "vi1", "eth0", 51, []netip.Prefix{v4}); err != nil {
			return err
		}
		return m.Add(ctx, "vi6", "eth0", 52, []netip.Prefix{v6})
	})
	if err != nil {
		t.Fatal(err)
	}
	if !has(t, a, "10.9.0.50") || !has(t, a, "fd09::50") {
		t.Fatal("addresses not added")
	}
	out, err := a.Run(ctx, "ip", "-4", "addr", "show", "dev", "eth0")
	if err != nil || !strings.Contains(out, "eth0:v51") {
		t.Fatalf("IPv4 VIP without its label:\n%s", out)
	}
	if got := m.Entries(); len(got) != 2 || got[0].Prefix != v4 || got[1].Prefix != v6 {
		t.Fatalf("journal %+v", got)
	}
	// Remove one instance: only its address goes.
	var removed []string
	if err := a.Do(func() (err error) { removed, err = m.Release(ctx, "vi1"); return err }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{"10.9.0.50/24 on eth0"}) || has(t, a, "10.9.0.50") || !has(t, a, "fd09::50") {
		t.Fatalf("release vi1: %v", removed)
	}
	if len(m.Entries()) != 2 {
		t.Fatalf("release dropped journal entries: %v", m.Entries())
	}
	if err := a.Do(func() (err error) { removed, err = m.Forget(ctx, "vi1"); return err }); err != nil {
		t.Fatal(err)
	}
	if len(removed) != 0 || len(m.Entries()) != 1 {
		t.Fatalf("forget vi1: removed %v, journal %v", removed, m.Entries())
	}
	// A new process (the journal on disk) cleans up what the old one left.
	if err := a.Do(func() error {
		m2, err := Open(dir, nil)
		if err != nil {
			return err
		}
		m = m2
		removed, err = m2.Cleanup(ctx)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{"fd09::50/64 on eth0"}) || has(t, a, "fd09::50") {
		t.Fatalf("cleanup: %v", removed)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, JournalFile)); strings.TrimSpace(string(b)) != "[]" {
		t.Fatalf("journal after cleanup: %s", b)
	}
	// An address that is gone already is no error.
	if err := a.Do(func() error {
		if err := m.Add(ctx, "vi1", "eth0", 51, []netip.Prefix{v4}); err != nil {
			return err
		}
		link, _ := netlink.LinkByName("eth0")
		if err := netlink.AddrDel(link, nlAddr(link, v4, "")); err != nil {
			return err
		}
		removed, err = m.Forget(ctx, "vi1")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(removed) != 0 || len(m.Entries()) != 0 {
		t.Fatalf("removing a vanished address: %v, journal %v", removed, m.Entries())
	}
	// RemoveUnowned takes configured VIPs that nobody journalled off the interface.
	if err := a.AddAddr("eth0", "10.9.0.60/24"); err != nil {
		t.Fatal(err)
	}
	if err := a.Do(func() (err error) {
		removed, err = m.RemoveUnowned(ctx, "eth0", []netip.Prefix{netip.MustParsePrefix("10.9.0.60/24"), v4})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{"10.9.0.60/24 on eth0"}) || has(t, a, "10.9.0.60") || !has(t, a, "10.9.0.1") {
		t.Fatalf("remove unowned: %v", removed)
	}
}

func TestCorruptJournalIsSetAside(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, JournalFile), []byte("{torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Entries()) != 0 {
		t.Fatal("entries from a corrupt journal")
	}
	if _, err := os.Stat(filepath.Join(dir, JournalFile+".bad")); err != nil {
		t.Fatalf("corrupt journal not set aside: %v", err)
	}
}

func TestGratuitousARPAndNA(t *testing.T) {
	env := testenv.New(t)
	a, err := env.Host("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Host("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Link(a, "eth0", b, "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := b.AddAddr("eth0", "10.9.0.2/24"); err != nil {
		t.Fatal(err)
	}
	w, err := harness.WatchARP(b, "eth0", netip.MustParseAddr("10.9.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	mac, err := harness.MAC(a, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParseAddr("10.9.0.50")
	if err := a.Do(func() error {
		ann, err := NewAnnouncer("eth0", false)
		if err != nil {
			return err
		}
		defer ann.Close()
		return ann.Announce([]netip.Addr{vip})
	}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 2*time.Second, "gratuitous ARP for the VIP", func() (bool, error) {
		for _, f := range w.Frames() {
			if f.Gratuitous() && f.SenderIP == vip && f.SenderMAC == mac && f.Op == 1 {
				return true, nil
			}
		}
		return false, nil
	})
	// IPv6: the neighbour advertisement updates b's neighbour cache.
	if err := a.AddAddr("eth0", "fd09::50/64"); err != nil {
		t.Fatal(err)
	}
	if err := b.AddAddr("eth0", "fd09::2/64"); err != nil {
		t.Fatal(err)
	}
	// Linux only learns new neighbours from unsolicited advertisements on a router
	// told to (RFC 9131).
	for _, k := range []string{"net.ipv6.conf.eth0.forwarding", "net.ipv6.conf.eth0.accept_untracked_na"} {
		if err := b.SetSysctl(k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Do(func() error {
		ann, err := NewAnnouncer("eth0", true)
		if err != nil {
			return err
		}
		defer ann.Close()
		return ann.Announce([]netip.Addr{netip.MustParseAddr("fd09::50")})
	}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 2*time.Second, "neighbour entry from the NA", func() (bool, error) {
		out, err := b.Run(t.Context(), "ip", "-6", "neigh", "show", "fd09::50")
		return strings.Contains(out, mac), err
	})
}

func TestFrames(t *testing.T) {
	mac := []byte{2, 0, 0, 0, 0, 1}
	f := ARPFrame(mac, netip.MustParseAddr("192.0.2.7"))
	if len(f) != 42 || f[12] != 0x08 || f[13] != 0x06 || f[21] != 1 {
		t.Fatalf("ARP frame % x", f)
	}
	if !slices.Equal(f[28:32], f[38:42]) {
		t.Fatal("sender and target addresses differ")
	}
	na, err := NAMessage(mac, netip.MustParseAddr("2001:db8::7"))
	if err != nil || len(na) != 32 || na[0] != 136 || na[4] != 0x20 {
		t.Fatalf("NA % x (%v)", na, err)
	}
}
