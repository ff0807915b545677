package wg

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// RenderUAPI writes a config as WireGuard's cross-platform configuration protocol
// ("set" operation, https://www.wireguard.com/xplatform/), which wireguard-go applies
// with IpcSet.
func RenderUAPI(c wgtypes.Config) string {
	var b strings.Builder
	line := func(k, v string) { b.WriteString(k); b.WriteByte('='); b.WriteString(v); b.WriteByte('\n') }
	if c.PrivateKey != nil {
		line("private_key", hex.EncodeToString(c.PrivateKey[:]))
	}
	if c.ListenPort != nil {
		line("listen_port", strconv.Itoa(*c.ListenPort))
	}
	if c.FirewallMark != nil {
		line("fwmark", strconv.Itoa(*c.FirewallMark))
	}
	if c.ReplacePeers {
		line("replace_peers", "true")
	}
	for _, p := range c.Peers {
		line("public_key", hex.EncodeToString(p.PublicKey[:]))
		if p.Remove {
			line("remove", "true")
			continue
		}
		if p.UpdateOnly {
			line("update_only", "true")
		}
		if p.PresharedKey != nil {
			line("preshared_key", hex.EncodeToString(p.PresharedKey[:]))
		}
		if p.Endpoint != nil {
			line("endpoint", p.Endpoint.String())
		}
		if p.PersistentKeepaliveInterval != nil {
			line("persistent_keepalive_interval", strconv.Itoa(int(*p.PersistentKeepaliveInterval/time.Second)))
		}
		if p.ReplaceAllowedIPs {
			line("replace_allowed_ips", "true")
		}
		for _, ip := range p.AllowedIPs {
			line("allowed_ip", ip.String())
		}
	}
	return b.String()
}

// ParseUAPI reads the answer to the configuration protocol's "get" operation.
func ParseUAPI(name, text string) (*wgtypes.Device, error) {
	d := &wgtypes.Device{Name: name, Type: wgtypes.Userspace}
	var peer *wgtypes.Peer
	var hsSec, hsNsec int64
	flush := func() {
		if peer == nil {
			return
		}
		if hsSec != 0 || hsNsec != 0 {
			peer.LastHandshakeTime = time.Unix(hsSec, hsNsec)
		}
		d.Peers = append(d.Peers, *peer)
		peer, hsSec, hsNsec = nil, 0, 0
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		ln := sc.Text()
		if ln == "" {
			continue
		}
		k, v, ok := strings.Cut(ln, "=")
		if !ok {
			return nil, fmt.Errorf("wireguard uapi line %d: no '=' in %q", n, ln)
		}
		var err error
		switch k {
		case "errno":
			if v != "0" {
				return nil, fmt.Errorf("wireguard uapi: errno %s", v)
			}
		case "private_key":
			var key wgtypes.Key
			if key, err = hexKey(v); err == nil {
				d.PrivateKey, d.PublicKey = key, key.PublicKey()
			}
		case "listen_port":
			d.ListenPort, err = strconv.Atoi(v)
		case "fwmark":
			d.FirewallMark, err = strconv.Atoi(v)
		case "public_key":
			flush()
			peer = &wgtypes.Peer{}
			peer.PublicKey, err = hexKey(v)
		default:
			if peer == nil {
				continue // unknown device-level key: ignore
			}
			err = peerLine(peer, k, v, &hsSec, &hsNsec)
		}
		if err != nil {
			return nil, fmt.Errorf("wireguard uapi line %d (%s): %w", n, k, err)
		}
	}
	flush()
	return d, nil
}

func peerLine(p *wgtypes.Peer, k, v string, hsSec, hsNsec *int64) error {
	var err error
	switch k {
	case "preshared_key":
		p.PresharedKey, err = hexKey(v)
	case "protocol_version":
		p.ProtocolVersion, err = strconv.Atoi(v)
	case "endpoint":
		var ap netip.AddrPort
		if ap, err = netip.ParseAddrPort(v); err == nil {
			p.Endpoint = net.UDPAddrFromAddrPort(ap)
		}
	case "last_handshake_time_sec":
		*hsSec, err = strconv.ParseInt(v, 10, 64)
	case "last_handshake_time_nsec":
		*hsNsec, err = strconv.ParseInt(v, 10, 64)
	case "tx_bytes":
		p.TransmitBytes, err = strconv.ParseInt(v, 10, 64)
	case "rx_bytes":
		p.ReceiveBytes, err = strconv.ParseInt(v, 10, 64)
	case "persistent_keepalive_interval":
		var s int
		if s, err = strconv.Atoi(v); err == nil {
			p.PersistentKeepaliveInterval = time.Duration(s) * time.Second
		}
	case "allowed_ip":
		var ipn *net.IPNet
		if _, ipn, err = net.ParseCIDR(v); err == nil {
			p.AllowedIPs = append(p.AllowedIPs, *ipn)
		}
	}
	return err
}

func hexKey(s string) (wgtypes.Key, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != wgtypes.KeyLen {
		return wgtypes.Key{}, fmt.Errorf("not a %d-byte hex key", wgtypes.KeyLen)
	}
	return wgtypes.NewKey(b)
}
