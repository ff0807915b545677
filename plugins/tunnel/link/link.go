// Package link owns the tunnel interface's OS-level state: the mark that says the
// interface is Sitelink's (its alias), its MTU, its addresses and its up state. It finds
// and removes the interfaces a crashed process left behind, and only those: an interface
// is removed only if it carries the mark.
package link

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Alias marks the tunnel plugin's interfaces (`ip link show` prints it as "alias").
const Alias = "sitelink:tunnel"

// Prepare makes way for an interface called name: one left by an earlier process of
// the plugin (it carries the mark) is removed; any other interface of that name is an
// error. It returns whether an interface was removed.
func Prepare(name string) (bool, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return false, nil
		}
		return false, fmt.Errorf("look up interface %s: %w", name, err)
	}
	if l.Attrs().Alias != Alias {
		return false, fmt.Errorf("interface %s exists and is not Sitelink's (no alias %q): choose another interface name or remove it", name, Alias)
	}
	if err := netlink.LinkDel(l); err != nil {
		return false, fmt.Errorf("remove leftover interface %s: %w", name, err)
	}
	return true, nil
}

// Configure marks the interface, sets its MTU and exactly the given addresses (the
// kernel's IPv6 link-local ones aside), and brings it up. It is idempotent.
func Configure(name string, mtu int, addrs []netip.Prefix) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("look up interface %s: %w", name, err)
	}
	if l.Attrs().Alias != Alias {
		if err := netlink.LinkSetAlias(l, Alias); err != nil {
			return fmt.Errorf("mark interface %s: %w", name, err)
		}
	}
	if l.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set MTU %d on %s: %w", mtu, name, err)
		}
	}
	// Compare first: the repair loop calls this every few seconds and must not make
	// netlink events (that other programs watch) when nothing changed.
	have, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", name, err)
	}
	want := map[netip.Prefix]bool{}
	for _, a := range addrs {
		want[a] = true
	}
	present := map[netip.Prefix]bool{}
	for _, h := range have {
		ip, ok := netip.AddrFromSlice(h.IP)
		if !ok || ip.Unmap().IsLinkLocalUnicast() {
			continue
		}
		ones, _ := h.Mask.Size()
		p := netip.PrefixFrom(ip.Unmap(), ones)
		if want[p] {
			present[p] = true
			continue
		}
		if err := netlink.AddrDel(l, &h); err != nil {
			return fmt.Errorf("remove address %s from %s: %w", h.IPNet, name, err)
		}
	}
	for _, a := range addrs {
		if present[a] {
			continue
		}
		ipn := &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}
		addr := &netlink.Addr{IPNet: ipn}
		if a.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(l, addr); err != nil {
			return fmt.Errorf("add address %s to %s: %w", a, name, err)
		}
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("bring up %s: %w", name, err)
		}
	}
	return nil
}

// Cleanup removes every interface that carries the mark and returns their names.
func Cleanup() ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var removed []string
	var errs []error
	for _, l := range links {
		if l.Attrs().Alias != Alias {
			continue
		}
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("remove interface %s: %w", l.Attrs().Name, err))
			continue
		}
		removed = append(removed, "interface "+l.Attrs().Name)
	}
	return removed, errors.Join(errs...)
}
