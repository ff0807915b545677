package snat_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sitelink/sitelink/testenv"
)

// topology is client — connector — {app1, app2, app3}:
//
//	client  c0 100.64.0.2/24 fd7a:115c:a1e0::2/64   (a client's virtual IP; the veth stands in for the tunnel)
//	conn    cl0 100.64.0.1/24 fd7a:115c:a1e0::1/64
//	        ap1 10.1.0.1/24 fd00:1::1/64  — app1 a0 10.1.0.10 fd00:1::10 (no route back to clients)
//	        ap2 10.2.0.1/24 + 10.2.0.5    — app2 a0 10.2.0.10             (no route back to clients)
//	        ap3 10.3.0.1/24               — router r0 10.3.0.254, r1 10.30.0.1 — app3 a0 10.30.0.10
//
// app3 is the SNAT-off case: its default route goes to the site's router, which routes
// the client range back to the connector (100.64.0.0/16 via 10.3.0.1).
//
// Every app runs a TCP server on ports 8080 and 9090 that logs the peer address and
// tells it to the client.
type topology struct {
	env                            *testenv.Env
	client, conn, app1, app2, app3 *testenv.Host
	router                         *testenv.Host
	servers                        map[string]*server // by "app1:8080"
}

func newTopology(t *testing.T) *topology {
	t.Helper()
	testenv.Require(t, "ip", "nft", "conntrack")
	env := testenv.New(t)
	tp := &topology{env: env, servers: map[string]*server{}}
	mk := func(name string) *testenv.Host {
		h, err := env.Host(name)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	tp.client, tp.conn, tp.app1, tp.app2, tp.app3 = mk("client"), mk("conn"), mk("app1"), mk("app2"), mk("app3")
	tp.router = mk("router")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(env.Link(tp.client, "c0", tp.conn, "cl0"))
	must(env.Link(tp.conn, "ap1", tp.app1, "a0"))
	must(env.Link(tp.conn, "ap2", tp.app2, "a0"))
	must(env.Link(tp.conn, "ap3", tp.router, "r0"))
	must(env.Link(tp.router, "r1", tp.app3, "a0"))
	must(tp.client.AddAddr("c0", "100.64.0.2/24"))
	must(tp.client.AddAddr("c0", "fd7a:115c:a1e0::2/64"))
	must(tp.client.AddRoute("default", "100.64.0.1"))
	must(tp.client.AddRoute("::/0", "fd7a:115c:a1e0::1"))
	must(tp.conn.AddAddr("cl0", "100.64.0.1/24"))
	must(tp.conn.AddAddr("cl0", "fd7a:115c:a1e0::1/64"))
	must(tp.conn.AddAddr("ap1", "10.1.0.1/24"))
	must(tp.conn.AddAddr("ap1", "fd00:1::1/64"))
	must(tp.conn.AddAddr("ap2", "10.2.0.1/24"))
	must(tp.conn.AddAddr("ap2", "10.2.0.5/24"))
	must(tp.conn.AddAddr("ap3", "10.3.0.1/24"))
	must(tp.app1.AddAddr("a0", "10.1.0.10/24"))
	must(tp.app1.AddAddr("a0", "fd00:1::10/64"))
	must(tp.app2.AddAddr("a0", "10.2.0.10/24"))
	must(tp.conn.AddRoute("10.30.0.0/24", "10.3.0.254"))
	must(tp.router.AddAddr("r0", "10.3.0.254/24"))
	must(tp.router.AddAddr("r1", "10.30.0.1/24"))
	must(tp.router.SetSysctl("net.ipv4.ip_forward", "1"))
	must(tp.router.AddRoute("100.64.0.0/16", "10.3.0.1"))
	must(tp.app3.AddAddr("a0", "10.30.0.10/24"))
	must(tp.app3.AddRoute("default", "10.30.0.1"))
	for _, h := range []*testenv.Host{tp.app1, tp.app2, tp.app3} {
		for _, port := range []int{8080, 9090} {
			key := fmt.Sprintf("%s:%d", h.Name(), port)
			tp.servers[key] = startServer(t, h, port)
		}
	}
	// The connector forwards nothing until the plugin enables it.
	if v, err := tp.conn.Sysctl("net.ipv4.conf.cl0.forwarding"); err != nil || strings.TrimSpace(v) != "0" {
		t.Fatalf("fresh namespace has cl0 forwarding %q (%v), want 0", v, err)
	}
	return tp
}

// server is a TCP server in an app namespace that logs each peer's address and
// writes it back to the peer.
type server struct {
	mu    sync.Mutex
	peers []string
}

func startServer(t *testing.T, h *testenv.Host, port int) *server {
	t.Helper()
	var ln net.Listener
	err := h.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &server{}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peer := c.RemoteAddr().(*net.TCPAddr).IP.String()
			s.mu.Lock()
			s.peers = append(s.peers, peer)
			s.mu.Unlock()
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				fmt.Fprintf(c, "peer=%s\n", peer)
				// Wait for the client to close, so the client never sees a reset.
				_, _ = bufio.NewReader(c).ReadString('\n')
			}()
		}
	}()
	return s
}

func (s *server) log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.peers...)
}

// dial connects from the client namespace and returns the peer address the server saw.
func dial(h *testenv.Host, addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	err := h.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read from %s: %w", addr, err)
	}
	return strings.TrimPrefix(strings.TrimSpace(line), "peer="), nil
}

func mustDial(t *testing.T, h *testenv.Host, addr string) string {
	t.Helper()
	peer, err := dial(h, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	return peer
}

func mustNotDial(t *testing.T, h *testenv.Host, addr string) {
	t.Helper()
	if peer, err := dial(h, addr, 700*time.Millisecond); err == nil {
		t.Fatalf("connect to %s succeeded (server saw %s), want it dropped", addr, peer)
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
