package netio

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sitelink/sitelink/plugins/vrrp/packet"
	"github.com/sitelink/sitelink/testenv"
)

// pair links two namespaces a:eth0 (10.9.0.1, fd09::1) and b:eth0 (10.9.0.2, fd09::2).
func pair(t *testing.T) (*testenv.Host, *testenv.Host) {
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
	for _, x := range []struct {
		h    *testenv.Host
		cidr string
	}{{a, "10.9.0.1/24"}, {b, "10.9.0.2/24"}, {a, "fd09::1/64"}, {b, "fd09::2/64"}} {
		if err := x.h.AddAddr("eth0", x.cidr); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

func open(t *testing.T, h *testenv.Host, ipv6 bool, peers []netip.Addr) *Conn {
	t.Helper()
	var c *Conn
	if err := h.Do(func() (err error) { c, err = Open("eth0", ipv6, peers); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// receive reads until an advert arrives (or fails the test after 3 s).
func receive(t *testing.T, c *Conn) Received {
	t.Helper()
	type res struct {
		r   Received
		err error
	}
	ch := make(chan res, 1)
	go func() {
		buf, oob := make([]byte, 2048), make([]byte, OOBSize)
		r, err := c.Receive(buf, oob)
		ch <- res{r, err}
	}()
	select {
	case x := <-ch:
		if x.err != nil {
			t.Fatalf("receive: %v", x.err)
		}
		return x.r
	case <-time.After(3 * time.Second):
		t.Fatal("no advertisement received")
	}
	return Received{}
}

func linkLocal(t *testing.T, h *testenv.Host) netip.Addr {
	t.Helper()
	var ll netip.Addr
	testenv.Eventually(t, 5*time.Second, "a usable link-local address on "+h.Name(), func() (bool, error) {
		out, err := h.Run(t.Context(), "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link")
		if err != nil {
			return false, err
		}
		for _, f := range strings.Fields(out) {
			if p, err := netip.ParsePrefix(f); err == nil && p.Addr().IsLinkLocalUnicast() {
				ll = p.Addr()
			}
		}
		return ll.IsValid() && !strings.Contains(out, "tentative"), nil
	})
	return ll
}

func TestMulticastIPv4(t *testing.T) {
	a, b := pair(t)
	ca := open(t, a, false, nil)
	cb := open(t, b, false, nil)
	adv := packet.Advert{VRID: 9, Priority: 120, Interval: 100, Addrs: []netip.Addr{netip.MustParseAddr("10.9.0.50")}}
	src := netip.MustParseAddr("10.9.0.1")
	done := make(chan Received, 1)
	go func() { done <- receive(t, cb) }()
	time.Sleep(50 * time.Millisecond)
	if err := ca.Send(&adv, src); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.Src != src || r.Dst != packet.GroupIPv4 || r.Advert.VRID != 9 || r.Advert.Priority != 120 ||
		!slices.Equal(r.Advert.Addrs, adv.Addrs) {
		t.Fatalf("received %+v", r)
	}
}

func TestUnicastIPv4(t *testing.T) {
	a, b := pair(t)
	peerB := netip.MustParseAddr("10.9.0.2")
	ca := open(t, a, false, []netip.Addr{peerB})
	cb := open(t, b, false, []netip.Addr{netip.MustParseAddr("10.9.0.1")})
	done := make(chan Received, 1)
	go func() { done <- receive(t, cb) }()
	time.Sleep(50 * time.Millisecond)
	adv := packet.Advert{VRID: 9, Priority: 0, Interval: 100, Addrs: []netip.Addr{netip.MustParseAddr("10.9.0.50")}}
	if err := ca.Send(&adv, netip.MustParseAddr("10.9.0.1")); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.Dst != peerB || r.Advert.Priority != 0 {
		t.Fatalf("received %+v", r)
	}
}

func TestMulticastIPv6(t *testing.T) {
	a, b := pair(t)
	src := linkLocal(t, a)
	linkLocal(t, b)
	ca := open(t, a, true, nil)
	cb := open(t, b, true, nil)
	adv := packet.Advert{VRID: 9, Priority: 77, Interval: 5, Addrs: []netip.Addr{netip.MustParseAddr("fd09::50")}}
	done := make(chan Received, 1)
	go func() { done <- receive(t, cb) }()
	time.Sleep(50 * time.Millisecond)
	if err := ca.Send(&adv, src); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.Src != src || r.Dst != packet.GroupIPv6 || r.Advert.Priority != 77 || !slices.Equal(r.Advert.Addrs, adv.Addrs) {
		t.Fatalf("received %+v", r)
	}
}

func TestCloseUnblocksReceive(t *testing.T) {
	a, _ := pair(t)
	c := open(t, a, false, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Receive(make([]byte, 2048), make([]byte, OOBSize))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("receive on a closed socket returned no error")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock Receive")
	}
}
