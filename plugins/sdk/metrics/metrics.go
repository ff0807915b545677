// Package metrics is what a plugin counts and measures: counters, gauges and histograms,
// with labels, collectors that read their values at scrape time, and the Prometheus text
// exposition of all of them that sitelinkd merges into its /metrics with a plugin label.
//
// It is small on purpose. Every plugin is its own process and maps most of its binary,
// so each package it links costs every plugin resident memory; the Prometheus client
// (client_golang, with procfs, expfmt and the protobuf model) was about 0.45 MB of each
// plugin binary. The daemon keeps client_golang and parses what plugins write.
//
// The names follow client_golang's, so that a plugin reads the same:
//
//	reqs := metrics.NewCounterVec("myplugin_requests_total", "Requests, by result.", "result")
//	host.Metrics().MustRegister(reqs)
//	reqs.WithLabelValues("ok").Inc()
package metrics

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Type is a metric family's Prometheus type.
type Type string

// The types this package writes.
const (
	CounterType   Type = "counter"
	GaugeType     Type = "gauge"
	HistogramType Type = "histogram"
)

// Labels are label names and values, for DeletePartialMatch.
type Labels map[string]string

// Desc describes a metric family: its name, help text, type and label names.
type Desc struct {
	name, help string
	typ        Type
	labels     []string
}

// NewDesc describes a family of the given type, for a Collector to Add samples of.
func NewDesc(name, help string, typ Type, labelNames ...string) *Desc {
	return &Desc{name: name, help: help, typ: typ, labels: labelNames}
}

// Name is the family's name.
func (d *Desc) Name() string { return d.name }

// Collector adds samples to a scrape. Registered on a Registry, it is called at every
// scrape, possibly from several goroutines at once.
type Collector interface {
	Collect(s *Scrape)
}

// CollectorFunc is a function used as a Collector.
type CollectorFunc func(s *Scrape)

// Collect implements Collector.
func (f CollectorFunc) Collect(s *Scrape) { f(s) }

// value is a float64 updated atomically.
type value struct{ bits atomic.Uint64 }

func (v *value) get() float64  { return math.Float64frombits(v.bits.Load()) }
func (v *value) set(f float64) { v.bits.Store(math.Float64bits(f)) }
func (v *value) add(f float64) {
	for {
		old := v.bits.Load()
		if v.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+f)) {
			return
		}
	}
}

// Counter is a value that only goes up.
type Counter struct {
	desc *Desc
	lvs  []string
	v    value
}

// NewCounter is an unlabelled counter.
func NewCounter(name, help string) *Counter {
	return &Counter{desc: NewDesc(name, help, CounterType)}
}

// Inc adds 1.
func (c *Counter) Inc() { c.v.add(1) }

// Add adds v; a negative v is ignored (a counter does not go down).
func (c *Counter) Add(v float64) {
	if v > 0 {
		c.v.add(v)
	}
}

// Value is the counter's value.
func (c *Counter) Value() float64 { return c.v.get() }

// Collect implements Collector.
func (c *Counter) Collect(s *Scrape) { s.Add(c.desc, c.v.get(), c.lvs...) }

// Gauge is a value that goes up and down.
type Gauge struct {
	desc *Desc
	lvs  []string
	v    value
}

// NewGauge is an unlabelled gauge.
func NewGauge(name, help string) *Gauge {
	return &Gauge{desc: NewDesc(name, help, GaugeType)}
}

// Set sets the value.
func (g *Gauge) Set(v float64) { g.v.set(v) }

// Inc adds 1.
func (g *Gauge) Inc() { g.v.add(1) }

// Dec subtracts 1.
func (g *Gauge) Dec() { g.v.add(-1) }

// Add adds v (which may be negative).
func (g *Gauge) Add(v float64) { g.v.add(v) }

// Value is the gauge's value.
func (g *Gauge) Value() float64 { return g.v.get() }

// Collect implements Collector.
func (g *Gauge) Collect(s *Scrape) { s.Add(g.desc, g.v.get(), g.lvs...) }

// NewGaugeFunc is a gauge whose value fn returns at each scrape.
func NewGaugeFunc(name, help string, fn func() float64) Collector {
	d := NewDesc(name, help, GaugeType)
	return CollectorFunc(func(s *Scrape) { s.Add(d, fn()) })
}

// series is one labelled series of a vec.
type series interface {
	Collector
	labelValues() []string
}

func (c *Counter) labelValues() []string { return c.lvs }
func (g *Gauge) labelValues() []string   { return g.lvs }

// vec is a family of series keyed by their label values.
type vec[T series] struct {
	desc  *Desc
	newFn func(lvs []string) T
	mu    sync.RWMutex
	m     map[string]T
}

func (v *vec[T]) with(lvs []string) T {
	if len(lvs) != len(v.desc.labels) {
		panic(fmt.Sprintf("metrics: %s has %d labels, got %d values", v.desc.name, len(v.desc.labels), len(lvs)))
	}
	key := strings.Join(lvs, "\xff")
	v.mu.RLock()
	s, ok := v.m[key]
	v.mu.RUnlock()
	if ok {
		return s
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.m[key]; ok {
		return s
	}
	if v.m == nil {
		v.m = make(map[string]T)
	}
	s = v.newFn(slices.Clone(lvs))
	v.m[key] = s
	return s
}

// DeletePartialMatch removes the series whose labels include all of labels and returns
// how many it removed.
func (v *vec[T]) DeletePartialMatch(labels Labels) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for key, s := range v.m {
		lvs := s.labelValues()
		match := true
		for name, want := range labels {
			i := slices.Index(v.desc.labels, name)
			if i < 0 || lvs[i] != want {
				match = false
				break
			}
		}
		if match {
			delete(v.m, key)
			n++
		}
	}
	return n
}

func (v *vec[T]) Collect(s *Scrape) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, c := range v.m {
		c.Collect(s)
	}
}

// CounterVec is a family of counters with labels.
type CounterVec struct{ vec[*Counter] }

// NewCounterVec is a family of counters with the given label names.
func NewCounterVec(name, help string, labelNames ...string) *CounterVec {
	d := NewDesc(name, help, CounterType, labelNames...)
	return &CounterVec{vec[*Counter]{desc: d, newFn: func(lvs []string) *Counter { return &Counter{desc: d, lvs: lvs} }}}
}

// WithLabelValues is the series with these label values (in the order of the label
// names), created at zero the first time.
func (v *CounterVec) WithLabelValues(lvs ...string) *Counter { return v.with(lvs) }

// GaugeVec is a family of gauges with labels.
type GaugeVec struct{ vec[*Gauge] }

// NewGaugeVec is a family of gauges with the given label names.
func NewGaugeVec(name, help string, labelNames ...string) *GaugeVec {
	d := NewDesc(name, help, GaugeType, labelNames...)
	return &GaugeVec{vec[*Gauge]{desc: d, newFn: func(lvs []string) *Gauge { return &Gauge{desc: d, lvs: lvs} }}}
}

// WithLabelValues is the series with these label values, created at zero the first time.
func (v *GaugeVec) WithLabelValues(lvs ...string) *Gauge { return v.with(lvs) }

// Histogram counts observations in buckets (cumulative upper bounds, as Prometheus).
type Histogram struct {
	desc    *Desc
	bounds  []float64
	mu      sync.Mutex
	buckets []uint64 // per bound, not cumulative
	count   uint64
	sum     float64
}

// NewHistogram is an unlabelled histogram with these bucket upper bounds (sorted; +Inf
// is implied).
func NewHistogram(name, help string, buckets []float64) *Histogram {
	b := slices.Clone(buckets)
	slices.Sort(b)
	if n := len(b); n > 0 && math.IsInf(b[n-1], +1) {
		b = b[:n-1]
	}
	return &Histogram{desc: NewDesc(name, help, HistogramType), bounds: b, buckets: make([]uint64, len(b))}
}

// Observe adds one observation.
func (h *Histogram) Observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v)
	h.mu.Lock()
	if i < len(h.buckets) {
		h.buckets[i]++
	}
	h.count++
	h.sum += v
	h.mu.Unlock()
}

// Collect implements Collector.
func (h *Histogram) Collect(s *Scrape) {
	h.mu.Lock()
	buckets, count, sum := slices.Clone(h.buckets), h.count, h.sum
	h.mu.Unlock()
	var cum uint64
	for i, b := range h.bounds {
		cum += buckets[i]
		s.add(h.desc, "_bucket", nil, []string{"le"}, []string{formatFloat(b)}, float64(cum))
	}
	s.add(h.desc, "_bucket", nil, []string{"le"}, []string{"+Inf"}, float64(count))
	s.add(h.desc, "_sum", nil, nil, nil, sum)
	s.add(h.desc, "_count", nil, nil, nil, float64(count))
}

// ExponentialBuckets is count bounds: start, start×factor, start×factor², …
func ExponentialBuckets(start, factor float64, count int) []float64 {
	b := make([]float64, count)
	for i := range b {
		b[i] = start
		start *= factor
	}
	return b
}
