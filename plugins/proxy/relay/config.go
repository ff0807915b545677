package relay

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/sitelink/sitelink/plugins/proxy/access"
	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/sdk/metrics"
)

// Config is the proxy plugin's config section.
type Config struct {
	Listeners []ListenerConfig          `json:"listeners,omitempty"`
	Upstreams map[string]UpstreamConfig `json:"upstreams,omitempty"`
	Limits    LimitsConfig              `json:"limits,omitempty"`
	GeoIP     *GeoIPConfig              `json:"geoip,omitempty"`
	// DrainTimeout bounds a graceful stop (default 30s).
	DrainTimeout Duration `json:"drain_timeout,omitempty"`
	// AuditRate is how many refusals per second are written to the audit log (default 10).
	AuditRate *int `json:"audit_rate,omitempty"`
	// Cluster names the other proxies of the cluster for the cluster view (package
	// cluster; the relay itself does not use it).
	Cluster *ClusterConfig `json:"cluster,omitempty"`
}

// ClusterConfig is the cluster view: this proxy's read-only status endpoint and its peers'.
type ClusterConfig struct {
	// Node names this proxy in the view (default: the host name).
	Node string `json:"node,omitempty"`
	// Listen is the address of this proxy's status endpoint, host:port.
	Listen string `json:"listen,omitempty"`
	// Peers are the other proxies' status endpoints, host:port.
	Peers []string `json:"peers,omitempty"`
	// Allow are sources admitted to the endpoint besides the peers' addresses.
	Allow []string `json:"allow,omitempty"`
	// Token, when set, is required from pollers and sent to peers (the same on all).
	Token string `json:"token,omitempty"`
	// Interval between polls of the peers (default 5s); Timeout of one poll (default 2s).
	Interval Duration `json:"interval,omitempty"`
	Timeout  Duration `json:"timeout,omitempty"`
}

// ListenerConfig is one listening socket.
type ListenerConfig struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// Mode: tcp (plain relay), tls (passthrough with SNI routing), http (plain HTTP and
	// CONNECT) or cache (ingest into the log cache).
	Mode string `json:"mode"`
	// Upstream is the default upstream group.
	Upstream string `json:"upstream,omitempty"`
	// SNIRoutes route TLS by server name (first match wins; "*.x" matches subdomains).
	SNIRoutes []SNIRoute `json:"sni_routes,omitempty"`
	// MinTLS refuses ClientHellos whose highest version is below ("1.0" … "1.3").
	MinTLS string `json:"min_tls,omitempty"`
	// LegacyAllow are sources exempt from MinTLS.
	LegacyAllow []string `json:"legacy_allow,omitempty"`
	// Allow, when set, are the only sources admitted.
	Allow []string `json:"allow,omitempty"`
	// Countries, when set, are the only GeoIP countries admitted.
	Countries []string `json:"countries,omitempty"`
	// AllowUnknownCountry admits sources the GeoIP database does not know.
	AllowUnknownCountry bool `json:"allow_unknown_country,omitempty"`
	// AgentsOnly lets only agent traffic through from untrusted sources.
	AgentsOnly *AgentsOnlyConfig `json:"agents_only,omitempty"`
	// Connect lists the host:port targets CONNECT may reach (http mode).
	Connect []string `json:"connect,omitempty"`
	// IdleTimeout closes a connection without traffic either way (default 10m).
	IdleTimeout Duration `json:"idle_timeout,omitempty"`
	// SniffTimeout bounds reading a ClientHello or request head (default 10s).
	SniffTimeout Duration `json:"sniff_timeout,omitempty"`
	// MaxRecordBytes bounds one cache-mode record (default 1 MiB).
	MaxRecordBytes int `json:"max_record_bytes,omitempty"`
}

// SNIRoute sends a server name to an upstream group.
type SNIRoute struct {
	ServerName string `json:"server_name"`
	Upstream   string `json:"upstream"`
}

// AgentsOnlyConfig says what agent traffic looks like.
type AgentsOnlyConfig struct {
	// ServerNames (TLS) that are agent traffic ("*.x" patterns).
	ServerNames []string `json:"server_names,omitempty"`
	// Paths (HTTP) prefixes that are agent traffic.
	Paths []string `json:"paths,omitempty"`
	// Ports of CONNECT targets that are agent traffic.
	Ports []int `json:"ports,omitempty"`
	// Trusted sources may also send other (control-console) traffic.
	Trusted []string `json:"trusted,omitempty"`
}

// UpstreamConfig is a group of management-center endpoints.
type UpstreamConfig struct {
	Servers []string `json:"servers"`
	// Backup servers are used when no primary is healthy.
	Backup []string `json:"backup,omitempty"`
	// ProxyProtocol "v2" sends a PROXY v2 header with the client's address.
	ProxyProtocol string `json:"proxy_protocol,omitempty"`
	// HealthInterval between TCP health checks (default 5s; 0s is not allowed).
	HealthInterval Duration `json:"health_interval,omitempty"`
	// ConnectTimeout for dials and health checks (default 3s).
	ConnectTimeout Duration `json:"connect_timeout,omitempty"`
}

// LimitsConfig are the "bandwidth and frequency" limits; "unlimited" or empty by default.
type LimitsConfig struct {
	TotalBandwidth  Rate  `json:"total_bandwidth,omitempty"`
	ClientBandwidth Rate  `json:"client_bandwidth,omitempty"`
	TotalConnRate   Count `json:"total_conn_rate,omitempty"`
	ClientConnRate  Count `json:"client_conn_rate,omitempty"`
	MaxConns        Count `json:"max_conns,omitempty"`
	ClientMaxConns  Count `json:"client_max_conns,omitempty"`
}

// GeoIPConfig names the MaxMind database.
type GeoIPConfig struct {
	Database string `json:"database"`
}

// Duration is a time.Duration written as "30s".
type Duration time.Duration

// UnmarshalJSON accepts "30s" (and a number of seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var f float64
		if err2 := json.Unmarshal(b, &f); err2 != nil {
			return fmt.Errorf("expected a duration like \"30s\"")
		}
		*d = Duration(f * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("expected a duration like \"30s\", got %q", s)
	}
	*d = Duration(v)
	return nil
}

// Rate is a bandwidth in bytes per second; 0 is unlimited. It is written as
// "unlimited", a number of bytes per second, or "10Mbit", "2MB", "512KiB" (per second).
type Rate float64

// ParseRate parses a bandwidth.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(s), "/s"), "ps"))
	if s == "" || s == "unlimited" || s == "0" {
		return 0, nil
	}
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad bandwidth %q", s)
	}
	mult := map[string]float64{"": 1, "B": 1, "bit": 1.0 / 8, "Kbit": 1e3 / 8, "Mbit": 1e6 / 8, "Gbit": 1e9 / 8,
		"KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
		"kbit": 1e3 / 8, "kB": 1e3}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("bad bandwidth unit %q (use bit, Kbit, Mbit, Gbit, B, KB, MB, GB, KiB, MiB, GiB)", unit)
	}
	return Rate(v * mult), nil
}

// UnmarshalJSON accepts a number or a string.
func (r *Rate) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var f float64
		if err2 := json.Unmarshal(b, &f); err2 != nil || f < 0 {
			return fmt.Errorf("expected a bandwidth like \"10Mbit\" or \"unlimited\"")
		}
		*r = Rate(f)
		return nil
	}
	v, err := ParseRate(s)
	*r = v
	return err
}

// Count is a non-negative number; "unlimited" or 0 means no limit.
type Count float64

// UnmarshalJSON accepts a number or "unlimited".
func (c *Count) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		if s == "unlimited" || s == "" {
			*c = 0
			return nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 {
			return fmt.Errorf("expected a number or \"unlimited\", got %q", s)
		}
		*c = Count(f)
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil || f < 0 {
		return fmt.Errorf("expected a number or \"unlimited\"")
	}
	*c = Count(f)
	return nil
}

// Listener modes.
const (
	ModeTCP   = "tcp"
	ModeTLS   = "tls"
	ModeHTTP  = "http"
	ModeCache = "cache"
)

// DefaultListeners are used when none are configured: 80 (http), 443 (tls), 8080 (http,
// for agents configured with an HTTP proxy).
func DefaultListeners(upstream string) []ListenerConfig {
	return []ListenerConfig{
		{Name: "http", Address: ":80", Mode: ModeHTTP, Upstream: upstream},
		{Name: "https", Address: ":443", Mode: ModeTLS, Upstream: upstream},
		{Name: "proxy", Address: ":8080", Mode: ModeHTTP, Upstream: upstream},
	}
}

// compiled is a listener's validated settings.
type compiled struct {
	ListenerConfig
	policy    access.Policy
	legacy    access.Prefixes
	minTLS    uint16
	trusted   access.Prefixes
	connect   map[string]bool
	idle      time.Duration
	sniffTO   time.Duration
	maxRecord int
	// connections is this listener's series of Metrics.Connections.
	connections *metrics.Counter
}

var tlsVersions = map[string]uint16{"1.0": 0x0301, "1.1": 0x0302, "1.2": 0x0303, "1.3": 0x0304}

// ParseConfig decodes and checks a config section; errors are sdk.FieldErrors.
func ParseConfig(raw json.RawMessage) (*Config, error) {
	var c Config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return nil, err
	}
	var errs sdk.FieldErrors
	if len(c.Upstreams) == 0 && hasRelay(c.Listeners) {
		errs.Add("upstreams", "at least one upstream group is needed")
	}
	if len(c.Listeners) == 0 {
		def := ""
		if len(c.Upstreams) == 1 {
			for n := range c.Upstreams {
				def = n
			}
		} else if len(c.Upstreams) > 1 {
			errs.Add("listeners", "with several upstream groups, configure the listeners")
		}
		c.Listeners = DefaultListeners(def)
	}
	for name, u := range c.Upstreams {
		p := "upstreams." + name
		if len(u.Servers) == 0 {
			errs.Add(p+".servers", "at least one server is needed")
		}
		for i, s := range append(append([]string{}, u.Servers...), u.Backup...) {
			if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
				errs.Add(fmt.Sprintf("%s.servers[%d]", p, i), "%q is not host:port", s)
			}
		}
		if u.ProxyProtocol != "" && u.ProxyProtocol != "v2" {
			errs.Add(p+".proxy_protocol", "only \"v2\" is supported, got %q", u.ProxyProtocol)
		}
	}
	names := map[string]bool{}
	addrs := map[string]bool{}
	for i, l := range c.Listeners {
		p := fmt.Sprintf("listeners[%d]", i)
		if l.Name == "" {
			errs.Add(p+".name", "a name is needed")
		} else if names[l.Name] {
			errs.Add(p+".name", "%q is used twice", l.Name)
		}
		names[l.Name] = true
		if _, _, err := net.SplitHostPort(l.Address); err != nil {
			errs.Add(p+".address", "%q is not [host]:port", l.Address)
		} else if addrs[l.Address] && !strings.HasSuffix(l.Address, ":0") {
			errs.Add(p+".address", "%q is used twice", l.Address)
		}
		addrs[l.Address] = true
		switch l.Mode {
		case ModeTCP, ModeTLS, ModeHTTP:
			if _, ok := c.Upstreams[l.Upstream]; !ok && !(l.Mode == ModeHTTP && len(l.Connect) > 0 && l.Upstream == "") {
				errs.Add(p+".upstream", "unknown upstream group %q", l.Upstream)
			}
		case ModeCache:
		default:
			errs.Add(p+".mode", "must be tcp, tls, http or cache, got %q", l.Mode)
		}
		for j, r := range l.SNIRoutes {
			if _, ok := c.Upstreams[r.Upstream]; !ok {
				errs.Add(fmt.Sprintf("%s.sni_routes[%d].upstream", p, j), "unknown upstream group %q", r.Upstream)
			}
			if r.ServerName == "" {
				errs.Add(fmt.Sprintf("%s.sni_routes[%d].server_name", p, j), "a server name is needed")
			}
		}
		if l.MinTLS != "" {
			if _, ok := tlsVersions[l.MinTLS]; !ok {
				errs.Add(p+".min_tls", "must be 1.0, 1.1, 1.2 or 1.3, got %q", l.MinTLS)
			}
		}
		for j, t := range l.Connect {
			if _, port, err := net.SplitHostPort(t); err != nil || port == "" || port == "*" {
				errs.Add(fmt.Sprintf("%s.connect[%d]", p, j), "%q is not host:port", t)
			}
		}
		if len(l.Connect) > 0 && l.Mode != ModeHTTP {
			errs.Add(p+".connect", "CONNECT targets need mode http")
		}
		for _, f := range []struct {
			name string
			list []string
		}{{"allow", l.Allow}, {"legacy_allow", l.LegacyAllow}} {
			if _, err := access.ParsePrefixes(f.list); err != nil {
				errs.Add(p+"."+f.name, "%v", err)
			}
		}
		if l.AgentsOnly != nil {
			if _, err := access.ParsePrefixes(l.AgentsOnly.Trusted); err != nil {
				errs.Add(p+".agents_only.trusted", "%v", err)
			}
		}
		if len(l.Countries) > 0 && (c.GeoIP == nil || c.GeoIP.Database == "") {
			errs.Add(p+".countries", "needs geoip.database")
		}
	}
	if cl := c.Cluster; cl != nil {
		if cl.Listen != "" {
			if _, port, err := net.SplitHostPort(cl.Listen); err != nil || port == "" {
				errs.Add("cluster.listen", "%q is not [host]:port", cl.Listen)
			}
		}
		for i, p := range cl.Peers {
			if host, port, err := net.SplitHostPort(p); err != nil || host == "" || port == "" {
				errs.Add(fmt.Sprintf("cluster.peers[%d]", i), "%q is not host:port", p)
			}
		}
		if _, err := access.ParsePrefixes(cl.Allow); err != nil {
			errs.Add("cluster.allow", "%v", err)
		}
		if len(cl.Peers) > 0 && cl.Listen == "" {
			errs.Add("cluster.listen", "peers poll each other: this proxy needs a listen address too")
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return &c, nil
}

func hasRelay(ls []ListenerConfig) bool {
	if len(ls) == 0 {
		return true
	}
	for _, l := range ls {
		if l.Mode != ModeCache && !(l.Mode == ModeHTTP && len(l.Connect) > 0 && l.Upstream == "") {
			return true
		}
	}
	return false
}

func compile(l ListenerConfig, geo *access.GeoIP) *compiled {
	c := &compiled{ListenerConfig: l, idle: 10 * time.Minute, sniffTO: 10 * time.Second, maxRecord: 1 << 20}
	c.policy.Allow, _ = access.ParsePrefixes(l.Allow)
	if len(l.Countries) > 0 {
		c.policy.Countries = map[string]bool{}
		for _, cc := range l.Countries {
			c.policy.Countries[strings.ToUpper(cc)] = true
		}
		c.policy.Geo = geo
		c.policy.AllowUnknownCountry = l.AllowUnknownCountry
	}
	c.legacy, _ = access.ParsePrefixes(l.LegacyAllow)
	c.minTLS = tlsVersions[l.MinTLS]
	if l.AgentsOnly != nil {
		c.trusted, _ = access.ParsePrefixes(l.AgentsOnly.Trusted)
	}
	c.connect = map[string]bool{}
	for _, t := range l.Connect {
		c.connect[strings.ToLower(t)] = true
	}
	if l.IdleTimeout > 0 {
		c.idle = time.Duration(l.IdleTimeout)
	}
	if l.SniffTimeout > 0 {
		c.sniffTO = time.Duration(l.SniffTimeout)
	}
	if l.MaxRecordBytes > 0 {
		c.maxRecord = l.MaxRecordBytes
	}
	return c
}

// matchName matches a host name against "name" or "*.suffix" (and "*").
func matchName(pattern, name string) bool {
	pattern = strings.ToLower(pattern)
	if pattern == "*" || pattern == name {
		return true
	}
	if strings.HasPrefix(pattern, "*.") {
		return strings.HasSuffix(name, pattern[1:])
	}
	ok, _ := path.Match(pattern, name)
	return ok
}

// isTrusted says whether a is trusted for console traffic on l.
func (c *compiled) isTrusted(a netip.Addr) bool { return c.trusted.Contains(a) }
