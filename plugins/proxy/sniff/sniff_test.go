package sniff

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// captureHello returns the bytes a real crypto/tls client sends first.
func captureHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		_ = tls.Client(c, cfg).Handshake()
		c.Close()
	}()
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf []byte
	tmp := make([]byte, 4096)
	for {
		n, err := s.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if _, perr := ParseClientHello(buf); !errors.Is(perr, ErrIncomplete) {
			return buf
		}
		if err != nil {
			t.Fatalf("reading hello: %v", err)
		}
	}
}

func TestClientHelloFromCryptoTLS(t *testing.T) {
	for _, tc := range []struct {
		name     string
		min, max uint16
		want     uint16
	}{
		{"tls10", tls.VersionTLS10, tls.VersionTLS10, VersionTLS10},
		{"tls11", tls.VersionTLS10, tls.VersionTLS11, VersionTLS11},
		{"tls12", tls.VersionTLS12, tls.VersionTLS12, VersionTLS12},
		{"tls13", tls.VersionTLS12, tls.VersionTLS13, VersionTLS13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := captureHello(t, &tls.Config{ServerName: "Agents.Example.COM", MinVersion: tc.min, MaxVersion: tc.max, NextProtos: []string{"h2", "http/1.1"}})
			h, err := ParseClientHello(b)
			if err != nil {
				t.Fatal(err)
			}
			if h.ServerName != "agents.example.com" {
				t.Errorf("server name %q", h.ServerName)
			}
			if h.MaxVersion() != tc.want {
				t.Errorf("max version %#x, want %#x", h.MaxVersion(), tc.want)
			}
			if len(h.ALPN) != 2 || h.ALPN[0] != "h2" {
				t.Errorf("ALPN %v", h.ALPN)
			}
			// Every strict prefix is incomplete, never an error and never a result.
			for i := 0; i < len(b); i++ {
				if _, err := ParseClientHello(b[:i]); !errors.Is(err, ErrIncomplete) {
					t.Fatalf("prefix %d: %v", i, err)
				}
			}
		})
	}
}

func TestClientHelloSplitRecords(t *testing.T) {
	b := captureHello(t, &tls.Config{ServerName: "split.example"})
	body := b[5:]
	// Re-frame the handshake into records of 100 bytes.
	var out []byte
	for len(body) > 0 {
		n := min(100, len(body))
		out = append(out, 0x16, 3, 1, byte(n>>8), byte(n))
		out = append(out, body[:n]...)
		body = body[n:]
	}
	h, err := ParseClientHello(out)
	if err != nil || h.ServerName != "split.example" {
		t.Fatalf("split hello: %+v %v", h, err)
	}
}

func TestClientHelloRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"http":      []byte("GET / HTTP/1.1\r\n"),
		"alert":     {0x15, 3, 3, 0, 2, 2, 40},
		"ssl2":      {0x80, 0x2e, 1, 0, 2},
		"zero len":  {0x16, 3, 1, 0, 0},
		"not hello": {0x16, 3, 1, 0, 4, 2, 0, 0, 0},
	} {
		if _, err := ParseClientHello(b); err == nil || errors.Is(err, ErrIncomplete) {
			t.Errorf("%s: got %v, want a refusal", name, err)
		}
	}
}

func TestParseRequest(t *testing.T) {
	r, err := ParseRequest([]byte("CONNECT mc.example.com:443 HTTP/1.1\r\nHost: mc.example.com:443\r\n\r\nextra"))
	if err != nil || r.Method != "CONNECT" || r.Host != "mc.example.com:443" || r.HeadLen != 65 {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = ParseRequest([]byte("POST /agent/v1/upload?x=1 HTTP/1.1\r\nHOST: MC\r\nContent-Length: 3\r\n\r\nabc"))
	if err != nil || r.Path != "/agent/v1/upload" || r.Host != "mc" {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = ParseRequest([]byte("GET http://mc:8080/console/x HTTP/1.0\r\n\r\n"))
	if err != nil || r.Path != "/console/x" || r.Host != "mc:8080" {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := ParseRequest([]byte("POST /a HTTP/1.1\r\nHost: a\r\n")); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("partial: %v", err)
	}
	for _, bad := range []string{
		"POST /a HTTP/2\r\n\r\n",
		"POST  /a HTTP/1.1\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET /a HTTP/1.1\r\nBad Header: a\r\n\r\n",
		"GET ftp://x HTTP/1.1\r\n\r\n",
		"SSH-2.0-OpenSSH\r\n",
		"GET /" + strings.Repeat("a", MaxRequestHead) + " HTTP/1.1\r\n\r\n",
	} {
		if _, err := ParseRequest([]byte(bad)); err == nil || errors.Is(err, ErrIncomplete) {
			t.Errorf("%q: got %v, want a refusal", truncate(bad), err)
		}
	}
}

func FuzzClientHello(f *testing.F) {
	f.Add(captureHello(f, &tls.Config{ServerName: "a.example"}))
	f.Add(captureHello(f, &tls.Config{ServerName: "b.example", MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}))
	f.Add([]byte{0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseClientHello(b)
		if err != nil {
			return
		}
		if len(h.ServerName) > 253 || strings.ContainsAny(h.ServerName, " /\\") {
			t.Fatalf("bad server name accepted: %q", h.ServerName)
		}
		// A complete hello stays the same result with trailing bytes.
		h2, err := ParseClientHello(append(append([]byte{}, b...), 0x17, 3, 3))
		if err != nil || h2.ServerName != h.ServerName || h2.MaxVersion() != h.MaxVersion() {
			t.Fatalf("trailing bytes changed the result: %+v %v", h2, err)
		}
	})
}

func FuzzRequest(f *testing.F) {
	f.Add([]byte("CONNECT mc.example.com:443 HTTP/1.1\r\nHost: mc.example.com:443\r\n\r\n"))
	f.Add([]byte("POST /agent HTTP/1.1\r\nHost: mc\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("GET http://x/y HTTP/1.0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		if r.HeadLen <= 0 || r.HeadLen > len(b) || r.HeadLen > MaxRequestHead {
			t.Fatalf("head length %d of %d bytes", r.HeadLen, len(b))
		}
		if strings.ContainsAny(r.Target, " \r\n\x00") {
			t.Fatalf("target %q", r.Target)
		}
		if r.Method == "CONNECT" && r.Host != strings.ToLower(r.Target) {
			t.Fatalf("CONNECT host %q target %q", r.Host, r.Target)
		}
	})
}
