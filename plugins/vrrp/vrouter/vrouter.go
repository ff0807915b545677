// Package vrouter owns the VRRPv3 state machine of one virtual router (RFC 5798 section
// 6.4), with keepalived-style extensions: a FAULT state, tracked priority, a preempt delay,
// immediate preemption of a lower-priority master, a hand-over hold and announcements
// when a lower-priority master shows up after a split brain.
//
// A Machine is pure: it does no I/O and reads no clock. Its owner feeds it inputs with
// the current time (Start, Receive, Tick, SetPriority, SetFault, Handover, Stop), and each
// input returns the Actions to carry out, in order: send an advertisement, acquire or
// release the virtual addresses, announce them again, and the transitions to report.
// Deadline says when Tick must be called next. So the protocol is tested with a fake
// clock and no sockets, and the same code runs the real instances.
package vrouter

import (
	"fmt"
	"net/netip"
	"time"
)

// State is a virtual router's state.
type State int

// The states. Init is RFC 5798's Initialize; Fault is keepalived's: the router cannot
// serve (its interface or a tracked object is down) and neither sends nor listens.
const (
	Init State = iota
	Backup
	Master
	Fault
)

func (s State) String() string {
	switch s {
	case Init:
		return "INIT"
	case Backup:
		return "BACKUP"
	case Master:
		return "MASTER"
	case Fault:
		return "FAULT"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// OwnerPriority is the priority of the router that owns the virtual addresses.
const OwnerPriority = 255

// Config is a virtual router's protocol settings.
type Config struct {
	// VRID is the virtual router identifier.
	VRID uint8
	// Priority is the configured priority, 1-255 (255: address owner).
	Priority uint8
	// Interval is the advertisement interval (a multiple of 10 ms).
	Interval time.Duration
	// Preempt lets a higher-priority backup take over from a lower-priority master.
	Preempt bool
	// PreemptDelay holds preemption back for this long after the router starts, leaves
	// FAULT or its effective priority rises.
	PreemptDelay time.Duration
	// ResignImmediate makes a backup take over at once when the master resigns
	// (priority 0) instead of after the skew time. Safe when the group has one backup.
	ResignImmediate bool
}

// Received is an advertisement that passed the packet checks.
type Received struct {
	// Src is the sender's primary address (the IP source).
	Src netip.Addr
	// Priority is the sender's priority.
	Priority uint8
	// Interval is the sender's advertisement interval.
	Interval time.Duration
}

// ActionKind says what an Action asks for.
type ActionKind int

// The action kinds.
const (
	// ActSend sends an advertisement with Priority.
	ActSend ActionKind = iota + 1
	// ActAcquire adds the virtual addresses and announces them (gratuitous ARP,
	// unsolicited neighbour advertisements).
	ActAcquire
	// ActRelease removes the virtual addresses.
	ActRelease
	// ActAnnounce announces the virtual addresses again.
	ActAnnounce
	// ActTransition reports a state change (From, To, Reason).
	ActTransition
)

// Action is one thing the owner of a Machine must do.
type Action struct {
	Kind     ActionKind
	Priority uint8
	From, To State
	Reason   string
}

func (a Action) String() string {
	switch a.Kind {
	case ActSend:
		return fmt.Sprintf("send(%d)", a.Priority)
	case ActAcquire:
		return "acquire"
	case ActRelease:
		return "release"
	case ActAnnounce:
		return "announce"
	case ActTransition:
		return fmt.Sprintf("%s->%s", a.From, a.To)
	}
	return "?"
}

// Machine is one virtual router's protocol state. It is not safe for concurrent use.
type Machine struct {
	cfg     Config
	primary netip.Addr

	state     State
	effective uint8

	masterAdverInterval time.Duration
	masterDown          time.Time // backup: when the master is declared down (zero: disarmed)
	adverTimer          time.Time // master: when the next advertisement is due
	preemptFrom         time.Time // backup: earliest time preemption is allowed
	preemptCheck        time.Time // backup: re-check preemption then (delay pending)
	holdUntil           time.Time // hand-over: no preemption until then
	holdForever         bool
	lastAnnounce        time.Time

	master         netip.Addr // the current master's address, as far as known
	masterPriority uint8      // its last advertised priority
	lastAdvert     time.Time  // when that was received

	faultReason string
}

// New returns a machine in state Init. primary is the local primary address (the
// advertisements' source, compared on equal priorities).
func New(cfg Config, primary netip.Addr) *Machine {
	return &Machine{cfg: cfg, primary: primary, state: Init, effective: cfg.Priority, masterAdverInterval: cfg.Interval}
}

// State is the current state.
func (m *Machine) State() State { return m.state }

// Config is the configuration the machine runs with.
func (m *Machine) Config() Config { return m.cfg }

// Priority is the effective priority (configured plus tracking).
func (m *Machine) Priority() uint8 { return m.effective }

// Master is the address of the current master (ours when master), or the zero Addr.
func (m *Machine) Master() netip.Addr {
	if m.state == Master {
		return m.primary
	}
	return m.master
}

// MasterPriority is the priority the current master last advertised (ours when master).
func (m *Machine) MasterPriority() uint8 {
	if m.state == Master {
		return m.effective
	}
	return m.masterPriority
}

// MasterAdverInterval is the interval learned from the master (ours when master).
func (m *Machine) MasterAdverInterval() time.Duration { return m.masterAdverInterval }

// FaultReason says why the machine is in FAULT ("" otherwise).
func (m *Machine) FaultReason() string { return m.faultReason }

// Held reports whether a hand-over hold keeps the machine from preempting at now.
func (m *Machine) Held(now time.Time) bool { return m.holdForever || now.Before(m.holdUntil) }

// SetPrimary changes the local primary address.
func (m *Machine) SetPrimary(a netip.Addr) { m.primary = a }

// Primary is the local primary address.
func (m *Machine) Primary() netip.Addr { return m.primary }

// owner reports whether the router owns the addresses.
func (m *Machine) owner() bool { return m.cfg.Priority == OwnerPriority }

// SkewTime is RFC 5798's Skew_Time for the current priority and master interval.
func (m *Machine) SkewTime() time.Duration {
	return time.Duration(256-int(m.effective)) * m.masterAdverInterval / 256
}

// MasterDownInterval is RFC 5798's Master_Down_Interval.
func (m *Machine) MasterDownInterval() time.Duration {
	return 3*m.masterAdverInterval + m.SkewTime()
}

// Deadline is when Tick must next be called (zero: no timer armed).
func (m *Machine) Deadline() time.Time {
	var d time.Time
	for _, t := range []time.Time{m.masterDown, m.adverTimer, m.preemptCheck} {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	return d
}

func (m *Machine) transition(to State, reason string, acts []Action) []Action {
	from := m.state
	m.state = to
	m.masterDown, m.adverTimer, m.preemptCheck = time.Time{}, time.Time{}, time.Time{}
	return append(acts, Action{Kind: ActTransition, From: from, To: to, Reason: reason})
}

// becomeMaster: send an advertisement, acquire the addresses, start the advert timer.
func (m *Machine) becomeMaster(now time.Time, reason string, acts []Action) []Action {
	acts = append(acts, Action{Kind: ActSend, Priority: m.effective}, Action{Kind: ActAcquire})
	acts = m.transition(Master, reason, acts)
	m.masterAdverInterval = m.cfg.Interval
	m.adverTimer = now.Add(m.cfg.Interval)
	m.lastAnnounce = now
	return acts
}

// becomeBackup from Init or Fault: wait a master-down interval for a master.
func (m *Machine) becomeBackup(now time.Time, reason string, acts []Action) []Action {
	acts = m.transition(Backup, reason, acts)
	m.masterAdverInterval = m.cfg.Interval
	m.masterDown = now.Add(m.MasterDownInterval())
	m.master, m.masterPriority = netip.Addr{}, 0
	m.preemptFrom = now.Add(m.cfg.PreemptDelay)
	return acts
}

// Start leaves Init (RFC 5798 6.4.1). A stopped machine may be started again.
func (m *Machine) Start(now time.Time) []Action {
	if m.state != Init {
		return nil
	}
	if m.faultReason != "" {
		return m.transition(Fault, m.faultReason, nil)
	}
	if m.owner() {
		return m.becomeMaster(now, "address owner (priority 255)", nil)
	}
	return m.becomeBackup(now, "started", nil)
}

// Stop is RFC 5798's Shutdown: a master sends priority 0 and releases the addresses;
// the machine returns to Init.
func (m *Machine) Stop(now time.Time, reason string) []Action {
	var acts []Action
	switch m.state {
	case Init:
		return nil
	case Master:
		acts = append(acts, Action{Kind: ActSend, Priority: 0}, Action{Kind: ActRelease})
	}
	return m.transition(Init, reason, acts)
}

// Receive handles an advertisement for this virtual router that passed the packet
// checks (RFC 5798 6.4.2 and 6.4.3).
func (m *Machine) Receive(now time.Time, r Received) []Action {
	switch m.state {
	case Backup:
		return m.receiveBackup(now, r)
	case Master:
		return m.receiveMaster(now, r)
	}
	return nil
}

func (m *Machine) learn(now time.Time, r Received) {
	m.master, m.masterPriority, m.lastAdvert = r.Src, r.Priority, now
	if r.Interval > 0 {
		m.masterAdverInterval = r.Interval
	}
}

// following reports whether a master has advertised within a master-down interval.
func (m *Machine) following(now time.Time) bool {
	return m.master.IsValid() && now.Sub(m.lastAdvert) < m.MasterDownInterval()
}

func (m *Machine) canPreempt(now time.Time) bool {
	return m.cfg.Preempt && !m.Held(now) && !now.Before(m.preemptFrom)
}

func (m *Machine) receiveBackup(now time.Time, r Received) []Action {
	if r.Priority == 0 {
		// The master resigns: take over after the skew time (or at once).
		m.master, m.masterPriority = netip.Addr{}, 0
		if m.cfg.ResignImmediate {
			return m.becomeMaster(now, fmt.Sprintf("master %s resigned (priority 0)", r.Src), nil)
		}
		m.masterDown = now.Add(m.SkewTime())
		return nil
	}
	if r.Priority < m.effective && m.cfg.Preempt && r.Src != m.master && m.following(now) && m.masterPriority >= m.effective {
		// A lower router while we follow a better master (e.g. the loser of a
		// healing split brain): not a reason to preempt. Discard (RFC 5798 6.4.2).
		return nil
	}
	if r.Priority < m.effective && m.canPreempt(now) {
		return m.becomeMaster(now, fmt.Sprintf("preempted lower-priority master %s (priority %d < %d)", r.Src, r.Priority, m.effective), nil)
	}
	// Accept the master (RFC: preempt off, or its priority >= ours; here also a
	// preemption held back by the delay or a hand-over).
	m.learn(now, r)
	m.masterDown = now.Add(m.MasterDownInterval())
	m.preemptCheck = time.Time{}
	if r.Priority < m.effective && m.cfg.Preempt {
		// Preemption is due once the delay or hold ends.
		at := m.preemptFrom
		if !m.holdForever && m.holdUntil.After(at) {
			at = m.holdUntil
		}
		if !m.holdForever && at.After(now) {
			m.preemptCheck = at
		}
	}
	return nil
}

func (m *Machine) receiveMaster(now time.Time, r Received) []Action {
	if m.owner() {
		return nil // the owner ignores advertisements (RFC 5798 7.1)
	}
	if r.Priority == 0 {
		m.adverTimer = now.Add(m.cfg.Interval)
		return []Action{{Kind: ActSend, Priority: m.effective}}
	}
	if r.Priority > m.effective || (r.Priority == m.effective && addrGreater(r.Src, m.primary)) {
		why := fmt.Sprintf("higher-priority master %s (priority %d > %d)", r.Src, r.Priority, m.effective)
		if r.Priority == m.effective {
			why = fmt.Sprintf("master %s with equal priority %d and a higher address", r.Src, r.Priority)
		}
		// One last advertisement: after a split brain the winner may never have
		// heard us, and hearing a lower-priority master makes it announce the
		// addresses again to the caches that followed us.
		acts := m.transition(Backup, why, []Action{{Kind: ActSend, Priority: m.effective}, {Kind: ActRelease}})
		m.learn(now, r)
		m.masterDown = now.Add(m.MasterDownInterval())
		return acts
	}
	// Another master of lower rank (a healed split brain): assert ourselves at once
	// so it steps down, and announce the addresses again so that caches which
	// followed it come back (at most once per advertisement interval).
	acts := []Action{{Kind: ActSend, Priority: m.effective}}
	m.adverTimer = now.Add(m.cfg.Interval)
	if now.Sub(m.lastAnnounce) >= m.cfg.Interval {
		m.lastAnnounce = now
		acts = append(acts, Action{Kind: ActAnnounce})
	}
	return acts
}

// Tick runs the timers due at now.
func (m *Machine) Tick(now time.Time) []Action {
	var acts []Action
	switch m.state {
	case Backup:
		if !m.masterDown.IsZero() && !now.Before(m.masterDown) {
			return m.becomeMaster(now, "master down timer expired", nil)
		}
		if !m.preemptCheck.IsZero() && !now.Before(m.preemptCheck) {
			m.preemptCheck = time.Time{}
			if m.masterPriority != 0 && m.masterPriority < m.effective && m.canPreempt(now) {
				return m.becomeMaster(now, fmt.Sprintf("preempted lower-priority master %s after the delay (priority %d < %d)",
					m.master, m.masterPriority, m.effective), nil)
			}
		}
	case Master:
		if !m.adverTimer.IsZero() && !now.Before(m.adverTimer) {
			acts = append(acts, Action{Kind: ActSend, Priority: m.effective})
			m.adverTimer = now.Add(m.cfg.Interval)
		}
	}
	return acts
}

// SetPriority changes the effective priority (tracking). A master advertises the new
// priority at once so that a higher backup can preempt it; a rise restarts the preempt
// delay. The owner's priority does not change.
func (m *Machine) SetPriority(now time.Time, p uint8) []Action {
	if m.owner() || p == m.effective || p == 0 {
		return nil
	}
	old := m.effective
	m.effective = p
	switch m.state {
	case Master:
		m.adverTimer = now.Add(m.cfg.Interval)
		return []Action{{Kind: ActSend, Priority: p}}
	case Backup:
		if p > old && m.cfg.PreemptDelay > 0 {
			m.preemptFrom = now.Add(m.cfg.PreemptDelay)
		}
		if p > old && m.cfg.Preempt && m.masterPriority != 0 && m.masterPriority < p {
			// Re-check once the delay (if any) has passed.
			at := m.preemptFrom
			if at.Before(now) {
				at = now
			}
			m.preemptCheck = at
		}
	}
	return nil
}

// SetFault enters FAULT (reason not empty) or leaves it (reason ""). A master resigns
// with priority 0 and releases the addresses on the way in; leaving FAULT is like
// starting.
func (m *Machine) SetFault(now time.Time, reason string) []Action {
	was := m.faultReason
	m.faultReason = reason
	if m.state == Init {
		return nil // Start will see it
	}
	switch {
	case reason != "" && m.state != Fault:
		var acts []Action
		if m.state == Master {
			acts = append(acts, Action{Kind: ActSend, Priority: 0}, Action{Kind: ActRelease})
		}
		return m.transition(Fault, reason, acts)
	case reason != "" && m.state == Fault && reason != was:
		return []Action{{Kind: ActTransition, From: Fault, To: Fault, Reason: reason}}
	case reason == "" && m.state == Fault:
		if m.owner() {
			return m.becomeMaster(now, "fault cleared; address owner", nil)
		}
		return m.becomeBackup(now, "fault cleared", nil)
	}
	return nil
}

// Handover gives mastership away on purpose: a master resigns with priority 0 and
// becomes backup; in both states preemption is held until until (zero: until Resume).
// The router still takes over if no other master shows up.
func (m *Machine) Handover(now, until time.Time) ([]Action, error) {
	if m.owner() {
		return nil, fmt.Errorf("virtual router %d owns its addresses (priority 255) and cannot hand over", m.cfg.VRID)
	}
	m.holdUntil, m.holdForever = until, until.IsZero()
	m.preemptCheck = time.Time{}
	if m.state != Master {
		return nil, nil
	}
	acts := m.transition(Backup, "handed over on request", []Action{{Kind: ActSend, Priority: 0}, {Kind: ActRelease}})
	m.master, m.masterPriority = netip.Addr{}, 0
	m.masterDown = now.Add(m.MasterDownInterval())
	return acts, nil
}

// Resume ends a hand-over hold.
func (m *Machine) Resume(now time.Time) {
	m.holdUntil, m.holdForever = time.Time{}, false
	if m.state == Backup && m.cfg.Preempt && m.masterPriority != 0 && m.masterPriority < m.effective {
		m.preemptCheck = now
	}
}

// addrGreater compares primary addresses as unsigned integers (RFC 5798 6.4.3).
func addrGreater(a, b netip.Addr) bool { return a.Compare(b) > 0 }

// HoldString describes a hand-over hold at now: "" when none, "until resume", or the
// time it ends (RFC 3339).
func (m *Machine) HoldString(now time.Time) string {
	switch {
	case m.holdForever:
		return "until resume"
	case now.Before(m.holdUntil):
		return m.holdUntil.UTC().Format(time.RFC3339)
	}
	return ""
}
