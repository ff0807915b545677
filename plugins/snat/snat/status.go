package snat

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/snat/nft"
	"github.com/sitelink/sitelink/plugins/snat/ruleset"
	"github.com/sitelink/sitelink/plugins/snat/sysctl"
)

// statusSnapshotAge is how old the counters in Status may be: Status must answer fast,
// so it reads the kernel at most this often.
const statusSnapshotAge = 2 * time.Second

// snapshot reads the kernel's rules and counters, or returns the cached read when it is
// younger than maxAge.
func (p *Plugin) snapshot(ctx context.Context, maxAge time.Duration) (*nft.Snapshot, error) {
	if p.rec == nil {
		return nil, errors.New("plugin not initialised")
	}
	p.mu.Lock()
	snap, at := p.st.snap, p.st.snapTime
	p.mu.Unlock()
	if snap != nil && maxAge > 0 && time.Since(at) < maxAge {
		return snap, nil
	}
	snap, err := p.rec.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.st.snap, p.st.snapTime = snap, time.Now()
	p.mu.Unlock()
	return snap, nil
}

// Details is the plugin-specific part of Status.
type Details struct {
	Running bool `json:"running"`
	// Rules is the number of rules the config expands to.
	Rules int `json:"rules"`
	// LastReconcile is when the kernel was last checked or changed, and the outcome.
	LastReconcile  time.Time `json:"last_reconcile,omitzero"`
	LastResult     string    `json:"last_result,omitempty"`
	LastError      string    `json:"last_error,omitempty"`
	LastAdded      int       `json:"last_added"`
	LastDeleted    int       `json:"last_deleted"`
	LastKept       int       `json:"last_kept"`
	LastDurationMS float64   `json:"last_duration_ms"`
	DriftRepairs   uint64    `json:"drift_repairs"`
	// RepairBackoffMS is how long the plugin now waits before it repairs another
	// foreign change: it doubles while another tool keeps removing the rules.
	RepairBackoffMS   float64         `json:"repair_backoff_ms"`
	LastDrift         []string        `json:"last_drift,omitempty"`
	SysctlsChanged    []sysctl.Change `json:"sysctls_changed,omitempty"`
	MissingInterfaces []string        `json:"missing_interfaces,omitempty"`
	// Counters are per config element (rules summed).
	Counters []RefCounter `json:"counters,omitempty"`
	// Dropped are the access list's drops per family.
	Dropped map[string]RefCounter `json:"dropped,omitempty"`
}

// Status reports health, the last reconcile and the counters.
func (p *Plugin) Status(ctx context.Context) sdk.Status {
	p.mu.Lock()
	st := p.st
	running, cfg := p.running, p.cfg
	rules := p.rules.RuleCount()
	p.mu.Unlock()
	d := Details{Running: running, Rules: rules, LastReconcile: st.lastTime, DriftRepairs: st.driftRepairs,
		RepairBackoffMS: float64(st.repairDelay.Microseconds()) / 1000,
		LastDrift:       st.lastDrift, SysctlsChanged: st.sysctls, MissingInterfaces: st.missingIfs,
		LastAdded: st.lastResult.Added, LastDeleted: st.lastResult.Deleted, LastKept: st.lastResult.Kept,
		LastDurationMS: float64(st.lastResult.Duration.Microseconds()) / 1000}
	s := sdk.Status{Health: sdk.HealthOK, Details: &d, Counters: map[string]uint64{
		"reconciles": st.reconciles, "reconcile_failures": st.failures, "drift_repairs": st.driftRepairs,
		"sysctls_changed": uint64(len(st.sysctls)), "conntrack_flushed": st.ctFlushed,
	}}
	switch {
	case st.lastTime.IsZero():
	case st.lastErr != nil:
		d.LastResult, d.LastError = "error", st.lastErr.Error()
	default:
		d.LastResult = "ok"
	}
	if running {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		snap, err := p.snapshot(sctx, statusSnapshotAge)
		cancel()
		if err != nil {
			s.Reasons = append(s.Reasons, "cannot read counters: "+err.Error())
		} else {
			d.Dropped = map[string]RefCounter{}
			for _, c := range aggregate(snap) {
				if c.Ref == ruleset.RefDrop && c.Chain == ruleset.ChainAccess {
					d.Dropped[c.Family] = c
					s.Counters["access_dropped_packets"] += c.Packets
					s.Counters["access_dropped_bytes"] += c.Bytes
					continue
				}
				d.Counters = append(d.Counters, c)
			}
		}
	}
	switch {
	case cfg == nil:
		s.Health, s.Summary = sdk.HealthUnknown, "not configured"
	case !running:
		s.Summary = fmt.Sprintf("standby: %d rules configured, none in the kernel", rules)
	case st.lastErr != nil:
		s.Health = sdk.HealthDegraded
		s.Reasons = append(s.Reasons, "last reconcile failed: "+st.lastErr.Error())
		s.Summary = "rules not applied: " + st.lastErr.Error()
	default:
		s.Summary = fmt.Sprintf("%d rules applied, %d drops", rules, s.Counters["access_dropped_packets"])
	}
	if running && st.fwdErr != nil {
		s.Health = sdk.HealthDegraded
		s.Reasons = append(s.Reasons, "forwarding: "+st.fwdErr.Error())
	}
	if running && len(st.missingIfs) > 0 {
		s.Health = sdk.HealthDegraded
		s.Reasons = append(s.Reasons, fmt.Sprintf("interfaces %v do not exist: forwarding not enabled on them", st.missingIfs))
	}
	return s
}
