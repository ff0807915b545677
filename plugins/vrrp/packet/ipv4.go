package packet

import (
	"encoding/binary"
	"net/netip"
)

// IPv4Header is what VRRP needs from the IPv4 header a raw socket delivers.
type IPv4Header struct {
	Src, Dst netip.Addr
	TTL      uint8
	Protocol uint8
}

// ParseIPv4 splits a packet read from a raw IPv4 socket into its header and payload
// (which aliases b). The total length field bounds the payload; options are skipped.
func ParseIPv4(b []byte) (IPv4Header, []byte, error) {
	if len(b) < 20 {
		return IPv4Header{}, nil, errorf(ReasonIPHeader, "%d bytes, an IPv4 header needs 20", len(b))
	}
	if v := b[0] >> 4; v != 4 {
		return IPv4Header{}, nil, errorf(ReasonIPHeader, "IP version %d", v)
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < 20 || ihl > len(b) {
		return IPv4Header{}, nil, errorf(ReasonIPHeader, "header length %d of %d bytes", ihl, len(b))
	}
	if total < ihl || total > len(b) {
		return IPv4Header{}, nil, errorf(ReasonIPHeader, "total length %d, header %d, received %d", total, ihl, len(b))
	}
	h := IPv4Header{TTL: b[8], Protocol: b[9],
		Src: netip.AddrFrom4([4]byte(b[12:16])), Dst: netip.AddrFrom4([4]byte(b[16:20]))}
	return h, b[ihl:total], nil
}

// ParseIPv4Advert decodes a whole IPv4 packet carrying an advertisement: header, TTL,
// protocol and the advertisement itself.
func ParseIPv4Advert(b []byte) (IPv4Header, Advert, error) {
	h, payload, err := ParseIPv4(b)
	if err != nil {
		return h, Advert{}, err
	}
	if h.Protocol != Protocol {
		return h, Advert{}, errorf(ReasonIPHeader, "IP protocol %d, want %d", h.Protocol, Protocol)
	}
	if h.TTL != TTL {
		return h, Advert{}, errorf(ReasonTTL, "TTL %d from %s, want %d", h.TTL, h.Src, TTL)
	}
	a, err := Parse(payload, h.Src, h.Dst)
	return h, a, err
}
