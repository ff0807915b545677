package cluster

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// node is one proxy of a test cluster with counters the test sets.
type node struct {
	name    string
	addr    string
	c       *Cluster
	clients atomic.Int64
	online  atomic.Bool
}

func newNode(t *testing.T, name, addr string) *node {
	n := &node{name: name, addr: addr}
	n.online.Store(true)
	n.c = New(func() Status {
		return Status{Node: n.name, Online: n.online.Load(), Role: "MASTER", ClientsConnected: int(n.clients.Load()),
			ActiveConnections: 2 * n.clients.Load()}
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(n.c.Close)
	return n
}

func member(ms []Member, node string) (Member, bool) {
	for _, m := range ms {
		if m.Node == node {
			return m, true
		}
	}
	return Member{}, false
}

func waitMembers(t *testing.T, n *node, what string, cond func([]Member) bool) []Member {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n.c.Refresh(ctx)
		cancel()
		ms := n.c.Members()
		if cond(ms) {
			return ms
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s: members %+v", n.name, what, ms)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestThreeProxiesAndOneGoesDown(t *testing.T) {
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	names := []string{"px-a", "px-b", "px-c"}
	var nodes []*node
	for i := range 3 {
		n := newNode(t, names[i], addrs[i])
		n.clients.Store(int64(10 * (i + 1)))
		var peers []string
		for j, a := range addrs {
			if j != i {
				peers = append(peers, a)
			}
		}
		if err := n.c.Apply(Options{Node: n.name, Listen: addrs[i], Peers: peers, Token: "s3cret",
			Interval: 200 * time.Millisecond, Timeout: time.Second}); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	nodes[2].online.Store(false) // a stopped backup: reachable, not online

	ms := waitMembers(t, nodes[0], "all reachable", func(ms []Member) bool {
		for _, m := range ms {
			if !m.Reachable {
				return false
			}
		}
		return len(ms) == 3
	})
	if !ms[0].Self || ms[0].Node != "px-a" || ms[0].Address != addrs[0] || *ms[0].Clients != 10 {
		t.Fatalf("self row %+v", ms[0])
	}
	b, _ := member(ms, "px-b")
	if !b.Online || *b.Clients != 20 || *b.Connections != 40 || b.Role != "MASTER" || b.LastSeen == nil || b.Self {
		t.Fatalf("px-b row %+v", b)
	}
	c, _ := member(ms, "px-c")
	if c.Online || !c.Reachable || *c.Clients != 30 {
		t.Fatalf("px-c row (stopped proxy, reachable) %+v", c)
	}

	// Counts follow the peers.
	nodes[1].clients.Store(7)
	waitMembers(t, nodes[0], "px-b's new count", func(ms []Member) bool {
		b, ok := member(ms, "px-b")
		return ok && b.Clients != nil && *b.Clients == 7
	})

	// px-b goes down: shown unreachable and offline, with its last-seen time; the rest of
	// the view is intact.
	nodes[1].c.Close()
	seen := time.Now()
	ms = waitMembers(t, nodes[0], "px-b unreachable", func(ms []Member) bool {
		return len(ms) == 3 && !ms[1].Reachable && ms[1].Error != ""
	})
	b = ms[1]
	if b.Node != "px-b" || b.Online || b.Clients != nil || b.Connections != nil || b.LastSeen == nil || b.LastSeen.After(seen) {
		t.Fatalf("down peer row %+v", b)
	}
	if c, _ := member(ms, "px-c"); !c.Reachable || *c.Clients != 30 {
		t.Fatalf("px-c row after px-b went down %+v", c)
	}
	// The background poller (not only Refresh) notices too: px-c's own view.
	waitFor(t, "px-c's poller sees px-b down", func() bool {
		b, ok := member(nodes[2].c.Members(), "px-b")
		return ok && !b.Reachable
	})

	// px-b comes back on the same address.
	nb := newNode(t, "px-b", addrs[1])
	nb.clients.Store(5)
	if err := nb.c.Apply(Options{Node: "px-b", Listen: addrs[1], Peers: []string{addrs[0], addrs[2]}, Token: "s3cret"}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, nodes[0], "px-b back", func(ms []Member) bool {
		return ms[1].Reachable && ms[1].Clients != nil && *ms[1].Clients == 5
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func get(t *testing.T, from, url, auth string) int {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	cl := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestEndpointOnlyForPeersAndAllowed(t *testing.T) {
	n := newNode(t, "px", freeAddr(t))
	// The peer is 127.0.0.1 (not listening: polls fail, which must not matter here).
	if err := n.c.Apply(Options{Listen: n.addr, Peers: []string{"127.0.0.1:1"}, Token: "tok",
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.8/30")}}); err != nil {
		t.Fatal(err)
	}
	url := "http://" + n.c.Addr() + StatusPath
	for _, tc := range []struct {
		from, auth string
		want       int
	}{
		{"127.0.0.1", "Bearer tok", 200},  // a peer's address
		{"127.0.0.9", "Bearer tok", 200},  // an allowed prefix
		{"127.0.0.5", "Bearer tok", 403},  // anyone else
		{"127.0.0.1", "Bearer nope", 403}, // wrong token
		{"127.0.0.1", "", 403},            // no token
	} {
		if got := get(t, tc.from, url, tc.auth); got != tc.want {
			t.Errorf("GET from %s auth %q: %d, want %d", tc.from, tc.auth, got, tc.want)
		}
	}
	if got := get(t, "127.0.0.1", "http://"+n.c.Addr()+"/other", "Bearer tok"); got != 404 {
		t.Errorf("other path: %d", got)
	}
	// The unreachable peer is in the view, offline, with the error.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.c.Refresh(ctx)
	ms := n.c.Members()
	if len(ms) != 2 || ms[1].Reachable || ms[1].Online || ms[1].Error == "" || ms[1].LastSeen != nil || ms[1].Node != "127.0.0.1:1" {
		t.Fatalf("members %+v", ms)
	}
	// Apply with the same options is a no-op; without a listen address the endpoint closes.
	addr := n.c.Addr()
	if err := n.c.Apply(Options{Listen: n.addr, Peers: []string{"127.0.0.1:1"}, Token: "tok",
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.8/30")}}); err != nil || n.c.Addr() != addr {
		t.Fatalf("re-apply: %v, addr %q -> %q", err, addr, n.c.Addr())
	}
	if err := n.c.Apply(Options{}); err != nil || n.c.Addr() != "" {
		t.Fatalf("apply without listen: %v, addr %q", err, n.c.Addr())
	}
	if ms := n.c.Members(); len(ms) != 1 || !ms[0].Self {
		t.Fatalf("members of a lone proxy %+v", ms)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatalf("endpoint %s still open", addr)
	}
}
