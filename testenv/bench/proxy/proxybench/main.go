// Command proxybench drives the proxy benchmarks (testenv/bench/proxy/run.sh): it runs
// the proxy's relay without the daemon, an echo server, and the load generators for
// many slow agents (latency, RSS per connection) and for short connections (rate).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sitelink/sitelink/plugins/proxy/relay"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: proxybench relay|echo|agents|rate|ingest|storeappend [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "relay":
		err = runRelay(os.Args[2:])
	case "echo":
		err = runEcho(os.Args[2:])
	case "agents":
		err = runAgents(os.Args[2:])
	case "rate":
		err = runRate(os.Args[2:])
	case "ingest":
		err = runIngest(os.Args[2:])
	case "storeappend":
		err = runStoreAppend(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		os.Exit(1)
	}
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// runRelay serves the proxy's relay: listeners "name=addr>upstream" (tcp mode).
func runRelay(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ExitOnError)
	routes := fs.String("routes", "", "comma-separated name=listen>upstream")
	stats := fs.String("stats", "", "address for /stats (goroutines, fds)")
	_ = fs.Parse(args)
	cfg := relay.Config{Upstreams: map[string]relay.UpstreamConfig{}}
	for _, r := range strings.Split(*routes, ",") {
		name, rest, ok1 := strings.Cut(r, "=")
		listen, up, ok2 := strings.Cut(rest, ">")
		if !ok1 || !ok2 {
			return fmt.Errorf("bad route %q", r)
		}
		cfg.Listeners = append(cfg.Listeners, relay.ListenerConfig{Name: name, Address: listen, Mode: relay.ModeTCP, Upstream: name})
		cfg.Upstreams[name] = relay.UpstreamConfig{Servers: []string{up}, HealthInterval: relay.Duration(time.Hour)}
	}
	raw, _ := json.Marshal(cfg)
	c, err := relay.ParseConfig(raw)
	if err != nil {
		return err
	}
	s := relay.New(relay.Hooks{Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err := s.Apply(c); err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		return err
	}
	if *stats != "" {
		// /stats for the soak; /debug/pprof/ (net/http/pprof) for profiling the relay.
		mux := http.NewServeMux()
		mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
			fds, _ := os.ReadDir("/proc/self/fd")
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Fprintf(w, "goroutines %d fds %d conns %d heap_inuse_kb %d stack_inuse_kb %d\n", runtime.NumGoroutine(), len(fds),
				s.ActiveConns(), ms.HeapInuse>>10, ms.StackInuse>>10)
		})
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		go http.ListenAndServe(*stats, mux)
	}
	ctx, cancel := signalContext()
	defer cancel()
	<-ctx.Done()
	sctx, c2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer c2()
	return s.Stop(sctx)
}

func runEcho(args []string) error {
	fs := flag.NewFlagSet("echo", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	_ = fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 512)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	ctx, cancel := signalContext()
	defer cancel()
	<-ctx.Done()
	return ln.Close()
}

func rssKB(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return 0
}

func fdCount(pid int) int {
	e, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(e)
}

// runAgents opens N connections that each send a 100-byte message every interval and
// wait for its echo; it prints the latency percentiles and the RSS and fds of -pid.
func runAgents(args []string) error {
	fs := flag.NewFlagSet("agents", flag.ExitOnError)
	target := fs.String("target", "", "address")
	n := fs.Int("conns", 8000, "connections")
	interval := fs.Duration("interval", 3*time.Second, "between messages of one agent")
	dur := fs.Duration("duration", 20*time.Second, "measuring time after all connected")
	pid := fs.Int("pid", 0, "process whose RSS and fds to report")
	label := fs.String("label", "", "name in the output")
	stats := fs.String("stats", "", "URL of the relay's /stats, printed once connected, every -every and at the end (soak)")
	every := fs.Duration("every", time.Minute, "between /stats samples while running")
	_ = fs.Parse(args)
	printStats := func(when string) {
		if *stats == "" {
			return
		}
		r, err := http.Get(*stats)
		if err != nil {
			fmt.Printf("%s stats %s: %v\n", *label, when, err)
			return
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		fmt.Printf("%s stats %s: %s rss_kb %d\n", *label, when, strings.TrimSpace(string(b)), rssKB(*pid))
	}
	rss0, fd0 := rssKB(*pid), fdCount(*pid)
	conns := make([]net.Conn, 0, *n)
	for i := 0; i < *n; i++ {
		c, err := net.Dial("tcp", *target)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		conns = append(conns, c)
	}
	time.Sleep(time.Second)
	rss1, fd1 := rssKB(*pid), fdCount(*pid)
	printStats("connected")
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	var errs atomic.Int64
	var wg sync.WaitGroup
	if *stats != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(*every)
			defer t.Stop()
			for k := 1; ; k++ {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					printStats(fmt.Sprintf("t+%v", time.Duration(k)**every))
				}
			}
		}()
	}
	msg := []byte(strings.Repeat("m", 100))
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 100)
			// Spread the agents over the interval.
			t := time.NewTimer(time.Duration(i) * *interval / time.Duration(len(conns)))
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				t0 := time.Now()
				_ = c.SetDeadline(t0.Add(5 * time.Second))
				_, err := c.Write(msg)
				if err == nil {
					_, err = io.ReadFull(c, buf)
				}
				if err != nil {
					errs.Add(1)
					return
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
				t.Reset(*interval)
			}
		}()
	}
	wg.Wait()
	rss2, fd2 := rssKB(*pid), fdCount(*pid)
	printStats("end")
	for _, c := range conns {
		c.Close()
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) == 0 {
		return errors.New("no message made the round trip")
	}
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Printf("%s: conns=%d msgs=%d errors=%d p50=%v p99=%v max=%v rss_before=%dKB rss_connected=%dKB rss_end=%dKB per_conn=%.1fKB fds %d->%d->%d\n",
		*label, len(conns), len(lat), errs.Load(), pct(0.5), pct(0.99), lat[len(lat)-1], rss0, rss1, rss2,
		float64(max(rss1, rss2)-rss0)/float64(len(conns)), fd0, fd1, fd2)
	return nil
}

// runRate measures short connections per second: connect, 100-byte echo, close.
func runRate(args []string) error {
	fs := flag.NewFlagSet("rate", flag.ExitOnError)
	target := fs.String("target", "", "address")
	workers := fs.Int("workers", 64, "concurrent clients")
	dur := fs.Duration("duration", 5*time.Second, "how long")
	label := fs.String("label", "", "name in the output")
	pids := fs.String("pids", "", "comma-separated processes whose CPU time per connection to report")
	_ = fs.Parse(args)
	cpu0 := cpuTicks(*pids)
	var ok, bad atomic.Int64
	deadline := time.Now().Add(*dur)
	var wg sync.WaitGroup
	msg := []byte(strings.Repeat("r", 100))
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 100)
			for time.Now().Before(deadline) {
				c, err := net.DialTimeout("tcp", *target, 2*time.Second)
				if err != nil {
					bad.Add(1)
					continue
				}
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				_, err = c.Write(msg)
				if err == nil {
					_, err = io.ReadFull(c, buf)
				}
				c.Close()
				if err != nil {
					bad.Add(1)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	cpu := ""
	if *pids != "" && ok.Load() > 0 {
		// Clock ticks are 10 ms (USER_HZ 100).
		cpu = fmt.Sprintf(" cpu=%.1fus/conn", float64(cpuTicks(*pids)-cpu0)*1e4/float64(ok.Load()))
	}
	fmt.Printf("%s: %.0f conn/s (%d ok, %d failed)%s\n", *label, float64(ok.Load())/dur.Seconds(), ok.Load(), bad.Load(), cpu)
	return nil
}

// cpuTicks is the user+system CPU time of the processes (comma-separated pids), in
// clock ticks, threads included.
func cpuTicks(pids string) int64 {
	var sum int64
	for _, p := range strings.Split(pids, ",") {
		if p == "" {
			continue
		}
		b, err := os.ReadFile("/proc/" + p + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces): state is field 3,
		// utime 14 and stime 15.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			sum += u + s
		}
	}
	return sum
}
