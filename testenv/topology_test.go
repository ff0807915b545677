package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ping pings addr once from h.
func ping(ctx context.Context, h *Host, addr string) error {
	_, err := h.Run(ctx, "ping", "-c", "1", "-W", "2", addr)
	return err
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustHost(t *testing.T, e *Env, name string) *Host {
	t.Helper()
	h, err := e.Host(name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// inHostNamespace reports whether an interface called name exists in the
// test's own (the host's) network namespace.
func inHostNamespace(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

func TestLinkTwoHostsPing(t *testing.T) {
	Require(t, "ip", "ping")
	e := New(t)
	ctx := testCtx(t, 60*time.Second)
	a, b := mustHost(t, e, "a"), mustHost(t, e, "b")
	if !strings.HasPrefix(a.NSName(), Prefix) || a.NSPath() != "/run/netns/"+a.NSName() || a.Name() != "a" {
		t.Fatalf("names: %s %s %s", a.Name(), a.NSName(), a.NSPath())
	}
	if _, err := os.Stat(a.NSPath()); err != nil {
		t.Fatalf("namespace file: %v", err)
	}
	must(t, e.Link(a, "sltLnkA0", b, "sltLnkB0"))
	must(t, a.AddAddr("sltLnkA0", "10.9.0.1/24"))
	must(t, b.AddAddr("sltLnkB0", "10.9.0.2/24"))
	must(t, a.AddAddr("sltLnkA0", "fd09::1/64"))
	must(t, b.AddAddr("sltLnkB0", "fd09::2/64"))

	for _, name := range []string{"sltLnkA0", "sltLnkB0"} {
		if inHostNamespace(name) {
			t.Fatalf("interface %s appeared in the host's namespace", name)
		}
	}
	if out, err := b.IP(ctx, "-br", "addr", "show", "dev", "sltLnkB0"); err != nil || !strings.Contains(out, "10.9.0.2/24") {
		t.Fatalf("b's address: %q, %v", out, err)
	}
	must(t, ping(ctx, a, "10.9.0.2"))
	must(t, ping(ctx, b, "10.9.0.1"))
	must(t, ping(ctx, a, "fd09::2"))

	// Errors name what failed.
	if err := e.Link(a, "sltLnkA0", b, "other0"); err == nil || !strings.Contains(err.Error(), "sltLnkA0") {
		t.Fatalf("duplicate interface: err = %v", err)
	}
	if err := e.Link(a, "a-name-that-is-too-long", b, "x"); err == nil {
		t.Fatal("a 23-byte interface name was accepted")
	}
	if _, err := e.Host("a"); err == nil {
		t.Fatal("a second host called a was accepted")
	}
	if _, err := e.Host("-bad"); err == nil {
		t.Fatal("host name -bad was accepted")
	}
}

func TestSwitchThreeHosts(t *testing.T) {
	Require(t, "ip", "ping")
	e := New(t)
	ctx := testCtx(t, 60*time.Second)
	sw, err := e.Switch("lan")
	must(t, err)
	var hosts []*Host
	for i := 1; i <= 3; i++ {
		h := mustHost(t, e, fmt.Sprintf("h%d", i))
		must(t, e.Plug(h, "eth0", sw))
		must(t, h.AddAddr("eth0", fmt.Sprintf("10.8.0.%d/24", i)))
		hosts = append(hosts, h)
	}
	for _, h := range hosts {
		port, ok := sw.Port(h, "eth0")
		if !ok {
			t.Fatalf("no port for %s", h.Name())
		}
		if inHostNamespace(port) {
			t.Fatalf("switch port %s appeared in the host's namespace", port)
		}
		out, err := sw.IP(ctx, "-d", "link", "show", "dev", port)
		if err != nil || !strings.Contains(out, "master "+sw.Bridge()) {
			t.Fatalf("port %s not in the bridge: %q, %v", port, out, err)
		}
	}
	for i, from := range hosts {
		for j := range hosts {
			if i != j {
				must(t, ping(ctx, from, fmt.Sprintf("10.8.0.%d", j+1)))
			}
		}
	}
	// Cutting one host's port isolates it, and only it.
	port, _ := sw.Port(hosts[2], "eth0")
	must(t, sw.LinkDown(port))
	if err := ping(ctx, hosts[0], "10.8.0.3"); err == nil {
		t.Fatal("ping crossed a port that is down")
	}
	must(t, ping(ctx, hosts[0], "10.8.0.2"))
	must(t, sw.LinkUp(port))
	Eventually(t, 20*time.Second, "h1 reaching h3 again", func() (bool, error) {
		return true, ping(ctx, hosts[0], "10.8.0.3")
	})
}

func TestRouterAndLinkDown(t *testing.T) {
	Require(t, "ip", "ping")
	e := New(t)
	ctx := testCtx(t, 60*time.Second)
	hostForward, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	must(t, err)

	a, r, b := mustHost(t, e, "a"), mustHost(t, e, "r"), mustHost(t, e, "b")
	must(t, e.Link(a, "eth0", r, "to-a"))
	must(t, e.Link(b, "eth0", r, "to-b"))
	must(t, a.AddAddr("eth0", "10.1.0.2/24"))
	must(t, r.AddAddr("to-a", "10.1.0.1/24"))
	must(t, r.AddAddr("to-b", "10.2.0.1/24"))
	must(t, b.AddAddr("eth0", "10.2.0.2/24"))
	must(t, a.AddAddr("eth0", "fd01::2/64"))
	must(t, r.AddAddr("to-a", "fd01::1/64"))
	must(t, r.AddAddr("to-b", "fd02::1/64"))
	must(t, b.AddAddr("eth0", "fd02::2/64"))
	must(t, a.AddRoute("default", "10.1.0.1"))
	must(t, b.AddRoute("10.1.0.0/24", "10.2.0.1"))
	must(t, a.AddRoute("default", "fd01::1"))
	must(t, b.AddRoute("fd01::/64", "fd02::1"))

	if err := ping(ctx, a, "10.2.0.2"); err == nil {
		t.Fatal("packets crossed the router before forwarding was on")
	}
	must(t, r.SetSysctl("net.ipv4.ip_forward", "1"))
	must(t, r.SetSysctl("net.ipv6.conf.all.forwarding", "1"))
	if v, err := r.Sysctl("net.ipv4.ip_forward"); err != nil || v != "1" {
		t.Fatalf("r ip_forward = %q, %v", v, err)
	}
	if v, err := a.Sysctl("net.ipv4.ip_forward"); err != nil || v != "0" {
		t.Fatalf("a ip_forward = %q, %v: sysctl leaked across namespaces", v, err)
	}
	out, err := r.Run(ctx, "cat", "/proc/sys/net/ipv4/ip_forward")
	if err != nil || strings.TrimSpace(out) != "1" {
		t.Fatalf("ip_forward seen by a process in r = %q, %v", out, err)
	}
	if now, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); string(now) != string(hostForward) {
		t.Fatalf("the host's ip_forward changed from %q to %q", hostForward, now)
	}

	must(t, ping(ctx, a, "10.2.0.2"))
	must(t, ping(ctx, a, "fd02::2"))
	must(t, ping(ctx, b, "10.1.0.2"))

	must(t, r.LinkDown("to-b"))
	if err := ping(ctx, a, "10.2.0.2"); err == nil {
		t.Fatal("ping crossed a link that is down")
	}
	must(t, r.LinkUp("to-b"))
	Eventually(t, 20*time.Second, "a reaching b after the link is up again", func() (bool, error) {
		return true, ping(ctx, a, "10.2.0.2")
	})
}

// nsInode returns the inode of the network namespace at path.
func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

func TestDoRunsInNamespace(t *testing.T) {
	Require(t, "ip")
	e := New(t)
	a, b := mustHost(t, e, "a"), mustHost(t, e, "b")
	must(t, e.Link(a, "eth0", b, "eth0"))
	must(t, a.AddAddr("eth0", "10.7.0.1/24"))
	must(t, b.AddAddr("eth0", "10.7.0.2/24"))

	before := nsInode(t, "/proc/thread-self/ns/net")
	var inside uint64
	must(t, a.Do(func() error {
		var st syscall.Stat_t
		if err := syscall.Stat("/proc/thread-self/ns/net", &st); err != nil {
			return err
		}
		inside = st.Ino
		return nil
	}))
	if inside != nsInode(t, a.NSPath()) {
		t.Fatalf("Do ran in namespace %d, want a's %d", inside, nsInode(t, a.NSPath()))
	}
	if after := nsInode(t, "/proc/thread-self/ns/net"); after != before || after == inside {
		t.Fatalf("caller's namespace %d -> %d (a is %d)", before, after, inside)
	}

	// A listener made inside Do stays in the namespace after Do returns.
	var ln net.Listener
	must(t, a.Do(func() (err error) {
		ln, err = net.Listen("tcp", "10.7.0.1:0")
		return err
	}))
	defer ln.Close()
	accepted := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- err.Error()
			return
		}
		defer c.Close()
		accepted <- c.RemoteAddr().(*net.TCPAddr).IP.String()
	}()
	must(t, b.Do(func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}))
	select {
	case from := <-accepted:
		if from != "10.7.0.2" {
			t.Fatalf("accepted from %s, want 10.7.0.2", from)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
	}

	// Errors and panics in fn come back as errors.
	if err := a.Do(func() error { return fmt.Errorf("inner failure") }); err == nil || err.Error() != "inner failure" {
		t.Fatalf("Do error = %v", err)
	}
	if err := a.Do(func() error { panic("boom") }); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Do panic = %v", err)
	}
	if after := nsInode(t, "/proc/thread-self/ns/net"); after != before {
		t.Fatal("caller's namespace changed after a panic in Do")
	}
}
