package metrics

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parse reads the registry's text as sitelinkd does (expfmt's text parser).
func parse(t *testing.T, r *Registry) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatalf("WriteText: %v", err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, buf.String())
	}
	return fams, buf.String()
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func TestWriteTextParses(t *testing.T) {
	r := NewRegistry()
	c := NewCounter("t_requests_total", "Requests.")
	g := NewGauge("t_active", "Open now.")
	cv := NewCounterVec("t_bytes_total", "Bytes, by direction.", "peer", "direction")
	gv := NewGaugeVec("t_up", `Up: 1 "yes" \ 0 no
second line.`, "server")
	h := NewHistogram("t_duration_seconds", "Durations.", ExponentialBuckets(0.001, 2, 3))
	r.MustRegister(c, g, cv, gv, h, NewGaugeFunc("t_func", "From a function.", func() float64 { return 42 }))
	c.Inc()
	c.Add(2)
	c.Add(-5) // ignored
	g.Set(3)
	g.Dec()
	cv.WithLabelValues("a", "in").Add(10)
	cv.WithLabelValues("a", "out").Add(20)
	gv.WithLabelValues("x\"y\\z\nw").Set(1)
	h.Observe(0.0005)
	h.Observe(0.003)
	h.Observe(10)

	fams, text := parse(t, r)
	if !strings.Contains(text, `t_bytes_total{direction="out",peer="a"} 20`+"\n") {
		t.Errorf("label pairs not sorted by name:\n%s", text)
	}
	check := func(name string, typ dto.MetricType, n int) []*dto.Metric {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("no family %s in\n%s", name, text)
		}
		if f.GetType() != typ || len(f.GetMetric()) != n {
			t.Fatalf("%s: type %v with %d series, want %v with %d\n%s", name, f.GetType(), len(f.GetMetric()), typ, n, text)
		}
		return f.GetMetric()
	}
	if v := check("t_requests_total", dto.MetricType_COUNTER, 1)[0].GetCounter().GetValue(); v != 3 {
		t.Errorf("counter = %v, want 3", v)
	}
	if v := check("t_active", dto.MetricType_GAUGE, 1)[0].GetGauge().GetValue(); v != 2 {
		t.Errorf("gauge = %v, want 2", v)
	}
	for _, m := range check("t_bytes_total", dto.MetricType_COUNTER, 2) {
		l := labelsOf(m)
		want := map[string]float64{"in": 10, "out": 20}[l["direction"]]
		if l["peer"] != "a" || m.GetCounter().GetValue() != want {
			t.Errorf("t_bytes_total%v = %v", l, m.GetCounter().GetValue())
		}
	}
	if l := labelsOf(check("t_up", dto.MetricType_GAUGE, 1)[0]); l["server"] != "x\"y\\z\nw" {
		t.Errorf("escaped label read back as %q", l["server"])
	}
	if help := fams["t_up"].GetHelp(); help != "Up: 1 \"yes\" \\ 0 no\nsecond line." {
		t.Errorf("help read back as %q", help)
	}
	if v := check("t_func", dto.MetricType_GAUGE, 1)[0].GetGauge().GetValue(); v != 42 {
		t.Errorf("gauge func = %v", v)
	}
	hist := check("t_duration_seconds", dto.MetricType_HISTOGRAM, 1)[0].GetHistogram()
	if hist.GetSampleCount() != 3 || hist.GetSampleSum() != 10.0035 {
		t.Errorf("histogram count %d sum %v", hist.GetSampleCount(), hist.GetSampleSum())
	}
	wantCum := map[float64]uint64{0.001: 1, 0.002: 1, 0.004: 2, math.Inf(+1): 3}
	if len(hist.GetBucket()) != 4 {
		t.Fatalf("histogram buckets %v", hist.GetBucket())
	}
	for _, b := range hist.GetBucket() {
		if b.GetCumulativeCount() != wantCum[b.GetUpperBound()] {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), wantCum[b.GetUpperBound()])
		}
	}
}

func TestVecDeleteAndEmptyFamilies(t *testing.T) {
	r := NewRegistry()
	v := NewGaugeVec("t_state", "State.", "instance", "state")
	empty := NewCounterVec("t_never_total", "No series yet.", "x")
	r.MustRegister(v, empty)
	v.WithLabelValues("a", "master").Set(1)
	v.WithLabelValues("a", "backup").Set(0)
	v.WithLabelValues("b", "master").Set(1)
	if n := v.DeletePartialMatch(Labels{"instance": "a"}); n != 2 {
		t.Fatalf("DeletePartialMatch removed %d, want 2", n)
	}
	fams, text := parse(t, r)
	if _, ok := fams["t_never_total"]; ok {
		t.Errorf("a family without series is written:\n%s", text)
	}
	if ms := fams["t_state"].GetMetric(); len(ms) != 1 || labelsOf(ms[0])["instance"] != "b" {
		t.Errorf("after delete:\n%s", text)
	}
}

func TestCollectorAndFailure(t *testing.T) {
	r := NewRegistry()
	d := NewDesc("t_rule_packets_total", "Packets per rule.", CounterType, "family", "ref")
	b := NewDesc("t_rule_bytes_total", "Bytes per rule.", CounterType, "family", "ref")
	fail := false
	r.MustRegister(CollectorFunc(func(s *Scrape) {
		// Families interleaved, as a collector walking rules emits them.
		s.Add(d, 1, "ip", "r2")
		s.Add(b, 100, "ip", "r2")
		s.Add(d, 2, "ip", "r1")
		s.Add(b, 200, "ip", "r1")
		if fail {
			s.Fail(errors.New("kernel unreachable"))
		}
	}))
	fams, text := parse(t, r)
	if len(fams["t_rule_packets_total"].GetMetric()) != 2 || len(fams["t_rule_bytes_total"].GetMetric()) != 2 {
		t.Fatalf("interleaved families:\n%s", text)
	}
	if strings.Index(text, `ref="r1"`) > strings.Index(text, `ref="r2"`) {
		t.Errorf("series not sorted by label values:\n%s", text)
	}
	// Label pairs by name, as client_golang writes them (tests grep for these lines).
	if !strings.Contains(text, `t_rule_bytes_total{family="ip",ref="r1"} 200`+"\n") {
		t.Errorf("series line not as client_golang writes it:\n%s", text)
	}
	fail = true
	if err := r.WriteText(new(bytes.Buffer)); err == nil || !strings.Contains(err.Error(), "kernel unreachable") {
		t.Errorf("WriteText error = %v, want the collector's failure", err)
	}
	if err := r.Register(NewCounter("x_total", "")); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(NewCounter("x_total", "")); err == nil {
		t.Error("a second family of the same name was registered")
	}
}

func TestProcessCollector(t *testing.T) {
	r := NewRegistry()
	r.MustRegister(NewProcessCollector())
	fams, text := parse(t, r)
	for _, name := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
		"process_open_fds", "process_max_fds", "process_start_time_seconds", "process_virtual_memory_max_bytes"} {
		if fams[name] == nil {
			t.Errorf("no %s in\n%s", name, text)
		}
	}
	if rss := fams["process_resident_memory_bytes"].GetMetric()[0].GetGauge().GetValue(); rss < 1<<20 {
		t.Errorf("process_resident_memory_bytes = %v", rss)
	}
}

// TestSameTextAsClientGolang writes the same metrics with client_golang, which plugins
// used before, and compares the text byte for byte: dashboards and tests see no change.
func TestSameTextAsClientGolang(t *testing.T) {
	r := NewRegistry()
	c := NewCounterVec("t_conn_total", "Connections, by listener.", "listener", "reason")
	g := NewGauge("t_active", "Open now.")
	h := NewHistogram("t_seconds", "Durations.", ExponentialBuckets(0.001, 2, 4))
	d := NewDesc("t_rules", `Rules "in" the \ kernel.`, GaugeType, "family")
	r.MustRegister(c, g, h, CollectorFunc(func(s *Scrape) { s.Add(d, 7, "ip6"); s.Add(d, 3, "ip") }))

	reg := prometheus.NewRegistry()
	pc := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "t_conn_total", Help: "Connections, by listener."}, []string{"listener", "reason"})
	pg := prometheus.NewGauge(prometheus.GaugeOpts{Name: "t_active", Help: "Open now."})
	ph := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "t_seconds", Help: "Durations.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 4)})
	pd := prometheus.NewDesc("t_rules", `Rules "in" the \ kernel.`, []string{"family"}, nil)
	reg.MustRegister(pc, pg, ph, constCollector{pd})

	for _, lv := range [][]string{{"b", "x"}, {"a", "y"}, {"a", "x"}} {
		c.WithLabelValues(lv...).Add(3)
		pc.WithLabelValues(lv...).Add(3)
	}
	g.Set(1.5e7)
	pg.Set(1.5e7)
	for _, v := range []float64{0.0001, 0.003, 0.0035, 1} {
		h.Observe(v)
		ph.Observe(v)
	}

	var got, want bytes.Buffer
	if err := r.WriteText(&got); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	enc := expfmt.NewEncoder(&want, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	if got.String() != want.String() {
		t.Errorf("text differs from client_golang's\ngot:\n%s\nwant:\n%s", got.String(), want.String())
	}
}

type constCollector struct{ d *prometheus.Desc }

func (c constCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.d }
func (c constCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.d, prometheus.GaugeValue, 7, "ip6")
	ch <- prometheus.MustNewConstMetric(c.d, prometheus.GaugeValue, 3, "ip")
}
