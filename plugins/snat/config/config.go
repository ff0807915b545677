// Package config owns the snat plugin's configuration: the operator's section of
// sitelink.yaml (as JSON), its JSON Schema, and the checks that turn it into a validated
// model with normalised prefixes, defaults filled in, and errors located by path
// (`applications[0].access[1].ports[2]`).
//
// The config is untrusted input (it comes from an operator's file through the daemon),
// so Parse never panics and bounds everything it expands.
package config

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sitelink/sitelink/plugins/sdk"
)

// Limits on what one config may ask for.
const (
	// MaxClientRanges bounds client_ranges.
	MaxClientRanges = 64
	// MaxApplications bounds applications.
	MaxApplications = 256
	// MaxNetworks bounds one application's networks.
	MaxNetworks = 64
	// MaxAccess bounds one application's access entries.
	MaxAccess = 4096
	// MaxPorts bounds one access entry's ports.
	MaxPorts = 64
	// MaxRules bounds the kernel rules the whole config expands to.
	MaxRules = 20000
)

// Defaults.
const (
	DefaultRecheckInterval = 30 * time.Second
	minRecheckInterval     = time.Second
	maxRecheckInterval     = time.Hour
)

// Config is a validated snat config.
type Config struct {
	// ClientRanges are the clients' virtual IP ranges (IPv4 and IPv6).
	ClientRanges []netip.Prefix
	// ClientInterfaces are the interfaces client traffic arrives on (e.g. wg0);
	// forwarding is enabled on them.
	ClientInterfaces []string
	// ManageForwarding enables IP forwarding on the interfaces the rules need.
	ManageForwarding bool
	// RecheckInterval is how often the kernel is compared with the desired rules even
	// without a netlink event.
	RecheckInterval time.Duration
	// Applications are the application networks clients may reach.
	Applications []Application
}

// Application is one application network and how clients reach it.
type Application struct {
	// Name identifies the application in rules, counters and metrics.
	Name string
	// Networks are the application's prefixes.
	Networks []netip.Prefix
	// Interface is the egress interface towards the application.
	Interface string
	// SNAT says how the client's source address is rewritten.
	SNAT SNAT
	// Access lists what clients may reach. When the config gave none, it holds one
	// entry: every client range to every network, any protocol (Implicit is set).
	Access []Access
}

// SNATMode is how an application's traffic is source-NATed.
type SNATMode int

// The SNAT modes.
const (
	// SNATMasquerade rewrites the source to the egress interface's address.
	SNATMasquerade SNATMode = iota + 1
	// SNATTo rewrites the source to a fixed address.
	SNATTo
	// SNATOff leaves the client's virtual IP (the site routes the range back).
	SNATOff
)

func (m SNATMode) String() string {
	switch m {
	case SNATMasquerade:
		return "masquerade"
	case SNATTo:
		return "to"
	case SNATOff:
		return "off"
	}
	return "unknown"
}

// SNAT is an application's source NAT.
type SNAT struct {
	Mode SNATMode
	// To4 and To6 are the addresses for SNATTo (invalid when not given).
	To4, To6 netip.Addr
}

// String renders the SNAT as written in the config.
func (s SNAT) String() string {
	if s.Mode != SNATTo {
		return s.Mode.String()
	}
	var addrs []string
	for _, a := range []netip.Addr{s.To4, s.To6} {
		if a.IsValid() {
			addrs = append(addrs, a.String())
		}
	}
	return "to " + strings.Join(addrs, ", ")
}

// Protocol is an access entry's transport protocol.
type Protocol int

// The protocols.
const (
	ProtoAny Protocol = iota
	ProtoTCP
	ProtoUDP
	ProtoICMP
)

func (p Protocol) String() string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMP:
		return "icmp"
	}
	return "any"
}

// PortRange is an inclusive range of ports; First == Last for one port.
type PortRange struct{ First, Last uint16 }

func (r PortRange) String() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// Access is one access-list entry: which client prefixes may reach which application
// prefixes with which protocol and ports.
type Access struct {
	From     []netip.Prefix
	To       []netip.Prefix
	Protocol Protocol
	// Ports are destination ports (TCP and UDP only); none means all.
	Ports []PortRange
	// Implicit marks the entry made when the application has no access list.
	Implicit bool
}

// wire is the config as the operator writes it.
type wire struct {
	ClientRanges     []string  `json:"client_ranges"`
	ClientInterfaces []string  `json:"client_interfaces"`
	ManageForwarding *bool     `json:"manage_forwarding"`
	RecheckInterval  string    `json:"recheck_interval"`
	Applications     []wireApp `json:"applications"`
}

type wireApp struct {
	Name      string       `json:"name"`
	Networks  []string     `json:"networks"`
	Interface string       `json:"interface"`
	SNAT      string       `json:"snat"`
	Access    []wireAccess `json:"access"`
}

type wireAccess struct {
	From     []string          `json:"from"`
	To       []string          `json:"to"`
	Protocol string            `json:"protocol"`
	Ports    []json.RawMessage `json:"ports"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// Parse decodes and validates a config section. Errors are sdk.FieldErrors.
func Parse(raw json.RawMessage) (*Config, error) {
	var w wire
	if err := sdk.DecodeConfig(raw, &w); err != nil {
		return nil, err
	}
	var errs sdk.FieldErrors
	c := &Config{ManageForwarding: true, RecheckInterval: DefaultRecheckInterval}
	if w.ManageForwarding != nil {
		c.ManageForwarding = *w.ManageForwarding
	}
	if w.RecheckInterval != "" {
		d, err := time.ParseDuration(w.RecheckInterval)
		switch {
		case err != nil:
			errs.Add("recheck_interval", "expected a duration like 30s, got %q", w.RecheckInterval)
		case d < minRecheckInterval || d > maxRecheckInterval:
			errs.Add("recheck_interval", "must be between %s and %s, got %s", minRecheckInterval, maxRecheckInterval, d)
		default:
			c.RecheckInterval = d
		}
	}

	// Client ranges.
	switch {
	case len(w.ClientRanges) == 0:
		errs.Add("client_ranges", "at least one client virtual IP range is required")
	case len(w.ClientRanges) > MaxClientRanges:
		errs.Add("client_ranges", "at most %d ranges, got %d", MaxClientRanges, len(w.ClientRanges))
	default:
		for i, s := range w.ClientRanges {
			path := fmt.Sprintf("client_ranges[%d]", i)
			p, err := parsePrefix(s)
			if err != nil {
				errs.Add(path, "%v", err)
				continue
			}
			if p.Bits() == 0 {
				errs.Add(path, "%s would make every address a client", p)
				continue
			}
			if j := overlapping(c.ClientRanges, p); j >= 0 {
				errs.Add(path, "%s overlaps client_ranges entry %s", p, c.ClientRanges[j])
				continue
			}
			c.ClientRanges = append(c.ClientRanges, p)
		}
	}

	// Client interfaces.
	seenIf := map[string]bool{}
	for i, name := range w.ClientInterfaces {
		path := fmt.Sprintf("client_interfaces[%d]", i)
		if err := checkIfName(name); err != nil {
			errs.Add(path, "%v", err)
			continue
		}
		if seenIf[name] {
			errs.Add(path, "interface %q is listed twice", name)
			continue
		}
		seenIf[name] = true
		c.ClientInterfaces = append(c.ClientInterfaces, name)
	}

	// Applications.
	switch {
	case len(w.Applications) == 0:
		errs.Add("applications", "at least one application network is required")
	case len(w.Applications) > MaxApplications:
		errs.Add("applications", "at most %d applications, got %d", MaxApplications, len(w.Applications))
	default:
		names := map[string]int{}
		for i, wa := range w.Applications {
			path := fmt.Sprintf("applications[%d]", i)
			a, ok := c.parseApp(path, wa, &errs)
			if !ok {
				continue
			}
			if j, dup := names[a.Name]; dup {
				errs.Add(path+".name", "name %q is already used by applications[%d]", a.Name, j)
				continue
			}
			names[a.Name] = i
			if other, op, np := c.networkClash(a); other != "" {
				errs.Add(path+".networks", "%s overlaps network %s of application %q", np, op, other)
				continue
			}
			c.Applications = append(c.Applications, a)
		}
	}
	if len(errs) == 0 {
		if n := c.RuleCount(); n > MaxRules {
			errs.Add("applications", "the access lists expand to %d kernel rules; at most %d are allowed (use wider prefixes or port ranges)", n, MaxRules)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) parseApp(path string, wa wireApp, errs *sdk.FieldErrors) (Application, bool) {
	n := len(*errs)
	a := Application{Name: wa.Name, Interface: wa.Interface}
	if !nameRE.MatchString(wa.Name) {
		errs.Add(path+".name", "must be 1-32 of a-z, 0-9, '_' and '-', starting with a letter or digit, got %q", wa.Name)
	}
	if err := checkIfName(wa.Interface); err != nil {
		errs.Add(path+".interface", "%v", err)
	}
	switch {
	case len(wa.Networks) == 0:
		errs.Add(path+".networks", "at least one network is required")
	case len(wa.Networks) > MaxNetworks:
		errs.Add(path+".networks", "at most %d networks, got %d", MaxNetworks, len(wa.Networks))
	}
	for i, s := range wa.Networks {
		if i >= MaxNetworks {
			break
		}
		np := fmt.Sprintf("%s.networks[%d]", path, i)
		p, err := parsePrefix(s)
		if err != nil {
			errs.Add(np, "%v", err)
			continue
		}
		if j := overlapping(c.ClientRanges, p); j >= 0 {
			errs.Add(np, "%s overlaps the client range %s: the client virtual IPs must not clash with the site's networks", p, c.ClientRanges[j])
			continue
		}
		if len(c.ClientRanges) > 0 && !c.hasFamily(p.Addr().Is4()) {
			errs.Add(np, "%s is %s but no client range is", p, familyName(p.Addr().Is4()))
			continue
		}
		if j := overlapping(a.Networks, p); j >= 0 {
			errs.Add(np, "%s overlaps %s of the same application", p, a.Networks[j])
			continue
		}
		a.Networks = append(a.Networks, p)
	}
	snat, err := parseSNAT(wa.SNAT)
	if err != nil {
		errs.Add(path+".snat", "%v", err)
	} else if snat.Mode == SNATTo {
		for _, addr := range []netip.Addr{snat.To4, snat.To6} {
			if !addr.IsValid() {
				continue
			}
			if !hasPrefixOfFamily(a.Networks, addr.Is4()) {
				errs.Add(path+".snat", "%s is %s but the application has no %s network", addr, familyName(addr.Is4()), familyName(addr.Is4()))
			}
			if j := containing(c.ClientRanges, addr); j >= 0 {
				errs.Add(path+".snat", "%s is inside the client range %s", addr, c.ClientRanges[j])
			}
		}
		for _, v4 := range []bool{true, false} {
			to := snat.To6
			if v4 {
				to = snat.To4
			}
			if hasPrefixOfFamily(a.Networks, v4) && !to.IsValid() {
				errs.Add(path+".snat", "the application has %s networks: give an %s address too (\"to A, B\")", familyName(v4), familyName(v4))
			}
		}
	}
	a.SNAT = snat
	if len(wa.Access) > MaxAccess {
		errs.Add(path+".access", "at most %d entries, got %d", MaxAccess, len(wa.Access))
	} else {
		for i, wacc := range wa.Access {
			acc, ok := c.parseAccess(fmt.Sprintf("%s.access[%d]", path, i), wacc, a.Networks, errs)
			if ok {
				a.Access = append(a.Access, acc)
			}
		}
	}
	if len(wa.Access) == 0 {
		a.Access = []Access{{From: c.ClientRanges, To: a.Networks, Implicit: true}}
	}
	return a, len(*errs) == n
}

func (c *Config) parseAccess(path string, w wireAccess, networks []netip.Prefix, errs *sdk.FieldErrors) (Access, bool) {
	n := len(*errs)
	var acc Access
	if len(w.From) > MaxNetworks {
		errs.Add(path+".from", "at most %d prefixes, got %d", MaxNetworks, len(w.From))
	} else {
		for i, s := range w.From {
			fp := fmt.Sprintf("%s.from[%d]", path, i)
			p, err := parsePrefix(s)
			if err != nil {
				errs.Add(fp, "%v", err)
				continue
			}
			if !within(c.ClientRanges, p) {
				errs.Add(fp, "%s is not inside a client range", p)
				continue
			}
			acc.From = append(acc.From, p)
		}
	}
	if len(w.From) == 0 {
		acc.From = c.ClientRanges
	}
	if len(w.To) > MaxNetworks {
		errs.Add(path+".to", "at most %d prefixes, got %d", MaxNetworks, len(w.To))
	} else {
		for i, s := range w.To {
			tp := fmt.Sprintf("%s.to[%d]", path, i)
			p, err := parsePrefix(s)
			if err != nil {
				errs.Add(tp, "%v", err)
				continue
			}
			if !within(networks, p) {
				errs.Add(tp, "%s is not inside the application's networks", p)
				continue
			}
			acc.To = append(acc.To, p)
		}
	}
	if len(w.To) == 0 {
		acc.To = networks
	}
	switch strings.ToLower(w.Protocol) {
	case "", "any":
		acc.Protocol = ProtoAny
	case "tcp":
		acc.Protocol = ProtoTCP
	case "udp":
		acc.Protocol = ProtoUDP
	case "icmp":
		acc.Protocol = ProtoICMP
	default:
		errs.Add(path+".protocol", "expected tcp, udp, icmp or any, got %q", w.Protocol)
	}
	if len(w.Ports) > 0 && acc.Protocol != ProtoTCP && acc.Protocol != ProtoUDP {
		errs.Add(path+".ports", "ports need protocol tcp or udp")
	} else if len(w.Ports) > MaxPorts {
		errs.Add(path+".ports", "at most %d ports, got %d", MaxPorts, len(w.Ports))
	} else {
		for i, raw := range w.Ports {
			r, err := ParsePorts(raw)
			if err != nil {
				errs.Add(fmt.Sprintf("%s.ports[%d]", path, i), "%v", err)
				continue
			}
			acc.Ports = append(acc.Ports, r)
		}
	}
	fam4, fam6 := false, false
	for _, f := range acc.From {
		for _, t := range acc.To {
			if f.Addr().Is4() == t.Addr().Is4() {
				if f.Addr().Is4() {
					fam4 = true
				} else {
					fam6 = true
				}
			}
		}
	}
	if len(*errs) == n && !fam4 && !fam6 {
		errs.Add(path, "no from prefix has the same address family as a to prefix: the entry matches nothing")
	}
	return acc, len(*errs) == n
}

// ParsePorts parses one ports item: a number (443) or a string ("443", "8000-8100").
func ParsePorts(raw json.RawMessage) (PortRange, error) {
	text := strings.TrimSpace(string(raw))
	if strings.HasPrefix(text, `"`) {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return PortRange{}, fmt.Errorf("expected a port or a range like \"8000-8100\"")
		}
		text = strings.TrimSpace(s)
	}
	first, last, isRange := strings.Cut(text, "-")
	a, err := parsePort(first)
	if err != nil {
		return PortRange{}, err
	}
	if !isRange {
		return PortRange{a, a}, nil
	}
	b, err := parsePort(last)
	if err != nil {
		return PortRange{}, err
	}
	if b < a {
		return PortRange{}, fmt.Errorf("range %d-%d ends before it starts", a, b)
	}
	return PortRange{a, b}, nil
}

func parsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("expected a port 1-65535 or a range like \"8000-8100\", got %q", s)
	}
	return uint16(n), nil
}

// parseSNAT parses "masquerade", "off", "to A" or "to A, B" (one IPv4 and one IPv6).
func parseSNAT(s string) (SNAT, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "masquerade":
		return SNAT{Mode: SNATMasquerade}, nil
	case "off":
		return SNAT{Mode: SNATOff}, nil
	case "":
		return SNAT{}, fmt.Errorf("required: masquerade, \"to ADDRESS\" or off")
	}
	rest, ok := strings.CutPrefix(s, "to ")
	if !ok {
		return SNAT{}, fmt.Errorf("expected masquerade, \"to ADDRESS\" or off, got %q", s)
	}
	out := SNAT{Mode: SNATTo}
	parts := strings.Split(rest, ",")
	if len(parts) > 2 {
		return SNAT{}, fmt.Errorf("at most one IPv4 and one IPv6 address, got %q", rest)
	}
	for _, part := range parts {
		a, err := netip.ParseAddr(strings.TrimSpace(part))
		if err != nil || a.Zone() != "" || a.Is4In6() {
			return SNAT{}, fmt.Errorf("%q is not an IP address", strings.TrimSpace(part))
		}
		if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
			return SNAT{}, fmt.Errorf("%s cannot be a source address", a)
		}
		if a.Is4() {
			if out.To4.IsValid() {
				return SNAT{}, fmt.Errorf("two IPv4 addresses in %q", rest)
			}
			out.To4 = a
		} else {
			if out.To6.IsValid() {
				return SNAT{}, fmt.Errorf("two IPv6 addresses in %q", rest)
			}
			out.To6 = a
		}
	}
	return out, nil
}

// parsePrefix parses a prefix or a single address (as /32 or /128). Host bits must be
// zero so that what the operator wrote is what is matched.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		p, err = netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a prefix like 10.0.0.0/8", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not a prefix like 10.0.0.0/8", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%s: write IPv4-mapped addresses as IPv4", p)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set (did you mean %s?)", p, m)
	}
	return p, nil
}

func checkIfName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("an interface name is required")
	case len(name) > 15:
		return fmt.Errorf("interface name %q is longer than 15 bytes", name)
	case name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n\"\\*"):
		return fmt.Errorf("%q is not a valid interface name", name)
	}
	for _, r := range name {
		if r < 0x21 || r > 0x7e {
			return fmt.Errorf("%q is not a valid interface name", name)
		}
	}
	return nil
}

func overlapping(list []netip.Prefix, p netip.Prefix) int {
	for i, q := range list {
		if q.Overlaps(p) {
			return i
		}
	}
	return -1
}

func containing(list []netip.Prefix, a netip.Addr) int {
	for i, q := range list {
		if q.Contains(a) {
			return i
		}
	}
	return -1
}

// within reports whether p lies inside one of list.
func within(list []netip.Prefix, p netip.Prefix) bool {
	for _, q := range list {
		if q.Addr().Is4() == p.Addr().Is4() && q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func hasPrefixOfFamily(list []netip.Prefix, v4 bool) bool {
	for _, p := range list {
		if p.Addr().Is4() == v4 {
			return true
		}
	}
	return false
}

func (c *Config) hasFamily(v4 bool) bool { return hasPrefixOfFamily(c.ClientRanges, v4) }

func (c *Config) networkClash(a Application) (other string, theirs, ours netip.Prefix) {
	for _, b := range c.Applications {
		for _, p := range a.Networks {
			if j := overlapping(b.Networks, p); j >= 0 {
				return b.Name, b.Networks[j], p
			}
		}
	}
	return "", netip.Prefix{}, netip.Prefix{}
}

func familyName(v4 bool) string {
	if v4 {
		return "IPv4"
	}
	return "IPv6"
}

// HasFamily reports whether any client range is IPv4 (v4) or IPv6.
func (c *Config) HasFamily(v4 bool) bool { return c.hasFamily(v4) }

// RuleCount is how many kernel rules the config expands to (all families).
func (c *Config) RuleCount() int {
	n := 0
	for _, v4 := range []bool{true, false} {
		if !c.hasFamily(v4) {
			continue
		}
		ranges := countFamily(c.ClientRanges, v4)
		n += ranges + 1 // the jumps into the access chain and the final drop
		for _, a := range c.Applications {
			nets := countFamily(a.Networks, v4)
			if a.SNAT.Mode != SNATOff {
				n += ranges * nets
			}
			for _, acc := range a.Access {
				ports := len(acc.Ports)
				if ports == 0 {
					ports = 1
				}
				n += countFamily(acc.From, v4) * countFamily(acc.To, v4) * ports
			}
		}
	}
	return n
}

func countFamily(list []netip.Prefix, v4 bool) int {
	n := 0
	for _, p := range list {
		if p.Addr().Is4() == v4 {
			n++
		}
	}
	return n
}

// Interfaces returns the interfaces forwarding must be enabled on: the client
// interfaces and every application's egress interface, without duplicates.
func (c *Config) Interfaces() []string {
	seen := map[string]bool{}
	var out []string
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, n := range c.ClientInterfaces {
		add(n)
	}
	for _, a := range c.Applications {
		add(a.Interface)
	}
	return out
}
