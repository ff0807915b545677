// Package engine runs one tunnel: it brings up the WireGuard interface with every
// gateway as a peer, samples the per-peer counters, probes silent gateways, lets the
// failover selector pick the active gateway, moves the allowed prefixes and the routes
// to it (or withdraws/blackholes them while no gateway is alive), keeps MSS clamping in
// place, repairs drift, and reports status, metrics and `tunnel` events.
//
// One goroutine owns the interface; operator actions and config changes reach it as
// commands, and Snapshot reads a copy of its state, so Status answers at once.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/tunnel/config"
	"github.com/sitelink/sitelink/plugins/tunnel/failover"
	"github.com/sitelink/sitelink/plugins/tunnel/mss"
	"github.com/sitelink/sitelink/plugins/tunnel/route"
	"github.com/sitelink/sitelink/plugins/tunnel/wg"
)

const (
	// repairEvery is how often routes, MSS clamping and the interface are compared with
	// the kernel even when nothing changed.
	repairEvery = 10 * time.Second
	// resolveEvery is how often a gateway whose name did not resolve, or that is dead,
	// is resolved again.
	resolveEvery   = 30 * time.Second
	resolveTimeout = 3 * time.Second
	// maxGrace bounds how long, at start, the preferred gateway is waited for.
	maxGrace = 2 * time.Second
)

// Options start an engine.
type Options struct {
	Config *config.Config
	// Key is the connector's private key.
	Key    wgtypes.Key
	System System
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *Metrics
	// Publish delivers an event (asynchronously); may be nil.
	Publish func(sdk.Event)
	// SocketDirs are tried in order for the userspace configuration socket.
	SocketDirs []string
}

// gwRuntime is what the engine knows about one gateway beyond the selector.
type gwRuntime struct {
	cfg          config.Gateway
	endpoint     netip.AddrPort // resolved (invalid: not yet)
	applied      netip.AddrPort // endpoint last given to WireGuard
	lastResolve  time.Time      // last lookup started
	resolveErr   error
	rx, tx       uint64
	lastRxChange time.Time
	lastHS       time.Time
	lastProbe    time.Time
	probes       uint64
	probeErr     error
}

// Engine is a running tunnel.
type Engine struct {
	sys     System
	log     *slog.Logger
	metrics *Metrics
	publish func(sdk.Event)

	backend wg.Backend
	pinger  Pinger

	cmds   chan func()
	cancel context.CancelFunc
	done   chan struct{}

	// Owned by the loop goroutine (and by Start before the loop runs).
	cfg        *config.Config
	key        wgtypes.Key
	sel        *failover.Selector
	gws        map[string]*gwRuntime
	lastRepair time.Time
	resolving  bool // a background lookup runs
	started    time.Time
	// announced: a tunnel event was published. A new process does not say "down"
	// before the gateways had a window to answer, so that a restart after a crash does
	// not look like an outage to the plugins that track the tunnel.
	announced  bool
	problems   map[string]string
	routes     RouteStatus
	mssStatus  MSSStatus
	switches   uint64
	lastSwitch *Switch
	stateSince time.Time

	mu   sync.Mutex
	snap Status
}

// Start brings the tunnel up and runs it until Stop.
func Start(ctx context.Context, o Options) (*Engine, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Publish == nil {
		o.Publish = func(sdk.Event) {}
	}
	c := o.Config
	e := &Engine{sys: o.System, log: o.Logger, metrics: o.Metrics, publish: o.Publish, cfg: c, key: o.Key,
		cmds: make(chan func()), done: make(chan struct{}), gws: map[string]*gwRuntime{}, problems: map[string]string{},
		stateSince: time.Now()}
	if err := e.bringUp(ctx, o); err != nil {
		// Routes and MSS clamping stay as they are: blackhole routes keep failing closed
		// while the start is retried.
		if e.pinger != nil {
			e.pinger.Close()
		}
		if e.backend != nil {
			e.backend.Close()
		}
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.started = time.Now()
	e.refreshSnapshot(e.started)
	go e.loop(lctx)
	return e, nil
}

func (e *Engine) bringUp(ctx context.Context, o Options) error {
	c := e.cfg
	if removed, err := e.sys.PrepareLink(c.Interface); err != nil {
		return err
	} else if removed {
		e.log.Info("removed the interface a previous process left", "interface", c.Interface)
	}
	if removed, err := e.sys.CleanupOtherTables(c.RouteTable); err != nil {
		e.log.Warn("cannot remove routes left in other tables", "error", err)
	} else if len(removed) > 0 {
		e.log.Info("removed routes left in other tables", "removed", removed)
	}
	b, err := e.sys.OpenBackend(ctx, wg.Options{Name: c.Interface, MTU: c.MTU, Kind: c.Backend, SocketDirs: o.SocketDirs, Logger: e.log})
	if err != nil {
		return fmt.Errorf("create WireGuard interface %s: %w", c.Interface, err)
	}
	e.backend = b
	if err := e.sys.ConfigureLink(c.Interface, c.MTU, c.Addresses); err != nil {
		return err
	}
	e.pinger = e.sys.NewPinger(c.Interface)
	now := time.Now()
	e.sel = failover.New(gatewayNames(c), e.params(), now)
	for _, g := range c.Gateways {
		e.gws[g.Name] = &gwRuntime{cfg: g}
	}
	e.resolveNow(ctx, now)
	cfg := wgtypes.Config{PrivateKey: &e.key, ListenPort: &c.ListenPort, ReplacePeers: true, Peers: e.peerConfigs(true)}
	if err := e.backend.Configure(cfg); err != nil {
		return err
	}
	if e.backend.Kind() == config.BackendKernel {
		for _, g := range c.Gateways {
			if !g.Probe.IsValid() {
				e.problems["probe:"+g.Name] = fmt.Sprintf("gateway %s has no probe address: with the kernel backend its liveness is seen only in traffic and 2-minute rekeys", g.Name)
			}
		}
	}
	e.repair(now)
	e.log.Info("tunnel interface up", "interface", b.Name(), "backend", string(b.Kind()), "public_key", e.key.PublicKey().String(),
		"gateways", len(c.Gateways), "socket", b.Socket())
	return nil
}

func (e *Engine) params() failover.Params {
	h := e.cfg.Health
	grace := h.ProbeInterval
	if grace > maxGrace {
		grace = maxGrace
	}
	return failover.Params{Window: h.Window, Hold: h.Hold, Grace: grace}
}

func gatewayNames(c *config.Config) []string {
	out := make([]string, len(c.Gateways))
	for i, g := range c.Gateways {
		out[i] = g.Name
	}
	return out
}

// pollEvery is how often the counters are read.
func (e *Engine) pollEvery() time.Duration {
	d := e.cfg.Health.ProbeInterval / 4
	return min(max(d, 50*time.Millisecond), 500*time.Millisecond)
}

func (e *Engine) loop(ctx context.Context) {
	defer close(e.done)
	t := time.NewTicker(e.pollEvery())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-e.cmds:
			f()
			e.refreshSnapshot(time.Now())
		case now := <-t.C:
			e.tick(ctx, now)
			if p := e.pollEvery(); p != 0 {
				t.Reset(p)
			}
		}
	}
}

// do runs f on the loop goroutine and waits for it.
func (e *Engine) do(ctx context.Context, f func() error) error {
	errc := make(chan error, 1)
	select {
	case e.cmds <- func() {
		err := f()
		e.refreshSnapshot(time.Now()) // before answering: the caller may read it next
		errc <- err
	}:
	case <-e.done:
		return errors.New("the tunnel is stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *Engine) tick(ctx context.Context, now time.Time) {
	dev, err := e.backend.Device()
	if err != nil {
		e.problems["wireguard"] = err.Error()
		e.refreshSnapshot(now)
		return
	}
	delete(e.problems, "wireguard")
	samples := e.sample(dev, now)
	d := e.sel.Observe(now, samples)
	if d.Changed {
		e.onDecision(d, now)
	}
	if !e.announced && now.Sub(e.started) >= e.cfg.Health.Window {
		e.publishState(failover.Decision{Reason: "start"})
	}
	e.probe(now)
	if now.Sub(e.lastRepair) >= repairEvery {
		e.resolveLater(ctx, now)
		e.repair(now)
	}
	e.refreshSnapshot(now)
}

// sample turns the device's peers into selector samples, by gateway name.
func (e *Engine) sample(dev *wgtypes.Device, now time.Time) map[string]failover.Sample {
	byKey := map[wgtypes.Key]wgtypes.Peer{}
	for _, p := range dev.Peers {
		byKey[p.PublicKey] = p
	}
	out := map[string]failover.Sample{}
	for name, g := range e.gws {
		p, ok := byKey[g.cfg.PublicKey]
		if !ok {
			continue
		}
		rx, tx := uint64(max(p.ReceiveBytes, 0)), uint64(max(p.TransmitBytes, 0))
		if rx != g.rx {
			g.lastRxChange = now
		}
		g.rx, g.tx, g.lastHS = rx, tx, p.LastHandshakeTime
		out[name] = failover.Sample{LastHandshake: p.LastHandshakeTime, RxBytes: rx}
	}
	return out
}

// probe makes every silent gateway answer: an ICMP echo to its probe address, and a
// handshake initiation when it has no probe address or is dead (a gateway that
// restarted has lost the session, so an echo over it would go unanswered until
// WireGuard's own 15 s timer starts a handshake).
func (e *Engine) probe(now time.Time) {
	every := e.cfg.Health.ProbeInterval
	alive := map[string]bool{}
	for _, st := range e.sel.States(now) {
		alive[st.Name] = st.Alive
	}
	for _, gc := range e.cfg.Gateways {
		g := e.gws[gc.Name]
		last := g.lastRxChange
		if g.lastHS.After(last) {
			last = g.lastHS
		}
		if now.Sub(last) < every || now.Sub(g.lastProbe) < every {
			continue
		}
		g.lastProbe = now
		var errs []error
		if gc.Probe.IsValid() {
			errs = append(errs, e.pinger.Send(gc.Probe))
			e.metrics.probe(gc.Name, "icmp")
		}
		if !gc.Probe.IsValid() || !alive[gc.Name] {
			// WireGuard sends at most one initiation per 5 s; extra nudges are no-ops.
			if err := e.backend.Nudge(gc.PublicKey); !errors.Is(err, wg.ErrUnsupported) {
				errs = append(errs, err)
				e.metrics.probe(gc.Name, "handshake")
			}
		}
		if len(errs) == 0 {
			continue
		}
		g.probes++
		err := errors.Join(errs...)
		if err != nil && (g.probeErr == nil || g.probeErr.Error() != err.Error()) {
			e.log.Debug("probe failed", "gateway", gc.Name, "error", err)
		}
		g.probeErr = err
	}
}

// onDecision moves the prefixes and routes after the selector changed its mind.
func (e *Engine) onDecision(d failover.Decision, now time.Time) {
	if d.Active != d.Previous {
		e.switches++
		e.lastSwitch = &Switch{From: d.Previous, To: d.Active, Reason: string(d.Reason), At: now}
		e.metrics.switched(string(d.Reason))
		if err := e.backend.Configure(wgtypes.Config{Peers: e.peerConfigs(false)}); err != nil {
			e.problems["wireguard-peers"] = err.Error()
			e.log.Error("cannot move the prefixes to the active gateway", "gateway", d.Active, "error", err)
		} else {
			delete(e.problems, "wireguard-peers")
		}
	}
	e.applyRoutes()
	e.stateSince = now
	level := slog.LevelInfo
	if !d.Up {
		level = slog.LevelWarn
	}
	e.log.Log(context.Background(), level, "tunnel "+stateWord(d.Up), "event", "tunnel_"+stateWord(d.Up),
		"gateway", d.Active, "previous", d.Previous, "reason", string(d.Reason))
	e.publishState(d)
}

func stateWord(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

func (e *Engine) publishState(d failover.Decision) {
	e.announced = true
	up := e.sel.Up()
	active := e.sel.Active()
	ev := sdk.Event{Type: sdk.EventTunnel, Retain: true,
		Attrs: map[string]string{"state": stateWord(up), "gateway": active}}
	if d.Previous != "" {
		ev.Attrs["previous"] = d.Previous
	}
	if d.Reason != "" {
		ev.Attrs["reason"] = string(d.Reason)
	}
	if up {
		ev.Message = fmt.Sprintf("tunnel up via %s", active)
	} else if active != "" {
		ev.Message = fmt.Sprintf("tunnel down (gateway %s does not answer)", active)
	} else {
		ev.Message = "tunnel down (no gateway has answered yet)"
	}
	e.publish(ev)
}

// carrier is the gateway that holds the prefixes: the active one, else the first.
func (e *Engine) carrier() string {
	if a := e.sel.Active(); a != "" {
		return a
	}
	return e.cfg.Gateways[0].Name
}

// peerConfigs is the WireGuard config of every gateway. full adds endpoints and
// keepalives (at start and after config changes); otherwise only the allowed IPs move,
// and endpoints that changed by resolution.
func (e *Engine) peerConfigs(full bool) []wgtypes.PeerConfig {
	carrier := e.carrier()
	ka := e.cfg.PersistentKeepalive
	var out []wgtypes.PeerConfig
	for _, gc := range e.cfg.Gateways {
		g := e.gws[gc.Name]
		pc := wgtypes.PeerConfig{PublicKey: gc.PublicKey, ReplaceAllowedIPs: true}
		if gc.Probe.IsValid() {
			pc.AllowedIPs = append(pc.AllowedIPs, ipNet(netip.PrefixFrom(gc.Probe, gc.Probe.BitLen())))
		}
		if gc.Name == carrier {
			for _, p := range gc.AllowedPrefixes {
				pc.AllowedIPs = append(pc.AllowedIPs, ipNet(p))
			}
		}
		if full {
			pc.PersistentKeepaliveInterval = &ka
		}
		if g.endpoint.IsValid() && (full || g.endpoint != g.applied) {
			pc.Endpoint = net.UDPAddrFromAddrPort(g.endpoint)
			g.applied = g.endpoint
		}
		out = append(out, pc)
	}
	return out
}

func ipNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// resolution is the outcome of looking up one gateway's host.
type resolution struct {
	name, host string
	addr       netip.Addr
	err        error
}

// resolveTargets returns the gateways to look up: all (at start and after a config
// change), else those not resolved yet or dead, at most every resolveEvery. Gateways
// given by address need no lookup and get their endpoint here.
func (e *Engine) resolveTargets(now time.Time, all bool) []resolution {
	alive := map[string]bool{}
	for _, st := range e.sel.States(now) {
		alive[st.Name] = st.Alive
	}
	var todo []resolution
	for _, gc := range e.cfg.Gateways {
		g := e.gws[gc.Name]
		if a, err := netip.ParseAddr(gc.Host); err == nil {
			g.endpoint = netip.AddrPortFrom(a.Unmap(), uint16(gc.Port))
			continue
		}
		if all || ((!g.endpoint.IsValid() || !alive[gc.Name]) && now.Sub(g.lastResolve) >= resolveEvery) {
			g.lastResolve = now
			todo = append(todo, resolution{name: gc.Name, host: gc.Host})
		}
	}
	return todo
}

// lookup resolves hosts in parallel; it touches no engine state, so it may run off the
// loop goroutine.
func (e *Engine) lookup(ctx context.Context, todo []resolution) []resolution {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	results := make(chan resolution, len(todo))
	for _, r := range todo {
		go func() {
			r.addr, r.err = e.sys.Resolve(ctx, r.host)
			results <- r
		}()
	}
	out := make([]resolution, 0, len(todo))
	for range todo {
		out = append(out, <-results)
	}
	return out
}

// applyResolutions records lookups; changed addresses are given to WireGuard when
// reconfigure is set (otherwise the caller configures the peers next).
func (e *Engine) applyResolutions(rs []resolution, reconfigure bool) {
	changed := false
	for _, r := range rs {
		g, ok := e.gws[r.name]
		if !ok || g.cfg.Host != r.host {
			continue // the config changed meanwhile
		}
		g.resolveErr = r.err
		key := "resolve:" + r.name
		if r.err != nil {
			e.problems[key] = fmt.Sprintf("gateway %s: %v", r.name, r.err)
			continue
		}
		delete(e.problems, key)
		if ep := netip.AddrPortFrom(r.addr, uint16(g.cfg.Port)); ep != g.endpoint {
			g.endpoint = ep
			changed = true
		}
	}
	if changed && reconfigure {
		if err := e.backend.Configure(wgtypes.Config{Peers: e.peerConfigs(false)}); err != nil {
			e.log.Warn("cannot update gateway endpoints", "error", err)
		}
	}
}

// resolveNow resolves synchronously (at start and on config changes).
func (e *Engine) resolveNow(ctx context.Context, now time.Time) {
	if todo := e.resolveTargets(now, true); len(todo) > 0 {
		e.applyResolutions(e.lookup(ctx, todo), false)
	}
}

// resolveLater starts the periodic lookups in the background; the results come back
// to the loop as a command, so a slow DNS server never delays failover.
func (e *Engine) resolveLater(ctx context.Context, now time.Time) {
	if e.resolving {
		return
	}
	todo := e.resolveTargets(now, false)
	if len(todo) == 0 {
		return
	}
	e.resolving = true
	go func() {
		rs := e.lookup(ctx, todo)
		select {
		case e.cmds <- func() { e.resolving = false; e.applyResolutions(rs, true) }:
		case <-ctx.Done():
		}
	}()
}

// desiredRoutes: the probe addresses always; the active gateway's prefixes while up;
// with on_down blackhole, blackhole routes for every prefix one metric behind, always
// (so they also hold while the plugin restarts after a crash).
func (e *Engine) desiredRoutes() ([]route.Route, RouteStatus) {
	c := e.cfg
	src := func(a netip.Addr) netip.Addr {
		for _, p := range c.Addresses {
			if p.Addr().Unmap().Is4() == a.Unmap().Is4() {
				return p.Addr().Unmap()
			}
		}
		return netip.Addr{}
	}
	var rs []route.Route
	seen := map[route.Route]bool{}
	add := func(r route.Route) {
		if !seen[r] {
			seen[r] = true
			rs = append(rs, r)
		}
	}
	for _, g := range c.Gateways {
		if g.Probe.IsValid() {
			add(route.Route{Prefix: netip.PrefixFrom(g.Probe, g.Probe.BitLen()), Metric: c.RouteMetric, Src: src(g.Probe)})
		}
	}
	st := RouteStatus{Table: c.RouteTable, Metric: c.RouteMetric, OnDown: string(c.OnDown)}
	if e.sel.Up() {
		st.State = "installed"
		g, _ := c.Gateway(e.sel.Active())
		for _, p := range g.AllowedPrefixes {
			add(route.Route{Prefix: p, Metric: c.RouteMetric, Src: src(p.Addr())})
			st.Prefixes = append(st.Prefixes, p.String())
		}
	} else if c.OnDown == config.OnDownWithdraw {
		st.State = "withdrawn"
	} else {
		st.State = "blackhole"
	}
	if c.OnDown == config.OnDownBlackhole {
		for _, p := range c.AllPrefixes() {
			add(route.Route{Prefix: p, Blackhole: true, Metric: c.RouteMetric + 1})
			st.Blackholed = append(st.Blackholed, p.String())
		}
	}
	return rs, st
}

func (e *Engine) applyRoutes() {
	want, st := e.desiredRoutes()
	res, err := e.sys.ApplyRoutes(e.cfg.RouteTable, e.cfg.Interface, want)
	if err != nil {
		e.problems["routes"] = err.Error()
		st.Error = err.Error()
		e.metrics.failed("routes")
		e.log.Error("cannot apply the tunnel's routes", "error", err)
	} else {
		delete(e.problems, "routes")
	}
	if res.Added+res.Removed > 0 {
		e.log.Info("routes changed", "state", st.State, "added", res.Added, "removed", res.Removed)
	}
	e.routes = st
}

// repair re-applies the interface settings, routes and MSS clamping (idempotent: it
// changes the kernel only where it drifted).
func (e *Engine) repair(now time.Time) {
	e.lastRepair = now
	c := e.cfg
	if err := e.sys.ConfigureLink(c.Interface, c.MTU, c.Addresses); err != nil {
		e.problems["interface"] = err.Error()
		e.metrics.failed("interface")
	} else {
		delete(e.problems, "interface")
	}
	e.applyRoutes()
	v4, v6 := mss.For(c.MTU)
	e.mssStatus = MSSStatus{Enabled: c.MSSClamp, IPv4: v4, IPv6: v6}
	if !c.MSSClamp {
		if _, err := e.sys.RemoveMSS(); err != nil {
			e.problems["mss"] = err.Error()
		} else {
			delete(e.problems, "mss")
		}
		return
	}
	changed, err := e.sys.ApplyMSS(mss.Clamp{Interface: c.Interface, MTU: c.MTU})
	if err != nil {
		e.problems["mss"] = err.Error()
		e.mssStatus.Error = err.Error()
		e.metrics.failed("mss")
		e.log.Error("cannot program MSS clamping", "error", err)
		return
	}
	delete(e.problems, "mss")
	if changed && !now.Equal(e.stateSince) {
		e.log.Info("MSS clamping programmed", "ipv4", v4, "ipv6", v6)
	}
}

// Update applies a config whose interface settings (config.DeviceEqual) are unchanged:
// gateways, health, routes, MSS clamping.
func (e *Engine) Update(ctx context.Context, c *config.Config) error {
	return e.do(ctx, func() error {
		now := time.Now()
		old := e.cfg
		e.cfg = c
		keep := map[wgtypes.Key]bool{}
		var forget []string
		for _, g := range c.Gateways {
			keep[g.PublicKey] = true
			r, ok := e.gws[g.Name]
			if ok && r.cfg.PublicKey == g.PublicKey && r.cfg.Host == g.Host {
				r.cfg = g
				continue
			}
			if ok && r.cfg.PublicKey != g.PublicKey {
				forget = append(forget, g.Name)
			}
			e.gws[g.Name] = &gwRuntime{cfg: g}
		}
		for name := range e.gws {
			if _, ok := c.Gateway(name); !ok {
				delete(e.gws, name)
				delete(e.problems, "resolve:"+name)
				delete(e.problems, "probe:"+name)
			}
		}
		var removals []wgtypes.PeerConfig
		for _, g := range old.Gateways {
			if !keep[g.PublicKey] {
				removals = append(removals, wgtypes.PeerConfig{PublicKey: g.PublicKey, Remove: true})
			}
		}
		prevActive, prevUp := e.sel.Active(), e.sel.Up()
		e.sel.Update(gatewayNames(c), e.params())
		for _, name := range forget {
			e.sel.Forget(name)
		}
		e.resolveNow(ctx, now)
		if err := e.backend.Configure(wgtypes.Config{Peers: append(removals, e.peerConfigs(true)...)}); err != nil {
			return err
		}
		e.repair(now)
		if e.sel.Active() != prevActive || e.sel.Up() != prevUp {
			e.onDecision(failover.Decision{Active: e.sel.Active(), Up: e.sel.Up(), Previous: prevActive,
				Changed: true, Reason: failover.ReasonConfig}, now)
		}
		e.log.Info("tunnel config applied", "gateways", len(c.Gateways))
		return nil
	})
}

// Switch makes a gateway active (see failover.Selector.Pin).
func (e *Engine) Switch(ctx context.Context, name string, force bool) (Switch, error) {
	var sw Switch
	err := e.do(ctx, func() error {
		now := time.Now()
		d, err := e.sel.Pin(name, force, now)
		if err != nil {
			return err
		}
		if d.Changed {
			e.onDecision(d, now)
		}
		sw = Switch{From: d.Previous, To: e.sel.Active(), Reason: string(failover.ReasonManual), At: now}
		return nil
	})
	return sw, err
}

// SetKey gives the interface a new private key.
func (e *Engine) SetKey(ctx context.Context, k wgtypes.Key) error {
	return e.do(ctx, func() error {
		if err := e.backend.Configure(wgtypes.Config{PrivateKey: &k}); err != nil {
			return err
		}
		e.key = k
		e.log.Info("private key replaced: register the new public key with the gateways", "public_key", k.PublicKey().String())
		return nil
	})
}

// Stop ends the loop and removes the interface, routes and MSS clamping.
func (e *Engine) Stop(ctx context.Context) error {
	e.cancel()
	select {
	case <-e.done:
	case <-ctx.Done():
		return fmt.Errorf("stop tunnel: %w", ctx.Err())
	}
	err := e.teardown()
	e.publish(sdk.Event{Type: sdk.EventTunnel, Retain: true, Attrs: map[string]string{"state": "down", "gateway": e.sel.Active(), "reason": "stopped"},
		Message: "tunnel down (stopped)"})
	e.mu.Lock()
	e.snap.State = StateStopped
	e.mu.Unlock()
	return err
}

func (e *Engine) teardown() error {
	var errs []error
	if e.pinger != nil {
		e.pinger.Close()
	}
	res, err := e.sys.ApplyRoutes(e.cfg.RouteTable, e.cfg.Interface, nil)
	if err != nil {
		errs = append(errs, err)
	}
	mssRemoved, err := e.sys.RemoveMSS()
	if err != nil {
		errs = append(errs, err)
	}
	if e.backend != nil {
		if err := e.backend.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	err = errors.Join(errs...)
	e.log.Info("tunnel stopped: interface, routes and MSS clamping removed", "event", "tunnel_stopped",
		"interface", e.cfg.Interface, "routes_removed", res.Removed, "nftables_removed", len(mssRemoved), "error", err)
	return err
}

// Backend returns the interface (for tests and the plugin's record of its socket).
func (e *Engine) Backend() wg.Backend { return e.backend }
