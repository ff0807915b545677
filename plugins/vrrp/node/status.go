package node

import (
	"time"

	"github.com/sitelink/sitelink/plugins/vrrp/track"
)

// InstanceStatus is what `sitelinkctl vrrp status` shows of one instance.
type InstanceStatus struct {
	Name      string `json:"name"`
	Interface string `json:"interface"`
	VRID      int    `json:"vrid"`
	Family    string `json:"family"`
	// State is INIT, BACKUP, MASTER or FAULT; Since when.
	State string    `json:"state"`
	Since time.Time `json:"since"`
	// Fault says why the instance is in FAULT.
	Fault string `json:"fault,omitempty"`
	// Master is the current master's address (ours when master), MasterPriority
	// what it advertised.
	Master         string `json:"master,omitempty"`
	MasterPriority int    `json:"master_priority,omitempty"`
	// Priority is the configured priority, EffectivePriority with tracking applied.
	Priority          int `json:"priority"`
	EffectivePriority int `json:"effective_priority"`
	// SourceAddress is the primary address adverts come from.
	SourceAddress        string   `json:"source_address,omitempty"`
	VirtualIPs           []string `json:"virtual_ips"`
	Mode                 string   `json:"mode"`
	UnicastPeers         []string `json:"unicast_peers,omitempty"`
	AdvertInterval       string   `json:"advert_interval"`
	MasterAdvertInterval string   `json:"master_advert_interval"`
	MasterDownInterval   string   `json:"master_down_interval"`
	Preempt              bool     `json:"preempt"`
	PreemptDelay         string   `json:"preempt_delay,omitempty"`
	// Hold is set while a hand-over holds preemption back: a time or "until resume".
	Hold string `json:"hold,omitempty"`
	// Tracked are the tracked objects and their state.
	Tracked []track.Object `json:"tracked,omitempty"`
	// Transitions are the last state changes, newest last.
	Transitions []Transition `json:"transitions"`
	Counters    Counters     `json:"counters"`
	// LastError is the last failure to send, add an address or announce.
	LastError string `json:"last_error,omitempty"`
}

// Transition is one state change of an instance.
type Transition struct {
	Instance string    `json:"instance"`
	Time     time.Time `json:"time"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Reason   string    `json:"reason"`
}

// Counters are an instance's packet and event counts.
type Counters struct {
	AdvertsSent     uint64            `json:"adverts_sent"`
	AdvertsReceived uint64            `json:"adverts_received"`
	SendErrors      uint64            `json:"send_errors"`
	OtherVRID       uint64            `json:"other_vrid"`
	Invalid         map[string]uint64 `json:"invalid"`
	Announcements   uint64            `json:"announcements"`
	BecameMaster    uint64            `json:"became_master"`
	Transitions     uint64            `json:"transitions"`
}
