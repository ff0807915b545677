package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// proxyV2Sig is the PROXY protocol v2 signature.
var proxyV2Sig = []byte{0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a}

// proxyV2Header builds a PROXY v2 header (command PROXY, TCP) for a connection from src
// to dst (the proxy's listening address).
func proxyV2Header(src, dst net.Addr) []byte {
	s, _ := netip.ParseAddrPort(src.String())
	d, _ := netip.ParseAddrPort(dst.String())
	sa, da := s.Addr().Unmap(), d.Addr().Unmap()
	h := append([]byte{}, proxyV2Sig...)
	h = append(h, 0x21) // version 2, PROXY
	switch {
	case sa.Is4() && da.Is4():
		h = append(h, 0x11, 0, 12) // AF_INET, STREAM
		h = append(h, sa.AsSlice()...)
		h = append(h, da.AsSlice()...)
	case sa.IsValid() && da.IsValid():
		h = append(h, 0x21, 0, 36) // AF_INET6, STREAM
		s16, d16 := sa.As16(), da.As16()
		h = append(h, s16[:]...)
		h = append(h, d16[:]...)
	default:
		return append(h[:12], 0x20, 0x00, 0, 0) // LOCAL, unknown addresses
	}
	h = binary.BigEndian.AppendUint16(h, s.Port())
	h = binary.BigEndian.AppendUint16(h, d.Port())
	return h
}
