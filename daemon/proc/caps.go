package proc

import (
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// capNames maps Linux capability names to numbers (linux/capability.h).
var capNames = map[string]int{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
	"CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
	"CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
	"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
	"CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
	"CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
	"CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
	"CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
	"CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
	"CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
	"CAP_CHECKPOINT_RESTORE": 40,
}

// CapNumber returns the number of a capability name ("CAP_NET_ADMIN" or "net_admin").
func CapNumber(name string) (int, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	v, ok := capNames[n]
	if !ok {
		return 0, fmt.Errorf("unknown capability %q", name)
	}
	return v, nil
}

// CapSet is a set of capabilities as a bit mask.
type CapSet uint64

// ParseCaps reads capability names into a set.
func ParseCaps(names []string) (CapSet, error) {
	var s CapSet
	for _, n := range names {
		if strings.TrimSpace(n) == "" {
			continue
		}
		v, err := CapNumber(n)
		if err != nil {
			return 0, err
		}
		s |= 1 << uint(v)
	}
	return s, nil
}

// Names lists the set's capability names, sorted.
func (s CapSet) Names() []string {
	var out []string
	for n, v := range capNames {
		if s&(1<<uint(v)) != 0 {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// String is the names joined with commas.
func (s CapSet) String() string { return strings.Join(s.Names(), ",") }

// lastCap reads the highest capability the running kernel knows.
func lastCap() int {
	var b [16]byte
	fd, err := unix.Open("/proc/sys/kernel/cap_last_cap", unix.O_RDONLY, 0)
	if err != nil {
		return 40
	}
	defer unix.Close(fd)
	n, _ := unix.Read(fd, b[:])
	v := 0
	for _, c := range b[:n] {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + int(c-'0')
	}
	if v == 0 {
		return 40
	}
	return v
}

// AmbientSupported reports whether the kernel has ambient capabilities (Linux ≥ 4.3).
func AmbientSupported() bool {
	_, err := unix.PrctlRetInt(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_IS_SET, 0, 0, 0)
	return err == nil
}

// ProcCaps reads the Cap* and Uid lines of /proc/PID/status: the way tests and operators
// check what a plugin really runs with.
type ProcCaps struct {
	Eff, Prm, Inh, Bnd, Amb CapSet
	UID, GID                int
}
