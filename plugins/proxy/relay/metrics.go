package relay

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the relay's Prometheus collectors.
type Metrics struct {
	Connections  *prometheus.CounterVec
	Active       prometheus.Gauge
	Bytes        *prometheus.CounterVec
	Refusals     *prometheus.CounterVec
	AcceptErrors prometheus.Counter
	UpstreamUp   *prometheus.GaugeVec
	CacheRecords prometheus.Counter

	// bytesIn and bytesOut are Bytes' two series, looked up once (not per connection).
	bytesIn, bytesOut prometheus.Counter
}

// NewMetrics registers the collectors on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sitelink_proxy_connections_total",
			Help: "Connections admitted, by listener."}, []string{"listener"}),
		Active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sitelink_proxy_active_connections",
			Help: "Connections open now."}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sitelink_proxy_bytes_total",
			Help: "Bytes relayed; direction is in (from clients) or out (to clients)."}, []string{"direction"}),
		Refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sitelink_proxy_refusals_total",
			Help: "Connections refused, by reason and listener."}, []string{"reason", "listener"}),
		AcceptErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "sitelink_proxy_accept_errors_total",
			Help: "Failed accepts (e.g. out of file descriptors); the listener backs off."}),
		UpstreamUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sitelink_proxy_upstream_up",
			Help: "1 when the upstream server passes its health check."}, []string{"group", "server"}),
		CacheRecords: prometheus.NewCounter(prometheus.CounterOpts{Name: "sitelink_proxy_cache_records_total",
			Help: "Records appended to the log cache and acknowledged, in cache mode."}),
	}
	m.bytesIn, m.bytesOut = m.Bytes.WithLabelValues("in"), m.Bytes.WithLabelValues("out")
	if reg != nil {
		reg.MustRegister(m.Connections, m.Active, m.Bytes, m.Refusals, m.AcceptErrors, m.UpstreamUp, m.CacheRecords)
	}
	return m
}
