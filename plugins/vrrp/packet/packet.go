// Package packet owns the VRRP version 3 wire format (RFC 5798 section 5): encoding and
// strict decoding of advertisements for IPv4 and IPv6, the checksum over the IP
// pseudo-header, and the IPv4 header a raw socket delivers in front of them. It does no
// I/O; every decoding failure names a reason that the caller counts.
package packet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Protocol is the IP protocol number of VRRP.
const Protocol = 112

// TTL is the only IPv4 TTL / IPv6 hop limit a VRRP packet may carry (RFC 5798 5.1.1.3).
const TTL = 255

// Version is the VRRP version this package speaks.
const Version = 3

// TypeAdvertisement is the only VRRP message type.
const TypeAdvertisement = 1

// HeaderLen is the length of the VRRP header before the address list.
const HeaderLen = 8

// MaxAdvertInterval is the largest advertisement interval in centiseconds (12 bits).
const MaxAdvertInterval = 0x0fff

// The VRRP multicast groups (RFC 5798 5.1.1.2 and 5.1.2.2).
var (
	GroupIPv4 = netip.MustParseAddr("224.0.0.18")
	GroupIPv6 = netip.MustParseAddr("ff02::12")
)

// Advert is a VRRPv3 advertisement.
type Advert struct {
	// VRID is the virtual router identifier (1-255).
	VRID uint8
	// Priority is the sender's priority: 0 means it stops being master, 255 that it
	// owns the addresses.
	Priority uint8
	// Interval is the advertisement interval in centiseconds (12 bits).
	Interval uint16
	// Addrs are the virtual addresses, all of one family.
	Addrs []netip.Addr
}

// Reason says why a packet was dropped. The strings are metric label values.
type Reason string

// The reasons a packet is invalid.
const (
	ReasonShort       Reason = "short"        // shorter than a header
	ReasonIPHeader    Reason = "ip_header"    // a malformed IPv4 header
	ReasonTTL         Reason = "ttl"          // TTL or hop limit not 255
	ReasonVersion     Reason = "version"      // not version 3
	ReasonType        Reason = "type"         // not an advertisement
	ReasonLength      Reason = "length"       // length does not match the address count
	ReasonChecksum    Reason = "checksum"     // bad checksum
	ReasonInterval    Reason = "interval"     // advertisement interval of zero
	ReasonAddrFamily  Reason = "addr_family"  // source and destination of different families
	ReasonAddrList    Reason = "addr_list"    // addresses differ from the configured ones
	ReasonUnknownPeer Reason = "unknown_peer" // unicast mode: not from a configured peer
	ReasonOwner       Reason = "owner"        // we own the addresses (priority 255)
)

// Reasons lists every Reason, for metrics initialisation.
var Reasons = []Reason{ReasonShort, ReasonIPHeader, ReasonTTL, ReasonVersion, ReasonType, ReasonLength,
	ReasonChecksum, ReasonInterval, ReasonAddrFamily, ReasonAddrList, ReasonUnknownPeer, ReasonOwner}

// Error is a decoding failure.
type Error struct {
	Reason Reason
	Detail string
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid VRRP packet (%s): %s", e.Reason, e.Detail)
}

func errorf(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the reason of a decoding error, or "" for other errors.
func ReasonOf(err error) Reason {
	if e, ok := err.(*Error); ok {
		return e.Reason
	}
	return ""
}

// Len is the encoded length of a.
func (a *Advert) Len() int {
	n := HeaderLen
	for _, ip := range a.Addrs {
		n += addrLen(ip)
	}
	return n
}

func addrLen(ip netip.Addr) int {
	if ip.Is4() {
		return 4
	}
	return 16
}

// Append encodes a after b with the checksum computed for the given source and
// destination addresses (the IP pseudo-header), and returns the extended slice.
func (a *Advert) Append(b []byte, src, dst netip.Addr) ([]byte, error) {
	if a.Interval > MaxAdvertInterval {
		return nil, fmt.Errorf("advertisement interval %d cs does not fit in 12 bits", a.Interval)
	}
	if len(a.Addrs) > 255 {
		return nil, fmt.Errorf("%d addresses do not fit in one advertisement", len(a.Addrs))
	}
	if src.Is4() != dst.Is4() || !src.IsValid() || !dst.IsValid() {
		return nil, fmt.Errorf("source %s and destination %s are not addresses of one family", src, dst)
	}
	for _, ip := range a.Addrs {
		if ip.Is4() != src.Is4() || ip.Is4In6() {
			return nil, fmt.Errorf("virtual address %s is not of the family of %s", ip, src)
		}
	}
	start := len(b)
	b = append(b, Version<<4|TypeAdvertisement, a.VRID, a.Priority, uint8(len(a.Addrs)))
	b = binary.BigEndian.AppendUint16(b, a.Interval&MaxAdvertInterval)
	b = append(b, 0, 0) // checksum
	for _, ip := range a.Addrs {
		b = append(b, ip.AsSlice()...)
	}
	sum := Checksum(b[start:], src, dst)
	binary.BigEndian.PutUint16(b[start+6:], sum)
	return b, nil
}

// Marshal encodes a (see Append).
func (a *Advert) Marshal(src, dst netip.Addr) ([]byte, error) {
	return a.Append(make([]byte, 0, a.Len()), src, dst)
}

// Parse decodes an advertisement received from src for dst (the IP header's addresses,
// which the checksum covers). It checks the version, type, length and checksum; the TTL
// is the transport's to check. The addresses in the result are copies.
func Parse(b []byte, src, dst netip.Addr) (Advert, error) {
	if len(b) < HeaderLen {
		return Advert{}, errorf(ReasonShort, "%d bytes, a header needs %d", len(b), HeaderLen)
	}
	if v := b[0] >> 4; v != Version {
		return Advert{}, errorf(ReasonVersion, "version %d, want %d", v, Version)
	}
	if t := b[0] & 0x0f; t != TypeAdvertisement {
		return Advert{}, errorf(ReasonType, "type %d, want %d", t, TypeAdvertisement)
	}
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return Advert{}, errorf(ReasonAddrFamily, "source %s, destination %s", src, dst)
	}
	alen := 16
	if src.Is4() {
		alen = 4
	}
	count := int(b[3])
	if want := HeaderLen + count*alen; len(b) != want {
		return Advert{}, errorf(ReasonLength, "%d bytes for %d addresses, want %d", len(b), count, want)
	}
	if Checksum(b, src, dst) != 0 {
		return Advert{}, errorf(ReasonChecksum, "checksum %#04x does not verify", binary.BigEndian.Uint16(b[6:]))
	}
	a := Advert{VRID: b[1], Priority: b[2], Interval: binary.BigEndian.Uint16(b[4:]) & MaxAdvertInterval}
	if a.Interval == 0 {
		return Advert{}, errorf(ReasonInterval, "advertisement interval 0")
	}
	if count > 0 {
		a.Addrs = make([]netip.Addr, count)
	}
	for i := range count {
		p := b[HeaderLen+i*alen : HeaderLen+(i+1)*alen]
		if alen == 4 {
			a.Addrs[i] = netip.AddrFrom4([4]byte(p))
		} else {
			a.Addrs[i] = netip.AddrFrom16([16]byte(p))
		}
	}
	return a, nil
}

// Checksum is the Internet checksum of the VRRP message b and the IP pseudo-header
// (RFC 5798 5.2.8: for IPv4 too in version 3). Over a message whose checksum field is
// zero it gives the value to put there; over a received message it gives 0 when the
// checksum verifies.
func Checksum(b []byte, src, dst netip.Addr) uint16 {
	var sum uint32
	add := func(p []byte) {
		for len(p) >= 2 {
			sum += uint32(p[0])<<8 | uint32(p[1])
			p = p[2:]
		}
		if len(p) == 1 {
			sum += uint32(p[0]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	if src.Is4() {
		add(s[12:])
		add(d[12:])
		sum += Protocol
		sum += uint32(len(b))
	} else {
		add(s[:])
		add(d[:])
		sum += uint32(len(b)) >> 16
		sum += uint32(len(b)) & 0xffff
		sum += Protocol
	}
	add(b)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
