package packet

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the advertisement parser for both families. It must
// never panic; whatever it accepts must encode back to the same bytes (except the
// reserved bits, which are ignored on receipt and sent as zero) and parse again to the
// same value.
func FuzzParse(f *testing.F) {
	a := Advert{VRID: 51, Priority: 150, Interval: 100, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.100")}}
	b4, _ := a.Marshal(src4, GroupIPv4)
	f.Add(b4, false)
	a6 := Advert{VRID: 9, Priority: 255, Interval: 5, Addrs: []netip.Addr{netip.MustParseAddr("fe80::9")}}
	b6, _ := a6.Marshal(src6, GroupIPv6)
	f.Add(b6, true)
	f.Add([]byte{0x31, 1, 0, 0, 0, 100, 0, 0}, false)
	// keepalived 2.2.7's advertisement (see TestKeepalivedCapture); the fuzzer's
	// fixed source makes its checksum fail, which exercises that path too.
	f.Add([]byte{0x31, 0x33, 0x96, 0x01, 0x00, 0x0a, 0x43, 0xfe, 0x0a, 0x00, 0x00, 0x32}, false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) {
		src, dst := src4, GroupIPv4
		if v6 {
			src, dst = src6, GroupIPv6
		}
		got, err := Parse(b, src, dst)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if got.Interval == 0 || got.Interval > MaxAdvertInterval {
			t.Fatalf("accepted interval %d", got.Interval)
		}
		out, err := got.Marshal(src, dst)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", got, err)
		}
		if b[4]&0xf0 == 0 && !bytes.Equal(out, b) {
			t.Fatalf("re-encoded\n% x\nfrom\n% x", out, b)
		}
		again, err := Parse(out, src, dst)
		if err != nil || again.VRID != got.VRID || again.Priority != got.Priority ||
			again.Interval != got.Interval || !slices.Equal(again.Addrs, got.Addrs) {
			t.Fatalf("second parse %+v, %v; first %+v", again, err, got)
		}
	})
}

// FuzzParseIPv4Advert feeds arbitrary IPv4 packets to the raw-socket parser.
func FuzzParseIPv4Advert(f *testing.F) {
	a := Advert{VRID: 51, Priority: 150, Interval: 100, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.100")}}
	b, _ := a.Marshal(src4, GroupIPv4)
	f.Add(ipv4Packet(255, b))
	f.Add(ipv4Packet(1, b))
	f.Add([]byte{0x4f, 0, 0, 20})
	f.Fuzz(func(t *testing.T, p []byte) {
		h, adv, err := ParseIPv4Advert(p)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if h.TTL != TTL || h.Protocol != Protocol || !h.Src.Is4() || adv.Interval == 0 {
			t.Fatalf("accepted header %+v advert %+v", h, adv)
		}
	})
}
