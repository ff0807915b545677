// Command sitebench measures the whole site of testenv/site (needs root, wg, nft,
// iperf3): the gap in the remote user's traffic when the master connector's sitelinkd is
// killed with SIGKILL, at the default and the low-latency VRRP profiles (the gap
// includes the backup's tunnel coming up), and iperf3 throughput remote user → app
// through gateway, tunnel and SNAT, compared with the same path through a stock
// wireguard-go and one nft masquerade rule on the connector, in the same run. It prints
// Markdown; run.sh runs it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sitelink/sitelink/testenv"
	"github.com/sitelink/sitelink/testenv/site"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sitebench:", err)
		os.Exit(1)
	}
}

type options struct {
	bin            string
	roundsDefault  int
	roundsLow      int
	seconds        int
	iperfRuns      int
	flowInterval   time.Duration
	skipThroughput bool
	trace          bool
}

func run() error {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory with sitelinkd, sitelinkctl and plugins/")
	flag.IntVar(&o.roundsDefault, "rounds-default", 5, "failovers at the default VRRP profile")
	flag.IntVar(&o.roundsLow, "rounds-low", 10, "failovers at the low-latency VRRP profile")
	flag.IntVar(&o.seconds, "t", 5, "seconds per iperf3 run")
	flag.IntVar(&o.iperfRuns, "iperf-runs", 3, "iperf3 runs per path (the median is reported)")
	flag.DurationVar(&o.flowInterval, "flow-interval", 5*time.Millisecond, "the remote user's UDP request interval")
	flag.BoolVar(&o.trace, "trace", false, "capture packets and state on every hop while a failover gap lasts over 2 s")
	flag.BoolVar(&o.skipThroughput, "no-throughput", false, "only the failover gaps")
	flag.Parse()
	ctx := context.Background()
	host, _ := os.Hostname()
	fmt.Printf("# Whole-site benchmark\n\n%s, %d CPUs, %s, %s\n\n", host, runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format(time.RFC3339))
	fmt.Printf("## Failover gap after SIGKILL of the master's sitelinkd\n\n")
	fmt.Printf("The remote user sends a UDP request to the app every %v (gateway → tunnel → master → SNAT → app);\n", o.flowInterval)
	fmt.Printf("the gap is the longest time without an answer around the kill, so it includes VRRP's\n")
	fmt.Printf("master-down interval, the plugins' activation on the backup, its tunnel's handshake and\n")
	fmt.Printf("routes, SNAT rules and the gateway following the new endpoint.\n\n")
	fmt.Printf("| VRRP profile | advert | rounds | min | median | max |\n|---|---|---|---|---|---|\n")
	for _, p := range []struct {
		prof   site.VRRP
		rounds int
	}{{site.VRRPDefault, o.roundsDefault}, {site.VRRPLowLatency, o.roundsLow}} {
		if p.rounds == 0 {
			continue
		}
		gaps, err := failovers(ctx, o, p.prof, p.rounds)
		if err != nil {
			return err
		}
		slices.Sort(gaps)
		fmt.Printf("| %s | %d ms | %d | %v | %v | %v |\n", p.prof.Name, p.prof.AdvertInterval*10, len(gaps),
			ms(gaps[0]), ms(gaps[len(gaps)/2]), ms(gaps[len(gaps)-1]))
	}
	if o.skipThroughput {
		return nil
	}
	return throughput(ctx, o)
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}

// newSite builds a site in its own Env.
func newSite(ctx context.Context, o options, prof site.VRRP) (*site.Site, *testenv.Env, error) {
	env, err := testenv.NewEnv("sitebench")
	if err != nil {
		return nil, nil, err
	}
	s, err := site.New(ctx, site.Options{Env: env, Bin: o.bin, VRRP: prof})
	if err != nil {
		env.Close()
		return nil, nil, err
	}
	return s, env, nil
}

// failovers kills the master rounds times and returns the gaps.
func failovers(ctx context.Context, o options, prof site.VRRP, rounds int) ([]time.Duration, error) {
	s, env, err := newSite(ctx, o, prof)
	if err != nil {
		return nil, err
	}
	defer env.Close()
	defer s.Close()
	flow, err := site.StartUDPFlow(s.User, o.flowInterval)
	if err != nil {
		return nil, err
	}
	defer flow.Stop()
	var gaps []time.Duration
	for i := 0; i < rounds; i++ {
		if _, err := s.WaitSteady(ctx); err != nil {
			return nil, err
		}
		// Let the flow and the gateway settle (and a restarted connector preempt), then
		// take the master of now.
		time.Sleep(2 * time.Second)
		m, err := s.WaitSteady(ctx)
		if err != nil {
			return nil, err
		}
		if o.trace && flow.DeliveredSince(time.Now().Add(-500*time.Millisecond)) == 0 {
			fmt.Fprintf(os.Stderr, "round %d: the flow is dead before the kill\n", i+1)
			capture(ctx, s, m)
		}
		at := time.Now()
		if err := m.Kill9(ctx); err != nil {
			return nil, err
		}
		captured := make(chan struct{})
		if o.trace {
			// Look while the gap lasts, not after: the steady-state check below waits
			// as long as it does.
			go func() {
				defer close(captured)
				time.Sleep(1500 * time.Millisecond)
				if flow.DeliveredSince(at.Add(500*time.Millisecond)) == 0 {
					capture(ctx, s, m)
				}
			}()
		} else {
			close(captured)
		}
		if _, err := s.WaitSteady(ctx); err != nil {
			return nil, err
		}
		<-captured
		resumed := time.Now()
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err = testenv.WaitFor(wctx, "the flow after failover", func() (bool, error) { return flow.DeliveredSince(resumed) > 20, nil })
		cancel()
		if err != nil {
			return nil, err
		}
		gap, _ := flow.Gap(at, time.Now())
		gaps = append(gaps, gap)
		if gap > 5*time.Second {
			dumpState(ctx, s)
		}
		fmt.Fprintf(os.Stderr, "%s round %d: kill -9 %s: gap %v\n", prof.Name, i+1, m.Name, gap.Round(time.Millisecond))
		if err := m.Start(ctx); err != nil {
			return nil, err
		}
	}
	return gaps, nil
}

// throughput measures iperf3 user → app through the site, then through a plain
// wireguard-go connector on the same namespaces.
func throughput(ctx context.Context, o options) error {
	s, env, err := newSite(ctx, o, site.VRRPFast)
	if err != nil {
		return err
	}
	defer env.Close()
	defer s.Close()
	srv, err := s.App.Start("iperf3", "-s", "-B", site.AppAddr)
	if err != nil {
		return err
	}
	defer srv.Kill()
	m, err := s.WaitSteady(ctx)
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	sl, err := iperfMedian(ctx, s, o)
	if err != nil {
		return err
	}
	// The same path without Sitelink: both daemons stopped (the plugins remove their
	// interfaces and rules), stock wireguard-go with the same key on the old master.
	for _, c := range s.Connectors {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.Stop(sctx)
		cancel()
		if err != nil {
			return fmt.Errorf("stop sitelinkd on %s: %w", c.Name, err)
		}
	}
	if _, err := s.StartPlainConnector(ctx, m); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = testenv.WaitFor(wctx, "the plain connector's path", func() (bool, error) {
		_, err := site.AskUDP(s.User, site.AppAddr, site.FlowPort, time.Second)
		return err == nil, err
	})
	cancel()
	if err != nil {
		return err
	}
	plain, err := iperfMedian(ctx, s, o)
	if err != nil {
		return err
	}
	fmt.Printf("\n## Throughput remote user → app (iperf3 TCP, one stream, %d s, median of %d)\n\n", o.seconds, o.iperfRuns)
	fmt.Printf("| path | Gbit/s |\n|---|---|\n")
	fmt.Printf("| gateway → Sitelink connector (tunnel plugin, userspace WireGuard) → snat masquerade → app | %.2f |\n", sl/1e9)
	fmt.Printf("| gateway → stock wireguard-go + one nft masquerade rule on the same connector → app | %.2f |\n", plain/1e9)
	fmt.Printf("| ratio Sitelink / plain | %.2f |\n", sl/plain)
	return nil
}

func iperfMedian(ctx context.Context, s *site.Site, o options) (float64, error) {
	var rates []float64
	for i := 0; i < o.iperfRuns; i++ {
		out, err := s.User.Run(ctx, "iperf3", "-c", site.AppAddr, "-t", fmt.Sprint(o.seconds), "-J")
		if err != nil {
			return 0, err
		}
		var r struct {
			End struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return 0, fmt.Errorf("iperf3 output: %w: %s", err, strings.TrimSpace(out))
		}
		if r.Error != "" || r.End.SumReceived.BitsPerSecond == 0 {
			return 0, errors.New("iperf3: " + r.Error)
		}
		rates = append(rates, r.End.SumReceived.BitsPerSecond)
		fmt.Fprintf(os.Stderr, "iperf3 run %d: %.2f Gbit/s\n", i+1, r.End.SumReceived.BitsPerSecond/1e9)
	}
	slices.Sort(rates)
	return rates[len(rates)/2], nil
}

// capture prints, for a gap that lasts, a second of the flow's packets (and WireGuard's,
// ARP and ICMP) seen on every host of its path, then dumpState, to stderr.
func capture(ctx context.Context, s *site.Site, killed *site.Connector) {
	hosts := []*testenv.Host{s.User, s.App, s.Router}
	for _, c := range s.Connectors {
		hosts = append(hosts, c.Host)
	}
	for _, g := range s.Gateways {
		hosts = append(hosts, g.Host)
	}
	out := make([]string, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _ := h.Run(ctx, "timeout", "1.5", "tcpdump", "-l", "-nn", "-e", "-i", "any", "-c", "12",
				fmt.Sprintf("udp port %d or udp port 51820 or arp or icmp", site.FlowPort))
			out[i] = r
		}()
	}
	wg.Wait()
	fmt.Fprintf(os.Stderr, "=== gap capture (killed %s)\n", killed.Name)
	for i, h := range hosts {
		fmt.Fprintf(os.Stderr, "--- %s tcpdump:\n%s", h.Name(), out[i])
	}
	dumpState(ctx, s)
}

// dumpState prints, to stderr, the connectors' conntrack entries of the flow, their
// routes, addresses, neighbours and (while running) status and tunnel, the gateways'
// WireGuard peers and the app's and router's neighbours.
func dumpState(ctx context.Context, s *site.Site) {
	for _, c := range s.Connectors {
		ct, _ := c.Host.Run(ctx, "conntrack", "-L", "-p", "udp", "--dport", fmt.Sprint(site.FlowPort))
		rt, _ := c.Host.IP(ctx, "route", "show", "table", "all")
		addr, _ := c.Host.IP(ctx, "-br", "addr")
		fmt.Fprintf(os.Stderr, "--- %s conntrack:\n%s--- %s routes:\n%s--- %s addresses:\n%s", c.Name, ct, c.Name, rt, c.Name, addr)
		if c.Running() {
			st, _ := c.Ctl(ctx, "status")
			tu, _ := c.Ctl(ctx, "plugins", "show", "tunnel")
			fmt.Fprintf(os.Stderr, "--- %s status:\n%s\n%s\n", c.Name, st, tu)
		}
	}
	for _, g := range s.Gateways {
		wgs, _ := g.Host.Run(ctx, "wg", "show", g.Iface)
		fmt.Fprintf(os.Stderr, "--- %s wg:\n%s", g.Host.Name(), wgs)
	}
	for _, h := range []*testenv.Host{s.App, s.Router, s.Connectors[0].Host, s.Connectors[1].Host} {
		n, _ := h.IP(ctx, "neigh")
		fmt.Fprintf(os.Stderr, "--- %s neighbours:\n%s", h.Name(), n)
	}
}
