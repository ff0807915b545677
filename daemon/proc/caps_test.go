package proc

import (
	"os"
	"slices"
	"testing"
)

func TestCapNumber(t *testing.T) {
	for _, tc := range []struct {
		name string
		want int
	}{
		{"CAP_NET_ADMIN", 12},
		{"net_admin", 12},
		{" cap_net_raw ", 13},
		{"CAP_CHOWN", 0},
		{"CAP_CHECKPOINT_RESTORE", 40},
	} {
		got, err := CapNumber(tc.name)
		if err != nil || got != tc.want {
			t.Errorf("CapNumber(%q) = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
	for _, bad := range []string{"CAP_FLY", "", "NET ADMIN"} {
		if _, err := CapNumber(bad); err == nil {
			t.Errorf("CapNumber(%q) did not fail", bad)
		}
	}
}

func TestParseCapsNames(t *testing.T) {
	s, err := ParseCaps([]string{"CAP_NET_RAW", "", "net_admin", "CAP_NET_RAW"})
	if err != nil {
		t.Fatal(err)
	}
	if s != 1<<12|1<<13 {
		t.Fatalf("set = %#x, want %#x", uint64(s), uint64(1<<12|1<<13))
	}
	if got := s.Names(); !slices.Equal(got, []string{"CAP_NET_ADMIN", "CAP_NET_RAW"}) {
		t.Fatalf("Names = %v", got)
	}
	if s.String() != "CAP_NET_ADMIN,CAP_NET_RAW" {
		t.Fatalf("String = %q", s.String())
	}
	if CapSet(0).String() != "" || CapSet(0).Names() != nil {
		t.Fatalf("empty set = %q / %v", CapSet(0).String(), CapSet(0).Names())
	}
	if _, err := ParseCaps([]string{"CAP_NET_ADMIN", "CAP_BOGUS"}); err == nil {
		t.Fatal("unknown capability accepted")
	}
	// Every name maps back to itself.
	for name, n := range capNames {
		if got := CapSet(1 << uint(n)).Names(); !slices.Equal(got, []string{name}) {
			t.Errorf("capability %d names %v, want %s", n, got, name)
		}
	}
}

func TestReadProcCapsSelf(t *testing.T) {
	pc, err := ReadProcCaps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if pc.UID != os.Getuid() || pc.GID != os.Getgid() {
		t.Fatalf("uid/gid = %d/%d, want %d/%d", pc.UID, pc.GID, os.Getuid(), os.Getgid())
	}
	if pc.Bnd == 0 {
		t.Fatal("empty bounding set read for the test process")
	}
	if os.Geteuid() == 0 && pc.Eff == 0 {
		t.Fatal("root test process read with no effective capabilities")
	}
	if _, err := ReadProcCaps(1 << 30); err == nil {
		t.Fatal("status of a pid that cannot exist was read")
	}
}

func TestLastCap(t *testing.T) {
	if n := lastCap(); n < 36 || n > 63 {
		t.Fatalf("lastCap = %d", n)
	}
}
