// Package route owns the tunnel's routes: the prefixes routed into the tunnel
// interface, the probe addresses of the gateways, and the blackhole routes that keep
// traffic from leaving unencrypted while the tunnel is down. Every route carries
// Sitelink's route protocol number (Protocol, `proto 83` in `ip route`), which is how
// they are found again: Apply reconciles the routes of that protocol in one table with
// the desired set (adding before removing, so nothing falls through), and Cleanup
// removes them from every table.
package route

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Protocol is Sitelink's route protocol number (rtm_protocol), unused in iproute2's
// /etc/iproute2/rt_protos; packages may name it with a line "83 sitelink" in
// /etc/iproute2/rt_protos.d/sitelink.conf.
const Protocol = 83

// ipv6DefaultMetric is what the kernel gives an IPv6 route added with metric 0.
const ipv6DefaultMetric = 1024

// Route is one route of the tunnel.
type Route struct {
	Prefix netip.Prefix
	// Blackhole drops the traffic; otherwise the route goes into the interface.
	Blackhole bool
	Metric    int
	// Src is the preferred source address (invalid: none).
	Src netip.Addr
}

func (r Route) String() string {
	s := r.Prefix.String()
	if r.Blackhole {
		s = "blackhole " + s
	}
	return s + " metric " + strconv.Itoa(r.Metric)
}

type key struct {
	prefix    netip.Prefix
	blackhole bool
	metric    int
	link      int
	src       netip.Addr
}

// Manager reconciles the routes of one table.
type Manager struct {
	// Table is the routing table (254: main).
	Table int
	// Link is the tunnel interface's name, for the routes into it.
	Link string
}

// Result counts what Apply changed.
type Result struct {
	Added, Removed int
}

// Apply makes the table's routes of Protocol exactly want. Routes into the interface
// are skipped (and reported) when the interface does not exist.
func (m Manager) Apply(want []Route) (Result, error) {
	var res Result
	idx := 0
	if m.Link != "" {
		if l, err := netlink.LinkByName(m.Link); err == nil {
			idx = l.Attrs().Index
		}
	}
	have, err := m.list()
	if err != nil {
		return res, err
	}
	haveKeys := map[key]netlink.Route{}
	for _, r := range have {
		haveKeys[keyOf(r)] = r
	}
	wantKeys := map[key]bool{}
	var errs []error
	for _, w := range want {
		if !w.Blackhole && idx == 0 {
			errs = append(errs, fmt.Errorf("route %s: interface %s does not exist", w, m.Link))
			continue
		}
		nr := m.toNetlink(w, idx)
		k := keyOf(nr)
		wantKeys[k] = true
		if _, ok := haveKeys[k]; ok {
			continue
		}
		if err := netlink.RouteReplace(&nr); err != nil {
			errs = append(errs, fmt.Errorf("add route %s: %w", w, err))
			continue
		}
		res.Added++
	}
	for k, r := range haveKeys {
		if wantKeys[k] {
			continue
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove route %s: %w", describe(r), err))
			continue
		}
		res.Removed++
	}
	return res, errors.Join(errs...)
}

// List returns the table's routes of Protocol.
func (m Manager) List() ([]Route, error) {
	rs, err := m.list()
	if err != nil {
		return nil, err
	}
	out := make([]Route, 0, len(rs))
	for _, r := range rs {
		k := keyOf(r)
		out = append(out, Route{Prefix: k.prefix, Blackhole: k.blackhole, Metric: k.metric, Src: k.src})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

func (m Manager) list() ([]netlink.Route, error) {
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: m.Table, Protocol: Protocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("list routes of table %d: %w", m.Table, err)
	}
	return rs, nil
}

func (m Manager) toNetlink(r Route, idx int) netlink.Route {
	a := r.Prefix.Addr()
	nr := netlink.Route{
		Dst:      &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(r.Prefix.Bits(), a.BitLen())},
		Protocol: Protocol,
		Priority: r.Metric,
		Table:    m.Table,
		Family:   unix.AF_INET,
	}
	if a.Is6() {
		nr.Family = unix.AF_INET6
	}
	if r.Blackhole {
		nr.Type = unix.RTN_BLACKHOLE
		nr.Scope = netlink.SCOPE_UNIVERSE
	} else {
		nr.LinkIndex = idx
		nr.Scope = netlink.SCOPE_LINK
		if a.Is6() {
			nr.Scope = netlink.SCOPE_UNIVERSE
		}
		if r.Src.IsValid() && r.Src.Is6() == a.Is6() {
			nr.Src = r.Src.AsSlice()
		}
	}
	return nr
}

// keyOf identifies a route the way the kernel reports it back.
func keyOf(r netlink.Route) key {
	var k key
	if r.Dst != nil {
		ip, _ := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		k.prefix = netip.PrefixFrom(ip.Unmap(), ones)
	}
	k.blackhole = r.Type == unix.RTN_BLACKHOLE
	k.metric = r.Priority
	if k.prefix.Addr().Is6() && k.metric == 0 {
		k.metric = ipv6DefaultMetric
	}
	if !k.blackhole {
		k.link = r.LinkIndex
		if src, ok := netip.AddrFromSlice(r.Src); ok {
			k.src = src.Unmap()
		}
	}
	return k
}

func describe(r netlink.Route) string {
	k := keyOf(r)
	return Route{Prefix: k.prefix, Blackhole: k.blackhole, Metric: k.metric}.String() + " table " + strconv.Itoa(r.Table)
}

// Cleanup removes the routes of Protocol from every table and says which.
func Cleanup() ([]string, error) { return cleanupExcept(-1) }

// CleanupOtherTables removes the routes of Protocol from every table but keep (left by
// a process that used another route_table).
func CleanupOtherTables(keep int) ([]string, error) { return cleanupExcept(keep) }

func cleanupExcept(keep int) ([]string, error) {
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC, Protocol: Protocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("list routes of protocol %d: %w", Protocol, err)
	}
	var removed []string
	var errs []error
	for _, r := range rs {
		if r.Table == keep {
			continue
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove route %s: %w", describe(r), err))
			continue
		}
		removed = append(removed, "route "+describe(r))
	}
	return removed, errors.Join(errs...)
}
