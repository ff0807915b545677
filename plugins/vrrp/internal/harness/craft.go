package harness

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/sitelink/sitelink/plugins/vrrp/packet"
	"github.com/sitelink/sitelink/testenv"
)

// Advert is a VRRP advertisement to craft, possibly broken on purpose.
type Advert struct {
	VRID, Priority uint8
	Interval       uint16
	Addrs          []netip.Addr
	// TTL of the IP header (0 means 255).
	TTL uint8
	// Version in the VRRP header (0 means 3).
	Version uint8
	// CorruptChecksum flips a checksum bit.
	CorruptChecksum bool
	// Truncate drops this many bytes from the end of the VRRP message.
	Truncate int
}

// SendAdvert sends a crafted IPv4 VRRP advertisement from src to 224.0.0.18 as an
// Ethernet frame on h's interface ifname.
func SendAdvert(h *testenv.Host, ifname string, src netip.Addr, a Advert) error {
	dst := packet.GroupIPv4
	adv := packet.Advert{VRID: a.VRID, Priority: a.Priority, Interval: a.Interval, Addrs: a.Addrs}
	msg, err := adv.Marshal(src, dst)
	if err != nil {
		return err
	}
	if a.Version != 0 {
		msg[0] = a.Version<<4 | packet.TypeAdvertisement
		binary.BigEndian.PutUint16(msg[6:], 0)
		binary.BigEndian.PutUint16(msg[6:], packet.Checksum(msg, src, dst))
	}
	if a.CorruptChecksum {
		msg[7] ^= 1
	}
	if a.Truncate > 0 {
		msg = msg[:len(msg)-a.Truncate]
	}
	ttl := a.TTL
	if ttl == 0 {
		ttl = 255
	}
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(msg)))
	ip[8], ip[9] = ttl, packet.Protocol
	copy(ip[12:], src.AsSlice())
	copy(ip[16:], dst.AsSlice())
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	return h.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		frame := append([]byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0x12}, ifi.HardwareAddr...)
		frame = binary.BigEndian.AppendUint16(frame, unix.ETH_P_IP)
		frame = append(append(frame, ip...), msg...)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index, Halen: 6,
			Addr: [8]byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0x12}})
	})
}

func ipChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
