package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/sitelink/sitelink/plugins/proxy/clients"
	"github.com/sitelink/sitelink/plugins/proxy/limit"
	"github.com/sitelink/sitelink/plugins/proxy/sniff"
)

// clientConn is one admitted client connection.
type clientConn struct {
	s      *Server
	l      *compiled
	c      *net.TCPConn
	addr   netip.Addr
	client *clients.Client
}

func (cn *clientConn) refuse(reason, detail string) error {
	cn.s.refuse(cn.l, cn.addr, reason, detail, false)
	return fmt.Errorf("refused: %s: %s", reason, detail)
}

// read reads from the client until parse stops asking for more, within the sniff
// timeout and max bytes; it returns everything read.
func (cn *clientConn) read(max int, parse func([]byte) error) ([]byte, error) {
	_ = cn.c.SetReadDeadline(time.Now().Add(cn.l.sniffTO))
	defer cn.c.SetReadDeadline(time.Time{})
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			if cap(buf) >= max {
				return buf, errors.New("too many bytes before a decision")
			}
			nb := make([]byte, len(buf), min(2*cap(buf), max))
			copy(nb, buf)
			buf = nb
		}
		n, err := cn.c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 {
			if perr := parse(buf); !errors.Is(perr, sniff.ErrIncomplete) {
				return buf, perr
			}
		}
		if err != nil {
			return buf, err
		}
	}
}

func (cn *clientConn) buckets() []*limit.Bucket {
	var bs []*limit.Bucket
	if cn.client.Bandwidth.Rate() > 0 {
		bs = append(bs, cn.client.Bandwidth)
	}
	if cn.s.totalBW.Rate() > 0 {
		bs = append(bs, cn.s.totalBW)
	}
	return bs
}

// relayTo connects to group g and relays, sending prefix (bytes already read from the
// client) first.
func (cn *clientConn) relayTo(ctx context.Context, g *group, prefix []byte) error {
	if g == nil {
		return cn.refuse(ReasonNoUpstream, "no upstream group")
	}
	up, srv, err := g.dial(ctx)
	if err != nil {
		_ = cn.refuse(ReasonNoUpstream, err.Error())
		return err
	}
	defer srv.active.Add(-1)
	var head []byte
	if g.proxyV2 {
		head = proxyV2Header(cn.c.RemoteAddr(), cn.c.LocalAddr())
	}
	return cn.pipe(ctx, up, append(head, prefix...), nil)
}

// pipe writes toUpstream and toClient first, then relays both ways.
func (cn *clientConn) pipe(ctx context.Context, up *net.TCPConn, toUpstream, toClient []byte) error {
	defer up.Close()
	if len(toUpstream) > 0 {
		if _, err := up.Write(toUpstream); err != nil {
			return fmt.Errorf("write to upstream: %w", err)
		}
		cn.client.AddIn(len(toUpstream))
	}
	if len(toClient) > 0 {
		if _, err := cn.c.Write(toClient); err != nil {
			return fmt.Errorf("write to client: %w", err)
		}
	}
	m := cn.s.hooks.Metrics
	in, out := m.bytesIn, m.bytesOut
	return relay(ctx, cn.c, up, cn.l.idle, cn.buckets,
		func(n int) { cn.client.AddIn(n); in.Add(float64(n)) },
		func(n int) { cn.client.AddOut(n); out.Add(float64(n)) })
}

// tlsAlert is a fatal protocol_version alert.
var tlsAlert = []byte{0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 70}

func (cn *clientConn) serveTLS(ctx context.Context) error {
	var hello sniff.ClientHello
	prefix, err := cn.read(sniff.MaxHelloBytes, func(b []byte) error {
		var err error
		hello, err = sniff.ParseClientHello(b)
		return err
	})
	if err != nil {
		return cn.refuse(ReasonBadRequest, "ClientHello: "+err.Error())
	}
	if cn.l.minTLS != 0 && hello.MaxVersion() < cn.l.minTLS && !cn.l.legacy.Contains(cn.addr) {
		_, _ = cn.c.Write(tlsAlert)
		return cn.refuse(ReasonTLSVersion, fmt.Sprintf("client offers TLS up to %#04x, minimum is %s", hello.MaxVersion(), cn.l.MinTLS))
	}
	if ao := cn.l.AgentsOnly; ao != nil && !cn.l.isTrusted(cn.addr) && !matchAny(ao.ServerNames, hello.ServerName) {
		return cn.refuse(ReasonAgentsOnly, fmt.Sprintf("server name %q is not agent traffic", hello.ServerName))
	}
	upstream := cn.l.Upstream
	for _, r := range cn.l.SNIRoutes {
		if matchName(r.ServerName, hello.ServerName) {
			upstream = r.Upstream
			break
		}
	}
	if upstream == "" {
		return cn.refuse(ReasonUnknownSNI, fmt.Sprintf("no route for server name %q", hello.ServerName))
	}
	return cn.relayTo(ctx, cn.s.group(upstream), prefix)
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if matchName(p, name) {
			return true
		}
	}
	return false
}

func (cn *clientConn) httpError(code int, reason, detail string) error {
	text := map[int]string{400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[code]
	body := reason + "\n"
	_, _ = fmt.Fprintf(cn.c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		code, text, len(body), body)
	return cn.refuse(reason, detail)
}

func (cn *clientConn) serveHTTP(ctx context.Context) error {
	var req sniff.Request
	prefix, err := cn.read(sniff.MaxRequestHead, func(b []byte) error {
		var err error
		req, err = sniff.ParseRequest(b)
		return err
	})
	if err != nil {
		return cn.httpError(400, ReasonBadRequest, "request: "+err.Error())
	}
	trusted := cn.l.isTrusted(cn.addr)
	ao := cn.l.AgentsOnly
	if req.Method == "CONNECT" {
		target := req.Host
		host, port, err := net.SplitHostPort(target)
		if err != nil || !cn.l.connect[target] {
			return cn.httpError(403, ReasonConnect, fmt.Sprintf("CONNECT %q is not a configured management-center target", target))
		}
		if ao != nil && !trusted {
			p, _ := strconv.Atoi(port)
			if !containsInt(ao.Ports, p) {
				return cn.httpError(403, ReasonAgentsOnly, fmt.Sprintf("CONNECT port %s is not agent traffic", port))
			}
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		d, err := (&net.Dialer{}).DialContext(dctx, "tcp", net.JoinHostPort(host, port))
		cancel()
		if err != nil {
			return cn.httpError(502, ReasonNoUpstream, "CONNECT "+target+": "+err.Error())
		}
		return cn.pipe(ctx, d.(*net.TCPConn), prefix[req.HeadLen:], []byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	}
	if ao != nil && !trusted && !hasPrefixAny(ao.Paths, req.Path) {
		return cn.httpError(403, ReasonAgentsOnly, fmt.Sprintf("path %q is not agent traffic", req.Path))
	}
	if cn.l.Upstream == "" {
		return cn.httpError(403, ReasonConnect, "this listener only serves CONNECT")
	}
	return cn.relayTo(ctx, cn.s.group(cn.l.Upstream), prefix)
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func hasPrefixAny(prefixes []string, p string) bool {
	for _, x := range prefixes {
		if strings.HasPrefix(p, x) {
			return true
		}
	}
	return false
}
