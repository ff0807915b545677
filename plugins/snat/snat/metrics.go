package snat

import (
	"context"
	"errors"
	"time"

	sdkmetrics "github.com/sitelink/sitelink/plugins/sdk/metrics"
	"github.com/sitelink/sitelink/plugins/snat/nft"
	"github.com/sitelink/sitelink/plugins/snat/ruleset"
)

// metrics are the plugin's metrics. Rule counters are read from the kernel
// at scrape time, summed per config element (the rule's ref).
type metrics struct {
	p             *Plugin
	reconciles    *sdkmetrics.CounterVec
	duration      *sdkmetrics.Histogram
	lastTime      *sdkmetrics.Gauge
	lastSuccess   *sdkmetrics.Gauge
	lastCheck     *sdkmetrics.Gauge
	driftRepairs  *sdkmetrics.Counter
	rulePackets   *sdkmetrics.Desc
	ruleBytes     *sdkmetrics.Desc
	dropPackets   *sdkmetrics.Desc
	dropBytes     *sdkmetrics.Desc
	rulesInKernel *sdkmetrics.Desc
	sysctlChanged *sdkmetrics.Desc
}

func newMetrics(p *Plugin) *metrics {
	return &metrics{
		p: p,
		reconciles: sdkmetrics.NewCounterVec("sitelink_snat_reconciles_total",
			"Reconciles that changed the kernel or failed, by result.", "result"),
		duration: sdkmetrics.NewHistogram("sitelink_snat_reconcile_duration_seconds",
			"Duration of reconciles that changed the kernel (read, batch, verify).", sdkmetrics.ExponentialBuckets(0.001, 2, 14)),
		lastTime: sdkmetrics.NewGauge("sitelink_snat_last_reconcile_timestamp_seconds",
			"Unix time of the last reconcile that changed the kernel or failed."),
		lastSuccess: sdkmetrics.NewGauge("sitelink_snat_last_reconcile_success",
			"1 when the last reconcile succeeded, else 0."),
		lastCheck: sdkmetrics.NewGauge("sitelink_snat_last_check_timestamp_seconds",
			"Unix time the kernel was last found to match the config."),
		driftRepairs: sdkmetrics.NewCounter("sitelink_snat_drift_repairs_total",
			"Times the rules were re-applied after another tool changed or removed them."),
		rulePackets: sdkmetrics.NewDesc("sitelink_snat_rule_packets_total",
			"Packets matched by Sitelink's rules, summed per config element.", sdkmetrics.CounterType, "family", "chain", "ref"),
		ruleBytes: sdkmetrics.NewDesc("sitelink_snat_rule_bytes_total",
			"Bytes matched by Sitelink's rules, summed per config element.", sdkmetrics.CounterType, "family", "chain", "ref"),
		dropPackets: sdkmetrics.NewDesc("sitelink_snat_access_dropped_packets_total",
			"Packets from the client ranges dropped by the access list.", sdkmetrics.CounterType, "family"),
		dropBytes: sdkmetrics.NewDesc("sitelink_snat_access_dropped_bytes_total",
			"Bytes from the client ranges dropped by the access list.", sdkmetrics.CounterType, "family"),
		rulesInKernel: sdkmetrics.NewDesc("sitelink_snat_rules",
			"Rules in Sitelink's tables.", sdkmetrics.GaugeType, "family"),
		sysctlChanged: sdkmetrics.NewDesc("sitelink_snat_sysctls_changed",
			"Sysctls the plugin changed (forwarding) since it started.", sdkmetrics.GaugeType),
	}
}

func (m *metrics) register(reg *sdkmetrics.Registry) error {
	return errors.Join(reg.Register(m.reconciles), reg.Register(m.duration), reg.Register(m.lastTime),
		reg.Register(m.lastSuccess), reg.Register(m.lastCheck), reg.Register(m.driftRepairs),
		reg.Register(kernelCollector{m}))
}

func (m *metrics) observe(res nft.Result, err error, now time.Time) {
	m.lastTime.Set(float64(now.UnixNano()) / 1e9)
	if err != nil {
		m.reconciles.WithLabelValues("error").Inc()
		m.lastSuccess.Set(0)
		return
	}
	m.reconciles.WithLabelValues("ok").Inc()
	m.lastSuccess.Set(1)
	m.lastCheck.Set(float64(now.UnixNano()) / 1e9)
	if res.Changed {
		m.duration.Observe(res.Duration.Seconds())
	}
}

func (m *metrics) observeCheck(now time.Time) {
	m.lastSuccess.Set(1)
	m.lastCheck.Set(float64(now.UnixNano()) / 1e9)
}

// kernelCollector reads the rule counters when scraped.
type kernelCollector struct{ m *metrics }

func (k kernelCollector) Collect(sc *sdkmetrics.Scrape) {
	m := k.m
	p := m.p
	p.mu.Lock()
	changed := len(p.st.sysctls)
	p.mu.Unlock()
	sc.Add(m.sysctlChanged, float64(changed))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, err := p.snapshot(ctx, 0)
	if err != nil {
		sc.Fail(err)
		return
	}
	for _, c := range aggregate(snap) {
		if c.Ref == ruleset.RefDrop && c.Chain == ruleset.ChainAccess {
			sc.Add(m.dropPackets, float64(c.Packets), c.Family)
			sc.Add(m.dropBytes, float64(c.Bytes), c.Family)
			continue
		}
		sc.Add(m.rulePackets, float64(c.Packets), c.Family, c.Chain, c.Ref)
		sc.Add(m.ruleBytes, float64(c.Bytes), c.Family, c.Chain, c.Ref)
	}
	for _, t := range snap.Tables {
		n := 0
		for _, c := range t.Chains {
			n += len(c.Rules)
		}
		sc.Add(m.rulesInKernel, float64(n), nft.FamilyName(t.Family))
	}
}

// RefCounter is the sum of the counters of the rules one config element made.
type RefCounter struct {
	Family  string `json:"family"`
	Chain   string `json:"chain"`
	Ref     string `json:"ref"`
	Rules   int    `json:"rules"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// aggregate sums counted rules per (family, chain, ref), in kernel order.
func aggregate(s *nft.Snapshot) []RefCounter {
	var out []RefCounter
	index := map[[3]string]int{}
	for _, t := range s.Tables {
		fam := nft.FamilyName(t.Family)
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				if !r.HasCounter {
					continue
				}
				ref := r.Ref
				if ref == "" {
					ref = "(foreign)"
				}
				key := [3]string{fam, c.Name, ref}
				i, ok := index[key]
				if !ok {
					i = len(out)
					index[key] = i
					out = append(out, RefCounter{Family: fam, Chain: c.Name, Ref: ref})
				}
				out[i].Rules++
				out[i].Packets += r.Packets
				out[i].Bytes += r.Bytes
			}
		}
	}
	return out
}
