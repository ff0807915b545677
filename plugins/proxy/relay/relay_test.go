package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sitelink/sitelink/plugins/sdk"
)

// upstream is a test management center: it echoes, or records what it got.
type upstream struct {
	ln      net.Listener
	addr    string
	conns   atomic.Int64 // connections that sent data (health checks do not)
	handler func(c net.Conn)
}

func newUpstream(t *testing.T, handler func(c net.Conn)) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{ln: ln, addr: ln.Addr().String(), handler: handler}
	if u.handler == nil {
		u.handler = func(c net.Conn) { _, _ = io.Copy(c, c); _ = c.(*peeked).CloseWrite() }
	}
	handler = u.handler
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := br.Peek(1); err != nil {
					return // a health check
				}
				u.conns.Add(1)
				handler(&peeked{c, br})
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return u
}

// peeked is a connection whose first bytes were read into br.
type peeked struct {
	net.Conn // the interface: no ReadFrom/WriteTo that would bypass br
	br       *bufio.Reader
}

func (p *peeked) Read(b []byte) (int, error) { return p.br.Read(b) }
func (p *peeked) CloseWrite() error          { return p.Conn.(*net.TCPConn).CloseWrite() }

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type refusal struct{ listener, client, reason, detail string }

type harness struct {
	s        *Server
	mu       sync.Mutex
	refusals []refusal
	appended []sdk.LogRecord
	append   func(ctx context.Context, r []sdk.LogRecord) (uint64, uint64, error)
}

func start(t *testing.T, cfgJSON string) *harness {
	t.Helper()
	h := &harness{}
	h.s = New(Hooks{Log: quietLog(),
		Refused: func(l string, a netip.Addr, reason, detail string) {
			h.mu.Lock()
			h.refusals = append(h.refusals, refusal{l, a.String(), reason, detail})
			h.mu.Unlock()
		},
		Append: func(ctx context.Context, r []sdk.LogRecord) (uint64, uint64, error) {
			if h.append != nil {
				return h.append(ctx, r)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			h.appended = append(h.appended, r...)
			return 1, uint64(len(h.appended)), nil
		}})
	cfg, err := ParseConfig(json.RawMessage(cfgJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if err := h.s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.s.Stop(ctx)
	})
	return h
}

func (h *harness) apply(t *testing.T, cfgJSON string) {
	t.Helper()
	cfg, err := ParseConfig(json.RawMessage(cfgJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) reasons() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.refusals {
		out = append(out, r.reason)
	}
	return out
}

// waitReason waits until a refusal with reason was reported.
func (h *harness) waitReason(t *testing.T, reason string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range h.reasons() {
			if r == reason {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no refusal %q (got %v)", reason, h.reasons())
}

// dialFrom connects from a local loopback address (127.0.0.x) to addr.
func dialFrom(t *testing.T, from, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// closedSoon says whether the proxy closes c without sending anything but maybe a
// refusal (read returns EOF/reset within the timeout).
func closedSoon(c net.Conn) (string, bool) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err == nil || !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func tcpConfig(up ...string) string {
	q := make([]string, len(up))
	for i, u := range up {
		q[i] = fmt.Sprintf("%q", u)
	}
	return fmt.Sprintf(`{"listeners":[{"name":"t","address":"127.0.0.1:0","mode":"tcp","upstream":"mc"}],
		"upstreams":{"mc":{"servers":[%s],"health_interval":"100ms","connect_timeout":"500ms"}}}`, strings.Join(q, ","))
}

func TestRelayBothWaysAndHalfClose(t *testing.T) {
	// The upstream reads everything, then answers with its length and a 1 MiB payload.
	payload := make([]byte, 1<<20)
	_, _ = rand.Read(payload)
	up := newUpstream(t, func(c net.Conn) {
		b, _ := io.ReadAll(c) // until the client's half-close arrives
		fmt.Fprintf(c, "%d\n", len(b))
		_, _ = c.Write(payload)
		_ = c.(*peeked).CloseWrite()
	})
	h := start(t, tcpConfig(up.addr))
	c := dialFrom(t, "", h.s.Addr("t"))
	sent := make([]byte, 3<<20+17)
	_, _ = rand.Read(sent)
	if _, err := c.Write(sent); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d\n", len(sent))
	if !bytes.HasPrefix(got, []byte(want)) || !bytes.Equal(got[len(want):], payload) {
		t.Fatalf("got %d bytes starting %q, want %q + 1 MiB payload", len(got), got[:min(len(got), 16)], want)
	}
	// The registry saw the bytes both ways.
	waitFor(t, "client done", func() bool { return h.s.Clients.ActiveConns() == 0 })
	l := h.s.Clients.List("addr", 0)
	if len(l) != 1 || l[0].BytesIn != uint64(len(sent)) || l[0].BytesOut != uint64(len(got)) || l[0].Total != 1 {
		t.Fatalf("registry %+v", l)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func echoOnce(t *testing.T, addr, from, msg string) {
	t.Helper()
	c := dialFrom(t, from, addr)
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo %q: got %q, %v", msg, buf, err)
	}
}

func TestFailoverLeastConnAndBackup(t *testing.T) {
	a := newUpstream(t, nil)
	b := newUpstream(t, nil)
	backup := newUpstream(t, nil)
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	h := start(t, fmt.Sprintf(`{"listeners":[{"name":"t","address":"127.0.0.1:0","mode":"tcp","upstream":"mc"}],
		"upstreams":{"mc":{"servers":[%q,%q,%q],"backup":[%q],"health_interval":"100ms","connect_timeout":"500ms"}}}`,
		deadAddr, a.addr, b.addr, backup.addr))
	// Hold connections open: least-connections spreads them over a and b; the dead one
	// is failed over at once.
	var held []*net.TCPConn
	for i := range 6 {
		c := dialFrom(t, "", h.s.Addr("t"))
		msg := fmt.Sprintf("hello %d", i)
		c.Write([]byte(msg))
		buf := make([]byte, len(msg))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		held = append(held, c)
	}
	if a.conns.Load() != 3 || b.conns.Load() != 3 || backup.conns.Load() != 0 {
		t.Fatalf("spread a=%d b=%d backup=%d, want 3/3/0", a.conns.Load(), b.conns.Load(), backup.conns.Load())
	}
	// Both primaries die: the backup takes over.
	a.ln.Close()
	b.ln.Close()
	echoOnce(t, h.s.Addr("t"), "", "to the backup")
	if backup.conns.Load() != 1 {
		t.Fatalf("backup got %d connections", backup.conns.Load())
	}
	waitFor(t, "health checks mark primaries down", func() bool {
		for _, u := range h.s.Upstreams() {
			if !u.Backup && u.Healthy {
				return false
			}
		}
		return true
	})
	for _, c := range held {
		c.Close()
	}
}

func TestPerClientBandwidth(t *testing.T) {
	if testing.Short() {
		t.Skip("takes seconds")
	}
	up := newUpstream(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	h := start(t, tcpConfig(up.addr))
	const perClient = 2_000_000 // bytes/s
	h.apply(t, strings.Replace(tcpConfig(up.addr), `"upstreams"`, `"limits":{"client_bandwidth":"16Mbit"},"upstreams"`, 1))
	// Three clients, the first with two connections: each client gets its limit in total.
	type flow struct {
		from string
		n    atomic.Int64
	}
	flows := []*flow{{from: "127.0.0.2"}, {from: "127.0.0.2"}, {from: "127.0.0.3"}, {from: "127.0.0.4"}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	buf := make([]byte, 64<<10)
	for _, f := range flows {
		c := dialFrom(t, f.from, h.s.Addr("t"))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				n, _ := c.Write(buf)
				f.n.Add(int64(n))
			}
		}()
	}
	// Measure what reached the proxy's clients registry over 3 s after a warm-up.
	time.Sleep(500 * time.Millisecond)
	before := map[string]uint64{}
	for _, c := range h.s.Clients.List("addr", 0) {
		before[c.Addr] = c.BytesIn
	}
	t0 := time.Now()
	time.Sleep(3 * time.Second)
	el := time.Since(t0).Seconds()
	after := h.s.Clients.List("addr", 0)
	cancel()
	wg.Wait()
	for _, c := range after {
		rate := float64(c.BytesIn-before[c.Addr]) / el
		if rate < 0.9*perClient || rate > 1.1*perClient {
			t.Errorf("client %s: %.0f B/s, want %d ±10%%", c.Addr, rate, perClient)
		} else {
			t.Logf("client %s: %.0f B/s (limit %d)", c.Addr, rate, perClient)
		}
	}
	if len(after) != 3 {
		t.Fatalf("%d clients", len(after))
	}
}

func TestLiveLimitChangeKeepsConnection(t *testing.T) {
	up := newUpstream(t, nil)
	cfg := tcpConfig(up.addr)
	h := start(t, strings.Replace(cfg, `"upstreams"`, `"limits":{"client_bandwidth":"80Kbit"},"upstreams"`, 1))
	c := dialFrom(t, "", h.s.Addr("t"))
	msg := bytes.Repeat([]byte("x"), 100_000) // 10 s at 10 KB/s
	go c.Write(msg)
	time.Sleep(200 * time.Millisecond)
	h.apply(t, strings.Replace(cfg, `"upstreams"`, `"limits":{"client_bandwidth":"unlimited"},"upstreams"`, 1))
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("after lifting the limit the transfer did not finish on the same connection: %v", err)
	}
}

func TestConnectionLimits(t *testing.T) {
	up := newUpstream(t, nil)
	cfg := strings.Replace(tcpConfig(up.addr), `"upstreams"`, `"limits":{"client_max_conns":2,"max_conns":3},"upstreams"`, 1)
	h := start(t, cfg)
	addr := h.s.Addr("t")
	var held []*net.TCPConn
	for range 2 {
		c := dialFrom(t, "127.0.0.2", addr)
		c.Write([]byte("x"))
		c.Read(make([]byte, 1))
		held = append(held, c)
	}
	c := dialFrom(t, "127.0.0.2", addr)
	if _, closed := closedSoon(c); !closed {
		t.Fatal("third connection of one client not refused")
	}
	h.waitReason(t, "client_conns")
	c3 := dialFrom(t, "127.0.0.3", addr)
	c3.Write([]byte("x"))
	c3.Read(make([]byte, 1))
	c4 := dialFrom(t, "127.0.0.4", addr)
	if _, closed := closedSoon(c4); !closed {
		t.Fatal("fourth connection in total not refused")
	}
	h.waitReason(t, ReasonTotalConns)
	// Rate: 1 new connection per second per client.
	h.apply(t, strings.Replace(tcpConfig(up.addr), `"upstreams"`, `"limits":{"client_conn_rate":1},"upstreams"`, 1))
	echoOnce(t, addr, "127.0.0.5", "a")
	c5 := dialFrom(t, "127.0.0.5", addr)
	if _, closed := closedSoon(c5); !closed {
		t.Fatal("second connection within a second not refused")
	}
	h.waitReason(t, "client_rate")
	for _, c := range held {
		c.Close()
	}
}

func TestAccessControl(t *testing.T) {
	up := newUpstream(t, nil)
	h := start(t, fmt.Sprintf(`{"listeners":[
		{"name":"t","address":"127.0.0.1:0","mode":"tcp","upstream":"mc","allow":["127.0.0.2","127.0.1.0/24"]},
		{"name":"h","address":"127.0.0.1:0","mode":"http","upstream":"mc",
		 "agents_only":{"paths":["/agent/"],"trusted":["127.0.0.9"]}}],
		"upstreams":{"mc":{"servers":[%q]}}}`, up.addr))
	echoOnce(t, h.s.Addr("t"), "127.0.0.2", "allowed")
	echoOnce(t, h.s.Addr("t"), "127.0.1.7", "allowed")
	if _, closed := closedSoon(dialFrom(t, "127.0.0.3", h.s.Addr("t"))); !closed {
		t.Fatal("source outside the allowed prefixes relayed")
	}
	h.waitReason(t, "source")
	agent := "POST /agent/v1/events HTTP/1.1\r\nHost: mc\r\nContent-Length: 0\r\n\r\n"
	console := "GET /console/ HTTP/1.1\r\nHost: mc\r\n\r\n"
	echoOnce(t, h.s.Addr("h"), "127.0.0.3", agent)
	echoOnce(t, h.s.Addr("h"), "127.0.0.9", console) // trusted
	c := dialFrom(t, "127.0.0.3", h.s.Addr("h"))
	c.Write([]byte(console))
	if out, _ := closedSoon(c); !strings.HasPrefix(out, "HTTP/1.1 403") {
		t.Fatalf("console from untrusted: %q", out)
	}
	h.waitReason(t, ReasonAgentsOnly)
}

func TestProxyV2Header(t *testing.T) {
	got := make(chan []byte, 1)
	up := newUpstream(t, func(c net.Conn) {
		b := make([]byte, 16+12+5)
		if _, err := io.ReadFull(c, b); err == nil {
			got <- b
		}
	})
	h := start(t, fmt.Sprintf(`{"listeners":[{"name":"t","address":"127.0.0.1:0","mode":"tcp","upstream":"mc"}],
		"upstreams":{"mc":{"servers":[%q],"proxy_protocol":"v2"}}}`, up.addr))
	c := dialFrom(t, "127.0.0.7", h.s.Addr("t"))
	c.Write([]byte("hello"))
	var b []byte
	select {
	case b = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("upstream got nothing")
	}
	if !bytes.Equal(b[:12], proxyV2Sig) || b[12] != 0x21 || b[13] != 0x11 || binary.BigEndian.Uint16(b[14:]) != 12 {
		t.Fatalf("header %x", b[:16])
	}
	src := netip.AddrFrom4([4]byte(b[16:20]))
	sport := binary.BigEndian.Uint16(b[24:])
	if src.String() != "127.0.0.7" || int(sport) != c.LocalAddr().(*net.TCPAddr).Port {
		t.Fatalf("upstream sees %s:%d, client is %s", src, sport, c.LocalAddr())
	}
	if dst := netip.AddrFrom4([4]byte(b[20:24])); dst.String() != "127.0.0.1" {
		t.Fatalf("destination %s", dst)
	}
	if string(b[28:]) != "hello" {
		t.Fatalf("payload %q", b[28:])
	}
}

func TestConnectOnlyToConfiguredTargets(t *testing.T) {
	mc := newUpstream(t, nil)
	other := newUpstream(t, nil)
	h := start(t, fmt.Sprintf(`{"listeners":[{"name":"p","address":"127.0.0.1:0","mode":"http","connect":[%q]}]}`, mc.addr))
	c := dialFrom(t, "", h.s.Addr("p"))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\nearly", mc.addr, mc.addr)
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("CONNECT to the management center: %q", line)
	}
	br.ReadString('\n')
	buf := make([]byte, 5)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "early" {
		t.Fatalf("tunnel echo %q %v", buf, err)
	}
	for _, target := range []string{other.addr, "127.0.0.1:22", "example.com:443", strings.Replace(mc.addr, "127.0.0.1", "localhost", 1)} {
		c := dialFrom(t, "", h.s.Addr("p"))
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		if out, _ := closedSoon(c); !strings.HasPrefix(out, "HTTP/1.1 403") {
			t.Fatalf("CONNECT %s: %q", target, out)
		}
	}
	// Plain requests are not relayed anywhere on a CONNECT-only listener.
	c = dialFrom(t, "", h.s.Addr("p"))
	fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n", other.addr, other.addr)
	if out, _ := closedSoon(c); !strings.HasPrefix(out, "HTTP/1.1 403") {
		t.Fatalf("GET through a CONNECT listener: %q", out)
	}
	if other.conns.Load() != 0 {
		t.Fatal("an unconfigured target was reached")
	}
}

func TestReloadKeepsEstablishedConnection(t *testing.T) {
	up := newUpstream(t, nil)
	cfg := tcpConfig(up.addr)
	h := start(t, cfg)
	addr := h.s.Addr("t")
	c := dialFrom(t, "", addr)
	echo := func(c net.Conn, msg string) {
		t.Helper()
		c.Write([]byte(msg))
		buf := make([]byte, len(msg))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			t.Fatalf("%q: %q %v", msg, buf, err)
		}
	}
	echo(c, "before")
	// Same listener, new settings; then the listener moves to another port; then it is
	// removed altogether. The established connection survives all three.
	h.apply(t, strings.Replace(cfg, `"mode":"tcp"`, `"mode":"tcp","idle_timeout":"1h"`, 1))
	if h.s.Addr("t") != addr {
		t.Fatal("unchanged listener was reopened")
	}
	echo(c, "after settings change")
	h.apply(t, strings.Replace(cfg, `"name":"t"`, `"name":"t2"`, 1))
	echo(c, "after listener replaced")
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("old listener still open")
	}
	echo(c, "still")
}

func TestDrainOnStop(t *testing.T) {
	up := newUpstream(t, nil)
	h := start(t, strings.Replace(tcpConfig(up.addr), `"listeners"`, `"drain_timeout":"300ms","listeners"`, 1))
	c := dialFrom(t, "", h.s.Addr("t"))
	c.Write([]byte("x"))
	c.Read(make([]byte, 1))
	t0 := time.Now()
	if err := h.s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(t0); el < 250*time.Millisecond || el > 3*time.Second {
		t.Fatalf("stop took %v, want about the 300ms drain timeout", el)
	}
	if _, closed := closedSoon(c); !closed {
		t.Fatal("connection left open after the drain deadline")
	}
}

func TestTLSRoutingAndMinVersion(t *testing.T) {
	cert := testCert(t)
	tlsUp := func(name string) *upstream {
		return newUpstream(t, func(c net.Conn) {
			s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS10})
			if s.Handshake() != nil {
				return
			}
			fmt.Fprintf(s, "%s %s\n", name, s.ConnectionState().ServerName)
		})
	}
	a, b := tlsUp("A"), tlsUp("B")
	h := start(t, fmt.Sprintf(`{"listeners":[{"name":"s","address":"127.0.0.1:0","mode":"tls","upstream":"a",
		"sni_routes":[{"server_name":"*.b.example","upstream":"b"}],"min_tls":"1.2","legacy_allow":["127.0.0.8"]}],
		"upstreams":{"a":{"servers":[%q]},"b":{"servers":[%q]}}}`, a.addr, b.addr))
	try := func(from, sni string, maxV uint16) (string, error) {
		c := dialFrom(t, from, h.s.Addr("s"))
		tc := tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: maxV})
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			return "", err
		}
		line, err := bufio.NewReader(tc).ReadString('\n')
		return strings.TrimSpace(line), err
	}
	for _, tc := range []struct {
		from, sni string
		v         uint16
		want      string
	}{
		{"127.0.0.2", "mc.example", tls.VersionTLS13, "A mc.example"},
		{"127.0.0.2", "x.b.example", tls.VersionTLS12, "B x.b.example"},
		{"127.0.0.8", "x.b.example", tls.VersionTLS10, "B x.b.example"}, // legacy allow-list
		{"127.0.0.2", "x.b.example", tls.VersionTLS11, ""},
		{"127.0.0.2", "mc.example", tls.VersionTLS10, ""},
	} {
		got, err := try(tc.from, tc.sni, tc.v)
		if tc.want == "" {
			if err == nil || !strings.Contains(err.Error(), "protocol version") {
				t.Errorf("%s TLS %#x: got %q %v, want a protocol_version alert", tc.from, tc.v, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s %s TLS %#x: %q %v, want %q", tc.from, tc.sni, tc.v, got, err, tc.want)
		}
	}
	h.waitReason(t, ReasonTLSVersion)
}

func TestCacheModeHTTPAndRaw(t *testing.T) {
	h := start(t, `{"listeners":[{"name":"c","address":"127.0.0.1:0","mode":"cache"}]}`)
	addr := h.s.Addr("c")
	post := func(ct, body string) string {
		c := dialFrom(t, "127.0.0.5", addr)
		fmt.Fprintf(c, "POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", ct, len(body), body)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		out, _ := io.ReadAll(c)
		return string(out)
	}
	if out := post("application/x-ndjson", "{\"a\":1}\n{\"a\":2}\n"); !strings.Contains(out, "200 OK") || !strings.Contains(out, `"accepted":2`) {
		t.Fatalf("ndjson: %q", out)
	}
	if out := post("application/json", `[{"b":1},{"b":2},{"b":3}]`); !strings.Contains(out, `"accepted":3`) {
		t.Fatalf("json array: %q", out)
	}
	if out := post("application/json", `{"c":1}`); !strings.Contains(out, `"accepted":1`) {
		t.Fatalf("json value: %q", out)
	}
	if out := post("text/plain", "line one\nline two"); !strings.Contains(out, `"accepted":2`) {
		t.Fatalf("text: %q", out)
	}
	if out := post("application/x-ndjson", "{bad\n"); !strings.Contains(out, "400") {
		t.Fatalf("bad ndjson: %q", out)
	}
	// Raw TCP: acknowledged lines.
	c := dialFrom(t, "127.0.0.6", addr)
	fmt.Fprintf(c, "{\"r\":1}\nplain text\n")
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var total uint64
	for total < 2 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		var ack struct{ Acked uint64 }
		json.Unmarshal([]byte(line), &ack)
		total = ack.Acked
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.appended) != 10 {
		t.Fatalf("%d records appended, want 10", len(h.appended))
	}
	var last cacheRecord
	json.Unmarshal(h.appended[9].Data, &last)
	if last.Client != "127.0.0.6" || last.Listener != "c" || string(last.Record) != `"plain text"` || h.appended[9].Source != "proxy/c" {
		t.Fatalf("last record %+v source %s", last, h.appended[9].Source)
	}
}

func TestCacheBackpressure(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int64
	h := start(t, `{"listeners":[{"name":"c","address":"127.0.0.1:0","mode":"cache"}]}`)
	h.append = func(ctx context.Context, r []sdk.LogRecord) (uint64, uint64, error) {
		calls.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
		return 1, uint64(len(r)), nil
	}
	c := dialFrom(t, "", h.s.Addr("c"))
	// While the log cache does not acknowledge, the proxy stops reading: the sender's
	// writes block once the socket buffers are full.
	line := append(bytes.Repeat([]byte("y"), 511), '\n')
	var written atomic.Int64
	go func() {
		for {
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			n, err := c.Write(line)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	waitFor(t, "first append", func() bool { return calls.Load() > 0 })
	time.Sleep(500 * time.Millisecond)
	w1 := written.Load()
	time.Sleep(500 * time.Millisecond)
	if w2 := written.Load(); w2 != w1 || w1 > 64<<20 {
		t.Fatalf("sender kept writing while the cache was stalled: %d then %d bytes", w1, w2)
	}
	close(release)
	waitFor(t, "ingestion resumes", func() bool { return written.Load() > w1 })
}

func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mc"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"mc.example"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// After bulk transfers (spliced through pooled pipes) a connection still relays small
// messages, and the idle timeout still ends it once nothing moves either way.
func TestBulkThenSmallThenIdleTimeout(t *testing.T) {
	up := newUpstream(t, nil) // echo
	h := start(t, strings.Replace(tcpConfig(up.addr), `"mode":"tcp"`, `"mode":"tcp","idle_timeout":"300ms"`, 1))
	c := dialFrom(t, "", h.s.Addr("t"))
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for round := range 3 {
		sent := make([]byte, 2<<20+round)
		_, _ = rand.Read(sent)
		errc := make(chan error, 1)
		go func() { _, err := c.Write(sent); errc <- err }()
		got := make([]byte, len(sent))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, sent) {
			t.Fatalf("round %d: echo differs", round)
		}
		msg := fmt.Sprintf("small after bulk %d", round)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			t.Fatalf("got %q, %v", buf, err)
		}
	}
	// Idle now: the relay closes the connection (EOF here, not our deadline).
	if _, err := c.Read(make([]byte, 1)); isTimeout(err) || err == nil {
		t.Fatalf("idle connection not closed: %v", err)
	}
}
