package node

import (
	"github.com/sitelink/sitelink/plugins/sdk/metrics"
	"github.com/sitelink/sitelink/plugins/vrrp/packet"
)

// Metrics are the plugin's metrics, labelled by instance.
type Metrics struct {
	State          *metrics.GaugeVec
	Priority       *metrics.GaugeVec
	AdvertsSent    *metrics.CounterVec
	AdvertsRecv    *metrics.CounterVec
	SendErrors     *metrics.CounterVec
	Invalid        *metrics.CounterVec
	Transitions    *metrics.CounterVec
	Announcements  *metrics.CounterVec
	BecameMasterAt *metrics.GaugeVec
}

// NewMetrics creates the metrics and registers them on reg (when not nil).
func NewMetrics(reg *metrics.Registry) *Metrics {
	m := &Metrics{
		State: metrics.NewGaugeVec("sitelink_vrrp_state",
			"State of the instance: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT.", "instance"),
		Priority: metrics.NewGaugeVec("sitelink_vrrp_priority",
			"Priority of the instance, configured and effective (after tracking).", "instance", "kind"),
		AdvertsSent: metrics.NewCounterVec("sitelink_vrrp_adverts_sent_total",
			"Advertisements sent.", "instance"),
		AdvertsRecv: metrics.NewCounterVec("sitelink_vrrp_adverts_received_total",
			"Valid advertisements received for the instance.", "instance"),
		SendErrors: metrics.NewCounterVec("sitelink_vrrp_send_errors_total",
			"Advertisements that could not be sent.", "instance"),
		Invalid: metrics.NewCounterVec("sitelink_vrrp_invalid_packets_total",
			"Packets dropped, by reason.", "instance", "reason"),
		Transitions: metrics.NewCounterVec("sitelink_vrrp_transitions_total",
			"State transitions, by new state.", "instance", "to"),
		Announcements: metrics.NewCounterVec("sitelink_vrrp_announcements_total",
			"Gratuitous ARP / unsolicited neighbour advertisements sent (one per address).", "instance"),
		BecameMasterAt: metrics.NewGaugeVec("sitelink_vrrp_last_master_timestamp_seconds",
			"When the instance last became master (Unix time).", "instance"),
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
	for _, v := range []interface{ DeletePartialMatch(metrics.Labels) int }{m.State, m.Priority, m.AdvertsSent,
		m.AdvertsRecv, m.SendErrors, m.Invalid, m.Transitions, m.Announcements, m.BecameMasterAt} {
		v.DeletePartialMatch(metrics.Labels{"instance": name})
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
