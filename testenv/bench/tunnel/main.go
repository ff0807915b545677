// Command tunnelbench measures the tunnel plugin in a testenv topology, in one run:
// iperf3 throughput through the plugin's tunnel, through the same veth path without a
// tunnel, and through a standalone stock wireguard-go between the same namespaces
// (rounds interleaved, medians reported); the time from a gateway's death to traffic
// flowing through the next one, with the default health settings (with and without
// probe addresses) and with fast settings; and the plugin's RSS idle and under load
// (next to the standalone wireguard-go's). It prints a Markdown report and writes JSON
// to testenv/bench/tunnel/results/. Run it as root through run.sh.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sitelink/sitelink/daemon/proc"
	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/tunnel/identity"
	"github.com/sitelink/sitelink/plugins/tunnel/mss"
	"github.com/sitelink/sitelink/plugins/tunnel/tunneltest"
	"github.com/sitelink/sitelink/testenv"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == proc.LauncherArg {
		// This binary is also the privilege-dropping launcher, as sitelinkd is.
		if err := proc.ExecMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(127)
		}
		os.Exit(0)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tunnelbench:", err)
		os.Exit(1)
	}
}

type options struct {
	rounds    int
	seconds   int
	failovers int
	out       string
	verbose   bool
}

// Results is what the run measured.
type Results struct {
	Date       string               `json:"date"`
	Machine    string               `json:"machine"`
	Throughput map[string]*Series   `json:"throughput_mbit_s"`
	Failover   map[string]*Series   `json:"failover_s"`
	CPUPerGB   map[string]*Series   `json:"connector_cpu_s_per_gb"`
	RSSLoad    map[string]*Series   `json:"rss_under_load_mib"`
	RSS        map[string]float64   `json:"rss_mib"`
	Notes      []string             `json:"notes"`
	Raw        map[string][]float64 `json:"-"`
}

// Series is a set of measurements with their median.
type Series struct {
	Values []float64 `json:"values"`
	Median float64   `json:"median"`
}

func (r *Results) add(m map[string]*Series, key string, v float64) {
	s := m[key]
	if s == nil {
		s = &Series{}
		m[key] = s
	}
	s.Values = append(s.Values, v)
	vs := append([]float64(nil), s.Values...)
	sort.Float64s(vs)
	if n := len(vs); n%2 == 1 {
		s.Median = vs[n/2]
	} else {
		s.Median = (vs[n/2-1] + vs[n/2]) / 2
	}
}

func run() error {
	var o options
	flag.IntVar(&o.rounds, "rounds", 3, "throughput rounds (each runs every path in both directions)")
	flag.IntVar(&o.seconds, "t", 5, "seconds per iperf3 run")
	flag.IntVar(&o.failovers, "failovers", 3, "failovers measured per setting")
	flag.StringVar(&o.out, "out", "", "JSON results file (default testenv/bench/tunnel/results/DATE.json)")
	flag.BoolVar(&o.verbose, "v", false, "show the plugin's logs")
	flag.Parse()
	for _, tool := range []string{"ip", "wg", "iperf3", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	env, err := testenv.NewEnv("tunnel-bench")
	if err != nil {
		return err
	}
	defer env.Close()
	stop := env.CloseOnSignal()
	defer stop()

	b := &bench{ctx: ctx, env: env, o: o, res: &Results{Date: time.Now().UTC().Format(time.RFC3339), Machine: machine(),
		Throughput: map[string]*Series{}, Failover: map[string]*Series{}, CPUPerGB: map[string]*Series{},
		RSSLoad: map[string]*Series{}, RSS: map[string]float64{}}}
	if err := b.setup(); err != nil {
		return err
	}
	defer b.close()
	if err := b.throughput(); err != nil {
		return err
	}
	if err := b.failover(); err != nil {
		return err
	}
	return b.report()
}

type bench struct {
	ctx    context.Context
	env    *testenv.Env
	o      options
	res    *Results
	topo   *tunneltest.Topology
	base   string
	plugin *tunneltest.Plugin
	iface  string
	pub    wgtypes.Key
	iperfs []*testenv.Process
	logger *slog.Logger
}

func (b *bench) setup() error {
	fmt.Fprintln(os.Stderr, "building the topology, wireguard-go and the plugin...")
	topo, err := tunneltest.NewTopology(b.ctx, b.env, 2)
	if err != nil {
		return err
	}
	b.topo = topo
	b.base, err = os.MkdirTemp("", "sltun-bench-")
	if err != nil {
		return err
	}
	os.Chmod(b.base, 0o755)
	bin, err := tunneltest.BuildPlugin(b.ctx, b.base)
	if err != nil {
		return err
	}
	out := io.Discard
	if b.o.verbose {
		out = os.Stderr
	}
	b.logger = slog.New(slog.NewTextHandler(out, nil))
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b.iface = tunneltest.UniqueIface("slb")
	b.plugin, err = tunneltest.StartPlugin(b.ctx, tunneltest.PluginOptions{Binary: bin, Launcher: self, User: "nobody",
		Caps: []string{"CAP_NET_ADMIN", "CAP_NET_RAW"}, Host: topo.Conn, StateDir: filepath.Join(b.base, "state"),
		RuntimeDir: filepath.Join(b.base, "run"), Logger: b.logger})
	if err != nil {
		return err
	}
	show, err := b.plugin.Show(b.ctx)
	if err != nil {
		return err
	}
	if b.pub, err = wgtypes.ParseKey(show["public_key"].(string)); err != nil {
		return err
	}
	if err := topo.AddConnector(b.ctx, b.pub); err != nil {
		return err
	}
	// The plain path: gw1 answers from its WAN address over the internet switch, not
	// into the tunnel (which its main table uses for the app's LAN).
	gw1 := topo.GatewayHosts[0]
	if _, err := gw1.IP(b.ctx, "rule", "add", "from", tunneltest.GatewayWAN(1), "table", "100"); err != nil {
		return err
	}
	if _, err := gw1.IP(b.ctx, "route", "add", tunneltest.AppPrefix, "via", tunneltest.ConnWAN, "table", "100"); err != nil {
		return err
	}
	// iperf3 servers on gw1 (reached at its WAN address without the tunnel, at the
	// service address through it).
	p, err := gw1.Start("iperf3", "-s", "--forceflush")
	if err != nil {
		return err
	}
	b.iperfs = append(b.iperfs, p)
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	return p.WaitOutput(ctx, "Server listening")
}

func (b *bench) close() {
	if b.plugin != nil {
		b.plugin.Close()
	}
	if b.topo != nil {
		b.topo.Close()
	}
	os.RemoveAll(b.base)
}

// configure applies a plugin config and waits for the tunnel to be up on gw1.
func (b *bench) configure(probes bool, health map[string]any) error {
	if err := b.plugin.Client.Configure(b.ctx, b.topo.ConnectorConfig(b.iface, probes, health, nil), false); err != nil {
		return err
	}
	if err := b.plugin.Client.Start(b.ctx, sdk.RoleMaster); err != nil {
		return err
	}
	return b.waitUp("gw1", 30*time.Second)
}

// waitUp waits until the tunnel is Online via gw and the service answers through it.
func (b *bench) waitUp(gw string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	if err := testenv.WaitFor(ctx, "the tunnel to be up via "+gw, func() (bool, error) {
		show, err := b.plugin.Show(ctx)
		if err != nil {
			return false, err
		}
		return show["state"] == "Online" && show["active_gateway"] == gw, nil
	}); err != nil {
		return err
	}
	return testenv.WaitFor(ctx, "the service through the tunnel", func() (bool, error) {
		from, err := tunneltest.Ask(b.topo.App, tunneltest.ServiceAddr, 300*time.Millisecond)
		return err == nil && from == gw, nil
	})
}

// iperfRun is one iperf3 measurement.
type iperfRun struct {
	mbit    float64 // received rate
	bytes   float64 // received bytes
	cpu     float64 // CPU seconds of pid during the run
	peakRSS float64 // MiB, sampled every 100 ms
}

// iperf runs iperf3 from the app to target; with pid > 0 it also measures that
// process's CPU time and peak RSS.
func (b *bench) iperf(target string, reverse bool, pid int) (iperfRun, error) {
	var r iperfRun
	args := []string{"-c", target, "-t", strconv.Itoa(b.o.seconds), "-J"}
	if reverse {
		args = append(args, "-R")
	}
	cmd := b.topo.App.Command(b.ctx, "iperf3", args...)
	done := make(chan struct{})
	sampled := make(chan struct{})
	cpu0 := cpuSeconds(pid)
	go func() {
		defer close(sampled)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for pid > 0 {
			select {
			case <-done:
				return
			case <-t.C:
				r.peakRSS = max(r.peakRSS, rssMiB(pid))
			}
		}
	}()
	out, err := cmd.Output()
	close(done)
	<-sampled
	r.cpu = cpuSeconds(pid) - cpu0
	if err != nil {
		return r, fmt.Errorf("iperf3 %s: %w: %s", strings.Join(args, " "), err, out)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
				Bytes         float64 `json:"bytes"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return r, fmt.Errorf("iperf3 output: %w", err)
	}
	if res.Error != "" {
		return r, errors.New("iperf3: " + res.Error)
	}
	r.mbit, r.bytes = res.End.SumReceived.BitsPerSecond/1e6, res.End.SumReceived.Bytes
	return r, nil
}

// cpuSeconds is a process's user+system CPU time (0 for pid 0).
func cpuSeconds(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) start at ") ".
	s := string(b)
	f := strings.Fields(s[strings.LastIndex(s, ")")+2:])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

func (b *bench) record(path, dir string, r iperfRun) {
	b.res.add(b.res.Throughput, path+"_"+dir, r.mbit)
	if r.cpu > 0 && r.bytes > 0 {
		b.res.add(b.res.CPUPerGB, path+"_"+dir, r.cpu/(r.bytes/1e9))
	}
	if r.peakRSS > 0 {
		b.res.add(b.res.RSSLoad, path, r.peakRSS)
	}
}

func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, ln := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(ln, "VmRSS:") {
			f := strings.Fields(ln)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func (b *bench) throughput() error {
	if err := b.configure(true, nil); err != nil {
		return err
	}
	time.Sleep(3 * time.Second)
	b.res.RSS["plugin_idle"] = rssMiB(b.plugin.PID)
	for r := 1; r <= b.o.rounds; r++ {
		fmt.Fprintf(os.Stderr, "throughput round %d/%d\n", r, b.o.rounds)
		for _, rev := range []bool{false, true} {
			dir := "upload"
			if rev {
				dir = "download"
			}
			// Plain veth path: app -> conn -> internet switch -> gw1, no tunnel.
			r, err := b.iperf(tunneltest.GatewayWAN(1), rev, 0)
			if err != nil {
				return err
			}
			b.record("veth", dir, r)
			// Through the plugin's tunnel.
			if err := b.plugin.Client.Start(b.ctx, sdk.RoleMaster); err != nil {
				return err
			}
			if err := b.waitUp("gw1", 30*time.Second); err != nil {
				return err
			}
			if r, err = b.iperf(tunneltest.ServiceAddr, rev, b.plugin.PID); err != nil {
				return err
			}
			b.record("plugin", dir, r)
			if err := b.plugin.Client.Stop(b.ctx); err != nil {
				return err
			}
			// Through a standalone wireguard-go in the same namespace, same key, peer,
			// MTU and MSS clamping.
			if r, err = b.standalone(rev); err != nil {
				return err
			}
			b.record("standalone", dir, r)
		}
	}
	if err := b.plugin.Client.Start(b.ctx, sdk.RoleMaster); err != nil {
		return err
	}
	if err := b.waitUp("gw1", 30*time.Second); err != nil {
		return err
	}
	time.Sleep(3 * time.Second)
	b.res.RSS["plugin_after_load_3s"] = rssMiB(b.plugin.PID)
	time.Sleep(27 * time.Second)
	b.res.RSS["plugin_after_load_30s"] = rssMiB(b.plugin.PID)
	return nil
}

// standalone runs stock wireguard-go as the connector, measures, and removes it.
func (b *bench) standalone(reverse bool) (iperfRun, error) {
	key, _, err := identity.New(filepath.Join(b.base, "state")).LoadOrCreate()
	if err != nil {
		return iperfRun{}, err
	}
	gw1 := b.topo.Gateways[0]
	w := &tunneltest.WGInterface{Host: b.topo.Conn, Iface: tunneltest.UniqueIface("sls"), Key: key,
		Addr: netip.MustParsePrefix(tunneltest.ConnTunnel + "/32"), MTU: 1420, Binary: gw1.Binary,
		Routes: []string{tunneltest.ServicePrefix},
		Peers: []tunneltest.WGPeer{{PublicKey: gw1.Key.PublicKey(), AllowedIPs: []string{tunneltest.ServicePrefix, tunneltest.GatewayTunnel(1) + "/32"},
			Endpoint: fmt.Sprintf("%s:%d", tunneltest.GatewayWAN(1), tunneltest.GatewayPort), Keepalive: 25}}}
	if err := w.Start(b.ctx, b.base); err != nil {
		return iperfRun{}, err
	}
	defer w.Kill(b.ctx)
	if err := b.topo.Conn.Do(func() error { _, err := mss.Apply(mss.Clamp{Interface: w.Iface, MTU: 1420}); return err }); err != nil {
		return iperfRun{}, err
	}
	defer b.topo.Conn.Do(func() error { _, err := mss.Remove(); return err })
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := testenv.WaitFor(ctx, "the service through standalone wireguard-go", func() (bool, error) {
		from, err := tunneltest.Ask(b.topo.App, tunneltest.ServiceAddr, 300*time.Millisecond)
		return err == nil && from == "gw1", nil
	}); err != nil {
		return iperfRun{}, err
	}
	return b.iperf(tunneltest.ServiceAddr, reverse, w.PID())
}

// failover measures the time from gw1's death (wireguard-go killed) to the first answer
// through gw2, for each setting.
func (b *bench) failover() error {
	if b.o.failovers <= 0 {
		return nil
	}
	settings := []struct {
		name   string
		probes bool
		health map[string]any
	}{
		{"default_with_probe_addresses", true, nil},
		{"default_handshake_probes", false, nil},
		{"fast_window2s_probe500ms", true, map[string]any{"window": "2s", "probe_interval": "500ms"}},
		{"fastest_window1s_probe250ms", true, map[string]any{"window": "1s", "probe_interval": "250ms"}},
	}
	gw1 := b.topo.Gateways[0]
	for _, s := range settings {
		if err := b.configure(s.probes, s.health); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		for i := 1; i <= b.o.failovers; i++ {
			fmt.Fprintf(os.Stderr, "failover %s %d/%d\n", s.name, i, b.o.failovers)
			tr, err := tunneltest.StartTraffic(b.topo.App, tunneltest.ServiceAddr, 20*time.Millisecond)
			if err != nil {
				return err
			}
			time.Sleep(time.Second)
			n := len(b.plugin.Host.Events())
			killed := time.Now()
			if err := gw1.Kill(b.ctx); err != nil {
				tr.Stop()
				return err
			}
			ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
			err = testenv.WaitFor(ctx, "traffic through gw2", func() (bool, error) {
				_, ok := tunneltest.FirstFrom(tr.Replies(), "gw2", killed)
				return ok, nil
			})
			cancel()
			tr.Stop()
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			first, _ := tunneltest.FirstFrom(tr.Replies(), "gw2", killed)
			b.res.add(b.res.Failover, s.name, first.At.Sub(killed).Seconds())
			if ev, ok := firstEvent(b.plugin.Host.Events()[n:], "gw2"); ok {
				b.res.add(b.res.Failover, s.name+"_event", ev.Time.Sub(killed).Seconds())
			}
			// Back to gw1 for the next measurement.
			if err := gw1.Start(b.ctx, b.topo.Env.Dir()); err != nil {
				return err
			}
			if err := b.backToGW1(); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
		}
	}
	return nil
}

func firstEvent(evs []sdk.Event, gw string) (sdk.Event, bool) {
	for _, ev := range evs {
		if tunneltest.TunnelEvent("up", gw)(ev) {
			return ev, true
		}
	}
	return sdk.Event{}, false
}

// backToGW1 waits until gw1 is alive again and switches to it.
func (b *bench) backToGW1() error {
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	err := testenv.WaitFor(ctx, "gw1 alive again", func() (bool, error) {
		show, err := b.plugin.Show(ctx)
		if err != nil {
			return false, err
		}
		for _, g := range show["gateways"].([]any) {
			gm := g.(map[string]any)
			if gm["name"] == "gw1" {
				return gm["alive"] == true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	if _, err := b.plugin.Client.InvokeAction(ctx, "switch", map[string]string{"gateway": "gw1"}); err != nil {
		return err
	}
	if _, err := b.plugin.Client.InvokeAction(ctx, "switch", map[string]string{"gateway": "auto"}); err != nil {
		return err
	}
	return b.waitUp("gw1", 30*time.Second)
}

func (b *bench) report() error {
	r := b.res
	var sb strings.Builder
	fmt.Fprintf(&sb, "# tunnel benchmark %s\n\nmachine: %s\n\n", r.Date, r.Machine)
	fmt.Fprintf(&sb, "## Throughput (iperf3 TCP, 1 stream, %d s, median of %d interleaved rounds, Mbit/s)\n\n", b.o.seconds, b.o.rounds)
	sb.WriteString("| path | upload (app→gateway) | download (gateway→app) |\n|---|---|---|\n")
	for _, p := range []string{"veth", "standalone", "plugin"} {
		fmt.Fprintf(&sb, "| %s | %.0f %v | %.0f %v |\n", p, r.Throughput[p+"_upload"].Median, round0(r.Throughput[p+"_upload"].Values),
			r.Throughput[p+"_download"].Median, round0(r.Throughput[p+"_download"].Values))
	}
	for _, dir := range []string{"upload", "download"} {
		fmt.Fprintf(&sb, "\nplugin / standalone wireguard-go (%s): %.2f; plugin / veth: %.3f\n", dir,
			r.Throughput["plugin_"+dir].Median/r.Throughput["standalone_"+dir].Median,
			r.Throughput["plugin_"+dir].Median/r.Throughput["veth_"+dir].Median)
	}
	sb.WriteString("\n## Connector CPU per GB received (user+system seconds of the plugin / standalone wireguard-go process, median)\n\n| path | upload | download |\n|---|---|---|\n")
	for _, p := range []string{"standalone", "plugin"} {
		fmt.Fprintf(&sb, "| %s | %.2f %v | %.2f %v |\n", p, med(r.CPUPerGB[p+"_upload"]), round2(vals(r.CPUPerGB[p+"_upload"])),
			med(r.CPUPerGB[p+"_download"]), round2(vals(r.CPUPerGB[p+"_download"])))
	}
	sb.WriteString("\n## Failover (gw1's wireguard-go killed → first answer through gw2; s)\n\n| setting | traffic resumed (median, all) | tunnel event (median) |\n|---|---|---|\n")
	var names []string
	for k := range r.Failover {
		if !strings.HasSuffix(k, "_event") {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		ev := r.Failover[k+"_event"]
		evm := 0.0
		if ev != nil {
			evm = ev.Median
		}
		fmt.Fprintf(&sb, "| %s | %.2f %v | %.2f |\n", k, r.Failover[k].Median, round2(r.Failover[k].Values), evm)
	}
	sb.WriteString("\n## RSS (MiB)\n\nPeak during each iperf3 run (plugin: one long-lived process, Start/Stop around each run; standalone: a fresh process per run):\n\n")
	for _, p := range []string{"standalone", "plugin"} {
		fmt.Fprintf(&sb, "- %s: median %.1f, max %.1f %v\n", p, med(r.RSSLoad[p]), maxOf(r.RSSLoad[p]), round2(vals(r.RSSLoad[p])))
	}
	sb.WriteString("\nPlugin process:\n\n")
	var keys []string
	for k := range r.RSS {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&sb, "- %s: %.1f\n", k, r.RSS[k])
	}
	fmt.Print(sb.String())
	out := b.o.out
	if out == "" {
		root, err := tunneltest.RepoRoot(b.ctx)
		if err != nil {
			return err
		}
		dir := filepath.Join(root, "testenv", "bench", "tunnel", "results")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		out = filepath.Join(dir, time.Now().UTC().Format("20060102T150405Z")+".json")
	}
	j, _ := json.MarshalIndent(r, "", "  ")
	if err := os.WriteFile(out, j, 0o644); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "results:", out)
	return nil
}

func med(s *Series) float64 {
	if s == nil {
		return 0
	}
	return s.Median
}

func vals(s *Series) []float64 {
	if s == nil {
		return nil
	}
	return s.Values
}

func maxOf(s *Series) float64 {
	m := 0.0
	for _, v := range vals(s) {
		m = max(m, v)
	}
	return m
}

func round0(vs []float64) []int {
	out := make([]int, len(vs))
	for i, v := range vs {
		out[i] = int(v + 0.5)
	}
	return out
}

func round2(vs []float64) []float64 {
	out := make([]float64, len(vs))
	for i, v := range vs {
		out[i] = float64(int(v*100+0.5)) / 100
	}
	return out
}

func machine() string {
	cpus := 0
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, ln := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(ln, "processor") {
				cpus++
			}
			if model == "" && strings.HasPrefix(ln, "model name") {
				_, model, _ = strings.Cut(ln, ": ")
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%d CPU (%s), kernel %s", cpus, model, strings.TrimSpace(string(kernel)))
}
