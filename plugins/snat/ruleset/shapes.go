package ruleset

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/sitelink/sitelink/plugins/snat/config"
)

// matcher accumulates match expressions and their nft text.
type matcher struct {
	exprs []expr.Any
	words []string
}

func (m *matcher) text() string { return strings.Join(m.words, " ") }

func offSaddr(p netip.Prefix) uint32 {
	if p.Addr().Is4() {
		return 12
	}
	return 8
}

func offDaddr(p netip.Prefix) uint32 {
	if p.Addr().Is4() {
		return 16
	}
	return 24
}

// prefix matches an address field of the network header against p, encoded like nft:
// a byte-aligned prefix loads only its bytes; another loads the whole address and masks
// it. A /0 prefix matches everything and adds nothing.
func (m *matcher) prefix(offset uint32, p netip.Prefix, field string) {
	if p.Bits() == 0 {
		return
	}
	fam := "ip"
	if !p.Addr().Is4() {
		fam = "ip6"
	}
	addr := p.Addr().AsSlice()
	full := uint32(len(addr))
	if p.Bits()%8 == 0 {
		n := uint32(p.Bits() / 8)
		m.exprs = append(m.exprs,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: n},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr[:n]})
	} else {
		mask := make([]byte, full)
		for i := 0; i < p.Bits(); i++ {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		m.exprs = append(m.exprs,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: full},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: full, Mask: mask, Xor: make([]byte, full)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr})
	}
	text := p.String()
	if p.IsSingleIP() {
		text = p.Addr().String()
	}
	m.words = append(m.words, fmt.Sprintf("%s %s %s", fam, field, text))
}

// oifname matches the output interface by name (it survives the interface being
// re-created, unlike its index).
func (m *matcher) oifname(name string) {
	data := make([]byte, unix.IFNAMSIZ)
	copy(data, name)
	m.exprs = append(m.exprs,
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data})
	m.words = append(m.words, fmt.Sprintf("oifname %q", name))
}

// proto matches the transport protocol and destination ports.
func (m *matcher) proto(p config.Protocol, v4 bool, ports *config.PortRange) {
	var num byte
	var name string
	switch p {
	case config.ProtoAny:
		return
	case config.ProtoTCP:
		num, name = unix.IPPROTO_TCP, "tcp"
	case config.ProtoUDP:
		num, name = unix.IPPROTO_UDP, "udp"
	case config.ProtoICMP:
		num, name = unix.IPPROTO_ICMP, "icmp"
		if !v4 {
			num, name = unix.IPPROTO_ICMPV6, "ipv6-icmp"
		}
	}
	m.exprs = append(m.exprs,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{num}})
	if ports == nil {
		m.words = append(m.words, "meta l4proto "+name)
		return
	}
	m.exprs = append(m.exprs, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
	if ports.First == ports.Last {
		m.exprs = append(m.exprs, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(ports.First)})
	} else {
		// Two comparisons, as nft encodes a range: no range expression needed in the kernel.
		m.exprs = append(m.exprs,
			&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: be16(ports.First)},
			&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: be16(ports.Last)})
	}
	m.words = append(m.words, fmt.Sprintf("%s dport %s", name, ports))
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
