// Package probe sends the tunnel's liveness probes: ICMP echo requests to a gateway's
// address inside the tunnel, from raw sockets bound to the tunnel interface (so a probe
// can never leave through another interface). Replies are not read here: they arrive
// through WireGuard, whose received-bytes counter is the liveness signal. The sockets
// accept no incoming packets at all (ICMP_FILTER blocks every type). It needs
// CAP_NET_RAW.
package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	icmpFilter  = 1 // ICMP_FILTER (SOL_RAW), linux/icmp.h
	icmp6Filter = 1 // ICMP6_FILTER (IPPROTO_ICMPV6), linux/icmpv6.h
	solRaw      = 255
)

// Pinger sends ICMP echo requests through one interface. It is safe for concurrent use.
type Pinger struct {
	dev string
	id  uint16

	mu       sync.Mutex
	fd4, fd6 int
	seq      uint16
}

// New returns a pinger for the interface dev; sockets are opened on first use.
func New(dev string) *Pinger {
	return &Pinger{dev: dev, id: uint16(os.Getpid()), fd4: -1, fd6: -1}
}

// Send sends one echo request to dst.
func (p *Pinger) Send(dst netip.Addr) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	dst = dst.Unmap()
	fd, err := p.socket(dst.Is6())
	if err != nil {
		return err
	}
	p.seq++
	msg := make([]byte, 8+16)
	if dst.Is6() {
		msg[0] = 128 // echo request; the kernel computes the ICMPv6 checksum
	} else {
		msg[0] = 8
	}
	binary.BigEndian.PutUint16(msg[4:], p.id)
	binary.BigEndian.PutUint16(msg[6:], p.seq)
	copy(msg[8:], "sitelink-probe\x00\x00")
	var sa unix.Sockaddr
	if dst.Is6() {
		sa = &unix.SockaddrInet6{Addr: dst.As16()}
	} else {
		binary.BigEndian.PutUint16(msg[2:], checksum(msg))
		sa = &unix.SockaddrInet4{Addr: dst.As4()}
	}
	if err := unix.Sendto(fd, msg, unix.MSG_DONTWAIT, sa); err != nil {
		return fmt.Errorf("send ICMP echo to %s through %s: %w", dst, p.dev, err)
	}
	return nil
}

func (p *Pinger) socket(v6 bool) (int, error) {
	if v6 && p.fd6 >= 0 {
		return p.fd6, nil
	}
	if !v6 && p.fd4 >= 0 {
		return p.fd4, nil
	}
	family, proto := unix.AF_INET, unix.IPPROTO_ICMP
	if v6 {
		family, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto)
	if err != nil {
		return -1, fmt.Errorf("open raw ICMP socket (needs CAP_NET_RAW): %w", err)
	}
	if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, p.dev); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind ICMP socket to %s: %w", p.dev, err)
	}
	if err := blockAll(fd, v6); err != nil {
		unix.Close(fd)
		return -1, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 0)
	if v6 {
		p.fd6 = fd
	} else {
		p.fd4 = fd
	}
	return fd, nil
}

// blockAll makes the socket receive no ICMP message at all.
func blockAll(fd int, v6 bool) error {
	if v6 {
		var filter [8]uint32 // ICMP6_FILTER: a set bit blocks the type
		for i := range filter {
			filter[i] = ^uint32(0)
		}
		b := unsafe.Slice((*byte)(unsafe.Pointer(&filter[0])), len(filter)*4)
		if err := unix.SetsockoptString(fd, unix.IPPROTO_ICMPV6, icmp6Filter, string(b)); err != nil {
			return fmt.Errorf("set ICMP6_FILTER: %w", err)
		}
		return nil
	}
	if err := unix.SetsockoptInt(fd, solRaw, icmpFilter, -1); err != nil { // a set bit blocks the type
		return fmt.Errorf("set ICMP_FILTER: %w", err)
	}
	return nil
}

// Close closes the sockets.
func (p *Pinger) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, fd := range []*int{&p.fd4, &p.fd6} {
		if *fd >= 0 {
			errs = append(errs, unix.Close(*fd))
			*fd = -1
		}
	}
	return errors.Join(errs...)
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
