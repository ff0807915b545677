// Command demo builds a whole Sitelink site in network namespaces (testenv/site: an app
// server, a VRRP pair of connectors running bin/sitelinkd with every built-in plugin, a
// site router, agent hosts, two stock WireGuard gateways, a remote user and a management
// center), walks a newcomer through it — status of both connectors, traffic flowing, a
// failover with its measured gap, the audit trail — and removes everything it made on
// Ctrl-C or, after the walkthrough, once DEMO_FOR (e.g. DEMO_FOR=30s) has passed.
// `make demo` runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/sitelink/sitelink/testenv"
	"github.com/sitelink/sitelink/testenv/site"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("bin", "bin", "directory with sitelinkd, sitelinkctl and plugins/ (make build)")
	flag.Parse()
	var runFor time.Duration
	if v := os.Getenv("DEMO_FOR"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("DEMO_FOR=%q: %w", v, err)
		}
		runFor = d
	}
	binDir, err := filepath.Abs(*bin)
	if err != nil {
		return err
	}
	for _, p := range append([]string{"sitelinkd", "sitelinkctl"}, prefixed("plugins/", site.Plugins)...) {
		if _, err := os.Stat(filepath.Join(binDir, p)); err != nil {
			return fmt.Errorf("%s is missing: run make build (or make demo, which builds first)", filepath.Join(binDir, p))
		}
	}
	if err := os.Chmod(binDir, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	env, err := testenv.NewEnv("demo")
	if err != nil {
		return err
	}
	defer func() {
		step("removing everything the demo made (namespaces, processes, files)")
		if err := env.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: cleanup:", err)
		}
		fmt.Println("done.")
	}()
	step("building the site in network namespaces (about 10 s)")
	fmt.Print(indent(topology))
	s, err := site.New(ctx, site.Options{Env: env, Bin: binDir})
	if err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C while building
		}
		return err
	}
	defer s.Close()
	if err := walkthrough(ctx, s, runFor); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

const topology = `
  remote user 10.9.0.100 ── gw1 / gw2 (stock wireguard-go) ══ internet ══╗
                                                                         ║ WireGuard
  app 10.1.0.10 ── site LAN ── router (10.9.0.0/24 via VIP 10.1.0.50)    ║
  agents 10.1.0.101-103 ─┘  ├── c1 sitelinkd, VRRP priority 200 ═════════╣
                            └── c2 sitelinkd, VRRP priority 150 ═════════╝
  management center 192.0.2.100:443 (on the internet, counts agents' lines)
  Each connector runs logcache, vrrp, tunnel, snat and proxy; tunnel, snat and proxy
  are active_when: master, and the pair shares one WireGuard identity.
`

func walkthrough(ctx context.Context, s *site.Site, runFor time.Duration) error {
	master, err := s.WaitSteady(ctx)
	if err != nil {
		return err
	}
	for _, c := range s.Connectors {
		step(fmt.Sprintf("sitelinkctl status   on %s (%s)", c.Name, c.Socket))
		show(c.Ctl(ctx, "status"))
	}
	step("sitelinkctl tunnel show   on the master, " + master.Name)
	show(master.Ctl(ctx, "tunnel", "show"))

	step("traffic: the remote user asks the app over HTTP (gateway → tunnel → " + master.Name + " → SNAT → app)")
	if peer, err := site.HTTPGet(ctx, s.User, 3*time.Second); err != nil {
		fmt.Println("   ", err)
	} else {
		fmt.Printf("   the app saw the request come from %s (the master connector's address: SNAT masquerade)\n", peer)
	}
	flow, err := site.StartUDPFlow(s.User, 10*time.Millisecond)
	if err != nil {
		return err
	}
	defer flow.Stop()
	var agents []*site.Flow
	for i, a := range s.Agents {
		agents = append(agents, site.StartLineFlow(a, fmt.Sprintf("%s:%d", site.VIP, site.ProxyPort), fmt.Sprintf("agent%d", i+1), 100*time.Millisecond, true))
	}
	defer func() {
		for _, f := range agents {
			f.Stop()
		}
	}()
	fmt.Println("   started: the remote user sends a UDP request to the app every 10 ms;")
	fmt.Printf("   %d agents send a line every 100 ms to the proxy on the VIP %s:%d, relayed to the management center\n", len(agents), site.VIP, site.ProxyPort)
	if !sleep(ctx, 3*time.Second) {
		return nil
	}
	fmt.Printf("   management center counts: %s\n", counts(s.Center.Lines()))
	step("sitelinkctl proxy clients   on " + master.Name)
	show(master.Ctl(ctx, "proxy", "clients"))
	step("sitelinkctl snat counters   on " + master.Name)
	show(master.Ctl(ctx, "snat", "counters"))

	step(fmt.Sprintf("failover: kill -9 of sitelinkd on the master %s (its plugins die with it)", master.Name))
	at := time.Now()
	if err := master.Kill9(ctx); err != nil {
		return err
	}
	next, err := s.WaitSteady(ctx)
	if err != nil {
		return err
	}
	if !sleep(ctx, 2*time.Second) {
		return nil
	}
	gap, _ := flow.Gap(at, time.Now())
	agentGap, _ := agents[0].Gap(at, time.Now())
	fmt.Printf("   %s is master now, its tunnel, SNAT and proxy are up.\n", next.Name)
	fmt.Printf("   longest gap in the remote user's flow: %v; agent1 (reconnecting): %v\n", gap.Round(time.Millisecond), agentGap.Round(time.Millisecond))
	fmt.Printf("   (VRRP advert interval %d cs here; docs/benchmarks/site.md has the figures per profile)\n", s.Options().VRRP.AdvertInterval)
	fmt.Printf("   management center counts: %s\n", counts(s.Center.Lines()))
	show(next.Ctl(ctx, "status"))

	step(fmt.Sprintf("starting sitelinkd on %s again, as systemd would: it comes back and, having the higher priority, takes over", master.Name))
	if err := master.Start(ctx); err != nil {
		return err
	}
	back, err := s.WaitSteady(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("   master: %s\n", back.Name)

	step("the audit trail in the log cache:   sitelinkctl logcache tail --source audit --lines 12   on " + next.Name)
	show(next.Ctl(ctx, "logcache", "tail", "--source", "audit", "--lines", "12"))

	step("where to look next")
	fmt.Print(indent(fmt.Sprintf(`
Try, in another shell while the demo runs:
  %[1]s/sitelinkctl --socket %[2]s status
  %[1]s/sitelinkctl --socket %[2]s vrrp status
  %[1]s/sitelinkctl --socket %[2]s logcache tail -f --source audit
  %[1]s/sitelinkctl --socket %[2]s events
  ip netns exec %[3]s ip route show proto 83      (the tunnel's routes on %[4]s)
  ip netns exec %[3]s nft list table ip sitelink  (SNAT and access control)
  cat %[5]s                                       (the connector's config)
Docs: README.md, docs/config.md, docs/plugins/*.md, docs/troubleshooting.md,
      docs/benchmarks/site.md (failover gap and throughput of this site).
`, s.Options().Bin, back.Socket, back.Host.NSName(), back.Name, back.Config)))

	if runFor > 0 {
		step(fmt.Sprintf("running for %s more (DEMO_FOR); Ctrl-C stops earlier", runFor))
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, runFor)
		defer cancel()
	} else {
		step("running until Ctrl-C")
	}
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			m := s.Master(context.Background())
			name := "none"
			if m != nil {
				name = m.Name
			}
			fmt.Printf("   %s  master %s; remote user's answers %d; management center %s\n",
				time.Now().Format("15:04:05"), name, len(flow.Deliveries()), counts(s.Center.Lines()))
		}
	}
}

func prefixed(p string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = p + n
	}
	return out
}

func counts(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func step(s string) { fmt.Printf("\n\033[1m==> %s\033[0m\n", s) }

func show(out string, err error) {
	if out != "" {
		fmt.Println(indent(out))
	}
	if err != nil && !errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), out) {
		fmt.Println("   (", err, ")")
	}
}

func indent(s string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "   " + l
	}
	return strings.Join(lines, "\n") + "\n"
}
