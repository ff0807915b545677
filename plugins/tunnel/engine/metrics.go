package engine

import "github.com/sitelink/sitelink/plugins/sdk/metrics"

// Metrics are the tunnel's metrics. Gauges and per-gateway counters are read
// from the current Status at scrape time (so removed gateways disappear); events are
// counted as they happen. A nil *Metrics counts nothing.
type Metrics struct {
	status func() (Status, bool)

	switches  *metrics.CounterVec
	probes    *metrics.CounterVec
	errors    *metrics.CounterVec
	rotations *metrics.Counter

	up, info, gwActive, gwAlive, gwHandshake, gwRx, gwTx, routes *metrics.Desc
}

// NewMetrics registers the metrics; status returns the running engine's state (false
// when no engine runs).
func NewMetrics(reg *metrics.Registry, status func() (Status, bool)) (*Metrics, error) {
	m := &Metrics{
		status: status,
		switches: metrics.NewCounterVec("sitelink_tunnel_switches_total",
			"Changes of the active gateway, by reason (startup, dead, preferred, manual, config).", "reason"),
		probes: metrics.NewCounterVec("sitelink_tunnel_probes_total",
			"Liveness probes sent to silent gateways, by gateway and kind (icmp, handshake).", "gateway", "kind"),
		errors: metrics.NewCounterVec("sitelink_tunnel_errors_total",
			"Failed attempts to program the kernel, by what (routes, mss, interface).", "op"),
		rotations: metrics.NewCounter("sitelink_tunnel_key_rotations_total",
			"Private key rotations."),
		up: metrics.NewDesc("sitelink_tunnel_up",
			"1 while the tunnel is Online (the active gateway is alive).", metrics.GaugeType),
		info: metrics.NewDesc("sitelink_tunnel_info",
			"The tunnel's interface and WireGuard backend.", metrics.GaugeType, "interface", "backend", "public_key"),
		gwActive: metrics.NewDesc("sitelink_tunnel_gateway_active",
			"1 for the gateway that carries the prefixes.", metrics.GaugeType, "gateway"),
		gwAlive: metrics.NewDesc("sitelink_tunnel_gateway_alive",
			"1 while the gateway showed life (handshake or received data) within the window.", metrics.GaugeType, "gateway"),
		gwHandshake: metrics.NewDesc("sitelink_tunnel_gateway_last_handshake_timestamp_seconds",
			"Unix time of the last handshake with the gateway (0: never).", metrics.GaugeType, "gateway"),
		gwRx: metrics.NewDesc("sitelink_tunnel_gateway_receive_bytes_total",
			"Bytes received from the gateway.", metrics.CounterType, "gateway"),
		gwTx: metrics.NewDesc("sitelink_tunnel_gateway_transmit_bytes_total",
			"Bytes sent to the gateway.", metrics.CounterType, "gateway"),
		routes: metrics.NewDesc("sitelink_tunnel_routes",
			"Routes of the tunnel's prefixes by state (installed: into the tunnel; blackhole).", metrics.GaugeType, "state"),
	}
	for _, c := range []metrics.Collector{m.switches, m.probes, m.errors, m.rotations, m} {
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

// Collect implements metrics.Collector.
func (m *Metrics) Collect(sc *metrics.Scrape) {
	s, ok := m.status()
	up := 0.0
	if ok && s.State == StateOnline {
		up = 1
	}
	sc.Add(m.up, up)
	if !ok {
		return
	}
	sc.Add(m.info, 1, s.Interface, s.Backend, s.PublicKey)
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, g := range s.Gateways {
		sc.Add(m.gwActive, b(g.Active), g.Name)
		sc.Add(m.gwAlive, b(g.Alive), g.Name)
		hs := 0.0
		if g.LastHandshake != nil {
			hs = float64(g.LastHandshake.UnixNano()) / 1e9
		}
		sc.Add(m.gwHandshake, hs, g.Name)
		sc.Add(m.gwRx, float64(g.RxBytes), g.Name)
		sc.Add(m.gwTx, float64(g.TxBytes), g.Name)
	}
	sc.Add(m.routes, float64(len(s.Routes.Prefixes)), "installed")
	sc.Add(m.routes, float64(len(s.Routes.Blackholed)), "blackhole")
}
