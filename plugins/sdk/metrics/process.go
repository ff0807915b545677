package metrics

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// The process families, named and described as client_golang's process collector does,
// so that a plugin's process_resident_memory_bytes{plugin="…"} sits next to the daemon's.
var (
	dCPU      = NewDesc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", CounterType)
	dOpenFDs  = NewDesc("process_open_fds", "Number of open file descriptors.", GaugeType)
	dMaxFDs   = NewDesc("process_max_fds", "Maximum number of open file descriptors.", GaugeType)
	dVirtual  = NewDesc("process_virtual_memory_bytes", "Virtual memory size in bytes.", GaugeType)
	dVirtMax  = NewDesc("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", GaugeType)
	dResident = NewDesc("process_resident_memory_bytes", "Resident memory size in bytes.", GaugeType)
	dStart    = NewDesc("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", GaugeType)
)

// userHZ is the unit of /proc/PID/stat's times (USER_HZ, 100 on every Linux port).
const userHZ = 100

// NewProcessCollector collects this process's CPU time, memory, file descriptors and
// start time from /proc/self. What cannot be read is left out.
func NewProcessCollector() Collector {
	return CollectorFunc(collectProcess)
}

func collectProcess(s *Scrape) {
	if st, err := os.ReadFile("/proc/self/stat"); err == nil {
		// Fields after the command name, which is in parentheses and may hold spaces:
		// f[0] is field 3 (state) of proc(5).
		if i := bytes.LastIndexByte(st, ')'); i > 0 {
			f := strings.Fields(string(st[i+1:]))
			num := func(field int) float64 {
				if field-3 >= len(f) {
					return 0
				}
				v, _ := strconv.ParseFloat(f[field-3], 64)
				return v
			}
			s.Add(dCPU, (num(14)+num(15))/userHZ)
			s.Add(dVirtual, num(23))
			s.Add(dResident, num(24)*float64(os.Getpagesize()))
			if boot := bootTime(); boot > 0 {
				s.Add(dStart, boot+num(22)/userHZ)
			}
		}
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.Add(dOpenFDs, float64(len(fds)))
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		s.Add(dMaxFDs, float64(lim.Cur))
	}
	if syscall.Getrlimit(syscall.RLIMIT_AS, &lim) == nil {
		s.Add(dVirtMax, float64(lim.Cur))
	}
}

// bootTime is the btime line of /proc/stat (Unix seconds), 0 if unknown.
func bootTime() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			t, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return t
		}
	}
	return 0
}
