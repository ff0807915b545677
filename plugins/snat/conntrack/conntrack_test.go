package conntrack

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
)

func ip(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

func flow(src, dst, replySrc, replyDst string) *netlink.ConntrackFlow {
	f := &netlink.ConntrackFlow{}
	f.Forward.SrcIP = ip(netip.MustParseAddr(src))
	f.Forward.DstIP = ip(netip.MustParseAddr(dst))
	f.Reverse.SrcIP = ip(netip.MustParseAddr(replySrc))
	f.Reverse.DstIP = ip(netip.MustParseAddr(replyDst))
	return f
}

func TestUnNATedFilter(t *testing.T) {
	f := unNATed{
		sources:      []netip.Prefix{netip.MustParsePrefix("100.64.0.0/16"), netip.MustParsePrefix("fd00:64::/64")},
		destinations: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("fd00:1::/64")},
	}
	cases := []struct {
		name string
		flow *netlink.ConntrackFlow
		want bool
	}{
		{"client, not NATed", flow("100.64.0.5", "10.1.0.10", "10.1.0.10", "100.64.0.5"), true},
		{"client, masqueraded", flow("100.64.0.5", "10.1.0.10", "10.1.0.10", "10.1.0.1"), false},
		{"not a client", flow("192.0.2.7", "10.1.0.10", "10.1.0.10", "192.0.2.7"), false},
		{"client to an application without SNAT", flow("100.64.0.5", "10.2.0.10", "10.2.0.10", "100.64.0.5"), false},
		{"IPv6 client, not NATed", flow("fd00:64::5", "fd00:1::10", "fd00:1::10", "fd00:64::5"), true},
		{"IPv6 client, NATed", flow("fd00:64::5", "fd00:1::10", "fd00:1::10", "fd00:1::1"), false},
	}
	for _, c := range cases {
		if got := f.MatchConntrackFlow(c.flow); got != c.want {
			t.Errorf("%s: match %v, want %v", c.name, got, c.want)
		}
	}
	if (unNATed{}).MatchConntrackFlow(&netlink.ConntrackFlow{}) {
		t.Error("an empty flow matched")
	}
}
