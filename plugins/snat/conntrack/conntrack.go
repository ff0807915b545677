// Package conntrack removes connection-tracking entries that would keep the clients'
// flows from being source-NATed. An entry is made by a flow's first packet and decides
// its NAT for the entry's life: a packet forwarded while this connector's SNAT rules
// are absent (the moment between a demotion's rule removal and the tunnel going down,
// or a backup that briefly forwarded) leaves an entry without NAT, and if the connector
// becomes master again before the entry expires (30 s for unanswered UDP, days for
// established TCP), the flow keeps bypassing SNAT. The snat plugin calls FlushUnNATed
// when it starts, so every client flow through a new master is NATed from its next
// packet on.
package conntrack

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// unNATed matches entries from one of the sources to one of the destinations whose
// reply goes back to the original source address: no source NAT was applied.
type unNATed struct{ sources, destinations []netip.Prefix }

func contains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func addr(b net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a.Unmap()
}

func (f unNATed) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	src := addr(flow.Forward.SrcIP)
	return src.IsValid() && contains(f.sources, src) && contains(f.destinations, addr(flow.Forward.DstIP)) &&
		addr(flow.Reverse.DstIP) == src
}

// FlushUnNATed deletes the entries of flows from sources to destinations (the clients'
// ranges and the networks of the applications that are source-NATed) that were not
// source-NATed, in the calling thread's network namespace, and returns how many it
// deleted. Flows to applications without SNAT are left alone: theirs are right.
func FlushUnNATed(sources, destinations []netip.Prefix) (uint, error) {
	if len(sources) == 0 || len(destinations) == 0 {
		return 0, nil
	}
	var total uint
	for _, fam := range []struct {
		family netlink.InetFamily
		is4    bool
	}{{unix.AF_INET, true}, {unix.AF_INET6, false}} {
		f := unNATed{sources: family(sources, fam.is4), destinations: family(destinations, fam.is4)}
		if len(f.sources) == 0 || len(f.destinations) == 0 {
			continue
		}
		n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam.family, f)
		total += n
		if err != nil {
			return total, fmt.Errorf("delete un-NATed conntrack entries from %v to %v: %w", f.sources, f.destinations, err)
		}
	}
	return total, nil
}

func family(ps []netip.Prefix, is4 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is4() == is4 {
			out = append(out, p)
		}
	}
	return out
}
