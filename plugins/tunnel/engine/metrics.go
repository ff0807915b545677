package engine

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the tunnel's Prometheus metrics. Gauges and per-gateway counters are read
// from the current Status at scrape time (so removed gateways disappear); events are
// counted as they happen. A nil *Metrics counts nothing.
type Metrics struct {
	status func() (Status, bool)

	switches  *prometheus.CounterVec
	probes    *prometheus.CounterVec
	errors    *prometheus.CounterVec
	rotations prometheus.Counter

	up, info, gwActive, gwAlive, gwHandshake, gwRx, gwTx, routes *prometheus.Desc
}

// NewMetrics registers the metrics; status returns the running engine's state (false
// when no engine runs).
func NewMetrics(reg prometheus.Registerer, status func() (Status, bool)) (*Metrics, error) {
	m := &Metrics{
		status: status,
		switches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sitelink_tunnel_switches_total",
			Help: "Changes of the active gateway, by reason (startup, dead, preferred, manual, config)."}, []string{"reason"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sitelink_tunnel_probes_total",
			Help: "Liveness probes sent to silent gateways, by gateway and kind (icmp, handshake)."}, []string{"gateway", "kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sitelink_tunnel_errors_total",
			Help: "Failed attempts to program the kernel, by what (routes, mss, interface)."}, []string{"op"}),
		rotations: prometheus.NewCounter(prometheus.CounterOpts{Name: "sitelink_tunnel_key_rotations_total",
			Help: "Private key rotations."}),
		up: prometheus.NewDesc("sitelink_tunnel_up", "1 while the tunnel is Online (the active gateway is alive).", nil, nil),
		info: prometheus.NewDesc("sitelink_tunnel_info", "The tunnel's interface and WireGuard backend.",
			[]string{"interface", "backend", "public_key"}, nil),
		gwActive: prometheus.NewDesc("sitelink_tunnel_gateway_active", "1 for the gateway that carries the prefixes.", []string{"gateway"}, nil),
		gwAlive: prometheus.NewDesc("sitelink_tunnel_gateway_alive",
			"1 while the gateway showed life (handshake or received data) within the window.", []string{"gateway"}, nil),
		gwHandshake: prometheus.NewDesc("sitelink_tunnel_gateway_last_handshake_timestamp_seconds",
			"Unix time of the last handshake with the gateway (0: never).", []string{"gateway"}, nil),
		gwRx: prometheus.NewDesc("sitelink_tunnel_gateway_receive_bytes_total", "Bytes received from the gateway.", []string{"gateway"}, nil),
		gwTx: prometheus.NewDesc("sitelink_tunnel_gateway_transmit_bytes_total", "Bytes sent to the gateway.", []string{"gateway"}, nil),
		routes: prometheus.NewDesc("sitelink_tunnel_routes",
			"Routes of the tunnel's prefixes by state (installed: into the tunnel; blackhole).", []string{"state"}, nil),
	}
	for _, c := range []prometheus.Collector{m.switches, m.probes, m.errors, m.rotations, m} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) switched(reason string) {
	if m != nil {
		m.switches.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) probe(gateway, kind string) {
	if m != nil {
		m.probes.WithLabelValues(gateway, kind).Inc()
	}
}

func (m *Metrics) failed(op string) {
	if m != nil {
		m.errors.WithLabelValues(op).Inc()
	}
}

// Rotated counts a key rotation.
func (m *Metrics) Rotated() {
	if m != nil {
		m.rotations.Inc()
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.up, m.info, m.gwActive, m.gwAlive, m.gwHandshake, m.gwRx, m.gwTx, m.routes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	s, ok := m.status()
	up := 0.0
	if ok && s.State == StateOnline {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(m.up, prometheus.GaugeValue, up)
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(m.info, prometheus.GaugeValue, 1, s.Interface, s.Backend, s.PublicKey)
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, g := range s.Gateways {
		ch <- prometheus.MustNewConstMetric(m.gwActive, prometheus.GaugeValue, b(g.Active), g.Name)
		ch <- prometheus.MustNewConstMetric(m.gwAlive, prometheus.GaugeValue, b(g.Alive), g.Name)
		hs := 0.0
		if g.LastHandshake != nil {
			hs = float64(g.LastHandshake.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(m.gwHandshake, prometheus.GaugeValue, hs, g.Name)
		ch <- prometheus.MustNewConstMetric(m.gwRx, prometheus.CounterValue, float64(g.RxBytes), g.Name)
		ch <- prometheus.MustNewConstMetric(m.gwTx, prometheus.CounterValue, float64(g.TxBytes), g.Name)
	}
	ch <- prometheus.MustNewConstMetric(m.routes, prometheus.GaugeValue, float64(len(s.Routes.Prefixes)), "installed")
	ch <- prometheus.MustNewConstMetric(m.routes, prometheus.GaugeValue, float64(len(s.Routes.Blackholed)), "blackhole")
}
