package snat

import (
	"context"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// settle is how long the loop waits after an event for more to arrive, so a burst of
// changes (a `firewall-cmd --reload`) costs one reconcile.
const settle = 50 * time.Millisecond

// loop keeps the kernel as configured while the plugin runs: it re-applies when the
// nftables monitor reports a change to Sitelink's tables, when an interface appears,
// and every recheck interval. Failures are retried with exponential backoff, and so are
// repeated repairs: when another tool keeps removing the rules, the plugin puts them
// back at a decreasing rate instead of fighting it in a tight loop.
func (p *Plugin) loop(ctx context.Context, done chan struct{}, kick chan string) {
	defer close(done)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() { defer wg.Done(); p.watchRules(ctx, kick) }()
	go func() { defer wg.Done(); p.watchLinks(ctx, kick) }()

	var (
		failDelay   time.Duration // backoff after failed reconciles
		repairDelay time.Duration // backoff between repairs of foreign changes
		lastRepair  time.Time
		notBefore   time.Time // no reconcile before this (repair backoff)
		pending     string    // why a deferred reconcile is due
	)
	timer := time.NewTimer(p.recheckInterval())
	defer timer.Stop()
	reset := func(d time.Duration) {
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(d)
	}
	for {
		why := "recheck"
		select {
		case <-ctx.Done():
			return
		case why = <-kick:
			// Let a burst settle, then take what else came in.
			select {
			case <-ctx.Done():
				return
			case <-time.After(settle):
			}
			select {
			case <-kick:
			default:
			}
		case <-timer.C:
			if pending != "" {
				why = pending
			}
		}
		if wait := time.Until(notBefore); wait > 0 {
			pending = why
			reset(wait)
			continue
		}
		pending = ""
		repaired, err := p.reconcile(ctx, why)
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		if repaired {
			if now.Sub(lastRepair) < repairResetAfter {
				repairDelay = min(max(2*repairDelay, p.opts.MinBackoff), p.opts.MaxBackoff)
			} else {
				repairDelay = 0
			}
			lastRepair = now
			notBefore = now.Add(repairDelay)
			p.mu.Lock()
			p.st.repairDelay = repairDelay
			p.mu.Unlock()
		}
		next := p.recheckInterval()
		if err != nil {
			if failDelay == 0 {
				failDelay = p.opts.MinBackoff
			} else {
				failDelay = min(2*failDelay, p.opts.MaxBackoff)
			}
			next = failDelay
		} else {
			failDelay = 0
		}
		reset(next)
	}
}

// repairResetAfter: a repair this long after the previous one starts the repair backoff
// afresh.
const repairResetAfter = 30 * time.Second

func (p *Plugin) recheckInterval() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		return time.Minute
	}
	return p.cfg.RecheckInterval
}

// reconcile makes the kernel match the current config once. repaired says it had to
// change the kernel (someone else changed it).
func (p *Plugin) reconcile(ctx context.Context, why string) (repaired bool, err error) {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	p.mu.Lock()
	cfg, rules, running := p.cfg, p.rules, p.running
	p.mu.Unlock()
	if !running || cfg == nil {
		return false, nil
	}
	if err := p.ensureForwarding(cfg); err != nil {
		p.log.Warn("enabling forwarding failed", "error", err)
	}
	res, err := p.rec.Apply(ctx, rules)
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil || res.Changed {
		p.record(res, err, why)
	} else {
		p.mu.Lock()
		p.st.lastTime, p.st.lastErr = time.Now(), nil
		p.mu.Unlock()
		p.metrics.observeCheck(time.Now())
	}
	if err != nil {
		p.publish(ctx, "failed", err.Error())
		return false, err
	}
	if res.Changed {
		p.mu.Lock()
		p.st.driftRepairs++
		p.st.lastDrift = res.Drift
		p.mu.Unlock()
		p.metrics.driftRepairs.Inc()
		p.log.Warn("re-applied rules changed by someone else", "event", "snat_drift_repaired", "why", why,
			"drift", limitStrings(res.Drift, 10), "added", res.Added, "deleted", res.Deleted)
	}
	p.publish(ctx, "applied", why)
	return res.Changed, nil
}

// watchRules follows nftables changes and kicks the loop when Sitelink's tables
// changed; a broken subscription is re-made with backoff (and the kernel checked, as
// events may have been lost).
func (p *Plugin) watchRules(ctx context.Context, kick chan string) {
	delay := p.opts.MinBackoff
	for ctx.Err() == nil {
		start := time.Now()
		err := p.rec.Watch(ctx, nil, func(what string) { send(kick, what) })
		if ctx.Err() != nil {
			return
		}
		p.log.Warn("nftables monitor ended; checking the rules and subscribing again", "error", err)
		send(kick, "nftables monitor restarted")
		if time.Since(start) > time.Minute {
			delay = p.opts.MinBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, p.opts.MaxBackoff)
	}
}

// watchLinks kicks the loop when an interface the config names appears or changes, so
// forwarding is enabled on it at once (e.g. wg0 created after the plugin started).
func (p *Plugin) watchLinks(ctx context.Context, kick chan string) {
	delay := p.opts.MinBackoff
	for ctx.Err() == nil {
		err := p.subscribeLinks(ctx, kick)
		if ctx.Err() != nil {
			return
		}
		p.log.Warn("link monitor ended; subscribing again", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, p.opts.MaxBackoff)
	}
}

func (p *Plugin) subscribeLinks(ctx context.Context, kick chan string) error {
	updates := make(chan netlink.LinkUpdate, 64)
	stop := make(chan struct{})
	defer close(stop)
	errc := make(chan error, 1)
	opts := netlink.LinkSubscribeOptions{ErrorCallback: func(err error) {
		select {
		case errc <- err:
		default:
		}
	}}
	if p.opts.NetNS != "" {
		h, err := netns.GetFromPath(p.opts.NetNS)
		if err != nil {
			return err
		}
		defer h.Close()
		opts.Namespace = &h
	}
	if err := netlink.LinkSubscribeWithOptions(updates, stop, opts); err != nil {
		return err
	}
	// An interface that appeared after Start looked for it and before this subscription
	// existed sends no event we can see: look once more now (a tunnel plugin activated
	// at the same moment as this one creates its interface in exactly that window, and
	// forwarding on it would otherwise wait for the recheck interval).
	send(kick, "link monitor subscribed")
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case u, ok := <-updates:
			if !ok {
				return nil
			}
			if p.wantsInterface(u.Attrs().Name) {
				send(kick, "interface "+u.Attrs().Name+" changed")
			}
		}
	}
}

func (p *Plugin) wantsInterface(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil || !p.cfg.ManageForwarding {
		return false
	}
	for _, n := range p.cfg.Interfaces() {
		if n == name {
			return true
		}
	}
	return false
}

func send(kick chan string, why string) {
	select {
	case kick <- why:
	default:
	}
}

func limitStrings(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
