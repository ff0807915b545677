package harness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sitelink/sitelink/testenv"
)

// ARPFrame is an ARP packet seen on the wire.
type ARPFrame struct {
	Time      time.Time
	Op        uint16 // 1 request, 2 reply
	SenderMAC string
	SenderIP  netip.Addr
	TargetIP  netip.Addr
}

// Gratuitous reports whether the frame announces its sender's address.
func (f ARPFrame) Gratuitous() bool { return f.SenderIP == f.TargetIP }

// VRRPPacket is a VRRP packet seen on the wire (IPv4).
type VRRPPacket struct {
	Time     time.Time
	Src, Dst netip.Addr
	TTL      uint8
	VRID     uint8
	Priority uint8
	// Payload is the VRRP message (after the IP header).
	Payload []byte
}

// ARPWatch records the ARP frames and VRRP packets on one interface of a host and can
// ask who has an address.
type ARPWatch struct {
	f       *os.File
	ifindex int
	mac     net.HardwareAddr
	src     netip.Addr
	done    chan struct{}

	mu     sync.Mutex
	frames []ARPFrame
	vrrp   []VRRPPacket
	notify chan struct{}
}

// WatchARP opens a packet socket on h's interface ifname. src is the address used as
// sender in the requests Ask sends.
func WatchARP(h *testenv.Host, ifname string, src netip.Addr) (*ARPWatch, error) {
	w := &ARPWatch{src: src, done: make(chan struct{}), notify: make(chan struct{})}
	err := h.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		w.ifindex, w.mac = ifi.Index, ifi.HardwareAddr
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket: %w", err)
		}
		w.f = os.NewFile(uintptr(fd), "arpwatch")
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("watch ARP on %s:%s: %w", h.Name(), ifname, err)
	}
	go w.read()
	return w, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (w *ARPWatch) read() {
	defer close(w.done)
	rc, err := w.f.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 2048)
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		})
		if err != nil || (rerr != nil && !errors.Is(rerr, unix.EINTR)) {
			return
		}
		now := time.Now()
		// A packet socket of SOCK_RAW type delivers the Ethernet header.
		if n >= 14+20+8 && binary.BigEndian.Uint16(buf[12:]) == unix.ETH_P_IP && buf[14+9] == 112 {
			ip := buf[14:n]
			ihl := int(ip[0]&0x0f) * 4
			if ihl < 20 || len(ip) < ihl+8 {
				continue
			}
			p := VRRPPacket{Time: now, Src: netip.AddrFrom4([4]byte(ip[12:16])), Dst: netip.AddrFrom4([4]byte(ip[16:20])),
				TTL: ip[8], VRID: ip[ihl+1], Priority: ip[ihl+2]}
			if total := int(binary.BigEndian.Uint16(ip[2:])); total >= ihl && total <= len(ip) {
				p.Payload = append([]byte(nil), ip[ihl:total]...)
			}
			w.mu.Lock()
			w.vrrp = append(w.vrrp, p)
			w.mu.Unlock()
			continue
		}
		if n < 14+28 || binary.BigEndian.Uint16(buf[12:]) != unix.ETH_P_ARP {
			continue
		}
		a := buf[14:]
		fr := ARPFrame{Time: now, Op: binary.BigEndian.Uint16(a[6:]), SenderMAC: net.HardwareAddr(a[8:14]).String(),
			SenderIP: netip.AddrFrom4([4]byte(a[14:18])), TargetIP: netip.AddrFrom4([4]byte(a[24:28]))}
		w.mu.Lock()
		w.frames = append(w.frames, fr)
		close(w.notify)
		w.notify = make(chan struct{})
		w.mu.Unlock()
	}
}

// Frames returns the frames seen so far.
func (w *ARPWatch) Frames() []ARPFrame {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ARPFrame(nil), w.frames...)
}

// VRRP returns the VRRP packets seen so far.
func (w *ARPWatch) VRRP() []VRRPPacket {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]VRRPPacket(nil), w.vrrp...)
}

// Changed returns a channel closed at the next ARP frame.
func (w *ARPWatch) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.notify
}

// Ask broadcasts an ARP request for ip.
func (w *ARPWatch) Ask(ip netip.Addr) error {
	b := make([]byte, 0, 42)
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	b = append(b, w.mac...)
	b = binary.BigEndian.AppendUint16(b, unix.ETH_P_ARP)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint16(b, 0x0800)
	b = append(b, 6, 4)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = append(b, w.mac...)
	b = append(b, w.src.AsSlice()...)
	b = append(b, 0, 0, 0, 0, 0, 0)
	b = append(b, ip.AsSlice()...)
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, 0, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: w.ifindex,
			Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}})
		return serr != unix.EAGAIN
	})
	if err != nil {
		return err
	}
	return serr
}

// Answerers returns the MACs that replied for ip (or announced it) since t.
func (w *ARPWatch) Answerers(ip netip.Addr, since time.Time) map[string]bool {
	out := map[string]bool{}
	for _, f := range w.Frames() {
		if f.Time.Before(since) || f.SenderIP != ip {
			continue
		}
		if f.Op == 2 || f.Gratuitous() {
			out[f.SenderMAC] = true
		}
	}
	return out
}

// Close stops watching.
func (w *ARPWatch) Close() error {
	err := w.f.Close()
	<-w.done
	return err
}

// MAC returns the hardware address of h's interface.
func MAC(h *testenv.Host, ifname string) (string, error) {
	var mac string
	err := h.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr.String()
		return nil
	})
	return mac, err
}

// HasAddr reports whether h's interface carries addr.
func HasAddr(h *testenv.Host, ifname string, addr netip.Addr) (bool, error) {
	found := false
	err := h.Do(func() error {
		link, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		list, err := netlink.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		for _, a := range list {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr {
				found = true
			}
		}
		return nil
	})
	return found, err
}
