package snat

import (
	"context"
	"errors"
	"strings"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/snat/nft"
)

// RuleCounter is one kernel rule's counter, as the counters action returns it.
type RuleCounter struct {
	Family  string `json:"family"`
	Chain   string `json:"chain"`
	Handle  uint64 `json:"handle"`
	Ref     string `json:"ref"`
	Rule    string `json:"rule"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// ReconcileResult is what the reconcile action returns.
type ReconcileResult struct {
	Changed    bool     `json:"changed"`
	Added      int      `json:"added"`
	Deleted    int      `json:"deleted"`
	Kept       int      `json:"kept"`
	Drift      []string `json:"drift,omitempty"`
	DurationMS float64  `json:"duration_ms"`
}

func (p *Plugin) actions() []sdk.Action {
	return []sdk.Action{
		{Name: "show", Description: "Sitelink's nftables tables as `nft list` prints them, with counters",
			Run: func(ctx context.Context, _ sdk.Args) (any, error) { return p.show(ctx) }},
		{Name: "counters", Description: "packet and byte counters of every rule (ref: only rules whose config reference starts with it)",
			Args: []sdk.Arg{{Name: "ref", Type: sdk.ArgString, Description: "config reference prefix, e.g. erp/access"}},
			Run:  func(ctx context.Context, a sdk.Args) (any, error) { return p.counters(ctx, a.String("ref")) }},
		{Name: "reconcile", Description: "compare the kernel with the config now and repair any difference", Mutating: true,
			Run: func(ctx context.Context, _ sdk.Args) (any, error) { return p.reconcileNow(ctx) }},
	}
}

func (p *Plugin) show(ctx context.Context) (string, error) {
	snap, err := p.snapshot(ctx, 0)
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	rules := p.rules
	p.mu.Unlock()
	if len(snap.Tables) == 0 {
		return "# no Sitelink tables in the kernel (standby, stopped or not configured)\n", nil
	}
	return nft.Render(snap, rules)
}

func (p *Plugin) counters(ctx context.Context, refPrefix string) ([]RuleCounter, error) {
	snap, err := p.snapshot(ctx, 0)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	rules := p.rules
	p.mu.Unlock()
	texts := map[string]string{}
	for _, t := range rules.Tables {
		for _, c := range t.Chains {
			for i := range c.Rules {
				r := &c.Rules[i]
				if tag, err := r.Tag(t.Family, c.Name); err == nil {
					texts[tag] = r.Spec()
				}
			}
		}
	}
	out := []RuleCounter{}
	for _, t := range snap.Tables {
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				if !r.HasCounter || !strings.HasPrefix(r.Ref, refPrefix) {
					continue
				}
				out = append(out, RuleCounter{Family: nft.FamilyName(t.Family), Chain: c.Name, Handle: r.Handle,
					Ref: r.Ref, Rule: texts[r.Tag], Packets: r.Packets, Bytes: r.Bytes})
			}
		}
	}
	return out, nil
}

func (p *Plugin) reconcileNow(ctx context.Context) (*ReconcileResult, error) {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	p.mu.Lock()
	cfg, rules, running := p.cfg, p.rules, p.running
	p.mu.Unlock()
	switch {
	case cfg == nil:
		return nil, errors.New("not configured")
	case !running:
		return nil, errors.New("not started (standby): the rules exist only while the plugin runs")
	}
	if err := p.ensureForwarding(cfg); err != nil {
		p.log.Warn("enabling forwarding failed", "error", err)
	}
	res, err := p.rec.Apply(ctx, rules)
	p.record(res, err, "reconcile action")
	if err != nil {
		return nil, err
	}
	if res.Changed {
		p.mu.Lock()
		p.st.driftRepairs++
		p.st.lastDrift = res.Drift
		p.mu.Unlock()
		p.metrics.driftRepairs.Inc()
	}
	return &ReconcileResult{Changed: res.Changed, Added: res.Added, Deleted: res.Deleted, Kept: res.Kept,
		Drift: res.Drift, DurationMS: float64(res.Duration.Microseconds()) / 1000}, nil
}
