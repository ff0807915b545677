package wg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sitelink/sitelink/plugins/tunnel/config"
	"github.com/sitelink/sitelink/plugins/tunnel/tunneltest"
)

func TestMain(m *testing.M) { os.Exit(tunneltest.RunInNamespace(m)) }

func uniqueName(t *testing.T) string {
	var b [4]byte
	rand.Read(b[:])
	return "slwgt" + hex.EncodeToString(b[:])
}

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func hexOf(k wgtypes.Key) string { return hex.EncodeToString(k[:]) }

func ptr[T any](v T) *T { return &v }

func TestRenderParseRoundTrip(t *testing.T) {
	priv, _ := wgtypes.GeneratePrivateKey()
	peer, _ := wgtypes.GeneratePrivateKey()
	_, ipn, _ := net.ParseCIDR("10.200.0.0/16")
	_, ipn6, _ := net.ParseCIDR("fd00::/64")
	c := wgtypes.Config{PrivateKey: &priv, ListenPort: ptr(51820), Peers: []wgtypes.PeerConfig{
		{PublicKey: peer.PublicKey(), Endpoint: &net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 51820},
			PersistentKeepaliveInterval: ptr(25 * time.Second), ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{*ipn, *ipn6}},
		{PublicKey: priv.PublicKey(), Remove: true},
	}}
	text := RenderUAPI(c)
	for _, want := range []string{
		"private_key=" + hex.EncodeToString(priv[:]), "listen_port=51820",
		"public_key=" + hexOf(peer.PublicKey()), "endpoint=[2001:db8::1]:51820",
		"persistent_keepalive_interval=25", "replace_allowed_ips=true", "allowed_ip=10.200.0.0/16", "allowed_ip=fd00::/64", "remove=true",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("rendered config lacks %q:\n%s", want, text)
		}
	}
	get := "private_key=" + hex.EncodeToString(priv[:]) + "\nlisten_port=51820\npublic_key=" + hexOf(peer.PublicKey()) +
		"\npreshared_key=0000000000000000000000000000000000000000000000000000000000000000\nprotocol_version=1\nendpoint=192.0.2.1:51820" +
		"\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\ntx_bytes=100\nrx_bytes=200\npersistent_keepalive_interval=25" +
		"\nallowed_ip=10.200.0.0/16\nerrno=0\n"
	d, err := ParseUAPI("x", get)
	if err != nil {
		t.Fatal(err)
	}
	if d.PublicKey != priv.PublicKey() || d.ListenPort != 51820 || len(d.Peers) != 1 {
		t.Fatalf("%+v", d)
	}
	p := d.Peers[0]
	if p.PublicKey != peer.PublicKey() || p.Endpoint.String() != "192.0.2.1:51820" || p.LastHandshakeTime != time.Unix(1700000000, 5) ||
		p.TransmitBytes != 100 || p.ReceiveBytes != 200 || p.PersistentKeepaliveInterval != 25*time.Second || len(p.AllowedIPs) != 1 {
		t.Fatalf("%+v", p)
	}
	if _, err := ParseUAPI("x", "errno=22\n"); err == nil {
		t.Fatal("errno ignored")
	}
	if _, err := ParseUAPI("x", "public_key=zz\n"); err == nil {
		t.Fatal("bad key accepted")
	}
}

func TestUserspaceDevice(t *testing.T) {
	tunneltest.RequireNamespace(t)
	name := uniqueName(t)
	dir := t.TempDir()
	b, err := Open(context.Background(), Options{Name: name, MTU: 1400, Kind: config.BackendUserspace,
		SocketDirs: []string{filepath.Join(dir, "nope", "\x00bad"), dir}, Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Kind() != config.BackendUserspace || b.Name() != name {
		t.Fatalf("kind %s name %s", b.Kind(), b.Name())
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().MTU != 1400 || l.Type() != "tuntap" {
		t.Fatalf("mtu %d type %s", l.Attrs().MTU, l.Type())
	}
	sock := filepath.Join(dir, name+".sock")
	if b.Socket() != sock {
		t.Fatalf("socket %q, want %q", b.Socket(), sock)
	}
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v", st, err)
	}
	priv, _ := wgtypes.GeneratePrivateKey()
	peer, _ := wgtypes.GeneratePrivateKey()
	_, ipn, _ := net.ParseCIDR("10.200.0.0/16")
	err = b.Configure(wgtypes.Config{PrivateKey: &priv, ListenPort: ptr(0), Peers: []wgtypes.PeerConfig{{PublicKey: peer.PublicKey(),
		Endpoint: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 51820}, PersistentKeepaliveInterval: ptr(25 * time.Second),
		ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{*ipn}}}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := b.Device()
	if err != nil {
		t.Fatal(err)
	}
	if d.PublicKey != priv.PublicKey() || d.ListenPort == 0 || len(d.Peers) != 1 || d.Peers[0].AllowedIPs[0].String() != "10.200.0.0/16" {
		t.Fatalf("%+v", d)
	}
	// The configuration protocol answers on the socket (what `wg show` uses).
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("get=1\n\n"))
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := c.Read(buf)
	c.Close()
	if !strings.Contains(string(buf[:n]), "public_key="+hexOf(peer.PublicKey())) {
		t.Fatalf("socket answered %q", buf[:n])
	}
	if err := b.Nudge(priv.PublicKey()); err == nil {
		t.Fatal("nudge of an unknown peer succeeded")
	}
	b.Close()
	if _, err := netlink.LinkByName(name); err == nil {
		t.Fatal("interface still exists after Close")
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket still exists after Close: %v", err)
	}
}

// TestStaleSocket: a socket left by a killed process is replaced; one in use is not.
func TestStaleSocket(t *testing.T) {
	tunneltest.RequireNamespace(t)
	dir := t.TempDir()
	name := uniqueName(t)
	path := filepath.Join(dir, name+".sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	if _, _, err := listenSocket(dir, name); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("socket in use: %v", err)
	}
	ln.Close() // leaves the file, like a killed process
	ln2, p, err := listenSocket(dir, name)
	if err != nil || p != path {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln2.Close()
}

// TestHandshake runs two userspace devices against each other over loopback: Nudge
// starts a handshake and the counters show it on both sides.
func TestHandshake(t *testing.T) {
	tunneltest.RequireNamespace(t)
	if err := exec.Command("ip", "link", "set", "lo", "up").Run(); err != nil {
		t.Fatal(err)
	}
	ka, _ := wgtypes.GeneratePrivateKey()
	kb, _ := wgtypes.GeneratePrivateKey()
	open := func() Backend {
		b, err := Open(context.Background(), Options{Name: uniqueName(t), MTU: 1420, Kind: config.BackendUserspace,
			SocketDirs: []string{t.TempDir()}, Logger: logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	a, b := open(), open()
	if err := a.Configure(wgtypes.Config{PrivateKey: &ka, ListenPort: ptr(40001)}); err != nil {
		t.Fatal(err)
	}
	if err := b.Configure(wgtypes.Config{PrivateKey: &kb, ListenPort: ptr(40002), Peers: []wgtypes.PeerConfig{{PublicKey: ka.PublicKey(),
		Endpoint: net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:40001"))}}}); err != nil {
		t.Fatal(err)
	}
	if err := a.Configure(wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: kb.PublicKey(),
		Endpoint: net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:40002"))}}}); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{a.Name(), b.Name()} {
		if err := exec.Command("ip", "link", "set", l, "up").Run(); err != nil {
			t.Fatal(err)
		}
	}
	before := time.Now().Add(-time.Second)
	if err := b.Nudge(ka.PublicKey()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		da, _ := a.Device()
		db, _ := b.Device()
		if len(da.Peers) == 1 && len(db.Peers) == 1 && da.Peers[0].LastHandshakeTime.After(before) &&
			db.Peers[0].LastHandshakeTime.After(before) && da.Peers[0].ReceiveBytes > 0 && db.Peers[0].ReceiveBytes > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no handshake: a %+v b %+v", da.Peers, db.Peers)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kernelWireGuard asks the kernel (through ip, independently of the code under test)
// whether it knows the wireguard link type.
func kernelWireGuard(t *testing.T) bool {
	name := uniqueName(t)
	out, err := exec.Command("ip", "link", "add", name, "type", "wireguard").CombinedOutput()
	if err == nil {
		exec.Command("ip", "link", "del", name).Run()
		return true
	}
	if !strings.Contains(string(out), "Unknown device type") && !strings.Contains(string(out), "not supported") {
		t.Fatalf("ip link add type wireguard: %v: %s", err, out)
	}
	return false
}

func TestAutoDetection(t *testing.T) {
	tunneltest.RequireNamespace(t)
	has := kernelWireGuard(t)
	b, err := Open(context.Background(), Options{Name: uniqueName(t), MTU: 1420, Kind: config.BackendAuto,
		SocketDirs: []string{t.TempDir()}, Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	want := config.BackendUserspace
	if has {
		want = config.BackendKernel
	}
	if b.Kind() != want {
		t.Fatalf("auto chose %s; the kernel has WireGuard: %v", b.Kind(), has)
	}
	t.Logf("kernel WireGuard: %v, auto chose %s", has, b.Kind())
}

func TestKernelBackend(t *testing.T) {
	tunneltest.RequireNamespace(t)
	name := uniqueName(t)
	b, err := Open(context.Background(), Options{Name: name, MTU: 1420, Kind: config.BackendKernel, Logger: logger(t)})
	if !kernelWireGuard(t) {
		if !errors.Is(err, ErrNoKernelWireGuard) || !strings.Contains(err.Error(), "use backend userspace or auto") {
			t.Fatalf("kernel backend without the module: %v", err)
		}
		if _, lerr := netlink.LinkByName(name); lerr == nil {
			t.Fatal("a failed kernel backend left an interface")
		}
		return
	}
	// Only where the kernel has WireGuard (not on the machines this was written on).
	if err != nil {
		t.Fatal(err)
	}
	testConfigurePath(t, b)
	b.Close()
	if _, err := netlink.LinkByName(name); err == nil {
		t.Fatal("interface still exists after Close")
	}
}

// TestWgctrlPath drives the kernel backend's wgctrl code against a userspace interface
// (wgctrl reaches it through /var/run/wireguard): configure, read back, counters.
func TestWgctrlPath(t *testing.T) {
	tunneltest.RequireNamespace(t)
	name := uniqueName(t)
	u, err := Open(context.Background(), Options{Name: name, MTU: 1420, Kind: config.BackendUserspace,
		SocketDirs: []string{DefaultSocketDir}, Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if u.Socket() != filepath.Join(DefaultSocketDir, name+".sock") {
		t.Fatalf("socket %s", u.Socket())
	}
	k, err := attachKernel(name)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	testConfigurePath(t, k)
	if k.Nudge(wgtypes.Key{}) != ErrUnsupported {
		t.Fatal("kernel Nudge")
	}
	// And `wg` itself sees it (stock wireguard-tools).
	if _, err := exec.LookPath("wg"); err == nil {
		out, err := exec.Command("wg", "show", name, "peers").CombinedOutput()
		if err != nil || len(strings.Fields(string(out))) != 1 {
			t.Fatalf("wg show: %v: %s", err, out)
		}
	}
}

func testConfigurePath(t *testing.T, b Backend) {
	t.Helper()
	priv, _ := wgtypes.GeneratePrivateKey()
	p1, _ := wgtypes.GeneratePrivateKey()
	p2, _ := wgtypes.GeneratePrivateKey()
	_, n1, _ := net.ParseCIDR("10.200.0.0/16")
	_, n2, _ := net.ParseCIDR("100.64.1.1/32")
	cfg := wgtypes.Config{PrivateKey: &priv, ListenPort: ptr(0), Peers: []wgtypes.PeerConfig{
		{PublicKey: p1.PublicKey(), Endpoint: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 11), Port: 51820},
			PersistentKeepaliveInterval: ptr(25 * time.Second), ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{*n1, *n2}},
		{PublicKey: p2.PublicKey(), Endpoint: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 12), Port: 51820}, ReplaceAllowedIPs: true},
	}}
	if err := b.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	// Move the prefixes to p2 and remove nothing: both peers stay.
	if err := b.Configure(wgtypes.Config{Peers: []wgtypes.PeerConfig{
		{PublicKey: p1.PublicKey(), UpdateOnly: true, ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{*n2}},
		{PublicKey: p2.PublicKey(), UpdateOnly: true, ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{*n1}},
	}}); err != nil {
		t.Fatal(err)
	}
	d, err := b.Device()
	if err != nil {
		t.Fatal(err)
	}
	if d.PublicKey != priv.PublicKey() || d.ListenPort == 0 || len(d.Peers) != 2 {
		t.Fatalf("%+v", d)
	}
	for _, p := range d.Peers {
		want := "10.200.0.0/16"
		if p.PublicKey == p1.PublicKey() {
			want = "100.64.1.1/32"
			if p.PersistentKeepaliveInterval != 25*time.Second || p.Endpoint.String() != "192.0.2.11:51820" {
				t.Fatalf("p1: %+v", p)
			}
		}
		if len(p.AllowedIPs) != 1 || p.AllowedIPs[0].String() != want {
			t.Fatalf("peer %s allowed %v, want %s", p.PublicKey, p.AllowedIPs, want)
		}
	}
	// Remove a peer.
	if err := b.Configure(wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: p2.PublicKey(), Remove: true}}}); err != nil {
		t.Fatal(err)
	}
	if d, _ := b.Device(); len(d.Peers) != 1 {
		t.Fatalf("peer not removed: %d peers", len(d.Peers))
	}
}
