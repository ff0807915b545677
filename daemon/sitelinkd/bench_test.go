package sitelinkd_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sitelink/sitelink/daemon/ctl"
	"github.com/sitelink/sitelink/testenv"
)

// fivePlugins is five test plugin instances, the last two after the first.
func fivePlugins() string {
	var b strings.Builder
	for i := 1; i <= 5; i++ {
		fmt.Fprintf(&b, "  p%d:\n    binary: %s\n    config:\n      greeting: p%d\n", i, bins.testplugin, i)
		if i > 3 {
			b.WriteString("    after: [p1]\n")
		}
	}
	return b.String()
}

// benchSite starts a daemon with five plugins and returns it with the time from exec to
// READY=1 on a notify socket.
func benchSite(b *testing.B) (*site, time.Duration) {
	return startBenchSite(b, func(string) string { return fivePlugins() })
}

// newBenchSite starts a daemon with the plugins section made by plugins(dir).
func newBenchSite(b *testing.B, plugins func(dir, sync string) string) *site {
	s, _ := startBenchSite(b, func(dir string) string { makeCacheDir(b, dir); return plugins(dir, "interval") })
	return s
}

func startBenchSite(b *testing.B, plugins func(dir string) string) (*site, time.Duration) {
	dir, err := os.MkdirTemp("", "sitelinkd-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	_ = os.Chmod(dir, 0o755)
	s := &site{dir: dir, config: filepath.Join(dir, "sitelink.yaml"), socket: filepath.Join(dir, "admin.sock")}
	_ = os.MkdirAll(filepath.Join(dir, "plugins.d"), 0o755)
	cfg := s.daemonSection() + "plugins:\n" + plugins(dir)
	cfg = strings.Replace(cfg, "health_interval: 300ms", "health_interval: 5s", 1)
	cfg = strings.Replace(cfg, "health_timeout: 200ms", "health_timeout: 2s", 1)
	if err := os.WriteFile(s.config, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	ns, err := testenv.NewNotifySocket(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	s.cmd = exec.Command(bins.sitelinkd, "--config", s.config)
	s.cmd.Env = append(os.Environ(), ns.Env())
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := ns.WaitFor(ctx, "READY=1"); err != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		b.Fatal(err)
	}
	ready := time.Since(start)
	b.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	return s, ready
}

func requireRootB(b *testing.B) {
	if os.Geteuid() != 0 {
		if testenv.InCI() {
			b.Fatal("needs root")
		}
		b.Skip("needs root")
	}
}

// BenchmarkDaemonStartFivePlugins: from exec of sitelinkd to READY=1 (every plugin
// launched, initialised, configured and started). Goal ≤ 300 ms.
func BenchmarkDaemonStartFivePlugins(b *testing.B) {
	requireRootB(b)
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		_, ready := benchSite(b)
		total += ready
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/start")
}

// BenchmarkActionRoundTrip: client → admin socket → daemon → plugin → back, the client
// library sitelinkctl uses, without the CLI's process start. Goal p50 ≤ 1 ms.
func BenchmarkActionRoundTrip(b *testing.B) {
	requireRootB(b)
	s, _ := benchSite(b)
	c := clientFor(s)
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := c.Action(ctx, "p1", "echo", map[string]string{"text": "x"}, nil); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkMemory reports the RSS of sitelinkd and of an idle plugin after start and
// some traffic. Goals: daemon ≤ 25 MB, idle plugin ≤ 15 MB.
func BenchmarkMemory(b *testing.B) {
	requireRootB(b)
	s, _ := benchSite(b)
	c := clientFor(s)
	ctx := context.Background()
	for i := 0; i < b.N*100; i++ {
		if _, err := c.Action(ctx, "p1", "echo", nil, nil); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Status(ctx); err != nil {
			b.Fatal(err)
		}
	}
	st, err := c.Status(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(rssMB(b, s.cmd.Process.Pid), "daemon-MB")
	var worst float64
	for _, p := range st.Plugins {
		if p.Name == "p1" {
			continue // the one that served the actions
		}
		if v := rssMB(b, p.PID); v > worst {
			worst = v
		}
	}
	b.ReportMetric(worst, "idle-plugin-MB")
}

func rssMB(b *testing.B, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			return float64(kb) / 1024
		}
	}
	b.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

func clientFor(s *site) *ctl.Client { return ctl.NewClient(s.socket) }
