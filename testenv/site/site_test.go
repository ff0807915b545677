package site

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/testenv"
)

var bins struct {
	dir string
	err error
}

// TestMain builds the binaries once, before any test runs (compiling next to
// timing-sensitive tests on 2 cores would starve them).
func TestMain(m *testing.M) {
	flag.Parse()
	if run := flag.Lookup("test.run"); os.Geteuid() == 0 && !testing.Short() && (run == nil || run.Value.String() != "^$") {
		bins.dir, bins.err = os.MkdirTemp("", "sitelink-site-bin-")
		if bins.err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			bins.err = Build(ctx, bins.dir)
			cancel()
		}
	}
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// newSite builds the site for a test; it is removed when the test ends, and on failure
// the daemons' logs are printed.
func newSite(t *testing.T, opts Options) (*Site, context.Context) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	testenv.Require(t, "ip", "wg", "nft", "go")
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	opts.Env = testenv.New(t)
	opts.Bin = bins.dir
	s, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range s.Connectors {
				t.Logf("sitelinkd %s log (end):\n%s", c.Name, tail(c.Log(), 30000))
			}
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s, ctx
}

func steady(t *testing.T, ctx context.Context, s *Site) *Connector {
	t.Helper()
	m, err := s.WaitSteady(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSite is the whole site end to end: issue 10's items 1-6 as subtests on one site,
// in an order where each starts from a steady state (one master, tunnel Online) and the
// failovers come last.
func TestSite(t *testing.T) {
	s, ctx := newSite(t, Options{})
	master := steady(t, ctx, s)
	t.Logf("master: %s", master.Name)

	t.Run("1-remote-user-to-app", func(t *testing.T) { testRemoteUser(t, ctx, s) })
	t.Run("2-agents-proxy-and-cache", func(t *testing.T) { testAgents(t, ctx, s) })
	t.Run("5-reload-under-traffic", func(t *testing.T) { testReload(t, ctx, s) })
	t.Run("4-tunnel-loss-on-master", func(t *testing.T) { testTunnelLoss(t, ctx, s) })
	t.Run("3a-kill-9-master", func(t *testing.T) { testFailover(t, ctx, s, "kill") })
	t.Run("3b-power-off-master", func(t *testing.T) { testFailover(t, ctx, s, "power") })
	t.Run("6-audit-trail", func(t *testing.T) { testAudit(t, ctx, s) })
}

// testRemoteUser: remote user → gateway → tunnel → master → SNAT → app, with SNAT on
// (the app sees the connector) and off (the app sees the user's virtual IP and answers
// through the router and the VIP).
func testRemoteUser(t *testing.T, ctx context.Context, s *Site) {
	master := steady(t, ctx, s)
	check := func(want func(string) bool, what string) {
		t.Helper()
		testenv.Eventually(t, 20*time.Second, "the app to see "+what, func() (bool, error) {
			peer, err := HTTPGet(ctx, s.User, 3*time.Second)
			if err != nil || !want(peer) {
				return false, fmt.Errorf("HTTP peer %q: %v", peer, err)
			}
			return true, nil
		})
		// TCP line echo and UDP see the same.
		f := StartLineFlow(s.User, fmt.Sprintf("%s:%d", AppAddr, EchoPort), "user", 20*time.Millisecond, false)
		testenv.Eventually(t, 10*time.Second, "TCP echo through the tunnel", func() (bool, error) { return len(f.Deliveries()) >= 5, nil })
		f.Stop()
		for _, d := range f.Deliveries() {
			if !want(d.Peer) {
				t.Fatalf("TCP echo: the app saw %q, want %s", d.Peer, what)
			}
		}
		if e := f.Errors(); len(e) > 0 {
			t.Fatalf("TCP echo errors: %v", e)
		}
		peer, err := AskUDP(s.User, AppAddr, FlowPort, 3*time.Second)
		if err != nil || !want(peer) {
			t.Fatalf("UDP: the app saw %q (%v), want %s", peer, err, what)
		}
	}
	check(func(p string) bool { return p == ConnectorLAN(master.Index) }, "the master connector "+ConnectorLAN(master.Index))
	// The SNAT rules are only on the master.
	var show string
	show, err := master.Ctl(ctx, "snat", "show")
	if err != nil || !strings.Contains(show, "masquerade") {
		t.Fatalf("snat show on the master: %v\n%s", err, show)
	}
	other := s.Other(master)
	if out, _ := other.Host.Run(ctx, "nft", "list", "tables"); strings.Contains(out, "sitelink") && !strings.Contains(out, "sitelink-") {
		t.Errorf("the backup has SNAT tables: %s", out)
	}

	if err := s.Reload(ctx, Settings{SNAT: "off", ClientMaxConns: s.opts.ClientMaxConns}); err != nil {
		t.Fatal(err)
	}
	check(func(p string) bool { return p == UserAddr }, "the user's virtual IP "+UserAddr)
	if err := s.Reload(ctx, Settings{SNAT: "masquerade", ClientMaxConns: s.opts.ClientMaxConns}); err != nil {
		t.Fatal(err)
	}
	check(func(p string) bool { return p == ConnectorLAN(master.Index) }, "the master connector again")
}

// testAgents: agents → proxy on the VIP → management center, per-client limits, the
// clients list; then cache mode into the master's log cache.
func testAgents(t *testing.T, ctx context.Context, s *Site) {
	master := steady(t, ctx, s)
	proxyAddr := fmt.Sprintf("%s:%d", VIP, ProxyPort)
	var flows []*Flow
	for i, a := range s.Agents {
		flows = append(flows, StartLineFlow(a, proxyAddr, fmt.Sprintf("agent%d", i+1), 50*time.Millisecond, false))
	}
	defer func() {
		for _, f := range flows {
			f.Stop()
		}
	}()
	testenv.Eventually(t, 20*time.Second, "the management center to count lines of every agent", func() (bool, error) {
		lines := s.Center.Lines()
		for i := range s.Agents {
			if lines[fmt.Sprintf("agent%d", i+1)] < 5 {
				return false, fmt.Errorf("lines %v", lines)
			}
		}
		return true, nil
	})
	// The clients list shows each agent.
	var clients []struct {
		Addr     string            `json:"addr"`
		Active   int64             `json:"active"`
		Total    uint64            `json:"total"`
		Refusals map[string]uint64 `json:"refusals"`
	}
	testenv.Eventually(t, 10*time.Second, "proxy clients to list every agent", func() (bool, error) {
		if err := master.CtlJSON(ctx, &clients, "proxy", "clients"); err != nil {
			return false, err
		}
		seen := map[string]bool{}
		for _, c := range clients {
			if c.Active > 0 {
				seen[c.Addr] = true
			}
		}
		for i := range s.Agents {
			if !seen[AgentAddr(i+1)] {
				return false, fmt.Errorf("clients %+v", clients)
			}
		}
		return true, nil
	})
	// Per-client limit: agent1 holds one connection; ClientMaxConns-1 more are accepted,
	// the next one is refused and counted.
	limit := s.opts.ClientMaxConns
	var extra []net.Conn
	defer func() {
		for _, c := range extra {
			c.Close()
		}
	}()
	for i := 0; i < limit-1; i++ {
		c, err := Dial(s.Agents[0], proxyAddr, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		extra = append(extra, c)
		if _, err := fmt.Fprintf(c, "agent1-extra %d\n", i); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 3)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err != nil || string(buf) != "ok\n" {
			t.Fatalf("connection %d of agent1 (within the limit of %d): %q %v", i+2, limit, buf, err)
		}
	}
	over, err := Dial(s.Agents[0], proxyAddr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(over, "agent1-over 0\n")
	_ = over.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, rerr := over.Read(make([]byte, 16))
	over.Close()
	if n > 0 {
		t.Fatalf("connection %d of agent1 was relayed despite client_max_conns %d", limit+1, limit)
	}
	testenv.Eventually(t, 10*time.Second, "the refusal counted for agent1", func() (bool, error) {
		if err := master.CtlJSON(ctx, &clients, "proxy", "clients"); err != nil {
			return false, err
		}
		for _, c := range clients {
			if c.Addr == AgentAddr(1) && c.Refusals["client_conns"] > 0 {
				return true, nil
			}
		}
		return false, fmt.Errorf("clients %+v", clients)
	})
	t.Logf("over-limit connection: read %d bytes, %v", n, rerr)
	for i, f := range flows {
		f.Stop()
		if e := f.Errors(); len(e) > 0 {
			t.Errorf("agent%d: %v", i+1, e)
		}
	}
	for _, c := range extra {
		c.Close()
	}
	// The proxy notices the closed connections asynchronously: wait until it holds none
	// of agent1's, or the cache connection below would be over the limit.
	testenv.Eventually(t, 10*time.Second, "agent1's connections closed at the proxy", func() (bool, error) {
		if err := master.CtlJSON(ctx, &clients, "proxy", "clients"); err != nil {
			return false, err
		}
		for _, c := range clients {
			if c.Addr == AgentAddr(1) && c.Active > 0 {
				return false, fmt.Errorf("agent1 active %d", c.Active)
			}
		}
		return true, nil
	})

	// Cache mode: every agent sends records to the VIP's cache listener; each is
	// acknowledged after the master's log cache took it, and `sitelinkctl logcache tail`
	// reads it there.
	cacheAddr := fmt.Sprintf("%s:%d", VIP, CachePort)
	const records = 20
	var wg sync.WaitGroup
	errs := make(chan error, len(s.Agents))
	for i, a := range s.Agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- sendRecords(a, cacheAddr, fmt.Sprintf("agent%d", i+1), records)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var items []struct {
		Source string          `json:"source"`
		Data   json.RawMessage `json:"data"`
	}
	if err := master.CtlJSON(ctx, &items, "logcache", "tail", "--source", "proxy/ingest", "--lines", "1000"); err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, it := range items {
		var rec struct {
			Client string          `json:"client"`
			Record json.RawMessage `json:"record"`
		}
		if err := json.Unmarshal(it.Data, &rec); err != nil {
			t.Fatalf("record %s: %v", it.Data, err)
		}
		var body struct {
			Agent string `json:"agent"`
		}
		_ = json.Unmarshal(rec.Record, &body)
		if body.Agent != "" {
			per[body.Agent]++
		}
	}
	for i := range s.Agents {
		if got := per[fmt.Sprintf("agent%d", i+1)]; got != records {
			t.Errorf("log cache on %s holds %d records of agent%d, want %d (all: %v)", master.Name, got, i+1, records, per)
		}
	}
	out, _ := master.Ctl(ctx, "logcache", "tail", "--source", "proxy/ingest", "--lines", "2")
	t.Logf("sitelinkctl logcache tail --source proxy/ingest --lines 2 on %s:\n%s", master.Name, out)
}

// sendRecords writes n NDJSON records over raw TCP to a cache listener and waits until
// the proxy acknowledged all of them.
func sendRecords(h *testenv.Host, addr, agent string, n int) error {
	c, err := Dial(h, addr, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, `{"agent":%q,"seq":%d,"msg":"inventory"}`+"\n", agent, i)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return fmt.Errorf("%s: send records: %w", agent, err)
	}
	dec := json.NewDecoder(c)
	for {
		var ack struct {
			Acked int `json:"acked"`
		}
		if err := dec.Decode(&ack); err != nil {
			return fmt.Errorf("%s: waiting for acks: %w", agent, err)
		}
		if ack.Acked >= n {
			return nil
		}
	}
}

// testReload: both connectors reload a changed config while the remote user's TCP
// connection, its UDP flow and the agents' proxied connections run: none drops.
func testReload(t *testing.T, ctx context.Context, s *Site) {
	steady(t, ctx, s)
	udp, err := StartUDPFlow(s.User, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Stop()
	tcp := StartLineFlow(s.User, fmt.Sprintf("%s:%d", AppAddr, EchoPort), "user", 20*time.Millisecond, false)
	defer tcp.Stop()
	var agents []*Flow
	for i, a := range s.Agents {
		agents = append(agents, StartLineFlow(a, fmt.Sprintf("%s:%d", VIP, ProxyPort), fmt.Sprintf("agent%d", i+1), 50*time.Millisecond, false))
	}
	defer func() {
		for _, f := range agents {
			f.Stop()
		}
	}()
	testenv.Eventually(t, 10*time.Second, "traffic flowing", func() (bool, error) {
		return len(tcp.Deliveries()) > 10 && len(udp.Deliveries()) > 10 && len(agents[0].Deliveries()) > 5, nil
	})
	start := time.Now()
	// A real change on both: another per-client limit for the proxy.
	if err := s.Reload(ctx, Settings{SNAT: "masquerade", ClientMaxConns: s.opts.ClientMaxConns + 1}); err != nil {
		t.Fatal(err)
	}
	for _, c := range s.Connectors {
		st, err := c.Client.Status(ctx)
		if err != nil || st.ConfigError != "" || st.LastReload.Before(start) {
			t.Fatalf("%s after reload: %+v %v", c.Name, st.ConfigError, err)
		}
	}
	after := time.Now()
	testenv.Eventually(t, 10*time.Second, "traffic after the reloads", func() (bool, error) {
		return tcp.DeliveredSince(after) > 10 && udp.DeliveredSince(after) > 10 && agents[0].DeliveredSince(after) > 5, nil
	})
	end := time.Now()
	for name, f := range map[string]*Flow{"user TCP": tcp, "agent1": agents[0], "agent2": agents[1], "agent3": agents[2]} {
		if e := f.Errors(); len(e) > 0 || f.Connects() != 1 {
			t.Errorf("%s: connection dropped by the reload: %d connections, errors %v", name, f.Connects(), e)
		}
	}
	gap, _ := udp.Gap(start, end)
	t.Logf("reload of both connectors took %v; longest gap in the user's UDP flow (every 10 ms) around it: %v", after.Sub(start).Round(time.Millisecond), gap.Round(time.Millisecond))
	if err := s.Reload(ctx, Settings{SNAT: "masquerade", ClientMaxConns: s.opts.ClientMaxConns}); err != nil {
		t.Fatal(err)
	}
}

// testTunnelLoss: the master loses the internet (its link stays up); its tunnel goes
// down, VRRP tracking hands the VIP to the backup, whose tunnel comes up and carries
// the remote user's flow.
func testTunnelLoss(t *testing.T, ctx context.Context, s *Site) {
	old := steady(t, ctx, s)
	udp, err := StartUDPFlow(s.User, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Stop()
	testenv.Eventually(t, 10*time.Second, "the flow", func() (bool, error) { return len(udp.Deliveries()) > 5, nil })
	cut := time.Now()
	if err := s.CutInternet(ctx, old, true); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.CutInternet(ctx, old, false); err != nil {
			t.Error(err)
		}
	}()
	m := steady(t, ctx, s)
	if m == old {
		t.Fatalf("%s is still master after losing its tunnel", old.Name)
	}
	resumed := time.Now()
	testenv.Eventually(t, 10*time.Second, "the user's flow through "+m.Name, func() (bool, error) {
		return udp.DeliveredSince(resumed) > 10, nil
	})
	gap, end := udp.Gap(cut, time.Now())
	t.Logf("internet of %s cut: %s master, flow resumed; longest gap %v (ended %v after the cut; the tunnel's health window is 2 s)",
		old.Name, m.Name, gap.Round(time.Millisecond), end.Sub(cut).Round(time.Millisecond))
	if r, _ := old.Role(ctx); r != "BACKUP" {
		t.Errorf("%s role %q after losing its tunnel, want BACKUP", old.Name, r)
	}
}

// testFailover: the master's sitelinkd is killed with SIGKILL, or the master is powered
// off (links removed, processes killed). The backup becomes master, brings up its
// tunnel, SNAT and proxy; the remote user's flow and the agents resume. The old master
// comes back (as systemd or a reboot would bring it) at the end.
func testFailover(t *testing.T, ctx context.Context, s *Site, how string) {
	old := steady(t, ctx, s)
	udp, err := StartUDPFlow(s.User, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Stop()
	var agents []*Flow
	for i, a := range s.Agents {
		agents = append(agents, StartLineFlow(a, fmt.Sprintf("%s:%d", VIP, ProxyPort), fmt.Sprintf("agent%d", i+1), 50*time.Millisecond, true))
	}
	defer func() {
		for _, f := range agents {
			f.Stop()
		}
	}()
	testenv.Eventually(t, 10*time.Second, "traffic flowing", func() (bool, error) {
		return len(udp.Deliveries()) > 10 && len(agents[0].Deliveries()) > 5, nil
	})
	mcBefore := s.Center.Lines()
	at := time.Now()
	switch how {
	case "kill":
		err = old.Kill9(ctx)
	case "power":
		err = old.PowerOff(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	m := steady(t, ctx, s)
	if m == old {
		t.Fatalf("%s still master", old.Name)
	}
	resumed := time.Now()
	testenv.Eventually(t, 20*time.Second, "the user's flow and every agent through "+m.Name, func() (bool, error) {
		if udp.DeliveredSince(resumed) < 10 {
			return false, nil
		}
		for _, f := range agents {
			if f.DeliveredSince(resumed) < 3 {
				return false, nil
			}
		}
		return true, nil
	})
	// The new master runs the tunnel, SNAT and proxy.
	for _, name := range []string{"tunnel", "snat", "proxy"} {
		p, err := m.Plugin(ctx, name)
		if err != nil || p.State != api.PluginRunning {
			t.Errorf("%s on the new master %s: %s %v", name, m.Name, p.State, err)
		}
	}
	peer, err := HTTPGet(ctx, s.User, 3*time.Second)
	if err != nil || peer != ConnectorLAN(m.Index) {
		t.Errorf("after failover the app sees %q (%v), want %s", peer, err, ConnectorLAN(m.Index))
	}
	now := time.Now()
	gap, _ := udp.Gap(at, now)
	var agentGaps []string
	for i, f := range agents {
		g, _ := f.Gap(at, now)
		agentGaps = append(agentGaps, fmt.Sprintf("agent%d %v", i+1, g.Round(time.Millisecond)))
	}
	mcAfter := s.Center.Lines()
	for i := range s.Agents {
		a := fmt.Sprintf("agent%d", i+1)
		if mcAfter[a] <= mcBefore[a] {
			t.Errorf("management center: no new lines from %s", a)
		}
	}
	t.Logf("%s of master %s (VRRP advert %d cs): %s master; longest gap in the user's UDP flow %v; agents (reconnecting) %s",
		how, old.Name, s.opts.VRRP.AdvertInterval, m.Name, gap.Round(time.Millisecond), strings.Join(agentGaps, ", "))

	// Bring the old master back.
	switch how {
	case "kill":
		err = old.Start(ctx)
	case "power":
		err = old.PowerOn(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	steady(t, ctx, s)
}

// testAudit: role changes, tunnel up/down, plugin restarts and admin actions are in
// each connector's log cache (source audit) and in the daemon's log, in order, with
// timestamps.
func testAudit(t *testing.T, ctx context.Context, s *Site) {
	m := steady(t, ctx, s)
	begin := time.Now()
	// A crash and an operator's restart of a plugin, on the master.
	p, err := m.Plugin(ctx, "snat")
	if err != nil {
		t.Fatal(err)
	}
	if err := killPID(p.PID); err != nil {
		t.Fatal(err)
	}
	// Restarted: running, or standby when the role moved meanwhile (the previous
	// subtest's old master may take the virtual IP back by preemption at any moment).
	up := func(q api.PluginStatus) bool { return q.State == api.PluginRunning || q.State == api.PluginStandby }
	testenv.Eventually(t, 20*time.Second, "snat restarted after kill -9", func() (bool, error) {
		q, err := m.Plugin(ctx, "snat")
		return err == nil && q.Restarts > p.Restarts && up(q), err
	})
	if _, err := m.Ctl(ctx, "plugins", "restart", "proxy"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "proxy running after restart", func() (bool, error) {
		q, err := m.Plugin(ctx, "proxy")
		return err == nil && up(q), err
	})

	type rec struct {
		Time time.Time `json:"time"`
		Seq  uint64    `json:"seq"`
		Data struct {
			Type    string            `json:"type"`
			Attrs   map[string]string `json:"attrs"`
			Message string            `json:"message"`
		} `json:"data"`
	}
	// This test's crash and admin action are on the master's trail, after it began.
	testenv.Eventually(t, 10*time.Second, "the snat crash and the proxy restart in "+m.Name+"'s audit trail", func() (bool, error) {
		var recs []rec
		if err := m.CtlJSON(ctx, &recs, "logcache", "tail", "--source", "audit", "--since", begin.UTC().Format(time.RFC3339Nano), "--lines", "0"); err != nil {
			return false, err
		}
		crash, admin := false, false
		for _, r := range recs {
			a := r.Data.Attrs
			crash = crash || (r.Data.Type == "plugin" && a["plugin"] == "snat" && a["state"] == "backoff")
			admin = admin || (r.Data.Type == "audit" && strings.Contains(r.Data.Message, "proxy"))
		}
		if !crash || !admin {
			return false, fmt.Errorf("%d records since %s: crash %v, admin restart %v", len(recs), begin.Format(time.RFC3339Nano), crash, admin)
		}
		return true, nil
	})
	seen := map[string]bool{}
	for _, c := range s.Connectors {
		var recs []rec
		testenv.Eventually(t, 10*time.Second, "the audit trail of "+c.Name, func() (bool, error) {
			return len(recs) > 0, c.CtlJSON(ctx, &recs, "logcache", "tail", "--source", "audit", "--lines", "5000")
		})
		var lines []string
		for i, r := range recs {
			if r.Time.IsZero() {
				t.Errorf("%s: audit record without a time: %+v", c.Name, r)
			}
			if i > 0 && (r.Seq <= recs[i-1].Seq || r.Time.Before(recs[i-1].Time.Add(-time.Second))) {
				t.Errorf("%s: audit records out of order: %+v after %+v", c.Name, r, recs[i-1])
			}
			a := r.Data.Attrs
			switch r.Data.Type {
			case "role":
				seen["role "+a["role"]] = true
			case "tunnel":
				seen["tunnel "+a["state"]] = true
			case "plugin":
				seen["plugin "+a["state"]] = true
			case "audit":
				seen["admin "+a["action"]] = true
			}
			lines = append(lines, fmt.Sprintf("%s %s %s", r.Time.Format("15:04:05.000"), r.Data.Type, r.Data.Message))
		}
		t.Logf("%s: %d audit records; the last ones:\n%s", c.Name, len(recs), strings.Join(lines[max(0, len(lines)-12):], "\n"))
	}
	for _, want := range []string{"role MASTER", "role BACKUP", "tunnel up", "tunnel down", "plugin backoff", "plugin running"} {
		if !seen[want] {
			t.Errorf("no %q in the log caches' audit trails (seen %v)", want, seen)
		}
	}
	adminSeen := false
	for k := range seen {
		if strings.HasPrefix(k, "admin ") {
			adminSeen = true
		}
	}
	if !adminSeen {
		t.Errorf("no admin action in the audit trail (seen %v)", seen)
	}

	// The daemon's log (the journal's equivalent): the same kinds of events, each line
	// with a time, in order.
	kinds := map[string]bool{}
	for _, c := range s.Connectors {
		var prev time.Time
		for _, ln := range strings.Split(c.Log(), "\n") {
			if !strings.HasPrefix(ln, "{") {
				continue
			}
			var l struct {
				Time  time.Time `json:"time"`
				Event string    `json:"event"`
			}
			if json.Unmarshal([]byte(ln), &l) != nil || l.Event == "" {
				continue
			}
			if l.Time.IsZero() {
				t.Errorf("%s: log line without time: %s", c.Name, ln)
			}
			if l.Time.Before(prev.Add(-time.Second)) {
				t.Errorf("%s: log out of order: %s", c.Name, ln)
			}
			prev = l.Time
			kinds[l.Event] = true
		}
	}
	for _, want := range []string{"role", "tunnel_up", "tunnel_down", "plugin_state", "audit", "reload"} {
		if !kinds[want] {
			t.Errorf("no event %q in the daemons' logs (seen %v)", want, kinds)
		}
	}
}

func killPID(pid int) error {
	if pid == 0 {
		return fmt.Errorf("no pid")
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}
