package vip

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Announcer sends gratuitous ARP requests and unsolicited neighbour advertisements for
// virtual IPs on one interface, from the interface's own MAC address.
type Announcer struct {
	ifindex int
	mac     net.HardwareAddr
	arp     *os.File // AF_PACKET socket, send only
	ndp     *ipv6.PacketConn
	ndpConn net.PacketConn
}

// NewAnnouncer opens the sockets for an interface (CAP_NET_RAW). ipv6 opens the ICMPv6
// socket for neighbour advertisements instead of the ARP one.
func NewAnnouncer(ifname string, ipv6Family bool) (*Announcer, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("find interface %s: %w", ifname, err)
	}
	a := &Announcer{ifindex: ifi.Index, mac: ifi.HardwareAddr}
	if len(a.mac) != 6 {
		return nil, fmt.Errorf("interface %s has no Ethernet address (%q)", ifname, ifi.HardwareAddr)
	}
	if !ipv6Family {
		// Protocol 0: the socket receives nothing, it only sends.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("open packet socket for gratuitous ARP on %s: %w", ifname, err)
		}
		a.arp = os.NewFile(uintptr(fd), "garp-"+ifname)
		return a, nil
	}
	c, err := net.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("open ICMPv6 socket for neighbour advertisements on %s: %w", ifname, err)
	}
	p := ipv6.NewPacketConn(c)
	if err := p.SetMulticastHopLimit(255); err != nil {
		c.Close()
		return nil, fmt.Errorf("set hop limit on %s: %w", ifname, err)
	}
	if err := p.SetMulticastInterface(ifi); err != nil {
		c.Close()
		return nil, fmt.Errorf("set multicast interface %s: %w", ifname, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true) // receive nothing
	_ = p.SetICMPFilter(&f)
	a.ndp, a.ndpConn = p, c
	return a, nil
}

// Close closes the sockets.
func (a *Announcer) Close() error {
	if a.arp != nil {
		return a.arp.Close()
	}
	if a.ndpConn != nil {
		return a.ndpConn.Close()
	}
	return nil
}

// ARPFrame builds a gratuitous ARP request for ip from mac: broadcast, sender and target
// protocol address ip, target hardware address zero (the form keepalived and Linux's
// arping -U send).
func ARPFrame(mac net.HardwareAddr, ip netip.Addr) []byte {
	b := make([]byte, 0, 42)
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	b = append(b, mac...)
	b = binary.BigEndian.AppendUint16(b, unix.ETH_P_ARP)
	b = binary.BigEndian.AppendUint16(b, 1)      // hardware type Ethernet
	b = binary.BigEndian.AppendUint16(b, 0x0800) // protocol IPv4
	b = append(b, 6, 4)
	b = binary.BigEndian.AppendUint16(b, 1) // request
	b = append(b, mac...)
	b = append(b, ip.AsSlice()...)
	b = append(b, 0, 0, 0, 0, 0, 0)
	b = append(b, ip.AsSlice()...)
	return b
}

// NAMessage builds an unsolicited neighbour advertisement for ip (override flag set,
// target link-layer address option mac). The kernel fills in the checksum.
func NAMessage(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	body := make([]byte, 0, 20+8)
	body = append(body, 0x20, 0, 0, 0) // flags: override
	body = append(body, ip.AsSlice()...)
	body = append(body, 2, 1) // option: target link-layer address, 8 bytes
	body = append(body, mac...)
	m := icmp.Message{Type: ipv6.ICMPTypeNeighborAdvertisement, Body: &icmp.RawBody{Data: body}}
	return m.Marshal(nil)
}

// Announce sends one announcement per address.
func (a *Announcer) Announce(addrs []netip.Addr) error {
	for _, ip := range addrs {
		if ip.Is4() {
			if a.arp == nil {
				continue
			}
			frame := ARPFrame(a.mac, ip)
			to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: a.ifindex, Halen: 6,
				Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
			rc, err := a.arp.SyscallConn()
			if err != nil {
				return err
			}
			var serr error
			if err := rc.Write(func(fd uintptr) bool {
				serr = unix.Sendto(int(fd), frame, 0, to)
				return serr != unix.EAGAIN
			}); err != nil {
				return fmt.Errorf("send gratuitous ARP for %s: %w", ip, err)
			}
			if serr != nil {
				return fmt.Errorf("send gratuitous ARP for %s: %w", ip, serr)
			}
			continue
		}
		if a.ndp == nil {
			continue
		}
		msg, err := NAMessage(a.mac, ip)
		if err != nil {
			return fmt.Errorf("build neighbour advertisement for %s: %w", ip, err)
		}
		cm := &ipv6.ControlMessage{HopLimit: 255, IfIndex: a.ifindex, Src: ip.AsSlice()}
		if _, err := a.ndp.WriteTo(msg, cm, &net.IPAddr{IP: net.IPv6linklocalallnodes}); err != nil {
			return fmt.Errorf("send neighbour advertisement for %s: %w", ip, err)
		}
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
