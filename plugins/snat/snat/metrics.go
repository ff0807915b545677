package snat

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sitelink/sitelink/plugins/snat/nft"
	"github.com/sitelink/sitelink/plugins/snat/ruleset"
)

// metrics are the plugin's Prometheus metrics. Rule counters are read from the kernel
// at scrape time, summed per config element (the rule's ref).
type metrics struct {
	p             *Plugin
	reconciles    *prometheus.CounterVec
	duration      prometheus.Histogram
	lastTime      prometheus.Gauge
	lastSuccess   prometheus.Gauge
	lastCheck     prometheus.Gauge
	driftRepairs  prometheus.Counter
	rulePackets   *prometheus.Desc
	ruleBytes     *prometheus.Desc
	dropPackets   *prometheus.Desc
	dropBytes     *prometheus.Desc
	rulesInKernel *prometheus.Desc
	sysctlChanged *prometheus.Desc
}

func newMetrics(p *Plugin) *metrics {
	return &metrics{
		p: p,
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sitelink_snat_reconciles_total",
			Help: "Reconciles that changed the kernel or failed, by result."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sitelink_snat_reconcile_duration_seconds",
			Help: "Duration of reconciles that changed the kernel (read, batch, verify).", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		lastTime: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sitelink_snat_last_reconcile_timestamp_seconds",
			Help: "Unix time of the last reconcile that changed the kernel or failed."}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sitelink_snat_last_reconcile_success",
			Help: "1 when the last reconcile succeeded, else 0."}),
		lastCheck: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sitelink_snat_last_check_timestamp_seconds",
			Help: "Unix time the kernel was last found to match the config."}),
		driftRepairs: prometheus.NewCounter(prometheus.CounterOpts{Name: "sitelink_snat_drift_repairs_total",
			Help: "Times the rules were re-applied after another tool changed or removed them."}),
		rulePackets: prometheus.NewDesc("sitelink_snat_rule_packets_total",
			"Packets matched by Sitelink's rules, summed per config element.", []string{"family", "chain", "ref"}, nil),
		ruleBytes: prometheus.NewDesc("sitelink_snat_rule_bytes_total",
			"Bytes matched by Sitelink's rules, summed per config element.", []string{"family", "chain", "ref"}, nil),
		dropPackets: prometheus.NewDesc("sitelink_snat_access_dropped_packets_total",
			"Packets from the client ranges dropped by the access list.", []string{"family"}, nil),
		dropBytes: prometheus.NewDesc("sitelink_snat_access_dropped_bytes_total",
			"Bytes from the client ranges dropped by the access list.", []string{"family"}, nil),
		rulesInKernel: prometheus.NewDesc("sitelink_snat_rules",
			"Rules in Sitelink's tables.", []string{"family"}, nil),
		sysctlChanged: prometheus.NewDesc("sitelink_snat_sysctls_changed",
			"Sysctls the plugin changed (forwarding) since it started.", nil, nil),
	}
}

func (m *metrics) register(reg *prometheus.Registry) error {
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

func (k kernelCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{k.m.rulePackets, k.m.ruleBytes, k.m.dropPackets, k.m.dropBytes,
		k.m.rulesInKernel, k.m.sysctlChanged} {
		ch <- d
	}
}

func (k kernelCollector) Collect(ch chan<- prometheus.Metric) {
	m := k.m
	p := m.p
	p.mu.Lock()
	changed := len(p.st.sysctls)
	p.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(m.sysctlChanged, prometheus.GaugeValue, float64(changed))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, err := p.snapshot(ctx, 0)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(m.rulePackets, err)
		return
	}
	for _, c := range aggregate(snap) {
		if c.Ref == ruleset.RefDrop && c.Chain == ruleset.ChainAccess {
			ch <- prometheus.MustNewConstMetric(m.dropPackets, prometheus.CounterValue, float64(c.Packets), c.Family)
			ch <- prometheus.MustNewConstMetric(m.dropBytes, prometheus.CounterValue, float64(c.Bytes), c.Family)
			continue
		}
		ch <- prometheus.MustNewConstMetric(m.rulePackets, prometheus.CounterValue, float64(c.Packets), c.Family, c.Chain, c.Ref)
		ch <- prometheus.MustNewConstMetric(m.ruleBytes, prometheus.CounterValue, float64(c.Bytes), c.Family, c.Chain, c.Ref)
	}
	for _, t := range snap.Tables {
		n := 0
		for _, c := range t.Chains {
			n += len(c.Rules)
		}
		ch <- prometheus.MustNewConstMetric(m.rulesInKernel, prometheus.GaugeValue, float64(n), nft.FamilyName(t.Family))
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
