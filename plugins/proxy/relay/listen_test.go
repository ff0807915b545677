package relay

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Accepted connections get their keepalive from the listening socket: check that the
// kernel really copies it.
func TestAcceptedConnectionsInheritKeepAlive(t *testing.T) {
	ln, err := listenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rc, err := s.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	_ = rc.Control(func(fd uintptr) {
		for name, o := range map[string][2]int{
			"SO_KEEPALIVE": {unix.SOL_SOCKET, unix.SO_KEEPALIVE}, "TCP_KEEPIDLE": {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
			"TCP_KEEPINTVL": {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL}, "TCP_KEEPCNT": {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
			"TCP_NODELAY": {unix.IPPROTO_TCP, unix.TCP_NODELAY},
		} {
			v, err := unix.GetsockoptInt(int(fd), o[0], o[1])
			if err != nil {
				t.Errorf("getsockopt %s: %v", name, err)
			}
			got[name] = v
		}
	})
	want := map[string]int{"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": int(keepAliveIdle / time.Second),
		"TCP_KEEPINTVL": int(keepAliveInterval / time.Second), "TCP_KEEPCNT": keepAliveCount, "TCP_NODELAY": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("accepted connection: %s = %d, want %d", k, got[k], v)
		}
	}
}
