package packet

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"slices"
	"testing"
)

var (
	src4 = netip.MustParseAddr("192.0.2.1")
	src6 = netip.MustParseAddr("fe80::1")
)

// A VRRPv3 advertisement (VRID 51, priority 150, interval 100 cs, one address
// 192.0.2.100) with the checksum field zeroed; keepalivedAdvert fills it in.
const keepalivedAdvertHex = "3133960100640000c0000264"

func keepalivedAdvert(t *testing.T) []byte {
	t.Helper()
	b, err := hex.DecodeString(keepalivedAdvertHex)
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint16(b[6:], Checksum(b, src4, GroupIPv4))
	return b
}

// TestKeepalivedCapture decodes an advertisement keepalived 2.2.7 (vrrp_version 3,
// advert_int 0.1, priority 150, VIP 10.0.0.50) sent from 10.0.0.2 to 224.0.0.18, as
// captured by the e2e test TestKeepalivedAdvertGolden, and encodes it back bit for bit.
func TestKeepalivedCapture(t *testing.T) {
	b, _ := hex.DecodeString("31339601000a43fe0a000032")
	src, dst := netip.MustParseAddr("10.0.0.2"), GroupIPv4
	a, err := Parse(b, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if a.VRID != 51 || a.Priority != 150 || a.Interval != 10 || len(a.Addrs) != 1 || a.Addrs[0] != netip.MustParseAddr("10.0.0.50") {
		t.Fatalf("decoded %+v", a)
	}
	out, err := a.Marshal(src, dst)
	if err != nil || !bytes.Equal(out, b) {
		t.Fatalf("encoded % x, keepalived sent % x (%v)", out, b, err)
	}
}

func TestRoundTripIPv4(t *testing.T) {
	a := Advert{VRID: 51, Priority: 150, Interval: 100, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("192.0.2.101")}}
	b, err := a.Marshal(src4, GroupIPv4)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 16 || b[0] != 0x31 || b[1] != 51 || b[2] != 150 || b[3] != 2 {
		t.Fatalf("header bytes % x", b)
	}
	if Checksum(b, src4, GroupIPv4) != 0 {
		t.Fatal("own checksum does not verify")
	}
	got, err := Parse(b, src4, GroupIPv4)
	if err != nil {
		t.Fatal(err)
	}
	if got.VRID != a.VRID || got.Priority != a.Priority || got.Interval != a.Interval || !slices.Equal(got.Addrs, a.Addrs) {
		t.Fatalf("got %+v, want %+v", got, a)
	}
	// The pseudo-header is part of the checksum: another source breaks it.
	if _, err := Parse(b, netip.MustParseAddr("192.0.2.2"), GroupIPv4); ReasonOf(err) != ReasonChecksum {
		t.Fatalf("other source: %v, want a checksum error", err)
	}
}

func TestRoundTripIPv6(t *testing.T) {
	a := Advert{VRID: 7, Priority: 100, Interval: 10, Addrs: []netip.Addr{netip.MustParseAddr("fe80::7"), netip.MustParseAddr("2001:db8::7")}}
	b, err := a.Marshal(src6, GroupIPv6)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 8+32 {
		t.Fatalf("length %d", len(b))
	}
	got, err := Parse(b, src6, GroupIPv6)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Addrs, a.Addrs) || got.Interval != 10 {
		t.Fatalf("got %+v", got)
	}
}

// TestKnownChecksum checks the checksum against one computed by hand: the sum of the
// pseudo-header words (c000 0201 e000 0012 0070 000c) and the message words
// (3133 9601 0064 0000 c000 0264) is 0x32c8b, folded 0x2c8e, complemented 0xd371.
func TestKnownChecksum(t *testing.T) {
	b, _ := hex.DecodeString(keepalivedAdvertHex)
	if got := Checksum(b, src4, GroupIPv4); got != 0xd371 {
		t.Fatalf("checksum %#04x, want 0xd371", got)
	}
}

func TestParseRejects(t *testing.T) {
	good := keepalivedAdvert(t)
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	resum := func(b []byte) []byte {
		binary.BigEndian.PutUint16(b[6:], 0)
		binary.BigEndian.PutUint16(b[6:], Checksum(b, src4, GroupIPv4))
		return b
	}
	cases := []struct {
		name string
		b    []byte
		src  netip.Addr
		want Reason
	}{
		{"short", good[:7], src4, ReasonShort},
		{"version 2", mod(func(b []byte) []byte { b[0] = 0x21; return resum(b) }), src4, ReasonVersion},
		{"type 2", mod(func(b []byte) []byte { b[0] = 0x32; return resum(b) }), src4, ReasonType},
		{"count too high", mod(func(b []byte) []byte { b[3] = 2; return resum(b) }), src4, ReasonLength},
		{"trailing byte", mod(func(b []byte) []byte { return resum(append(b, 0)) }), src4, ReasonLength},
		{"bad checksum", mod(func(b []byte) []byte { b[7] ^= 1; return b }), src4, ReasonChecksum},
		{"zero interval", mod(func(b []byte) []byte { b[4], b[5] = 0, 0; return resum(b) }), src4, ReasonInterval},
		{"mixed families", good, src6, ReasonAddrFamily},
	}
	for _, c := range cases {
		_, err := Parse(c.b, c.src, GroupIPv4)
		if ReasonOf(err) != c.want {
			t.Errorf("%s: got %v, want reason %s", c.name, err, c.want)
		}
	}
}

func TestReservedBitsIgnored(t *testing.T) {
	b := keepalivedAdvert(t)
	b[4] |= 0xf0 // the 4 reserved bits before the interval
	binary.BigEndian.PutUint16(b[6:], 0)
	binary.BigEndian.PutUint16(b[6:], Checksum(b, src4, GroupIPv4))
	a, err := Parse(b, src4, GroupIPv4)
	if err != nil {
		t.Fatal(err)
	}
	if a.Interval != 100 {
		t.Fatalf("interval %d, want 100", a.Interval)
	}
}

func TestMarshalRejects(t *testing.T) {
	for name, a := range map[string]Advert{
		"interval": {VRID: 1, Interval: 0x1000},
		"family":   {VRID: 1, Interval: 100, Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::1")}},
	} {
		if _, err := a.Marshal(src4, GroupIPv4); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	a := Advert{VRID: 1, Interval: 100}
	if _, err := a.Marshal(src4, GroupIPv6); err == nil {
		t.Error("mixed source and destination families accepted")
	}
}

func ipv4Packet(ttl uint8, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	h[8] = ttl
	h[9] = Protocol
	copy(h[12:], src4.AsSlice())
	copy(h[16:], GroupIPv4.AsSlice())
	return append(h, payload...)
}

func TestParseIPv4Advert(t *testing.T) {
	adv := keepalivedAdvert(t)
	h, a, err := ParseIPv4Advert(ipv4Packet(255, adv))
	if err != nil {
		t.Fatal(err)
	}
	if h.Src != src4 || h.Dst != GroupIPv4 || a.VRID != 51 || a.Priority != 150 {
		t.Fatalf("got %+v %+v", h, a)
	}
	if _, _, err := ParseIPv4Advert(ipv4Packet(254, adv)); ReasonOf(err) != ReasonTTL {
		t.Fatalf("TTL 254: %v", err)
	}
	p := ipv4Packet(255, adv)
	p[0] = 0x44 // header length 16
	if _, _, err := ParseIPv4Advert(p); ReasonOf(err) != ReasonIPHeader {
		t.Fatalf("IHL 4: %v", err)
	}
	p = ipv4Packet(255, adv)
	binary.BigEndian.PutUint16(p[2:], 400)
	if _, _, err := ParseIPv4Advert(p); ReasonOf(err) != ReasonIPHeader {
		t.Fatalf("long total length: %v", err)
	}
	// Ethernet padding after the total length is not part of the payload.
	if _, _, err := ParseIPv4Advert(append(ipv4Packet(255, adv), 0, 0, 0)); err != nil {
		t.Fatalf("padding: %v", err)
	}
}
