// Package netio owns the VRRP sockets of one interface: a raw IP socket (protocol 112)
// bound to the interface that sends advertisements with TTL / hop limit 255 from a given
// primary address, to the multicast group (joined on the interface) or to unicast peers,
// and receives and decodes them with the checks of package packet.
//
// IPv4 uses an AF_INET raw socket, which delivers the IP header (TTL, addresses) with
// each packet, and sets the source with IP_PKTINFO. IPv6 uses an AF_INET6 raw socket
// with hop limit and destination from IPV6_RECVHOPLIMIT / IPV6_RECVPKTINFO control
// messages and the source set with IPV6_PKTINFO; the checksum is always ours.
package netio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sitelink/sitelink/plugins/vrrp/packet"
)

// Conn is the VRRP socket of one interface and family. Send and Receive may be used
// from different goroutines; Close unblocks Receive.
type Conn struct {
	ifname  string
	ifindex int
	ipv6    bool
	peers   []netip.Addr
	f       *os.File
	rc      syscall.RawConn
	closed  atomic.Bool
	sendBuf []byte
}

// Received is a decoded advertisement with the addresses of its IP header.
type Received struct {
	Src, Dst netip.Addr
	Advert   packet.Advert
}

// Open opens the socket on ifname. With no peers it joins the VRRP multicast group and
// sends there; with peers it sends to each of them.
func Open(ifname string, ipv6 bool, peers []netip.Addr) (*Conn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("find interface %s: %w", ifname, err)
	}
	family := unix.AF_INET
	if ipv6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, packet.Protocol)
	if err != nil {
		return nil, fmt.Errorf("open raw VRRP socket (needs CAP_NET_RAW): %w", err)
	}
	c := &Conn{ifname: ifname, ifindex: ifi.Index, ipv6: ipv6, peers: peers}
	if err := c.setup(fd); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set up VRRP socket on %s: %w", ifname, err)
	}
	c.f = os.NewFile(uintptr(fd), "vrrp-"+ifname)
	if c.rc, err = c.f.SyscallConn(); err != nil {
		c.f.Close()
		return nil, fmt.Errorf("VRRP socket on %s: %w", ifname, err)
	}
	return c, nil
}

func (c *Conn) setup(fd int) error {
	if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, c.ifname); err != nil {
		return fmt.Errorf("bind to device: %w", err)
	}
	// A generous receive buffer: adverts are small, bursts after a split brain are not.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 256<<10)
	if !c.ipv6 {
		for _, o := range []struct {
			name string
			opt  int
			val  int
		}{{"IP_MULTICAST_TTL", unix.IP_MULTICAST_TTL, packet.TTL}, {"IP_TTL", unix.IP_TTL, packet.TTL},
			{"IP_MULTICAST_LOOP", unix.IP_MULTICAST_LOOP, 0}} {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, o.opt, o.val); err != nil {
				return fmt.Errorf("%s: %w", o.name, err)
			}
		}
		mreq := &unix.IPMreqn{Multiaddr: packet.GroupIPv4.As4(), Ifindex: int32(c.ifindex)}
		if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, mreq); err != nil {
			return fmt.Errorf("IP_MULTICAST_IF: %w", err)
		}
		if len(c.peers) == 0 {
			if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq); err != nil {
				return fmt.Errorf("join %s: %w", packet.GroupIPv4, err)
			}
		}
		return nil
	}
	for _, o := range []struct {
		name string
		opt  int
		val  int
	}{{"IPV6_MULTICAST_HOPS", unix.IPV6_MULTICAST_HOPS, packet.TTL}, {"IPV6_UNICAST_HOPS", unix.IPV6_UNICAST_HOPS, packet.TTL},
		{"IPV6_MULTICAST_LOOP", unix.IPV6_MULTICAST_LOOP, 0}, {"IPV6_RECVHOPLIMIT", unix.IPV6_RECVHOPLIMIT, 1},
		{"IPV6_RECVPKTINFO", unix.IPV6_RECVPKTINFO, 1}, {"IPV6_MULTICAST_IF", unix.IPV6_MULTICAST_IF, c.ifindex}} {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, o.opt, o.val); err != nil {
			return fmt.Errorf("%s: %w", o.name, err)
		}
	}
	if len(c.peers) == 0 {
		mreq := &unix.IPv6Mreq{Multiaddr: packet.GroupIPv6.As16(), Interface: uint32(c.ifindex)}
		if err := unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq); err != nil {
			return fmt.Errorf("join %s: %w", packet.GroupIPv6, err)
		}
	}
	return nil
}

// Interface is the interface name.
func (c *Conn) Interface() string { return c.ifname }

// Index is the interface index the socket was opened on.
func (c *Conn) Index() int { return c.ifindex }

// Close closes the socket.
func (c *Conn) Close() error {
	c.closed.Store(true)
	return c.f.Close()
}

// Send sends adv from src to the multicast group or to every peer. With several peers
// it tries all and returns the errors joined.
func (c *Conn) Send(adv *packet.Advert, src netip.Addr) error {
	dsts := c.peers
	if len(dsts) == 0 {
		if c.ipv6 {
			dsts = []netip.Addr{packet.GroupIPv6}
		} else {
			dsts = []netip.Addr{packet.GroupIPv4}
		}
	}
	var errs []error
	for _, dst := range dsts {
		b, err := adv.Append(c.sendBuf[:0], src, dst)
		if err != nil {
			return err
		}
		c.sendBuf = b
		if err := c.sendTo(b, src, dst); err != nil {
			errs = append(errs, fmt.Errorf("send advertisement to %s on %s: %w", dst, c.ifname, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Conn) sendTo(b []byte, src, dst netip.Addr) error {
	var oob []byte
	var to unix.Sockaddr
	if c.ipv6 {
		oob = unix.PktInfo6(&unix.Inet6Pktinfo{Addr: src.As16(), Ifindex: uint32(c.ifindex)})
		to = &unix.SockaddrInet6{Addr: dst.As16(), ZoneId: uint32(c.ifindex)}
	} else {
		oob = unix.PktInfo4(&unix.Inet4Pktinfo{Ifindex: int32(c.ifindex), Spec_dst: src.As4()})
		to = &unix.SockaddrInet4{Addr: dst.As4()}
	}
	var serr error
	err := c.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), b, oob, to, 0)
		return serr != unix.EAGAIN
	})
	if err != nil {
		return err
	}
	return serr
}

// Receive reads the next packet into buf and decodes it. An invalid packet returns a
// *packet.Error (count it and read on); net.ErrClosed means the socket was closed.
func (c *Conn) Receive(buf []byte, oob []byte) (Received, error) {
	var n, oobn int
	var from unix.Sockaddr
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		n, oobn, _, from, rerr = unix.Recvmsg(int(fd), buf, oob, 0)
		return rerr != unix.EAGAIN
	})
	if err != nil {
		if c.closed.Load() || errors.Is(err, os.ErrClosed) {
			return Received{}, net.ErrClosed
		}
		return Received{}, fmt.Errorf("receive on %s: %w", c.ifname, err)
	}
	if rerr != nil {
		return Received{}, fmt.Errorf("receive on %s: %w", c.ifname, rerr)
	}
	if !c.ipv6 {
		h, adv, err := packet.ParseIPv4Advert(buf[:n])
		return Received{Src: h.Src, Dst: h.Dst, Advert: adv}, err
	}
	r := Received{}
	if sa, ok := from.(*unix.SockaddrInet6); ok {
		r.Src = netip.AddrFrom16(sa.Addr)
	}
	hop := -1
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return r, &packet.Error{Reason: packet.ReasonIPHeader, Detail: fmt.Sprintf("control messages: %v", err)}
	}
	for _, m := range msgs {
		if m.Header.Level != unix.IPPROTO_IPV6 {
			continue
		}
		switch m.Header.Type {
		case unix.IPV6_HOPLIMIT:
			if len(m.Data) >= 4 {
				hop = int(int32(binary.NativeEndian.Uint32(m.Data)))
			}
		case unix.IPV6_PKTINFO:
			if len(m.Data) >= unix.SizeofInet6Pktinfo {
				r.Dst = netip.AddrFrom16([16]byte(m.Data[:16])) // struct in6_pktinfo starts with the address
			}
		}
	}
	if hop != packet.TTL {
		return r, &packet.Error{Reason: packet.ReasonTTL, Detail: fmt.Sprintf("hop limit %d from %s, want %d", hop, r.Src, packet.TTL)}
	}
	r.Advert, err = packet.Parse(buf[:n], r.Src, r.Dst)
	return r, err
}

// OOBSize is a control-message buffer size large enough for Receive.
var OOBSize = unix.CmsgSpace(unix.SizeofInet6Pktinfo) + unix.CmsgSpace(4)
