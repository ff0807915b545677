// Package sniff reads what a proxied connection starts with, without terminating
// anything: the TLS ClientHello (server name, offered versions) and the HTTP request
// head (method, target, Host, path). The parsers take the bytes read so far and say
// ErrIncomplete when they need more, so a caller can read little by little with a bound.
package sniff

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// ErrIncomplete means the bytes so far are a valid prefix: read more and parse again.
var ErrIncomplete = errors.New("sniff: need more bytes")

// MaxHelloBytes bounds the bytes a ClientHello may take (records included).
const MaxHelloBytes = 32 << 10

// MaxRequestHead bounds an HTTP request line plus headers.
const MaxRequestHead = 16 << 10

// TLS versions as on the wire.
const (
	VersionSSL30 = 0x0300
	VersionTLS10 = 0x0301
	VersionTLS11 = 0x0302
	VersionTLS12 = 0x0303
	VersionTLS13 = 0x0304
)

// ClientHello is what the proxy needs from a TLS ClientHello.
type ClientHello struct {
	// ServerName is the SNI host name ("" when absent), lower case.
	ServerName string
	// LegacyVersion is the version field of the hello.
	LegacyVersion uint16
	// SupportedVersions is the supported_versions extension (TLS 1.3 clients), GREASE removed.
	SupportedVersions []uint16
	// ALPN lists the offered application protocols.
	ALPN []string
}

// MaxVersion is the highest TLS version the client offers.
func (h ClientHello) MaxVersion() uint16 {
	if len(h.SupportedVersions) == 0 {
		return h.LegacyVersion
	}
	var max uint16
	for _, v := range h.SupportedVersions {
		if v > max {
			max = v
		}
	}
	return max
}

// LooksLikeTLS says whether b starts like a TLS handshake record.
func LooksLikeTLS(b []byte) bool {
	return len(b) >= 1 && b[0] == 0x16 && (len(b) < 2 || b[1] == 3)
}

// ParseClientHello parses the ClientHello at the start of b, which may span several
// TLS records.
func ParseClientHello(b []byte) (ClientHello, error) {
	var hs []byte
	for off := 0; ; {
		if len(b)-off < 5 {
			if off >= MaxHelloBytes {
				return ClientHello{}, errors.New("sniff: ClientHello too large")
			}
			return ClientHello{}, ErrIncomplete
		}
		if b[off] != 0x16 {
			return ClientHello{}, fmt.Errorf("sniff: record type %d is not a handshake", b[off])
		}
		if b[off+1] != 3 {
			return ClientHello{}, fmt.Errorf("sniff: record version %d.%d is not TLS", b[off+1], b[off+2])
		}
		n := int(binary.BigEndian.Uint16(b[off+3:]))
		if n == 0 || n > 1<<14+2048 {
			return ClientHello{}, fmt.Errorf("sniff: bad record length %d", n)
		}
		if off+5+n > MaxHelloBytes {
			return ClientHello{}, errors.New("sniff: ClientHello too large")
		}
		if len(b)-off-5 < n {
			// Use what we have of this record to fail early on a bad hello.
			hs = append(hs, b[off+5:]...)
			if err := checkHandshakePrefix(hs); err != nil {
				return ClientHello{}, err
			}
			return ClientHello{}, ErrIncomplete
		}
		hs = append(hs, b[off+5:off+5+n]...)
		off += 5 + n
		if err := checkHandshakePrefix(hs); err != nil {
			return ClientHello{}, err
		}
		if len(hs) >= 4 {
			hl := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
			if len(hs) >= 4+hl {
				return parseHelloBody(hs[4 : 4+hl])
			}
		}
	}
}

func checkHandshakePrefix(hs []byte) error {
	if len(hs) >= 1 && hs[0] != 1 {
		return fmt.Errorf("sniff: handshake type %d is not a ClientHello", hs[0])
	}
	if len(hs) >= 4 {
		hl := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
		if hl < 38 || hl > MaxHelloBytes {
			return fmt.Errorf("sniff: bad ClientHello length %d", hl)
		}
	}
	return nil
}

// reader is a bounds-checked cursor.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u8() int {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return int(v)
}

func (r *reader) u16() int {
	if len(r.b) < 2 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return int(v)
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.bad = true
		r.b = nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func isGrease(v int) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

func parseHelloBody(body []byte) (ClientHello, error) {
	r := &reader{b: body}
	var h ClientHello
	h.LegacyVersion = uint16(r.u16())
	r.bytes(32)     // random
	r.bytes(r.u8()) // session id
	cs := r.u16()   // cipher suites
	if cs%2 != 0 || cs == 0 {
		return h, fmt.Errorf("sniff: bad cipher suites length %d", cs)
	}
	r.bytes(cs)
	r.bytes(r.u8()) // compression methods
	if r.bad {
		return h, errors.New("sniff: truncated ClientHello")
	}
	if len(r.b) == 0 {
		return h, nil // no extensions (SSL 3.0 style)
	}
	ext := &reader{b: r.bytes(r.u16())}
	if r.bad {
		return h, errors.New("sniff: truncated extensions")
	}
	for len(ext.b) > 0 {
		typ := ext.u16()
		data := &reader{b: ext.bytes(ext.u16())}
		if ext.bad {
			return h, errors.New("sniff: truncated extension")
		}
		switch typ {
		case 0: // server_name
			list := &reader{b: data.bytes(data.u16())}
			for len(list.b) > 0 && !list.bad {
				kind := list.u8()
				name := list.bytes(list.u16())
				if kind == 0 && !list.bad {
					if !validHostName(name) {
						return h, errors.New("sniff: bad server name")
					}
					h.ServerName = strings.ToLower(string(name))
				}
			}
			if list.bad || data.bad {
				return h, errors.New("sniff: bad server_name extension")
			}
		case 16: // ALPN
			list := &reader{b: data.bytes(data.u16())}
			for len(list.b) > 0 && !list.bad {
				p := list.bytes(list.u8())
				if !list.bad {
					h.ALPN = append(h.ALPN, string(p))
				}
			}
			if list.bad || data.bad {
				return h, errors.New("sniff: bad ALPN extension")
			}
		case 43: // supported_versions
			list := &reader{b: data.bytes(data.u8())}
			for len(list.b) > 0 && !list.bad {
				v := list.u16()
				if !list.bad && !isGrease(v) {
					h.SupportedVersions = append(h.SupportedVersions, uint16(v))
				}
			}
			if list.bad || data.bad {
				return h, errors.New("sniff: bad supported_versions extension")
			}
		}
	}
	return h, nil
}

func validHostName(b []byte) bool {
	if len(b) == 0 || len(b) > 253 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || c == '/' || c == '\\' {
			return false
		}
	}
	return true
}

// Request is the head of an HTTP/1.x request.
type Request struct {
	// Method, e.g. "CONNECT" or "POST".
	Method string
	// Target is the request target as sent ("host:443" for CONNECT, "/path?q" usually).
	Target string
	// Proto, e.g. "HTTP/1.1".
	Proto string
	// Host is the Host header (or the authority of CONNECT / an absolute target).
	Host string
	// Path is the path of the target without the query ("" for CONNECT).
	Path string
	// HeadLen is the length of the request line and headers, final CRLF CRLF included.
	HeadLen int
}

var methods = []string{"GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "}

// LooksLikeHTTP says whether b starts like an HTTP request line (or could, if short).
func LooksLikeHTTP(b []byte) bool {
	for _, m := range methods {
		n := min(len(b), len(m))
		if n > 0 && string(b[:n]) == m[:n] {
			return true
		}
	}
	return false
}

// ParseRequest parses the HTTP/1.x request head at the start of b.
func ParseRequest(b []byte) (Request, error) {
	if !LooksLikeHTTP(b) {
		return Request{}, errors.New("sniff: not an HTTP request")
	}
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) >= MaxRequestHead {
			return Request{}, errors.New("sniff: request head too large")
		}
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			if _, err := parseRequestLine(b[:i]); err != nil {
				return Request{}, err
			}
		}
		return Request{}, ErrIncomplete
	}
	if end+4 > MaxRequestHead {
		return Request{}, errors.New("sniff: request head too large")
	}
	lines := strings.Split(string(b[:end]), "\r\n")
	req, err := parseRequestLine([]byte(lines[0]))
	if err != nil {
		return Request{}, err
	}
	req.HeadLen = end + 4
	hosts := 0
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return Request{}, fmt.Errorf("sniff: bad header line %q", truncate(l))
		}
		if strings.EqualFold(k, "Host") {
			hosts++
			if req.Host == "" {
				req.Host = strings.ToLower(strings.TrimSpace(v))
			}
		}
	}
	if hosts > 1 {
		return Request{}, errors.New("sniff: several Host headers")
	}
	return req, nil
}

func parseRequestLine(line []byte) (Request, error) {
	s := strings.TrimSuffix(string(line), "\r")
	parts := strings.Split(s, " ")
	if len(parts) != 3 || parts[1] == "" {
		return Request{}, fmt.Errorf("sniff: bad request line %q", truncate(s))
	}
	req := Request{Method: parts[0], Target: parts[1], Proto: parts[2]}
	if req.Proto != "HTTP/1.1" && req.Proto != "HTTP/1.0" {
		return Request{}, fmt.Errorf("sniff: unsupported protocol %q", truncate(req.Proto))
	}
	for _, c := range req.Target {
		if c <= ' ' || c == 0x7f {
			return Request{}, errors.New("sniff: control character in request target")
		}
	}
	switch {
	case req.Method == "CONNECT":
		req.Host = strings.ToLower(req.Target)
	case strings.HasPrefix(req.Target, "/"):
		req.Path, _, _ = strings.Cut(req.Target, "?")
	case strings.HasPrefix(req.Target, "http://"), strings.HasPrefix(req.Target, "https://"):
		rest := req.Target[strings.Index(req.Target, "//")+2:]
		host, path, _ := strings.Cut(rest, "/")
		req.Host = strings.ToLower(host)
		req.Path, _, _ = strings.Cut("/"+path, "?")
	case req.Target == "*" && req.Method == "OPTIONS":
	default:
		return Request{}, fmt.Errorf("sniff: bad request target %q", truncate(req.Target))
	}
	return req, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
