// Command snat-bench measures TCP throughput through the connector with the snat
// plugin's rules (masquerade + access list) against plain forwarding, with iperf3 in
// testenv namespaces:
//
//	client (100.64.0.2) — connector — app (10.1.0.10, iperf3 -s)
//
// Sequential measurement: one path, the modes alternated every round so that machine
// noise hits all of them alike:
//
//	plain    forwarding only (per-interface sysctls), no nftables at all; the app routes
//	         the client range back to the connector
//	snat     the plugin's rules: forward filter + access list allowing tcp/5201 +
//	         masquerade (conntrack and NAT on the path)
//	acl      the access list only (SNAT off), to split filter from NAT cost
//
// Concurrent measurement: two identical paths, one with the snat rules and one plain,
// loaded at the same time (which path has the rules alternates every round), so both
// see the same machine load; the ratio of their throughputs is the relative cost.
//
// It prints medians and the ratio snat/plain (the goal is ≥ 0.95). Needs root, ip,
// iperf3. Run through run.sh.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/nftables"

	"github.com/sitelink/sitelink/plugins/snat/config"
	"github.com/sitelink/sitelink/plugins/snat/nft"
	"github.com/sitelink/sitelink/plugins/snat/ruleset"
	"github.com/sitelink/sitelink/testenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "snat-bench:", err)
		os.Exit(1)
	}
}

const snatConfig = `{"client_ranges": ["100.64.0.0/16"], "client_interfaces": ["cl0"], "applications": [
  {"name": "app", "networks": ["10.1.0.0/24"], "interface": "ap1", "snat": "%s",
   "access": [{"protocol": "tcp", "ports": [5201]}]}]}`

// path is client — connector — app with an iperf3 server on the app.
type path struct {
	client, conn, app *testenv.Host
	rec               *nft.Reconciler
	nsf               *os.File
}

func newPath(ctx context.Context, env *testenv.Env, prefix string) (*path, error) {
	p := &path{}
	var err error
	for _, h := range []struct {
		dst  **testenv.Host
		name string
	}{{&p.client, "client"}, {&p.conn, "conn"}, {&p.app, "app"}} {
		if *h.dst, err = env.Host(prefix + h.name); err != nil {
			return nil, err
		}
	}
	steps := []func() error{
		func() error { return env.Link(p.client, "c0", p.conn, "cl0") },
		func() error { return env.Link(p.conn, "ap1", p.app, "a0") },
		func() error { return p.client.AddAddr("c0", "100.64.0.2/24") },
		func() error { return p.client.AddRoute("default", "100.64.0.1") },
		func() error { return p.conn.AddAddr("cl0", "100.64.0.1/24") },
		func() error { return p.conn.AddAddr("ap1", "10.1.0.1/24") },
		func() error { return p.app.AddAddr("a0", "10.1.0.10/24") },
		func() error { return p.app.AddRoute("100.64.0.0/16", "10.1.0.1") },
		func() error { return p.conn.SetSysctl("net.ipv4.conf.cl0.forwarding", "1") },
		func() error { return p.conn.SetSysctl("net.ipv4.conf.ap1.forwarding", "1") },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	srv, err := p.app.Start("iperf3", "-s", "--forceflush")
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := srv.WaitOutput(wctx, "Server listening"); err != nil {
		return nil, fmt.Errorf("iperf3 server: %w\n%s", err, srv.Output())
	}
	if p.nsf, err = os.Open(p.conn.NSPath()); err != nil {
		return nil, err
	}
	p.rec = nft.NewReconciler(nftables.WithNetNSFd(int(p.nsf.Fd())))
	return p, nil
}

func (p *path) iperf(ctx context.Context, d time.Duration, streams int) (float64, error) {
	out, err := p.client.Run(ctx, "iperf3", "-c", "10.1.0.10", "-t", fmt.Sprint(int(d.Seconds())),
		"-P", fmt.Sprint(streams), "-J")
	if err != nil {
		return 0, err
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w", err)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, nil
}

type result struct {
	Mode   string    `json:"mode"`
	Gbps   []float64 `json:"gbps"`
	Median float64   `json:"median_gbps"`
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func fmtRuns(v []float64) string {
	var s []string
	for _, g := range v {
		s = append(s, fmt.Sprintf("%.2f", g))
	}
	return strings.Join(s, " ")
}

func run() error {
	duration := flag.Duration("duration", 5*time.Second, "length of one iperf3 run")
	rounds := flag.Int("rounds", 3, "rounds (each runs every mode once)")
	streams := flag.Int("streams", 1, "parallel iperf3 streams (-P)")
	mode := flag.String("mode", "both", "sequential, concurrent or both")
	asJSON := flag.Bool("json", false, "print the results as JSON")
	flag.Parse()
	if *mode != "sequential" && *mode != "concurrent" && *mode != "both" {
		return fmt.Errorf("-mode: want sequential, concurrent or both, got %q", *mode)
	}

	env, err := testenv.NewEnv("snat-bench")
	if err != nil {
		return err
	}
	defer env.Close()
	stop := env.CloseOnSignal(os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	rulesFor := func(snat string) (nft.Ruleset, error) {
		c, err := config.Parse([]byte(fmt.Sprintf(snatConfig, snat)))
		if err != nil {
			return nft.Ruleset{}, err
		}
		return ruleset.Build(c), nil
	}
	snatRules, err := rulesFor("masquerade")
	if err != nil {
		return err
	}
	aclRules, err := rulesFor("off")
	if err != nil {
		return err
	}
	out := map[string]any{"duration_s": duration.Seconds(), "rounds": *rounds, "streams": *streams}
	say := func(format string, args ...any) {
		if !*asJSON {
			fmt.Printf(format, args...)
		}
	}
	progress := func(format string, args ...any) {
		if !*asJSON {
			fmt.Fprintf(os.Stderr, format, args...)
		}
	}

	a, err := newPath(ctx, env, "a-")
	if err != nil {
		return err
	}
	defer a.rec.Remove(context.Background())

	if *mode != "concurrent" {
		modes := []struct {
			name  string
			setup func() error
		}{
			{"plain", func() error { _, err := a.rec.Remove(ctx); return err }},
			{"snat", func() error { _, err := a.rec.Apply(ctx, snatRules); return err }},
			{"acl", func() error { _, err := a.rec.Apply(ctx, aclRules); return err }},
		}
		results := make([]result, len(modes))
		for i, m := range modes {
			results[i].Mode = m.name
			// Warm up once per mode (and check that the path works in each).
			if err := m.setup(); err != nil {
				return fmt.Errorf("mode %s: %w", m.name, err)
			}
			if _, err := a.iperf(ctx, time.Second, *streams); err != nil {
				return fmt.Errorf("mode %s warm-up: %w", m.name, err)
			}
		}
		for r := 0; r < *rounds; r++ {
			for i, m := range modes {
				if err := m.setup(); err != nil {
					return fmt.Errorf("mode %s: %w", m.name, err)
				}
				g, err := a.iperf(ctx, *duration, *streams)
				if err != nil {
					return fmt.Errorf("mode %s round %d: %w", m.name, r+1, err)
				}
				results[i].Gbps = append(results[i].Gbps, g)
				progress("sequential round %d %-5s %.2f Gbit/s\n", r+1, m.name, g)
			}
		}
		var paired []float64
		for i := range results {
			results[i].Median = median(results[i].Gbps)
		}
		for r := range results[0].Gbps {
			paired = append(paired, results[1].Gbps[r]/results[0].Gbps[r])
		}
		out["sequential"] = results
		out["sequential_ratio_snat_plain"] = results[1].Median / results[0].Median
		out["sequential_paired_ratio_median"] = median(paired)
		out["sequential_ratio_acl_plain"] = results[2].Median / results[0].Median
		say("Sequential: iperf3 TCP through the connector, %d stream(s), %s runs, %d rounds (medians)\n", *streams, *duration, *rounds)
		for _, r := range results {
			say("  %-5s %6.2f Gbit/s   runs: %s\n", r.Mode, r.Median, fmtRuns(r.Gbps))
		}
		say("  ratio snat/plain: %.3f (goal >= 0.95); median of per-round ratios %.3f\n", results[1].Median/results[0].Median, median(paired))
		say("  ratio acl/plain:  %.3f\n", results[2].Median/results[0].Median)
	}

	if *mode != "sequential" {
		b, err := newPath(ctx, env, "b-")
		if err != nil {
			return err
		}
		defer b.rec.Remove(context.Background())
		var snatG, plainG, ratios []float64
		for r := 0; r < *rounds; r++ {
			withRules, plain := a, b
			if r%2 == 1 {
				withRules, plain = b, a
			}
			if _, err := plain.rec.Remove(ctx); err != nil {
				return err
			}
			if _, err := withRules.rec.Apply(ctx, snatRules); err != nil {
				return err
			}
			var wg sync.WaitGroup
			var gs, gp float64
			var es, ep error
			wg.Add(2)
			go func() { defer wg.Done(); gs, es = withRules.iperf(ctx, *duration, *streams) }()
			go func() { defer wg.Done(); gp, ep = plain.iperf(ctx, *duration, *streams) }()
			wg.Wait()
			if es != nil || ep != nil {
				return fmt.Errorf("concurrent round %d: snat %v, plain %v", r+1, es, ep)
			}
			snatG, plainG, ratios = append(snatG, gs), append(plainG, gp), append(ratios, gs/gp)
			progress("concurrent round %d snat %.2f plain %.2f Gbit/s ratio %.3f\n", r+1, gs, gp, gs/gp)
		}
		out["concurrent"] = []result{{Mode: "snat", Gbps: snatG, Median: median(snatG)}, {Mode: "plain", Gbps: plainG, Median: median(plainG)}}
		out["concurrent_ratio_median"] = median(ratios)
		say("Concurrent: two paths loaded at once, one with the snat rules, %d stream(s) each, %s runs, %d rounds\n", *streams, *duration, *rounds)
		say("  snat  %6.2f Gbit/s   runs: %s\n", median(snatG), fmtRuns(snatG))
		say("  plain %6.2f Gbit/s   runs: %s\n", median(plainG), fmtRuns(plainG))
		say("  ratio snat/plain per round: %s; median %.3f (goal >= 0.95)\n", fmtRuns(ratios), median(ratios))
	}
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(out)
	}
	return nil
}
