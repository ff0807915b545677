package engine

import (
	"sort"
	"time"
)

// The tunnel states, as the platform's console shows them.
const (
	StateOnline  = "Online"
	StateOffline = "Offline"
	StateStopped = "Stopped"
)

// Status is a copy of the engine's state: `sitelinkctl tunnel show` and the plugin's
// status details.
type Status struct {
	State         string          `json:"state"`
	Since         time.Time       `json:"since"`
	ActiveGateway string          `json:"active_gateway,omitempty"`
	Pinned        bool            `json:"pinned,omitempty"`
	Backend       string          `json:"backend"`
	Interface     string          `json:"interface"`
	MTU           int             `json:"mtu"`
	ListenPort    int             `json:"listen_port"`
	PublicKey     string          `json:"public_key"`
	Socket        string          `json:"uapi_socket,omitempty"`
	RxBytes       uint64          `json:"rx_bytes"`
	TxBytes       uint64          `json:"tx_bytes"`
	Routes        RouteStatus     `json:"routes"`
	MSSClamp      MSSStatus       `json:"mss_clamp"`
	Gateways      []GatewayStatus `json:"gateways"`
	Switches      uint64          `json:"switches"`
	LastSwitch    *Switch         `json:"last_switch,omitempty"`
	Problems      []string        `json:"problems,omitempty"`
}

// GatewayStatus is one gateway's state.
type GatewayStatus struct {
	Name          string     `json:"name"`
	Endpoint      string     `json:"endpoint"`
	Resolved      string     `json:"resolved,omitempty"`
	PublicKey     string     `json:"public_key"`
	Probe         string     `json:"probe,omitempty"`
	Active        bool       `json:"active"`
	Alive         bool       `json:"alive"`
	LastHandshake *time.Time `json:"last_handshake,omitempty"`
	LastSeen      *time.Time `json:"last_seen,omitempty"`
	AliveSince    *time.Time `json:"alive_since,omitempty"`
	RxBytes       uint64     `json:"rx_bytes"`
	TxBytes       uint64     `json:"tx_bytes"`
	Probes        uint64     `json:"probes"`
}

// RouteStatus says where the tunnel's prefixes go.
type RouteStatus struct {
	// State is installed (through the tunnel), withdrawn or blackhole.
	State      string   `json:"state"`
	OnDown     string   `json:"on_down"`
	Table      int      `json:"table"`
	Metric     int      `json:"metric"`
	Prefixes   []string `json:"prefixes,omitempty"`
	Blackholed []string `json:"blackhole,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// MSSStatus is the MSS clamping in force.
type MSSStatus struct {
	Enabled bool   `json:"enabled"`
	IPv4    int    `json:"ipv4_mss"`
	IPv6    int    `json:"ipv6_mss"`
	Error   string `json:"error,omitempty"`
}

// Switch records a change of the active gateway.
type Switch struct {
	From   string    `json:"from,omitempty"`
	To     string    `json:"to"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Snapshot returns a copy of the state.
func (e *Engine) Snapshot() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.snap
	s.Gateways = append([]GatewayStatus(nil), s.Gateways...)
	s.Problems = append([]string(nil), s.Problems...)
	return s
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// refreshSnapshot copies the loop's state for Snapshot (called on the loop goroutine).
func (e *Engine) refreshSnapshot(now time.Time) {
	c := e.cfg
	s := Status{State: StateOffline, Since: e.stateSince, ActiveGateway: e.sel.Active(), Pinned: e.sel.Pinned(),
		Backend: string(e.backend.Kind()), Interface: e.backend.Name(), MTU: c.MTU, ListenPort: c.ListenPort,
		PublicKey: e.key.PublicKey().String(), Socket: e.backend.Socket(), Routes: e.routes, MSSClamp: e.mssStatus,
		Switches: e.switches, LastSwitch: e.lastSwitch}
	if e.sel.Up() {
		s.State = StateOnline
	}
	for _, st := range e.sel.States(now) {
		g := e.gws[st.Name]
		gs := GatewayStatus{Name: st.Name, Endpoint: g.cfg.Endpoint, PublicKey: g.cfg.PublicKey.String(),
			Active: st.Name == s.ActiveGateway, Alive: st.Alive, LastHandshake: timePtr(g.lastHS), LastSeen: timePtr(st.LastSeen),
			AliveSince: timePtr(st.AliveSince), RxBytes: g.rx, TxBytes: g.tx, Probes: g.probes}
		if g.endpoint.IsValid() {
			gs.Resolved = g.endpoint.String()
		}
		if g.cfg.Probe.IsValid() {
			gs.Probe = g.cfg.Probe.String()
		}
		s.RxBytes += g.rx
		s.TxBytes += g.tx
		s.Gateways = append(s.Gateways, gs)
	}
	for _, p := range e.problems {
		s.Problems = append(s.Problems, p)
	}
	sort.Strings(s.Problems)
	e.mu.Lock()
	e.snap = s
	e.mu.Unlock()
}
