// Package snat is the snat plugin: source NAT and access control for the clients'
// virtual IP ranges. It implements sdk.Plugin: Configure validates the config and, while
// started, applies it; Start applies the rules, enables forwarding and watches the
// kernel (re-applying with backoff when another tool removes the rules); Stop removes the
// rules (HA: with `active_when: master` they exist only on the master); Cleanup removes
// Sitelink's tables even when this process never configured them.
package snat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/google/nftables"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/snat/config"
	"github.com/sitelink/sitelink/plugins/snat/conntrack"
	"github.com/sitelink/sitelink/plugins/snat/nft"
	"github.com/sitelink/sitelink/plugins/snat/nsenter"
	"github.com/sitelink/sitelink/plugins/snat/ruleset"
	"github.com/sitelink/sitelink/plugins/snat/sysctl"
)

// Version is the plugin's version.
const Version = "0.1.0"

// EventSNAT is the event type the plugin publishes (retained): attrs state
// (applied, failed, removed), rules, and reason.
const EventSNAT = "snat"

// Options adjust a Plugin; the zero value is what the plugin binary uses.
type Options struct {
	// NetNS is the path of the network namespace to work in; "" is the process's own.
	// Tests use it to run the plugin in-process against a throwaway namespace.
	NetNS string
	// SysctlRoot replaces /proc/sys (tests).
	SysctlRoot string
	// MinBackoff and MaxBackoff bound the delay between failed reconciles
	// (defaults 200ms and 30s).
	MinBackoff, MaxBackoff time.Duration
}

// Plugin is the snat plugin.
type Plugin struct {
	sdk.Base
	opts    Options
	log     *slog.Logger
	rec     *nft.Reconciler
	fwd     *sysctl.Forwarding
	nsFile  *os.File
	metrics *metrics

	// applyMu serialises everything that changes the kernel, so that a config change
	// and a re-apply never interleave (an older ruleset must not win).
	applyMu sync.Mutex

	mu      sync.Mutex
	cfg     *config.Config
	rules   nft.Ruleset
	running bool
	cancel  context.CancelFunc
	done    chan struct{}
	kick    chan string
	st      state
}

// state is what Status reports; guarded by Plugin.mu.
type state struct {
	lastTime     time.Time
	lastErr      error
	lastResult   nft.Result
	reconciles   uint64
	ctFlushed    uint64 // conntrack entries deleted because they bypassed SNAT
	failures     uint64
	driftRepairs uint64
	lastDrift    []string
	repairDelay  time.Duration // current backoff between repairs of foreign changes
	sysctls      []sysctl.Change
	missingIfs   []string
	fwdErr       error
	published    string // last published state
	snap         *nft.Snapshot
	snapTime     time.Time
}

// New returns the plugin.
func New(opts Options) *Plugin {
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 200 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	return &Plugin{opts: opts, log: slog.Default()}
}

// Info describes the plugin.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{
		Name:         "snat",
		Version:      Version,
		Description:  "source NAT and access control for the clients' virtual IP ranges (nftables)",
		Capabilities: []string{"CAP_NET_ADMIN"},
		ConfigSchema: config.Schema,
		KernelFacing: true,
		Events: []sdk.EventSpec{{Type: EventSNAT,
			Description: "rules applied, failed or removed (retained; attrs state, rules, reason)"}},
		Actions: p.actions(),
	}
}

// Init keeps the host, opens the namespace and registers the metrics.
func (p *Plugin) Init(ctx context.Context, h sdk.Host) error {
	if err := p.Base.Init(ctx, h); err != nil {
		return err
	}
	if h.Logger() != nil {
		p.log = h.Logger()
	}
	var opts []nftables.ConnOption
	if p.opts.NetNS != "" {
		f, err := os.Open(p.opts.NetNS)
		if err != nil {
			return fmt.Errorf("open network namespace %s: %w", p.opts.NetNS, err)
		}
		p.nsFile = f
		opts = append(opts, nftables.WithNetNSFd(int(f.Fd())))
	}
	p.rec = nft.NewReconciler(opts...)
	p.fwd = &sysctl.Forwarding{Root: p.opts.SysctlRoot,
		Do: func(fn func() error) error { return nsenter.Do(p.opts.NetNS, fn) }}
	p.metrics = newMetrics(p)
	if reg := h.Metrics(); reg != nil {
		if err := p.metrics.register(reg); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

// Configure validates the config and, when the plugin is started, applies it in one
// atomic batch. If the kernel refuses it, the previous config and rules stay.
func (p *Plugin) Configure(ctx context.Context, raw json.RawMessage, validateOnly bool) error {
	cfg, err := config.Parse(raw)
	if err != nil {
		return err
	}
	if validateOnly {
		return nil
	}
	rules := ruleset.Build(cfg)
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	p.mu.Lock()
	running := p.running
	p.mu.Unlock()
	if running {
		if err := p.ensureForwarding(cfg); err != nil {
			p.log.Warn("enabling forwarding failed", "error", err)
		}
		res, err := p.rec.Apply(ctx, rules)
		p.record(res, err, "config change")
		if err != nil {
			return fmt.Errorf("apply new config (previous rules kept): %w", err)
		}
		p.log.Info("config applied", "added", res.Added, "deleted", res.Deleted, "kept", res.Kept,
			"duration", res.Duration)
	}
	p.mu.Lock()
	p.cfg = cfg
	p.rules = rules
	p.mu.Unlock()
	if running {
		p.publish(ctx, "applied", "config change")
		p.trigger("config change") // the loop picks up a new recheck interval and interfaces
	}
	return nil
}

// Start applies the rules, enables forwarding and starts watching the kernel.
func (p *Plugin) Start(ctx context.Context, role sdk.Role) error {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		return nil
	}
	cfg, rules := p.cfg, p.rules
	p.mu.Unlock()
	if cfg == nil {
		return errors.New("not configured: the snat section is missing")
	}
	if err := p.ensureForwarding(cfg); err != nil {
		p.log.Warn("enabling forwarding failed", "error", err)
	}
	res, err := p.rec.Apply(ctx, rules)
	p.record(res, err, "start")
	if err != nil {
		p.publish(ctx, "failed", err.Error())
		return fmt.Errorf("apply rules: %w", err)
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	p.mu.Lock()
	p.running = true
	p.cancel = cancel
	p.done = make(chan struct{})
	p.kick = make(chan string, 1)
	done, kick := p.done, p.kick
	p.mu.Unlock()
	go p.loop(loopCtx, done, kick)
	p.flushUnNATed(cfg)
	p.log.Info("snat started", "role", string(role), "rules", rules.RuleCount(), "added", res.Added,
		"kept", res.Kept, "deleted", res.Deleted, "duration", res.Duration)
	p.publish(ctx, "applied", "start")
	return nil
}

// flushUnNATed deletes the connection-tracking entries of client flows to source-NATed
// applications that were made while the rules were absent (see package conntrack):
// without this, such a flow bypasses SNAT on a new master until its entry expires.
func (p *Plugin) flushUnNATed(cfg *config.Config) {
	var natted []netip.Prefix
	for _, app := range cfg.Applications {
		if app.SNAT.Mode != config.SNATOff {
			natted = append(natted, app.Networks...)
		}
	}
	var n uint
	err := nsenter.Do(p.opts.NetNS, func() error {
		var err error
		n, err = conntrack.FlushUnNATed(cfg.ClientRanges, natted)
		return err
	})
	if err != nil {
		p.log.Warn("could not delete connection-tracking entries that bypass SNAT", "error", err)
	}
	if n > 0 {
		p.mu.Lock()
		p.st.ctFlushed += uint64(n)
		p.mu.Unlock()
		p.log.Info("deleted connection-tracking entries of client flows that were not source-NATed",
			"event", "snat_conntrack_flushed", "entries", n)
	}
}

// Stop stops watching and removes the rules (forwarding sysctls are left as they are).
func (p *Plugin) Stop(ctx context.Context) error {
	p.stopLoop()
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	removed, err := p.rec.Remove(ctx)
	if err != nil {
		return fmt.Errorf("remove rules: %w", err)
	}
	p.mu.Lock()
	p.st.snap, p.st.snapTime = nil, time.Time{}
	p.mu.Unlock()
	p.log.Info("snat stopped", "removed", removed)
	p.publish(ctx, "removed", "stop")
	return nil
}

// Cleanup removes Sitelink's nftables tables; it needs no config, so it works after a
// crash of an earlier process too. A running plugin stops watching first.
func (p *Plugin) Cleanup(ctx context.Context) ([]string, error) {
	p.stopLoop()
	rec := p.rec
	if rec == nil {
		rec = nft.NewReconciler()
	}
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	removed, err := rec.Remove(ctx)
	if err != nil {
		return removed, fmt.Errorf("remove nftables tables: %w", err)
	}
	return removed, nil
}

func (p *Plugin) stopLoop() {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.running = false
	p.cancel, p.done, p.kick = nil, nil, nil
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// trigger asks the loop to reconcile soon.
func (p *Plugin) trigger(why string) {
	p.mu.Lock()
	kick := p.kick
	p.mu.Unlock()
	if kick == nil {
		return
	}
	select {
	case kick <- why:
	default:
	}
}

func (p *Plugin) ensureForwarding(cfg *config.Config) error {
	if !cfg.ManageForwarding {
		p.mu.Lock()
		p.st.missingIfs, p.st.fwdErr = nil, nil
		p.mu.Unlock()
		return nil
	}
	res, err := p.fwd.Enable(cfg.Interfaces(), cfg.HasFamily(true), cfg.HasFamily(false))
	for _, c := range res.Changed {
		p.log.Info("sysctl changed", "event", "sysctl_changed", "key", c.Key, "from", c.From, "to", c.To)
	}
	p.mu.Lock()
	p.st.sysctls = append(p.st.sysctls, res.Changed...)
	p.st.missingIfs = res.Missing
	p.st.fwdErr = err
	p.mu.Unlock()
	return err
}

// record keeps the outcome of an apply for Status and the metrics.
func (p *Plugin) record(res nft.Result, err error, why string) {
	now := time.Now()
	p.mu.Lock()
	p.st.lastTime = now
	p.st.lastErr = err
	p.st.reconciles++
	if err != nil {
		p.st.failures++
	} else {
		p.st.lastResult = res
		p.st.snapTime = time.Time{} // counters are stale
	}
	p.mu.Unlock()
	p.metrics.observe(res, err, now)
	if err != nil {
		p.log.Error("reconcile failed", "event", "reconcile_failed", "why", why, "error", err)
	}
}

// publish sends a retained snat event when the state changes.
func (p *Plugin) publish(ctx context.Context, state, reason string) {
	h := p.Host()
	if h == nil {
		return
	}
	p.mu.Lock()
	if p.st.published == state && state != "failed" {
		p.mu.Unlock()
		return
	}
	p.st.published = state
	rules := p.rules.RuleCount()
	p.mu.Unlock()
	if state == "removed" {
		rules = 0
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := h.Publish(pctx, sdk.Event{Type: EventSNAT, Retain: true,
		Attrs:   map[string]string{"state": state, "rules": fmt.Sprint(rules), "reason": reason},
		Message: fmt.Sprintf("snat rules %s (%s)", state, reason)})
	if err != nil {
		p.log.Debug("publish snat event", "error", err)
	}
}
