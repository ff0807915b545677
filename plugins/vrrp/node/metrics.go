package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sitelink/sitelink/plugins/vrrp/packet"
)

// Metrics are the plugin's Prometheus metrics, labelled by instance.
type Metrics struct {
	State          *prometheus.GaugeVec
	Priority       *prometheus.GaugeVec
	AdvertsSent    *prometheus.CounterVec
	AdvertsRecv    *prometheus.CounterVec
	SendErrors     *prometheus.CounterVec
	Invalid        *prometheus.CounterVec
	Transitions    *prometheus.CounterVec
	Announcements  *prometheus.CounterVec
	BecameMasterAt *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them on reg (when not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		State: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sitelink_vrrp_state",
			Help: "State of the instance: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT."}, []string{"instance"}),
		Priority: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sitelink_vrrp_priority",
			Help: "Priority of the instance, configured and effective (after tracking)."}, []string{"instance", "kind"}),
		AdvertsSent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sitelink_vrrp_adverts_sent_total",
			Help: "Advertisements sent."}, []string{"instance"}),
		AdvertsRecv: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sitelink_vrrp_adverts_received_total",
			Help: "Valid advertisements received for the instance."}, []string{"instance"}),
		SendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sitelink_vrrp_send_errors_total",
			Help: "Advertisements that could not be sent."}, []string{"instance"}),
		Invalid: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sitelink_vrrp_invalid_packets_total",
			Help: "Packets dropped, by reason."}, []string{"instance", "reason"}),
		Transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sitelink_vrrp_transitions_total",
			Help: "State transitions, by new state."}, []string{"instance", "to"}),
		Announcements: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sitelink_vrrp_announcements_total",
			Help: "Gratuitous ARP / unsolicited neighbour advertisements sent (one per address)."}, []string{"instance"}),
		BecameMasterAt: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sitelink_vrrp_last_master_timestamp_seconds",
			Help: "When the instance last became master (Unix time)."}, []string{"instance"}),
	}
	if reg != nil {
		reg.MustRegister(m.State, m.Priority, m.AdvertsSent, m.AdvertsRecv, m.SendErrors, m.Invalid,
			m.Transitions, m.Announcements, m.BecameMasterAt)
	}
	return m
}

// forget drops an instance's series.
func (m *Metrics) forget(name string) {
	if m == nil {
		return
	}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{m.State, m.Priority, m.AdvertsSent,
		m.AdvertsRecv, m.SendErrors, m.Invalid, m.Transitions, m.Announcements, m.BecameMasterAt} {
		v.DeletePartialMatch(prometheus.Labels{"instance": name})
	}
}

// init creates an instance's series at zero so they show before the first event.
func (m *Metrics) init(name string) {
	if m == nil {
		return
	}
	m.AdvertsSent.WithLabelValues(name)
	m.AdvertsRecv.WithLabelValues(name)
	m.SendErrors.WithLabelValues(name)
	m.Announcements.WithLabelValues(name)
	for _, r := range packet.Reasons {
		m.Invalid.WithLabelValues(name, string(r))
	}
}
