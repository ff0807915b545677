package plugin

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sitelink/sitelink/plugins/proxy/relay"
)

// AgentBandwidth is what one agent needs: 10 Kbit/s, in bytes per second.
const AgentBandwidth = 10_000 / 8

// BytesPerConn is the proxy's memory per relayed connection used for planning (the
// measured RSS per idle connection is in docs/benchmarks/proxy.md; this adds headroom).
const BytesPerConn = 25 << 10

// Budget is the share of the machine's resources the plan keeps the proxy under.
const Budget = 0.6

// Resources are what the machine offers.
type Resources struct {
	CPUs     int    `json:"cpus"`
	MemBytes uint64 `json:"mem_bytes"`
	MaxFiles uint64 `json:"max_files"`
}

// ReadResources reads CPU count, MemTotal and the open-files limit.
func ReadResources() Resources {
	r := Resources{CPUs: runtime.NumCPU()}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				r.MemBytes = kb << 10
			}
		}
		f.Close()
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil {
		r.MaxFiles = lim.Max
	}
	return r
}

// PlanResult is the answer of `sitelinkctl proxy plan`.
type PlanResult struct {
	Hosts              int       `json:"hosts"`
	NeededBandwidth    string    `json:"needed_bandwidth"`
	NeededBytesPerSec  float64   `json:"needed_bytes_per_sec"`
	Resources          Resources `json:"resources"`
	MaxConnsWithin60   int64     `json:"max_conns_within_60pct"`
	SuggestedLimits    Suggested `json:"suggested_limits"`
	Warnings           []string  `json:"warnings,omitempty"`
	ConnectionsPerHost int       `json:"connections_per_host"`
}

// Suggested are config values for limits.
type Suggested struct {
	TotalBandwidth  string `json:"total_bandwidth"`
	ClientBandwidth string `json:"client_bandwidth"`
	MaxConns        int64  `json:"max_conns"`
	ClientMaxConns  int64  `json:"client_max_conns"`
	TotalConnRate   int64  `json:"total_conn_rate"`
	ClientConnRate  int64  `json:"client_conn_rate"`
}

func mbit(bps float64) string { return fmt.Sprintf("%.1fMbit", bps*8/1e6) }

// Plan computes the bandwidth N agents need and limits that keep the proxy within 60%
// of the machine's file descriptors and memory; it warns about cfg's limits.
func Plan(hosts int, r Resources, cfg *relay.Config) PlanResult {
	const perHost = 2 // an agent may hold a second connection while reconnecting
	need := float64(hosts) * AgentBandwidth
	res := PlanResult{Hosts: hosts, NeededBandwidth: mbit(need), NeededBytesPerSec: need, Resources: r, ConnectionsPerHost: perHost}
	// Each relayed connection takes two descriptors (client and upstream).
	byFiles := int64(float64(r.MaxFiles) * Budget / 2)
	byMem := int64(float64(r.MemBytes) * Budget / BytesPerConn)
	res.MaxConnsWithin60 = min(byFiles, byMem)
	if r.MaxFiles == 0 {
		res.MaxConnsWithin60 = byMem
	}
	res.SuggestedLimits = Suggested{
		TotalBandwidth:  mbit(need * 1.5), // headroom for bursts and catch-up after outages
		ClientBandwidth: mbit(AgentBandwidth * 10),
		MaxConns:        min(int64(hosts*perHost), res.MaxConnsWithin60),
		ClientMaxConns:  perHost * 2,
		TotalConnRate:   max(int64(hosts/10), 10), // all agents reconnect within 10 s
		ClientConnRate:  2,
	}
	if int64(hosts) > res.MaxConnsWithin60 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d agents exceed the %d connections this machine holds within 60%% of its resources: add proxies to the cluster", hosts, res.MaxConnsWithin60))
	}
	if cfg != nil {
		l := cfg.Limits
		if l.TotalBandwidth > 0 && float64(l.TotalBandwidth) < need {
			res.Warnings = append(res.Warnings, fmt.Sprintf("limits.total_bandwidth %s is below the %s %d agents need", mbit(float64(l.TotalBandwidth)), mbit(need), hosts))
		}
		if l.MaxConns > 0 && int64(l.MaxConns) < int64(hosts) {
			res.Warnings = append(res.Warnings, fmt.Sprintf("limits.max_conns %d is below the %d agents", int64(l.MaxConns), hosts))
		}
		if l.ClientBandwidth > 0 && float64(l.ClientBandwidth) < AgentBandwidth {
			res.Warnings = append(res.Warnings, fmt.Sprintf("limits.client_bandwidth %s is below the 10 Kbit/s an agent needs", mbit(float64(l.ClientBandwidth))))
		}
		if l.MaxConns == 0 && int64(hosts) > res.MaxConnsWithin60 {
			res.Warnings = append(res.Warnings, "limits.max_conns is unlimited: set it to the suggested value so the proxy refuses instead of running out of descriptors")
		}
	}
	return res
}
