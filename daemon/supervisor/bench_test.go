package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sitelink/sitelink/daemon/api"
)

// Run with: go test -run X -bench . ./daemon/supervisor (as root).
// Recorded in docs/benchmarks/supervisor.md.

func benchOptions(b *testing.B) Options {
	opts := testOptions(b)
	opts.Logger = discardLogger()
	opts.HealthInterval = 5 * time.Second // the defaults: no probes while measuring
	opts.HealthTimeout = 2 * time.Second
	return opts
}

// waitUntil blocks until cond holds, woken by the supervisor's state changes.
func waitUntil(b *testing.B, s *Supervisor, timeout time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ch := s.changedCh()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			b.Fatalf("timed out after %s; %+v", timeout, s.Snapshot())
		}
	}
}

// BenchmarkApplyFivePlugins measures a daemon start: from Apply of five plugins to all
// of them running (binary checks, probing, launch through the privilege-dropping
// launcher, handshake, Init, Configure, Start). Goal: 300 ms.
func BenchmarkApplyFivePlugins(b *testing.B) {
	needRoot(b)
	bin := pluginBinary(b)
	opts := benchOptions(b)
	var specs []Spec
	for i := range 5 {
		specs = append(specs, Spec{Name: fmt.Sprintf("p%d", i), Enabled: true, Required: true, Binary: bin, Config: []byte(`{"greeting":"hi"}`)})
	}
	var total, cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		cpu0 := cpuTime()
		s, err := New(context.Background(), opts)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := s.Apply(context.Background(), specs); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = s.WaitReady(ctx)
		cancel()
		total += time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatalf("WaitReady: %v; %+v", err, s.Snapshot())
		}
		ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
		s.Stop(ctx)
		cancel()
		cpu += cpuTime() - cpu0
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/start")
	// CPU time of the supervisor and of its (reaped) children, plugins and launchers,
	// from New to Stop: less sensitive than wall time to other load on the machine.
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/start+stop")
}

// cpuTime is the user and system time of this process and its reaped children.
func cpuTime() time.Duration {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	return time.Duration(self.Utime.Nano() + self.Stime.Nano() + children.Utime.Nano() + children.Stime.Nano())
}

// BenchmarkRestartAfterKill measures `kill -9` of a plugin to the plugin running again.
// The restart window is made so short that every restart is the first in its window,
// which the policy makes immediate (no backoff). Goal: 150 ms.
func BenchmarkRestartAfterKill(b *testing.B) {
	needRoot(b)
	opts := benchOptions(b)
	opts.Restart = RestartPolicy{Max: 1 << 30, Window: time.Nanosecond}
	s := newSupervisor(b, opts)
	apply(b, s, pluginSpec(b, "victim", `{"greeting":"hi"}`))
	waitUntil(b, s, 30*time.Second, func() bool { st := statusOf(b, s, "victim"); return st.State == api.PluginRunning && st.PID > 0 })
	var total time.Duration
	for b.Loop() {
		pid := statusOf(b, s, "victim").PID
		start := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		waitUntil(b, s, 30*time.Second, func() bool {
			st := statusOf(b, s, "victim")
			return st.State == api.PluginRunning && st.PID > 0 && st.PID != pid
		})
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/restart")
}

// BenchmarkIdlePluginRSS reports the resident memory of an idle test plugin (it links
// the whole SDK: go-plugin, gRPC, protobuf, Prometheus), after it has been idle for a
// second: VmRSS, and its anonymous (heap, stacks) and file-backed (the binary's mapped
// pages, shared page cache) parts. Goal: 15 MB VmRSS.
func BenchmarkIdlePluginRSS(b *testing.B) {
	needRoot(b)
	s := newSupervisor(b, benchOptions(b))
	apply(b, s, pluginSpec(b, "idle", `{"greeting":"hi"}`))
	waitUntil(b, s, 30*time.Second, func() bool { st := statusOf(b, s, "idle"); return st.State == api.PluginRunning && st.PID > 0 })
	pid := statusOf(b, s, "idle").PID
	time.Sleep(time.Second) // idle on purpose: the figure is the memory of an idle plugin
	var m map[string]float64
	for b.Loop() {
		var err error
		if m, err = procStatus(pid); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(m["VmRSS"]/1024, "MB-rss")
	b.ReportMetric(m["RssAnon"]/1024, "MB-anon")
	b.ReportMetric(m["RssFile"]/1024, "MB-file")
	if self, err := procStatus(os.Getpid()); err == nil {
		b.Logf("plugin pid %d: VmRSS %.1f MB (anon %.1f, file %.1f, peak %.1f); supervisor (test binary) %.1f MB",
			pid, m["VmRSS"]/1024, m["RssAnon"]/1024, m["RssFile"]/1024, m["VmHWM"]/1024, self["VmRSS"]/1024)
	}
}

// procStatus reads the kB figures of /proc/PID/status (VmRSS, RssAnon …).
func procStatus(pid int) (map[string]float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || !strings.HasSuffix(v, " kB") {
			continue
		}
		if n, err := strconv.ParseFloat(strings.Fields(v)[0], 64); err == nil {
			out[k] = n
		}
	}
	if out["VmRSS"] == 0 {
		return nil, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return out, sc.Err()
}
