package packet

import (
	"net/netip"
	"testing"
)

// BenchmarkAppend encodes an advertisement with two addresses (the per-advert cost of
// a master).
func BenchmarkAppend(b *testing.B) {
	a := Advert{VRID: 51, Priority: 200, Interval: 10, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("192.0.2.101")}}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = a.Append(buf[:0], src4, GroupIPv4); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseIPv4Advert decodes a whole received packet (the per-advert cost of a
// backup).
func BenchmarkParseIPv4Advert(b *testing.B) {
	a := Advert{VRID: 51, Priority: 200, Interval: 10, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.100")}}
	msg, _ := a.Marshal(src4, GroupIPv4)
	p := ipv4Packet(255, msg)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseIPv4Advert(p); err != nil {
			b.Fatal(err)
		}
	}
}
