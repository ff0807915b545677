// Package config owns the vrrp plugin's configuration: its types and defaults, the JSON
// Schema the daemon checks the operator's section against, and the plugin's own checks
// (field errors with paths such as instances[0].priority).
package config

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"time"

	"github.com/sitelink/sitelink/plugins/sdk"
)

// Config is the vrrp section of sitelink.yaml.
type Config struct {
	// Instances are the virtual routers this node takes part in.
	Instances []Instance `json:"instances"`
}

// Instance is one virtual router.
type Instance struct {
	// Name identifies the instance in status, events and actions (default IFACE-VRID).
	Name string `json:"name,omitempty"`
	// Interface is the link the virtual router lives on.
	Interface string `json:"interface"`
	// VRID is the virtual router ID, 1-255; every member of the group uses the same.
	VRID int `json:"vrid"`
	// Priority is 1-254 (higher wins) or 255 for the owner of the addresses.
	Priority int `json:"priority,omitempty"`
	// VirtualIPs are the addresses with prefix ("192.0.2.10/24"); all of one family.
	VirtualIPs []string `json:"virtual_ips"`
	// AdvertInterval is the advertisement interval in centiseconds (default 100 = 1 s).
	AdvertInterval int `json:"advert_interval,omitempty"`
	// Preempt lets this node take over from a lower-priority master (default true).
	Preempt *bool `json:"preempt,omitempty"`
	// PreemptDelay holds preemption back after start, after FAULT and after the
	// priority rises (Go duration, default "0s").
	PreemptDelay string `json:"preempt_delay,omitempty"`
	// ResignTakeover is what a backup does when the master resigns (priority 0):
	// "skew" waits the RFC skew time (right for groups with several backups),
	// "immediate" takes over at once (right for pairs), "auto" (the default) is skew
	// with two or more unicast peers and immediate otherwise: Sitelink's redundancy
	// is a pair of connectors.
	ResignTakeover string `json:"resign_takeover,omitempty"`
	// UnicastPeers, when set, are the other routers' addresses; adverts go to them
	// instead of the multicast group and only theirs are accepted.
	UnicastPeers []string `json:"unicast_peers,omitempty"`
	// SourceAddress is the primary address adverts come from (default: the
	// interface's first address of the family that is not a virtual IP; for IPv6 its
	// link-local address).
	SourceAddress string `json:"source_address,omitempty"`
	// GARP tunes the gratuitous ARP / unsolicited neighbour advertisements.
	GARP GARP `json:"garp"`
	// TrackInterfaces are links whose state changes the priority or causes FAULT.
	TrackInterfaces []TrackInterface `json:"track_interfaces,omitempty"`
	// TrackEvents are other plugins' events whose state changes the priority or
	// causes FAULT (e.g. the tunnel being down).
	TrackEvents []TrackEvent `json:"track_events,omitempty"`
	// AffectsRole says whether the instance counts for the node's HA role (default true).
	AffectsRole *bool `json:"affects_role,omitempty"`
}

// GARP tunes address announcements after becoming master.
type GARP struct {
	// Count is the number of announcements in a burst (default 5).
	Count int `json:"count,omitempty"`
	// Interval is the gap between announcements of a burst (default "10ms").
	Interval string `json:"interval,omitempty"`
	// RepeatAfter sends a second burst this long after becoming master (default "5s";
	// "0s" turns it off).
	RepeatAfter string `json:"repeat_after,omitempty"`
	// Refresh announces again periodically while master, so caches that went stale
	// in a split brain heal (default "30s"; "0s" turns it off). Each refresh also
	// re-adds a virtual IP that was removed behind our back.
	Refresh string `json:"refresh,omitempty"`
}

// TrackInterface tracks a link (up and running).
type TrackInterface struct {
	// Name is the interface name.
	Name string `json:"name"`
	// Weight 0 (the default) puts the instance in FAULT while the link is down; a
	// negative weight is added to the priority while it is down, a positive one while
	// it is up (keepalived's semantics).
	Weight int `json:"weight,omitempty"`
}

// TrackEvent tracks the state another plugin publishes as events.
type TrackEvent struct {
	// Type is the event type, e.g. "tunnel".
	Type string `json:"type"`
	// Source is the publishing plugin's name ("" = any).
	Source string `json:"source,omitempty"`
	// Match selects the events this tracker follows by their attributes (e.g.
	// {"gateway": "gw-a"}); events that do not match are ignored.
	Match map[string]string `json:"match,omitempty"`
	// Up are the attributes of an event that means healthy (default {"state": "up"});
	// any other followed event means down.
	Up map[string]string `json:"up,omitempty"`
	// Weight as for interfaces: 0 means FAULT while down.
	Weight int `json:"weight,omitempty"`
	// Initial is the state before the first event: "down" (default) or "up".
	Initial string `json:"initial,omitempty"`
}

// Schema is the JSON Schema of the section, for the daemon's check.
const Schema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "instances": {
      "type": "array",
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["interface", "vrid", "virtual_ips"],
        "properties": {
          "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,32}$"},
          "interface": {"type": "string", "minLength": 1, "maxLength": 15},
          "vrid": {"type": "integer", "minimum": 1, "maximum": 255},
          "priority": {"type": "integer", "minimum": 1, "maximum": 255},
          "virtual_ips": {"type": "array", "minItems": 1, "items": {"type": "string"}},
          "advert_interval": {"type": "integer", "minimum": 1, "maximum": 4095},
          "preempt": {"type": "boolean"},
          "preempt_delay": {"type": "string"},
          "resign_takeover": {"enum": ["auto", "skew", "immediate"]},
          "unicast_peers": {"type": "array", "items": {"type": "string"}},
          "source_address": {"type": "string"},
          "garp": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
              "count": {"type": "integer", "minimum": 1, "maximum": 100},
              "interval": {"type": "string"},
              "repeat_after": {"type": "string"},
              "refresh": {"type": "string"}
            }
          },
          "track_interfaces": {
            "type": "array",
            "items": {
              "type": "object",
              "additionalProperties": false,
              "required": ["name"],
              "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 15},
                "weight": {"type": "integer", "minimum": -254, "maximum": 254}
              }
            }
          },
          "track_events": {
            "type": "array",
            "items": {
              "type": "object",
              "additionalProperties": false,
              "required": ["type"],
              "properties": {
                "type": {"type": "string", "minLength": 1},
                "source": {"type": "string"},
                "match": {"type": "object", "additionalProperties": {"type": "string"}},
                "up": {"type": "object", "additionalProperties": {"type": "string"}},
                "weight": {"type": "integer", "minimum": -254, "maximum": 254},
                "initial": {"enum": ["up", "down"]}
              }
            }
          },
          "affects_role": {"type": "boolean"}
        }
      }
    }
  }
}`

// Defaults used when a key is absent.
const (
	DefaultPriority       = 100
	DefaultAdvertInterval = 100 // centiseconds
	DefaultGARPCount      = 5
	DefaultGARPInterval   = 10 * time.Millisecond
	DefaultGARPRepeat     = 5 * time.Second
	DefaultGARPRefresh    = 30 * time.Second
)

// Resolved is a checked instance with every default filled in and every value parsed.
type Resolved struct {
	Name            string
	Interface       string
	VRID            uint8
	Priority        uint8
	IPv6            bool
	VirtualIPs      []netip.Prefix
	Interval        time.Duration
	Preempt         bool
	PreemptDelay    time.Duration
	ResignImmediate bool
	UnicastPeers    []netip.Addr
	SourceAddress   netip.Addr // zero: choose from the interface
	GARPCount       int
	GARPInterval    time.Duration
	GARPRepeat      time.Duration
	GARPRefresh     time.Duration
	TrackInterfaces []TrackInterface
	TrackEvents     []TrackEvent
	AffectsRole     bool
}

// Owner reports whether the instance owns its addresses (priority 255).
func (r *Resolved) Owner() bool { return r.Priority == 255 }

// Addrs are the virtual addresses without prefixes, as advertised.
func (r *Resolved) Addrs() []netip.Addr {
	out := make([]netip.Addr, len(r.VirtualIPs))
	for i, p := range r.VirtualIPs {
		out[i] = p.Addr()
	}
	return out
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)

// Parse decodes and checks the section, returning the resolved instances or
// sdk.FieldErrors.
func Parse(raw json.RawMessage) ([]Resolved, error) {
	var c Config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return nil, err
	}
	return c.Resolve()
}

// Resolve checks c and fills in defaults.
func (c *Config) Resolve() ([]Resolved, error) {
	var errs sdk.FieldErrors
	out := make([]Resolved, 0, len(c.Instances))
	names := map[string]int{}
	groups := map[string]int{}
	for i, in := range c.Instances {
		p := fmt.Sprintf("instances[%d]", i)
		r, ierrs := in.resolve(p)
		errs = append(errs, ierrs...)
		if len(ierrs) > 0 {
			continue
		}
		if j, dup := names[r.Name]; dup {
			errs.Add(p+".name", "name %q is already used by instances[%d]", r.Name, j)
		}
		names[r.Name] = i
		key := fmt.Sprintf("%s/%d/%v", r.Interface, r.VRID, r.IPv6)
		if j, dup := groups[key]; dup {
			errs.Add(p+".vrid", "VRID %d on %s is already used by instances[%d]", r.VRID, r.Interface, j)
		}
		groups[key] = i
		out = append(out, r)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func duration(errs *sdk.FieldErrors, path, s string, def, min, max time.Duration) time.Duration {
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		errs.Add(path, "expected a duration like %q, got %q", "500ms", s)
		return def
	}
	if d < min || d > max {
		errs.Add(path, "must be between %v and %v, got %v", min, max, d)
	}
	return d
}

func (in *Instance) resolve(p string) (Resolved, sdk.FieldErrors) {
	var errs sdk.FieldErrors
	r := Resolved{Interface: in.Interface, Name: in.Name, Preempt: true, AffectsRole: true,
		TrackInterfaces: in.TrackInterfaces, TrackEvents: in.TrackEvents}
	if in.Interface == "" || len(in.Interface) > 15 {
		errs.Add(p+".interface", "an interface name of 1 to 15 characters is required")
	}
	if in.VRID < 1 || in.VRID > 255 {
		errs.Add(p+".vrid", "must be between 1 and 255, got %d", in.VRID)
	}
	r.VRID = uint8(in.VRID)
	if r.Name == "" {
		r.Name = fmt.Sprintf("%s-%d", in.Interface, in.VRID)
	}
	if !nameRE.MatchString(r.Name) {
		errs.Add(p+".name", "must be 1 to 32 letters, digits, '_', '.' or '-', got %q", r.Name)
	}
	prio := in.Priority
	if prio == 0 {
		prio = DefaultPriority
	}
	if prio < 1 || prio > 255 {
		errs.Add(p+".priority", "must be between 1 and 254, or 255 for the address owner, got %d", prio)
	}
	r.Priority = uint8(prio)
	if len(in.VirtualIPs) == 0 {
		errs.Add(p+".virtual_ips", "at least one virtual IP is required")
	}
	seen := map[netip.Addr]bool{}
	for j, s := range in.VirtualIPs {
		vp := fmt.Sprintf("%s.virtual_ips[%d]", p, j)
		pfx, err := parsePrefix(s)
		if err != nil {
			errs.Add(vp, "%v", err)
			continue
		}
		a := pfx.Addr()
		if a.IsMulticast() || a.IsUnspecified() || a.IsLoopback() {
			errs.Add(vp, "%s cannot be a virtual IP", a)
			continue
		}
		if j == 0 {
			r.IPv6 = a.Is6()
		} else if a.Is6() != r.IPv6 {
			errs.Add(vp, "all virtual IPs of an instance must be of one family (IPv4 or IPv6)")
			continue
		}
		if seen[a] {
			errs.Add(vp, "%s is listed twice", a)
			continue
		}
		seen[a] = true
		r.VirtualIPs = append(r.VirtualIPs, pfx)
	}
	ai := in.AdvertInterval
	if ai == 0 {
		ai = DefaultAdvertInterval
	}
	if ai < 1 || ai > 4095 {
		errs.Add(p+".advert_interval", "must be between 1 and 4095 centiseconds, got %d", ai)
	}
	r.Interval = time.Duration(ai) * 10 * time.Millisecond
	if in.Preempt != nil {
		r.Preempt = *in.Preempt
	}
	if in.AffectsRole != nil {
		r.AffectsRole = *in.AffectsRole
	}
	r.PreemptDelay = duration(&errs, p+".preempt_delay", in.PreemptDelay, 0, 0, time.Hour)
	for j, s := range in.UnicastPeers {
		a, err := netip.ParseAddr(s)
		pp := fmt.Sprintf("%s.unicast_peers[%d]", p, j)
		switch {
		case err != nil:
			errs.Add(pp, "expected an IP address, got %q", s)
		case a.Is6() != r.IPv6 || a.Is4In6():
			errs.Add(pp, "%s is not of the virtual IPs' family", a)
		case a.IsMulticast() || a.IsUnspecified():
			errs.Add(pp, "%s is not a unicast address", a)
		default:
			r.UnicastPeers = append(r.UnicastPeers, a)
		}
	}
	switch in.ResignTakeover {
	case "", "auto":
		r.ResignImmediate = len(in.UnicastPeers) <= 1
	case "immediate":
		r.ResignImmediate = true
	case "skew":
	default:
		errs.Add(p+".resign_takeover", "must be auto, skew or immediate, got %q", in.ResignTakeover)
	}
	if in.SourceAddress != "" {
		a, err := netip.ParseAddr(in.SourceAddress)
		switch {
		case err != nil:
			errs.Add(p+".source_address", "expected an IP address, got %q", in.SourceAddress)
		case a.Is6() != r.IPv6:
			errs.Add(p+".source_address", "%s is not of the virtual IPs' family", a)
		default:
			r.SourceAddress = a
		}
	}
	g := in.GARP
	r.GARPCount = g.Count
	if r.GARPCount == 0 {
		r.GARPCount = DefaultGARPCount
	}
	if r.GARPCount < 1 || r.GARPCount > 100 {
		errs.Add(p+".garp.count", "must be between 1 and 100, got %d", r.GARPCount)
	}
	r.GARPInterval = duration(&errs, p+".garp.interval", g.Interval, DefaultGARPInterval, 0, time.Second)
	r.GARPRepeat = duration(&errs, p+".garp.repeat_after", g.RepeatAfter, DefaultGARPRepeat, 0, time.Hour)
	r.GARPRefresh = duration(&errs, p+".garp.refresh", g.Refresh, DefaultGARPRefresh, 0, 24*time.Hour)
	if r.GARPRefresh > 0 && r.GARPRefresh < time.Second {
		errs.Add(p+".garp.refresh", "must be 0s (off) or at least 1s, got %v", r.GARPRefresh)
	}
	for j, ti := range in.TrackInterfaces {
		tp := fmt.Sprintf("%s.track_interfaces[%d]", p, j)
		if ti.Name == "" || len(ti.Name) > 15 {
			errs.Add(tp+".name", "an interface name of 1 to 15 characters is required")
		}
		if ti.Weight < -254 || ti.Weight > 254 {
			errs.Add(tp+".weight", "must be between -254 and 254, got %d", ti.Weight)
		}
	}
	r.TrackEvents = make([]TrackEvent, len(in.TrackEvents))
	for j, te := range in.TrackEvents {
		tp := fmt.Sprintf("%s.track_events[%d]", p, j)
		if te.Type == "" {
			errs.Add(tp+".type", "an event type is required")
		}
		if te.Weight < -254 || te.Weight > 254 {
			errs.Add(tp+".weight", "must be between -254 and 254, got %d", te.Weight)
		}
		switch te.Initial {
		case "":
			te.Initial = "down"
		case "up", "down":
		default:
			errs.Add(tp+".initial", "must be up or down, got %q", te.Initial)
		}
		if len(te.Up) == 0 {
			te.Up = map[string]string{"state": "up"}
		}
		r.TrackEvents[j] = te
	}
	if r.Owner() && (len(in.TrackInterfaces) > 0 || len(in.TrackEvents) > 0) {
		for j, ti := range in.TrackInterfaces {
			if ti.Weight != 0 {
				errs.Add(fmt.Sprintf("%s.track_interfaces[%d].weight", p, j), "the address owner (priority 255) has a fixed priority: use weight 0 (FAULT)")
			}
		}
		for j, te := range in.TrackEvents {
			if te.Weight != 0 {
				errs.Add(fmt.Sprintf("%s.track_events[%d].weight", p, j), "the address owner (priority 255) has a fixed priority: use weight 0 (FAULT)")
			}
		}
	}
	return r, errs
}

// parsePrefix reads "ADDR/LEN" or a bare address (a host prefix).
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q: use plain IPv4 notation", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("expected an address with prefix like 192.0.2.10/24, got %q", s)
	}
	if a.Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q: use plain IPv4 notation", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
