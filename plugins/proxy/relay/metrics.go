package relay

import "github.com/sitelink/sitelink/plugins/sdk/metrics"

// Metrics are the relay's metrics.
type Metrics struct {
	Connections  *metrics.CounterVec
	Active       *metrics.Gauge
	Bytes        *metrics.CounterVec
	Refusals     *metrics.CounterVec
	AcceptErrors *metrics.Counter
	UpstreamUp   *metrics.GaugeVec
	CacheRecords *metrics.Counter

	// bytesIn and bytesOut are Bytes' two series, looked up once (not per connection).
	bytesIn, bytesOut *metrics.Counter
}

// NewMetrics registers the collectors on reg (nil: unregistered).
func NewMetrics(reg *metrics.Registry) *Metrics {
	m := &Metrics{
		Connections: metrics.NewCounterVec("sitelink_proxy_connections_total",
			"Connections admitted, by listener.", "listener"),
		Active: metrics.NewGauge("sitelink_proxy_active_connections",
			"Connections open now."),
		Bytes: metrics.NewCounterVec("sitelink_proxy_bytes_total",
			"Bytes relayed; direction is in (from clients) or out (to clients).", "direction"),
		Refusals: metrics.NewCounterVec("sitelink_proxy_refusals_total",
			"Connections refused, by reason and listener.", "reason", "listener"),
		AcceptErrors: metrics.NewCounter("sitelink_proxy_accept_errors_total",
			"Failed accepts (e.g. out of file descriptors); the listener backs off."),
		UpstreamUp: metrics.NewGaugeVec("sitelink_proxy_upstream_up",
			"1 when the upstream server passes its health check.", "group", "server"),
		CacheRecords: metrics.NewCounter("sitelink_proxy_cache_records_total",
			"Records appended to the log cache and acknowledged, in cache mode."),
	}
	m.bytesIn, m.bytesOut = m.Bytes.WithLabelValues("in"), m.Bytes.WithLabelValues("out")
	if reg != nil {
		reg.MustRegister(m.Connections, m.Active, m.Bytes, m.Refusals, m.AcceptErrors, m.UpstreamUp, m.CacheRecords)
	}
	return m
}
