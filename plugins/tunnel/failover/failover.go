// Package failover decides which security gateway carries the tunnel's traffic. It is
// pure logic over samples of WireGuard's per-peer counters (last handshake, bytes
// received) and a clock passed in, so every timing rule is tested without waiting:
//
//   - a gateway is alive while its last sign of life (a handshake, or received bytes
//     growing) is at most Window old;
//   - when the active gateway is dead, the most preferred alive one takes over at once;
//   - a more preferred gateway is taken back only after it has been alive for Hold
//     (no flapping);
//   - at start, the most preferred gateway is given Grace to answer before a less
//     preferred one is chosen;
//   - a manual switch pins a gateway until it dies.
package failover

import (
	"fmt"
	"time"
)

// Params are the timing rules.
type Params struct {
	Window time.Duration
	Hold   time.Duration
	// Grace is how long, after start, only the most preferred gateway may be chosen.
	Grace time.Duration
}

// Sample is what WireGuard reports about one peer.
type Sample struct {
	LastHandshake time.Time
	RxBytes       uint64
}

// Reason says why the decision changed.
type Reason string

// The reasons.
const (
	ReasonNone      Reason = ""
	ReasonStartup   Reason = "startup"   // first gateway chosen
	ReasonDead      Reason = "dead"      // the active gateway died, another took over
	ReasonPreferred Reason = "preferred" // a more preferred gateway was alive for Hold
	ReasonManual    Reason = "manual"    // an operator switched
	ReasonDown      Reason = "down"      // no gateway is alive
	ReasonRecovered Reason = "recovered" // the active gateway came back
	ReasonConfig    Reason = "config"    // the active gateway was removed from the config
)

// Decision is the selector's verdict after a sample.
type Decision struct {
	// Active is the gateway that carries the prefixes ("" before any was alive).
	Active string
	// Up: the active gateway is alive.
	Up bool
	// Changed: Active or Up differ from the previous decision.
	Changed bool
	// Previous is the active gateway before this decision.
	Previous string
	Reason   Reason
}

// GatewayState is one gateway's liveness, for status.
type GatewayState struct {
	Name          string
	Alive         bool
	LastSeen      time.Time // last sign of life (zero: never)
	AliveSince    time.Time // zero while dead
	LastHandshake time.Time
	RxBytes       uint64
}

type gateway struct {
	name          string
	lastSeen      time.Time
	aliveSince    time.Time
	lastHandshake time.Time
	rx            uint64
	rxKnown       bool
}

// Selector holds the liveness of the gateways and the active one. It is not safe for
// concurrent use.
type Selector struct {
	p       Params
	started time.Time
	gws     []*gateway
	active  int // index in gws, -1 before any was chosen
	up      bool
	pinned  bool
	// removed: the active gateway was removed by Update; the next choice says so.
	removed bool
}

// New returns a selector for gateways in order of preference.
func New(names []string, p Params, now time.Time) *Selector {
	s := &Selector{p: p, started: now, active: -1}
	for _, n := range names {
		s.gws = append(s.gws, &gateway{name: n})
	}
	return s
}

// Update changes the gateways (keeping the state of those that remain, by name) and
// the timing rules. If the active gateway is gone, the next Observe chooses again.
func (s *Selector) Update(names []string, p Params) {
	old := map[string]*gateway{}
	for _, g := range s.gws {
		old[g.name] = g
	}
	activeName := s.Active()
	s.gws = s.gws[:0:0]
	s.active = -1
	for i, n := range names {
		g := old[n]
		if g == nil {
			g = &gateway{name: n}
		}
		s.gws = append(s.gws, g)
		if n == activeName {
			s.active = i
		}
	}
	if s.active < 0 {
		s.pinned = false
		if activeName != "" {
			s.up = false
			s.removed = true
		}
	}
	s.p = p
}

// Forget drops what is known about a gateway's liveness (its key changed: it is
// another peer now).
func (s *Selector) Forget(name string) {
	if i := s.index(name); i >= 0 {
		s.gws[i] = &gateway{name: name}
	}
}

// Active returns the active gateway's name ("" when none).
func (s *Selector) Active() string {
	if s.active < 0 {
		return ""
	}
	return s.gws[s.active].name
}

// Up reports whether the active gateway is alive.
func (s *Selector) Up() bool { return s.up }

// Pinned reports whether an operator's switch holds the active gateway.
func (s *Selector) Pinned() bool { return s.pinned }

func (s *Selector) alive(g *gateway, now time.Time) bool {
	return !g.lastSeen.IsZero() && now.Sub(g.lastSeen) <= s.p.Window
}

func (s *Selector) index(name string) int {
	for i, g := range s.gws {
		if g.name == name {
			return i
		}
	}
	return -1
}

// Observe feeds samples (by gateway name; missing ones count as no news) and returns
// the decision.
func (s *Selector) Observe(now time.Time, samples map[string]Sample) Decision {
	for _, g := range s.gws {
		smp, ok := samples[g.name]
		if !ok {
			continue
		}
		if !smp.LastHandshake.IsZero() && smp.LastHandshake.After(g.lastHandshake) {
			g.lastHandshake = smp.LastHandshake
			hs := smp.LastHandshake
			if hs.After(now) {
				hs = now
			}
			if hs.After(g.lastSeen) {
				g.lastSeen = hs
			}
		}
		if g.rxKnown && smp.RxBytes > g.rx {
			g.lastSeen = now
		}
		g.rx, g.rxKnown = smp.RxBytes, true
	}
	for _, g := range s.gws {
		switch alive := s.alive(g, now); {
		case alive && g.aliveSince.IsZero():
			g.aliveSince = g.lastSeen
		case !alive:
			g.aliveSince = time.Time{}
		}
	}
	return s.decide(now, ReasonNone)
}

func (s *Selector) decide(now time.Time, forced Reason) Decision {
	prevActive, prevUp := s.Active(), s.up
	reason := forced
	cur := s.active
	switch {
	case cur >= 0 && s.alive(s.gws[cur], now):
		if s.pinned {
			break
		}
		for i := 0; i < cur; i++ {
			g := s.gws[i]
			if s.alive(g, now) && now.Sub(g.aliveSince) >= s.p.Hold {
				s.active, reason = i, ReasonPreferred
				break
			}
		}
	default:
		s.pinned = false
		best := -1
		for i, g := range s.gws {
			if s.alive(g, now) {
				best = i
				break
			}
		}
		if cur < 0 && best > 0 && now.Sub(s.started) < s.p.Grace {
			best = -1 // give the preferred gateway its chance first
		}
		if best >= 0 {
			s.active = best
			switch {
			case cur < 0 && s.removed:
				reason, s.removed = ReasonConfig, false
			case cur < 0:
				reason = ReasonStartup
			case best != cur:
				reason = ReasonDead
			}
		}
	}
	s.up = s.active >= 0 && s.alive(s.gws[s.active], now)
	d := Decision{Active: s.Active(), Up: s.up, Previous: prevActive}
	d.Changed = d.Active != prevActive || d.Up != prevUp
	switch {
	case !d.Changed:
		d.Reason = ReasonNone
	case reason != ReasonNone:
		d.Reason = reason
	case !d.Up:
		d.Reason = ReasonDown
	case d.Active == prevActive:
		d.Reason = ReasonRecovered
	default:
		d.Reason = ReasonConfig
	}
	return d
}

// Pin makes name the active gateway and keeps it while it is alive, whatever the
// preference. A dead gateway is refused unless force is set. "auto" (or "") removes a
// pin and lets preference decide again.
func (s *Selector) Pin(name string, force bool, now time.Time) (Decision, error) {
	if name == "" || name == "auto" {
		s.pinned = false
		return s.decide(now, ReasonNone), nil
	}
	i := s.index(name)
	if i < 0 {
		return Decision{}, fmt.Errorf("no gateway %q", name)
	}
	g := s.gws[i]
	if !force && !s.alive(g, now) {
		if g.lastSeen.IsZero() {
			return Decision{}, fmt.Errorf("gateway %s has not answered since the tunnel started (switch with force to use it anyway)", name)
		}
		return Decision{}, fmt.Errorf("gateway %s is dead (last sign of life %s ago; switch with force to use it anyway)",
			name, now.Sub(g.lastSeen).Round(time.Second))
	}
	prevActive, prevUp := s.Active(), s.up
	s.active, s.pinned = i, true
	s.up = s.alive(g, now)
	d := Decision{Active: name, Up: s.up, Previous: prevActive}
	d.Changed = d.Active != prevActive || d.Up != prevUp
	if d.Changed {
		d.Reason = ReasonManual
	}
	if !s.up {
		// Forced onto a dead gateway: the pin lasts only until another decision.
		s.pinned = false
	}
	return d, nil
}

// States returns every gateway's liveness in preference order.
func (s *Selector) States(now time.Time) []GatewayState {
	out := make([]GatewayState, len(s.gws))
	for i, g := range s.gws {
		out[i] = GatewayState{Name: g.name, Alive: s.alive(g, now), LastSeen: g.lastSeen, AliveSince: g.aliveSince,
			LastHandshake: g.lastHandshake, RxBytes: g.rx}
	}
	return out
}
