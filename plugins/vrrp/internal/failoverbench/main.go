// Command failoverbench measures the vrrp plugin against keepalived in the same run,
// with the same settings, on the real kernel in network namespaces: the failover time
// from stopping the master (SIGKILL of its processes, or SIGTERM: a priority-0
// resignation) to the virtual IP answering from the backup, as seen by a client on the
// LAN that asks for the VIP's MAC every 2 ms; and the CPU and memory of an instance
// advertising every 100 ms. It needs root, iproute2 and keepalived; testenv/bench/vrrp/
// run.sh runs it. The report is Markdown on stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	osexec "os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sitelink/sitelink/plugins/vrrp/internal/harness"
	"github.com/sitelink/sitelink/testenv"
)

func main() {
	harness.RunLauncher()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "failoverbench:", err)
		os.Exit(1)
	}
}

var vip = netip.MustParseAddr("10.0.0.50")

type bench struct {
	ctx    context.Context
	env    *testenv.Env
	bin    string
	r1, r2 *testenv.Host
	arp    *harness.ARPWatch
	mac1   string
	user   string
	debug  bool
	n      int // plugins started, for unique state directories
}

func run() error {
	slow := flag.Int("rounds-slow", 5, "rounds per scenario at a 1 s advertisement interval")
	fast := flag.Int("rounds-fast", 15, "rounds per scenario at 100 ms and less")
	cpuFor := flag.Duration("cpu", 30*time.Second, "how long to sample CPU and memory")
	only := flag.String("only", "", "run only scenarios whose title contains this")
	user := flag.String("user", "nobody", "run the plugin as this user with only its capabilities (\"\": root)")
	debug := flag.Bool("debug", false, "copy the plugins' logs and the stop times to stderr")
	flag.Parse()

	env, err := testenv.NewEnv("vrrp-bench")
	if err != nil {
		return err
	}
	stop := env.CloseOnSignal()
	defer env.Close()
	defer stop()
	ctx := context.Background()
	root, err := harness.ModuleRoot()
	if err != nil {
		return err
	}
	bin, err := harness.Build(ctx, root)
	if err != nil {
		return err
	}
	defer os.RemoveAll(strings.TrimSuffix(bin, "/vrrp"))
	b := &bench{ctx: ctx, env: env, bin: bin, user: *user, debug: *debug}
	if err := b.topology(); err != nil {
		return err
	}
	defer b.arp.Close()

	kv, _ := osexec.CommandContext(ctx, "keepalived", "-v").CombinedOutput()
	fmt.Printf("# vrrp failover benchmark\n\n")
	fmt.Printf("- machine: %s\n- keepalived: %s\n- Sitelink vrrp plugin %s, run as %q with CAP_NET_ADMIN,CAP_NET_RAW\n",
		machine(), firstLine(string(kv)), "0.1.0", *user)
	fmt.Printf("- topology: routers r1 (backup, priority 100) and r2 (master, priority 200) and a client on one bridge, each in its own network namespace\n")
	fmt.Printf("- failover time: from the signal to the master to the first ARP reply or gratuitous ARP for the VIP from the backup's MAC, seen by the client (which asks every 2 ms)\n")
	fmt.Printf("- each round starts both routers afresh and stops the master at a random phase of its advertisement cycle\n\n")

	type scen struct {
		title  string
		stop   string // SIGKILL or SIGTERM
		rounds int
		impls  []impl
	}
	kd := func(ai string) impl { return keepalivedImpl(ai) }
	sl := func(label string, cs int, extra map[string]any) impl { return sitelinkImpl(label, cs, extra) }
	scens := []scen{
		{"SIGKILL of the master, advertisement interval 1 s", "SIGKILL", *slow,
			[]impl{kd("1"), sl("Sitelink", 100, nil)}},
		{"SIGKILL of the master, advertisement interval 100 ms", "SIGKILL", *fast,
			[]impl{kd("0.1"), sl("Sitelink", 10, nil)}},
		{"SIGTERM of the master (priority 0), advertisement interval 1 s", "SIGTERM", *slow,
			[]impl{kd("1"), sl("Sitelink (default: resign_takeover auto = immediate for a pair)", 100, nil),
				sl("Sitelink, resign_takeover: skew (RFC 5798)", 100, map[string]any{"resign_takeover": "skew"})}},
		{"SIGTERM of the master (priority 0), advertisement interval 100 ms", "SIGTERM", *fast,
			[]impl{kd("0.1"), sl("Sitelink", 10, nil)}},
		{"SIGKILL of the master, low-latency profile (advertisement interval 50 ms)", "SIGKILL", *fast,
			[]impl{kd("0.05"), sl("Sitelink low-latency profile", 5, map[string]any{"preempt_delay": "10s", "garp": map[string]any{"count": 3}})}},
	}
	for _, s := range scens {
		if *only != "" && !strings.Contains(s.title, *only) {
			continue
		}
		ref := "since the master's last advertisement"
		if s.stop == "SIGTERM" {
			ref = "since its priority-0 advertisement"
		}
		fmt.Printf("## %s\n\n| implementation | rounds | median | min | max | median %s | all (ms) |\n|---|---|---|---|---|---|---|\n", s.title, ref)
		// Rounds alternate between the implementations so that both see the same
		// machine (other jobs share these 2 cores).
		res := make([][]result, len(s.impls))
		for i := range s.rounds {
			for j, im := range s.impls {
				r, err := b.round(im, s.stop)
				if err != nil {
					return fmt.Errorf("%s, %s, round %d: %w", s.title, im.label, i+1, err)
				}
				res[j] = append(res[j], r)
				fmt.Fprintf(os.Stderr, "%s | %s | round %d: %v (%v %s)\n", s.title, im.label, i+1,
					r.failover.Round(time.Millisecond), r.sinceRef.Round(time.Millisecond), ref)
			}
		}
		var medians []time.Duration
		for j, im := range s.impls {
			var ds, refs []time.Duration
			for _, r := range res[j] {
				ds = append(ds, r.failover)
				refs = append(refs, r.sinceRef)
			}
			slices.Sort(ds)
			slices.Sort(refs)
			med := ds[len(ds)/2]
			medians = append(medians, med)
			var all []string
			for _, d := range ds {
				all = append(all, strconv.FormatFloat(float64(d)/1e6, 'f', 0, 64))
			}
			fmt.Printf("| %s | %d | %s | %s | %s | %s | %s |\n", im.label, len(ds), ms(med), ms(ds[0]), ms(ds[len(ds)-1]),
				ms(refs[len(refs)/2]), strings.Join(all, " "))
		}
		if len(medians) > 1 && medians[0] > 0 {
			fmt.Printf("\nRatio of medians, Sitelink / keepalived:")
			for i, m := range medians[1:] {
				fmt.Printf(" %s %.2f;", s.impls[i+1].label, float64(m)/float64(medians[0]))
			}
			fmt.Printf("\n")
		}
		fmt.Printf("\n")
	}
	if *only == "" || strings.Contains("CPU", *only) {
		if err := b.cpu(*cpuFor); err != nil {
			return err
		}
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/1e6) }

func firstLine(s string) string { l, _, _ := strings.Cut(strings.TrimSpace(s), "\n"); return l }

func machine() string {
	cpu, _ := os.ReadFile("/proc/cpuinfo")
	model := ""
	n := 0
	for _, l := range strings.Split(string(cpu), "\n") {
		if strings.HasPrefix(l, "model name") && model == "" {
			_, model, _ = strings.Cut(l, ":")
		}
		if strings.HasPrefix(l, "processor") {
			n++
		}
	}
	rel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%d cores (%s), kernel %s", n, strings.TrimSpace(model), strings.TrimSpace(string(rel)))
}

func (b *bench) topology() error {
	sw, err := b.env.Switch("sw")
	if err != nil {
		return err
	}
	var client *testenv.Host
	for i, name := range []string{"r1", "r2", "client"} {
		h, err := b.env.Host(name)
		if err != nil {
			return err
		}
		if err := b.env.Plug(h, "eth0", sw); err != nil {
			return err
		}
		a := fmt.Sprintf("10.0.0.%d/24", i+1)
		if name == "client" {
			a = "10.0.0.100/24"
		}
		if err := h.AddAddr("eth0", a); err != nil {
			return err
		}
		switch name {
		case "r1":
			b.r1 = h
		case "r2":
			b.r2 = h
		default:
			client = h
		}
	}
	if b.mac1, err = harness.MAC(b.r1, "eth0"); err != nil {
		return err
	}
	b.arp, err = harness.WatchARP(client, "eth0", netip.MustParseAddr("10.0.0.100"))
	return err
}

// router is one running VRRP implementation on a router.
type router interface {
	state() string
	kill() error
	term() error
	pid() int
	close()
}

type impl struct {
	label    string
	interval time.Duration
	start    func(b *bench, h *testenv.Host, name string, prio int) (router, error)
}

// result is one failover: from the stop to the backup answering, and from the
// reference advertisement (the master's last one before a SIGKILL, its priority-0 one
// after a SIGTERM) to the backup answering.
type result struct {
	failover, sinceRef time.Duration
}

func (b *bench) round(im impl, stop string) (result, error) {
	for _, h := range []*testenv.Host{b.r1, b.r2} {
		_, _ = h.Run(b.ctx, "ip", "addr", "del", "10.0.0.50/24", "dev", "eth0")
	}
	master, err := im.start(b, b.r2, "r2", 200)
	if err != nil {
		return result{}, err
	}
	defer master.close()
	if err := waitState(b.ctx, master, "MASTER", 10*time.Second); err != nil {
		return result{}, fmt.Errorf("master: %w", err)
	}
	backup, err := im.start(b, b.r1, "r1", 100)
	if err != nil {
		return result{}, err
	}
	defer backup.close()
	if err := waitState(b.ctx, backup, "BACKUP", 10*time.Second); err != nil {
		return result{}, fmt.Errorf("backup: %w", err)
	}
	// Settle, then stop the master at a random phase of its advertisement cycle.
	time.Sleep(3*im.interval + 200*time.Millisecond + rand.N(im.interval))
	if s := backup.state(); s != "BACKUP" {
		return result{}, fmt.Errorf("backup is %s before the stop", s)
	}
	t0 := time.Now()
	if b.debug {
		fmt.Fprintf(os.Stderr, "stopping the master (%s) at %s\n", stop, t0.UTC().Format("15:04:05.000000"))
	}
	if stop == "SIGKILL" {
		err = master.kill()
	} else {
		err = master.term()
	}
	if err != nil {
		return result{}, err
	}
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, f := range b.arp.Frames() {
			if f.Time.After(t0) && f.SenderIP == vip && f.SenderMAC == b.mac1 && (f.Op == 2 || f.Gratuitous()) {
				return result{failover: f.Time.Sub(t0), sinceRef: f.Time.Sub(b.refAdvert(t0, stop))}, nil
			}
		}
		select {
		case <-tick.C:
			if err := b.arp.Ask(vip); err != nil {
				return result{}, err
			}
		case <-deadline.C:
			return result{}, errors.New("the backup never answered for the VIP")
		}
	}
}

// refAdvert is when the client saw the master's last advertisement before t0 (SIGKILL)
// or its first priority-0 advertisement after t0 (SIGTERM).
func (b *bench) refAdvert(t0 time.Time, stop string) time.Time {
	var at time.Time
	for _, p := range b.arp.VRRP() {
		if p.Src.String() != "10.0.0.2" {
			continue
		}
		if stop == "SIGKILL" && p.Time.Before(t0) && p.Priority > 0 {
			at = p.Time
		}
		if stop == "SIGTERM" && p.Time.After(t0) && p.Priority == 0 {
			return p.Time
		}
	}
	return at
}

func waitState(ctx context.Context, r router, state string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return testenv.WaitFor(ctx, "state "+state, func() (bool, error) { return r.state() == state, nil })
}

// Sitelink.

type slRouter struct {
	p   *harness.Plugin
	ctx context.Context
}

func (r *slRouter) state() string {
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Second)
	defer cancel()
	s, _ := r.p.State(ctx)
	return s
}
func (r *slRouter) kill() error { return r.p.Kill() }
func (r *slRouter) term() error { return r.p.Terminate() }
func (r *slRouter) pid() int    { return r.p.PID }
func (r *slRouter) close()      { r.p.Kill() }

func sitelinkImpl(label string, cs int, extra map[string]any) impl {
	return impl{label: label, interval: time.Duration(cs) * 10 * time.Millisecond,
		start: func(b *bench, h *testenv.Host, name string, prio int) (router, error) {
			b.n++
			opts := harness.PluginOptions{Binary: b.bin, User: b.user, StateDir: fmt.Sprintf("%s/state-%s-%d", b.env.Dir(), name, b.n)}
			if b.debug {
				opts.Log = os.Stderr
			}
			p, err := harness.StartPlugin(b.ctx, b.env, h, name, opts)
			if err != nil {
				return nil, err
			}
			in := map[string]any{"name": "vi1", "interface": "eth0", "vrid": 51, "priority": prio,
				"virtual_ips": []string{"10.0.0.50/24"}, "advert_interval": cs}
			for k, v := range extra {
				in[k] = v
			}
			if err := p.Configure(b.ctx, map[string]any{"instances": []any{in}}); err != nil {
				p.Kill()
				return nil, err
			}
			if err := p.Start(b.ctx); err != nil {
				p.Kill()
				return nil, err
			}
			return &slRouter{p: p, ctx: b.ctx}, nil
		}}
}

// keepalived.

type kdRouter struct{ k *harness.Keepalived }

func (r *kdRouter) state() string { return r.k.State() }
func (r *kdRouter) kill() error   { return r.k.Kill() }
func (r *kdRouter) term() error   { return r.k.Terminate() }
func (r *kdRouter) pid() int      { return r.k.VRRPPID() }
func (r *kdRouter) close()        { r.k.Kill() }

func keepalivedImpl(advertInt string) impl {
	sec, _ := strconv.ParseFloat(advertInt, 64)
	return impl{label: "keepalived (advert_int " + advertInt + ")", interval: time.Duration(sec * float64(time.Second)),
		start: func(b *bench, h *testenv.Host, name string, prio int) (router, error) {
			b.n++
			k, err := harness.StartKeepalived(b.ctx, b.env, h, fmt.Sprintf("%s-%d", name, b.n), harness.KeepalivedConfig{
				Interface: "eth0", VRID: 51, Priority: prio, AdvertInt: advertInt, VIPs: []string{"10.0.0.50/24"}})
			if err != nil {
				return nil, err
			}
			return &kdRouter{k: k}, nil
		}}
}

// cpu samples the CPU time and memory of a master and a backup advertising every
// 100 ms, for each implementation.
func (b *bench) cpu(d time.Duration) error {
	fmt.Printf("## CPU and memory at a 100 ms advertisement interval (%v sample)\n\n", d)
	fmt.Printf("| implementation | role | process | CPU | RSS | peak RSS |\n|---|---|---|---|---|---|\n")
	for _, im := range []impl{keepalivedImpl("0.1"), sitelinkImpl("Sitelink", 10, nil)} {
		for _, h := range []*testenv.Host{b.r1, b.r2} {
			_, _ = h.Run(b.ctx, "ip", "addr", "del", "10.0.0.50/24", "dev", "eth0")
		}
		master, err := im.start(b, b.r2, "r2", 200)
		if err != nil {
			return err
		}
		if err := waitState(b.ctx, master, "MASTER", 10*time.Second); err != nil {
			return err
		}
		backup, err := im.start(b, b.r1, "r1", 100)
		if err != nil {
			return err
		}
		if err := waitState(b.ctx, backup, "BACKUP", 10*time.Second); err != nil {
			return err
		}
		time.Sleep(2 * time.Second)
		type sample struct {
			role  string
			pid   int
			ticks uint64
		}
		var ss []sample
		for _, x := range []struct {
			role string
			r    router
		}{{"master", master}, {"backup", backup}} {
			t, err := cpuTicks(x.r.pid())
			if err != nil {
				return err
			}
			ss = append(ss, sample{x.role, x.r.pid(), t})
		}
		start := time.Now()
		time.Sleep(d)
		el := time.Since(start)
		for _, s := range ss {
			t, err := cpuTicks(s.pid)
			if err != nil {
				return err
			}
			rss, hwm := memory(s.pid)
			proc := "plugin process"
			if strings.HasPrefix(im.label, "keepalived") {
				proc = "VRRP child"
			}
			fmt.Printf("| %s | %s | %s | %.2f %% of a core | %s | %s |\n", im.label, s.role, proc,
				float64(t-s.ticks)/100/el.Seconds()*100, rss, hwm)
		}
		master.close()
		backup.close()
	}
	fmt.Printf("\nCPU: utime+stime from /proc/PID/stat over the sample (100 ticks/s). RSS: VmRSS and VmHWM from /proc/PID/status.\n")
	return nil
}

func cpuTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+2:])
	// Fields after the command: state is f[0]; utime and stime are fields 14 and 15
	// of the whole line, f[11] and f[12] here.
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return u + st, nil
}

func memory(pid int) (rss, hwm string) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rss = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			hwm = strings.TrimSpace(v)
		}
	}
	return rss, hwm
}
