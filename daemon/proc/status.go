package proc

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ReadProcCaps reads a process's capability sets and ids from /proc/PID/status.
func ReadProcCaps(pid int) (ProcCaps, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcCaps{}, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	defer f.Close()
	var pc ProcCaps
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		hex := func() CapSet { n, _ := strconv.ParseUint(v, 16, 64); return CapSet(n) }
		first := func() int { n, _ := strconv.Atoi(strings.Fields(v)[0]); return n }
		switch k {
		case "CapEff":
			pc.Eff = hex()
		case "CapPrm":
			pc.Prm = hex()
		case "CapInh":
			pc.Inh = hex()
		case "CapBnd":
			pc.Bnd = hex()
		case "CapAmb":
			pc.Amb = hex()
		case "Uid":
			pc.UID = first()
		case "Gid":
			pc.GID = first()
		}
	}
	return pc, sc.Err()
}
