// Package config owns the tunnel plugin's configuration: the operator's section of
// sitelink.yaml (as JSON), its JSON Schema, the defaults, and the checks that turn it into
// a validated Config with parsed keys, endpoints and prefixes, errors located by path
// (`gateways[1].public_key`).
//
// The config is untrusted input, so Parse never panics and bounds every list.
package config

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sitelink/sitelink/plugins/sdk"
)

// Defaults.
const (
	DefaultInterface           = "sitelink-wg"
	DefaultMTU                 = 1420
	DefaultPersistentKeepalive = 25 * time.Second
	DefaultWindow              = 8 * time.Second
	DefaultProbeInterval       = 2 * time.Second
	DefaultHold                = 60 * time.Second
	DefaultRouteTable          = 254 // main
	DefaultRouteMetric         = 50
)

// Limits on what one config may ask for.
const (
	MaxGateways  = 16
	MaxPrefixes  = 256
	MaxAddresses = 8
	// HandshakeProbeEvery is how often a handshake can be used as a probe: WireGuard
	// sends at most one initiation per peer every 5 s (REKEY_TIMEOUT).
	HandshakeProbeEvery = 5 * time.Second
	// handshakeMargin is added to the handshake cadence for the shortest liveness window
	// of a gateway without a probe address.
	handshakeMargin = 2 * time.Second
)

// HandshakeCadence is how often a silent gateway without a probe address is made to
// handshake: at the first probe tick at least HandshakeProbeEvery after the last one.
func HandshakeCadence(probeInterval time.Duration) time.Duration {
	if probeInterval <= 0 || probeInterval >= HandshakeProbeEvery {
		return probeInterval
	}
	n := (HandshakeProbeEvery + probeInterval - 1) / probeInterval
	return n * probeInterval
}

// Backend selects the WireGuard implementation.
type Backend string

// The backends.
const (
	// BackendAuto uses the kernel's WireGuard when the module exists, else userspace.
	BackendAuto Backend = "auto"
	// BackendUserspace runs wireguard-go in the plugin over a TUN device.
	BackendUserspace Backend = "userspace"
	// BackendKernel uses the kernel module through netlink (wgctrl).
	BackendKernel Backend = "kernel"
)

// OnDown says what happens to the routes while the tunnel is down.
type OnDown string

// The on_down policies.
const (
	// OnDownWithdraw removes the routes, so that another path can take over.
	OnDownWithdraw OnDown = "withdraw"
	// OnDownBlackhole replaces them with blackhole routes: traffic is dropped, never
	// sent unencrypted elsewhere (fail closed).
	OnDownBlackhole OnDown = "blackhole"
)

// Config is a validated tunnel config.
type Config struct {
	// Interface is the WireGuard interface's name.
	Interface string
	// Backend is the WireGuard implementation to use.
	Backend Backend
	// Addresses are the connector's own addresses inside the tunnel (host/prefix).
	Addresses []netip.Prefix
	// MTU of the interface.
	MTU int
	// ListenPort is the local UDP port (0: chosen by the kernel).
	ListenPort int
	// PersistentKeepalive is sent to every gateway (0: off).
	PersistentKeepalive time.Duration
	// OnDown is what happens to the routes while no gateway is alive.
	OnDown OnDown
	// RouteTable and RouteMetric place the routes; blackhole routes use RouteMetric+1.
	RouteTable  int
	RouteMetric int
	// MSSClamp clamps the MSS of TCP SYNs through the tunnel to MTU-40 (IPv4) and
	// MTU-60 (IPv6).
	MSSClamp bool
	// Health governs liveness and failover.
	Health Health
	// Gateways in order of preference.
	Gateways []Gateway
}

// Health governs liveness and failover.
type Health struct {
	// Window: a gateway with no handshake and no received data within it is dead.
	Window time.Duration
	// ProbeInterval: a gateway silent for this long is probed (ICMP echo to its probe
	// address, else a handshake initiation).
	ProbeInterval time.Duration
	// Hold: a more preferred gateway is taken back only after it has been alive this
	// long.
	Hold time.Duration
}

// Gateway is one security gateway.
type Gateway struct {
	Name string
	// Endpoint is host:port as configured; Host and Port are its parts (Host may be a
	// DNS name, resolved when the peer is configured).
	Endpoint string
	Host     string
	Port     int
	// PublicKey is the gateway's WireGuard public key.
	PublicKey wgtypes.Key
	// AllowedPrefixes are routed through the tunnel while this gateway is active, and
	// are the sources accepted from it.
	AllowedPrefixes []netip.Prefix
	// Probe is an address of the gateway inside the tunnel that answers ICMP echo
	// (invalid when not configured).
	Probe netip.Addr
}

// raw is the config section as the operator writes it.
type raw struct {
	Interface           *string    `json:"interface"`
	Backend             *string    `json:"backend"`
	Addresses           []string   `json:"addresses"`
	MTU                 *int       `json:"mtu"`
	ListenPort          *int       `json:"listen_port"`
	PersistentKeepalive *string    `json:"persistent_keepalive"`
	OnDown              *string    `json:"on_down"`
	RouteTable          *int64     `json:"route_table"`
	RouteMetric         *int64     `json:"route_metric"`
	MSSClamp            *bool      `json:"mss_clamp"`
	Health              *rawHealth `json:"health"`
	Gateways            []rawGW    `json:"gateways"`
}

type rawHealth struct {
	Window        *string `json:"window"`
	ProbeInterval *string `json:"probe_interval"`
	Hold          *string `json:"hold"`
}

type rawGW struct {
	Name            string   `json:"name"`
	Endpoint        string   `json:"endpoint"`
	PublicKey       string   `json:"public_key"`
	AllowedPrefixes []string `json:"allowed_prefixes"`
	Probe           string   `json:"probe"`
}

var (
	ifNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$`)
	gwNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)
)

// Parse decodes and validates a config section. Errors are sdk.FieldErrors.
func Parse(data json.RawMessage) (*Config, error) {
	var r raw
	if err := sdk.DecodeConfig(data, &r); err != nil {
		return nil, err
	}
	var errs sdk.FieldErrors
	c := &Config{
		Interface: DefaultInterface, Backend: BackendAuto, MTU: DefaultMTU,
		PersistentKeepalive: DefaultPersistentKeepalive, OnDown: OnDownBlackhole,
		RouteTable: DefaultRouteTable, RouteMetric: DefaultRouteMetric, MSSClamp: true,
		Health: Health{Window: DefaultWindow, ProbeInterval: DefaultProbeInterval, Hold: DefaultHold},
	}
	if r.Interface != nil {
		c.Interface = *r.Interface
		if !ifNameRE.MatchString(c.Interface) {
			errs.Add("interface", "%q is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -)", c.Interface)
		}
	}
	if r.Backend != nil {
		c.Backend = Backend(*r.Backend)
		switch c.Backend {
		case BackendAuto, BackendUserspace, BackendKernel:
		default:
			errs.Add("backend", "must be auto, userspace or kernel, got %q", *r.Backend)
		}
	}
	if len(r.Addresses) > MaxAddresses {
		errs.Add("addresses", "at most %d addresses, got %d", MaxAddresses, len(r.Addresses))
	}
	for i, s := range r.Addresses {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			errs.Add(fmt.Sprintf("addresses[%d]", i), "want an address with its prefix length like 100.64.0.2/32: %v", err)
			continue
		}
		c.Addresses = append(c.Addresses, p)
	}
	if r.MTU != nil {
		c.MTU = *r.MTU
	}
	minMTU := 576
	if c.hasIPv6() {
		minMTU = 1280
	}
	if c.MTU < minMTU || c.MTU > 9000 {
		errs.Add("mtu", "must be between %d and 9000, got %d", minMTU, c.MTU)
	}
	if r.ListenPort != nil {
		c.ListenPort = *r.ListenPort
		if c.ListenPort < 0 || c.ListenPort > 65535 {
			errs.Add("listen_port", "must be between 0 (any) and 65535, got %d", c.ListenPort)
		}
	}
	if r.PersistentKeepalive != nil {
		d, err := parseDuration(*r.PersistentKeepalive)
		switch {
		case err != nil:
			errs.Add("persistent_keepalive", "%v", err)
		case d != 0 && (d < time.Second || d > 65535*time.Second || d%time.Second != 0):
			errs.Add("persistent_keepalive", "must be 0 (off) or whole seconds between 1s and 65535s, got %s", d)
		default:
			c.PersistentKeepalive = d
		}
	}
	if r.OnDown != nil {
		c.OnDown = OnDown(*r.OnDown)
		if c.OnDown != OnDownWithdraw && c.OnDown != OnDownBlackhole {
			errs.Add("on_down", "must be withdraw or blackhole, got %q", *r.OnDown)
		}
	}
	if r.RouteTable != nil {
		t := *r.RouteTable
		if t < 1 || t > 0xFFFFFFFF || t == 253 || t == 255 {
			errs.Add("route_table", "must be a routing table id from 1 to 4294967295 other than 253 (default) and 255 (local), got %d", t)
		} else {
			c.RouteTable = int(t)
		}
	}
	if r.RouteMetric != nil {
		m := *r.RouteMetric
		if m < 0 || m > 0xFFFFFFFE {
			errs.Add("route_metric", "must be between 0 and 4294967294, got %d", m)
		} else {
			c.RouteMetric = int(m)
		}
	}
	if r.MSSClamp != nil {
		c.MSSClamp = *r.MSSClamp
	}
	if r.Health != nil {
		parseHealth(r.Health, &c.Health, &errs)
	}
	c.parseGateways(r.Gateways, &errs)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

func parseHealth(r *rawHealth, h *Health, errs *sdk.FieldErrors) {
	set := func(path string, s *string, dst *time.Duration, min, max time.Duration) {
		if s == nil {
			return
		}
		d, err := parseDuration(*s)
		switch {
		case err != nil:
			errs.Add(path, "%v", err)
		case d < min || d > max:
			errs.Add(path, "must be between %s and %s, got %s", min, max, d)
		default:
			*dst = d
		}
	}
	set("health.window", r.Window, &h.Window, time.Second, time.Hour)
	set("health.probe_interval", r.ProbeInterval, &h.ProbeInterval, 100*time.Millisecond, time.Minute)
	set("health.hold", r.Hold, &h.Hold, 0, 24*time.Hour)
	if h.Window < 2*h.ProbeInterval {
		errs.Add("health.window", "must be at least twice health.probe_interval (%s), got %s", h.ProbeInterval, h.Window)
	}
}

func (c *Config) parseGateways(rs []rawGW, errs *sdk.FieldErrors) {
	if len(rs) == 0 {
		errs.Add("gateways", "at least one gateway is required")
		return
	}
	if len(rs) > MaxGateways {
		errs.Add("gateways", "at most %d gateways, got %d", MaxGateways, len(rs))
		return
	}
	names := map[string]int{}
	keys := map[wgtypes.Key]int{}
	for i, r := range rs {
		path := fmt.Sprintf("gateways[%d]", i)
		g := Gateway{Name: r.Name, Endpoint: r.Endpoint}
		if !gwNameRE.MatchString(r.Name) {
			errs.Add(path+".name", "%q is not a valid gateway name (1-32 of A-Z a-z 0-9 _ . -, starting with a letter or digit)", r.Name)
		} else if j, dup := names[r.Name]; dup {
			errs.Add(path+".name", "%q is already the name of gateways[%d]", r.Name, j)
		} else {
			names[r.Name] = i
		}
		host, port, err := ParseEndpoint(r.Endpoint)
		if err != nil {
			errs.Add(path+".endpoint", "%v", err)
		}
		g.Host, g.Port = host, port
		key, err := ParsePublicKey(r.PublicKey)
		if err != nil {
			errs.Add(path+".public_key", "%v", err)
		} else if j, dup := keys[key]; dup {
			errs.Add(path+".public_key", "is already the key of gateways[%d]", j)
		} else {
			keys[key] = i
		}
		g.PublicKey = key
		if len(r.AllowedPrefixes) == 0 {
			errs.Add(path+".allowed_prefixes", "at least one prefix is required (the ranges reached through this gateway)")
		}
		if len(r.AllowedPrefixes) > MaxPrefixes {
			errs.Add(path+".allowed_prefixes", "at most %d prefixes, got %d", MaxPrefixes, len(r.AllowedPrefixes))
		}
		for j, s := range r.AllowedPrefixes {
			p, err := ParsePrefix(s)
			if err != nil {
				errs.Add(fmt.Sprintf("%s.allowed_prefixes[%d]", path, j), "%v", err)
				continue
			}
			g.AllowedPrefixes = append(g.AllowedPrefixes, p)
		}
		if r.Probe != "" {
			a, err := netip.ParseAddr(r.Probe)
			switch {
			case err != nil:
				errs.Add(path+".probe", "want an IP address of the gateway inside the tunnel: %v", err)
			case a.Zone() != "":
				errs.Add(path+".probe", "must not have a zone")
			case !c.hasFamily(a.Is4()):
				errs.Add(path+".probe", "%s needs an %s address of the connector in addresses (the probe's source)", a, family(a))
			default:
				g.Probe = a.Unmap()
			}
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			for j, p := range g.AllowedPrefixes {
				if p.Contains(ip.Unmap()) {
					errs.Add(fmt.Sprintf("%s.allowed_prefixes[%d]", path, j),
						"%s contains the gateway's own endpoint %s: its tunnel packets would be routed into the tunnel", p, ip)
				}
			}
		}
		c.Gateways = append(c.Gateways, g)
	}
	cadence := HandshakeCadence(c.Health.ProbeInterval)
	for i, r := range rs {
		if r.Probe == "" && c.Health.Window < cadence+handshakeMargin {
			errs.Add("health.window", "must be at least %s while gateways[%d] has no probe address (its liveness then comes from handshakes, one every %s with probe_interval %s)",
				cadence+handshakeMargin, i, cadence, c.Health.ProbeInterval)
			break
		}
	}
}

func (c *Config) hasIPv6() bool {
	for _, a := range c.Addresses {
		if a.Addr().Is6() && !a.Addr().Is4In6() {
			return true
		}
	}
	return false
}

func (c *Config) hasFamily(v4 bool) bool {
	for _, a := range c.Addresses {
		if a.Addr().Unmap().Is4() == v4 {
			return true
		}
	}
	return false
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// ParsePublicKey parses a WireGuard public key (44 characters of base64).
func ParsePublicKey(s string) (wgtypes.Key, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return wgtypes.Key{}, fmt.Errorf("a WireGuard public key is required (44 characters of base64, as `wg pubkey` prints)")
	}
	k, err := wgtypes.ParseKey(s)
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("not a WireGuard public key (want 44 characters of base64, as `wg pubkey` prints): %v", err)
	}
	if k == (wgtypes.Key{}) {
		return wgtypes.Key{}, fmt.Errorf("the all-zero key is not a public key")
	}
	return k, nil
}

// ParseEndpoint splits host:port ([v6]:port for IPv6), checking both parts.
func ParseEndpoint(s string) (host string, port int, err error) {
	if s == "" {
		return "", 0, fmt.Errorf("an endpoint host:port is required")
	}
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("want host:port (or [IPv6]:port), got %q: %v", s, err)
	}
	port, err = strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port must be a number from 1 to 65535, got %q", ps)
	}
	if host == "" {
		return "", 0, fmt.Errorf("the host is missing in %q", s)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.IsUnspecified() || ip.IsMulticast() {
			return "", 0, fmt.Errorf("%s is not a unicast address", ip)
		}
		return host, port, nil
	}
	if !validHostname(host) {
		return "", 0, fmt.Errorf("%q is neither an IP address nor a DNS name", host)
	}
	return host, port, nil
}

func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// ParsePrefix parses a network prefix that must be in canonical form (no host bits).
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("want a prefix like 10.0.0.0/8: %v", err)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%s: a prefix has no zone", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%s: write IPv4 prefixes in IPv4 form", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set: did you mean %s?", s, m)
	}
	return p, nil
}

// parseDuration parses a Go duration ("10s", "500ms"); a bare "0" is zero.
func parseDuration(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration like 10s or 500ms, got %q", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("must not be negative, got %s", s)
	}
	return d, nil
}

// DeviceEqual reports whether two configs build the same interface (name, backend,
// MTU, port, addresses); other changes are applied to a running tunnel in place.
func DeviceEqual(a, b *Config) bool {
	if a.Interface != b.Interface || a.Backend != b.Backend || a.MTU != b.MTU || a.ListenPort != b.ListenPort ||
		len(a.Addresses) != len(b.Addresses) {
		return false
	}
	for i := range a.Addresses {
		if a.Addresses[i] != b.Addresses[i] {
			return false
		}
	}
	return true
}

// AllPrefixes returns the union of every gateway's allowed prefixes, without duplicates,
// in config order.
func (c *Config) AllPrefixes() []netip.Prefix {
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	for _, g := range c.Gateways {
		for _, p := range g.AllowedPrefixes {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// Gateway returns the gateway called name.
func (c *Config) Gateway(name string) (Gateway, bool) {
	for _, g := range c.Gateways {
		if g.Name == name {
			return g, true
		}
	}
	return Gateway{}, false
}
