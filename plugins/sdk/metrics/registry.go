package metrics

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Registry holds the collectors whose samples a scrape writes.
type Registry struct {
	mu    sync.Mutex
	cs    []Collector
	names map[string]bool
}

// NewRegistry is an empty registry.
func NewRegistry() *Registry { return &Registry{names: make(map[string]bool)} }

// described is a collector of one known family (Counter, Gauge, the vecs, Histogram).
type described interface{ family() *Desc }

func (c *Counter) family() *Desc   { return c.desc }
func (g *Gauge) family() *Desc     { return g.desc }
func (v *vec[T]) family() *Desc    { return v.desc }
func (h *Histogram) family() *Desc { return h.desc }

// Register adds collectors. A second collector of a family already registered (same
// name) is refused.
func (r *Registry) Register(cs ...Collector) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		if c == nil {
			return errors.New("metrics: register nil collector")
		}
		if d, ok := c.(described); ok {
			if r.names[d.family().name] {
				return fmt.Errorf("metrics: %s already registered", d.family().name)
			}
			r.names[d.family().name] = true
		}
		r.cs = append(r.cs, c)
	}
	return nil
}

// MustRegister is Register that panics on error (for collectors made at start-up).
func (r *Registry) MustRegister(cs ...Collector) {
	if err := r.Register(cs...); err != nil {
		panic(err)
	}
}

// WriteText collects every registered collector and writes the samples in the Prometheus
// text exposition format (version 0.0.4) as client_golang writes it: families sorted
// by name, label pairs by name, series by label values, families without series left
// out. A collector's failure (Scrape.Fail) is
// returned after the rest is written.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	cs := slices.Clone(r.cs)
	r.mu.Unlock()
	s := &Scrape{fams: make(map[string]*family)}
	for _, c := range cs {
		c.Collect(s)
	}
	return errors.Join(s.write(w), s.err)
}

// Scrape gathers the samples of one WriteText; collectors add to it.
type Scrape struct {
	mu   sync.Mutex
	fams map[string]*family
	err  error
}

type family struct {
	desc    *Desc
	samples []sample
}

type sample struct {
	suffix string // _bucket, _sum, _count of a histogram
	series string // the label values that identify the series (sort key)
	labels string // {name="value",…} or empty
	value  float64
}

// Add adds a sample of d's family with these label values (in the order of d's label
// names).
func (s *Scrape) Add(d *Desc, v float64, labelValues ...string) {
	if len(labelValues) != len(d.labels) {
		s.Fail(fmt.Errorf("metrics: %s has %d labels, got %d values", d.name, len(d.labels), len(labelValues)))
		return
	}
	s.add(d, "", labelValues, nil, nil, v)
}

// Fail records that a collector could not collect (WriteText returns the error).
func (s *Scrape) Fail(err error) {
	s.mu.Lock()
	s.err = errors.Join(s.err, err)
	s.mu.Unlock()
}

// add appends a sample with the family's label values lvs; extraNames/extraValues are
// labels beyond the family's (a histogram's le).
func (s *Scrape) add(d *Desc, suffix string, lvs, extraNames, extraValues []string, v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.fams[d.name]
	if !ok {
		f = &family{desc: d}
		s.fams[d.name] = f
	} else if f.desc.typ != d.typ {
		s.err = errors.Join(s.err, fmt.Errorf("metrics: %s collected as %s and %s", d.name, f.desc.typ, d.typ))
		return
	}
	names, values := sortedLabels(d.labels, lvs)
	f.samples = append(f.samples, sample{suffix: suffix, series: strings.Join(values, "\xff"),
		labels: formatLabels(names, values, extraNames, extraValues), value: v})
}

func (s *Scrape) write(w io.Writer) error {
	names := make([]string, 0, len(s.fams))
	for n := range s.fams {
		names = append(names, n)
	}
	slices.Sort(names)
	bw := bufio.NewWriter(w)
	for _, n := range names {
		f := s.fams[n]
		if len(f.samples) == 0 {
			continue
		}
		// Stable: a histogram's samples keep their order within the series.
		slices.SortStableFunc(f.samples, func(a, b sample) int { return cmp.Compare(a.series, b.series) })
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", n, escapeHelp(f.desc.help), n, f.desc.typ)
		for _, sm := range f.samples {
			bw.WriteString(n)
			bw.WriteString(sm.suffix)
			bw.WriteString(sm.labels)
			bw.WriteByte(' ')
			bw.WriteString(formatFloat(sm.value))
			bw.WriteByte('\n')
		}
	}
	return bw.Flush()
}

// sortedLabels orders label pairs by name, as client_golang writes them (and sorts
// series by their values in that order).
func sortedLabels(names, values []string) ([]string, []string) {
	if slices.IsSorted(names) {
		return names, values
	}
	idx := make([]int, len(names))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(names[a], names[b]) })
	n, v := make([]string, len(idx)), make([]string, len(idx))
	for i, j := range idx {
		n[i], v[i] = names[j], values[j]
	}
	return n, v
}

// formatLabels writes {n1="v1",…} for the family's labels followed by the extra ones.
func formatLabels(names, values, extraNames, extraValues []string) string {
	if len(names)+len(extraNames) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	sep := ""
	write := func(ns, vs []string) {
		for i, n := range ns {
			b.WriteString(sep)
			b.WriteString(n)
			b.WriteString(`="`)
			b.WriteString(labelEscaper.Replace(vs[i]))
			b.WriteByte('"')
			sep = ","
		}
	}
	write(names, values)
	write(extraNames, extraValues)
	b.WriteByte('}')
	return b.String()
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeHelp(s string) string { return helpEscaper.Replace(s) }

// formatFloat writes a value as Prometheus does: shortest representation, +Inf, -Inf, NaN.
func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, +1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
