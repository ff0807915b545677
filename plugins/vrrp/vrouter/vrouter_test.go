package vrouter

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	t0    = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
)

func kinds(acts []Action) string {
	s := make([]string, len(acts))
	for i, a := range acts {
		s[i] = a.String()
	}
	return strings.Join(s, " ")
}

func cfg(prio uint8) Config {
	return Config{VRID: 51, Priority: prio, Interval: time.Second, Preempt: true}
}

func TestTimersFollowRFC(t *testing.T) {
	m := New(cfg(100), addrA)
	if got := kinds(m.Start(t0)); got != "INIT->BACKUP" {
		t.Fatalf("start: %s", got)
	}
	// Skew_Time = (256-100)*1s/256 = 609.375 ms; Master_Down_Interval = 3 s + skew.
	if m.SkewTime() != 609375*time.Microsecond {
		t.Fatalf("skew %v", m.SkewTime())
	}
	if want := t0.Add(3*time.Second + m.SkewTime()); !m.Deadline().Equal(want) {
		t.Fatalf("deadline %v, want %v", m.Deadline(), want)
	}
	if acts := m.Tick(m.Deadline().Add(-time.Nanosecond)); len(acts) != 0 {
		t.Fatalf("early tick: %s", kinds(acts))
	}
	if got := kinds(m.Tick(m.Deadline())); got != "send(100) acquire BACKUP->MASTER" {
		t.Fatalf("master down: %s", got)
	}
	at := m.Deadline()
	if !at.Equal(t0.Add(3*time.Second + m.SkewTime() + time.Second)) {
		t.Fatalf("advert timer %v", at)
	}
	if got := kinds(m.Tick(at)); got != "send(100)" {
		t.Fatalf("advert timer: %s", got)
	}
}

func TestBackupLearnsMasterInterval(t *testing.T) {
	m := New(cfg(100), addrA)
	m.Start(t0)
	m.Receive(t0, Received{Src: addrB, Priority: 200, Interval: 100 * time.Millisecond})
	if m.MasterAdverInterval() != 100*time.Millisecond {
		t.Fatalf("interval %v", m.MasterAdverInterval())
	}
	want := t0.Add(300*time.Millisecond + 156*100*time.Millisecond/256)
	if !m.Deadline().Equal(want) {
		t.Fatalf("deadline %v, want %v", m.Deadline(), want)
	}
	if m.Master() != addrB || m.MasterPriority() != 200 {
		t.Fatalf("master %v/%d", m.Master(), m.MasterPriority())
	}
}

func TestPriorityZeroSkewAndImmediate(t *testing.T) {
	m := New(cfg(100), addrA)
	m.Start(t0)
	m.Receive(t0, Received{Src: addrB, Priority: 200, Interval: time.Second})
	now := t0.Add(500 * time.Millisecond)
	if acts := m.Receive(now, Received{Src: addrB, Priority: 0, Interval: time.Second}); len(acts) != 0 {
		t.Fatalf("resign: %s", kinds(acts))
	}
	if !m.Deadline().Equal(now.Add(m.SkewTime())) {
		t.Fatalf("deadline %v, want skew after %v", m.Deadline(), now)
	}
	c := cfg(100)
	c.ResignImmediate = true
	m = New(c, addrA)
	m.Start(t0)
	m.Receive(t0, Received{Src: addrB, Priority: 200, Interval: time.Second})
	if got := kinds(m.Receive(now, Received{Src: addrB, Priority: 0, Interval: time.Second})); got != "send(100) acquire BACKUP->MASTER" {
		t.Fatalf("immediate: %s", got)
	}
}

func masterAt(t *testing.T, c Config, primary netip.Addr) *Machine {
	t.Helper()
	m := New(c, primary)
	m.Start(t0)
	m.Tick(m.Deadline())
	if m.State() != Master {
		t.Fatalf("not master: %v", m.State())
	}
	return m
}

func TestMasterYieldsToHigherPriorityAndAddress(t *testing.T) {
	now := t0.Add(10 * time.Second)
	m := masterAt(t, cfg(100), addrA)
	if got := kinds(m.Receive(now, Received{Src: addrB, Priority: 101, Interval: time.Second})); got != "send(100) release MASTER->BACKUP" {
		t.Fatalf("higher priority: %s", got)
	}
	// Equal priority: the higher primary address wins.
	m = masterAt(t, cfg(100), addrA)
	if got := kinds(m.Receive(now, Received{Src: addrB, Priority: 100, Interval: time.Second})); got != "send(100) release MASTER->BACKUP" {
		t.Fatalf("equal priority, higher address: %s", got)
	}
	m = masterAt(t, cfg(100), addrB)
	if got := kinds(m.Receive(now, Received{Src: addrA, Priority: 100, Interval: time.Second})); got != "send(100) announce" {
		t.Fatalf("equal priority, lower address: %s", got)
	}
	if m.State() != Master {
		t.Fatal("lost mastership to a lower address")
	}
	// A second lower advert within the interval asserts again but does not
	// announce again.
	if got := kinds(m.Receive(now.Add(10*time.Millisecond), Received{Src: addrA, Priority: 100, Interval: time.Second})); got != "send(100)" {
		t.Fatalf("second lower advert: %s", got)
	}
	// Priority 0 from another router: the master advertises at once.
	if got := kinds(m.Receive(now.Add(2*time.Second), Received{Src: addrA, Priority: 0, Interval: time.Second})); got != "send(100)" {
		t.Fatalf("priority 0 to master: %s", got)
	}
}

func TestPreemptAndNoPreempt(t *testing.T) {
	now := t0.Add(time.Second)
	m := New(cfg(200), addrA)
	m.Start(t0)
	if got := kinds(m.Receive(now, Received{Src: addrB, Priority: 100, Interval: time.Second})); got != "send(200) acquire BACKUP->MASTER" {
		t.Fatalf("preempt: %s", got)
	}
	c := cfg(200)
	c.Preempt = false
	m = New(c, addrA)
	m.Start(t0)
	if acts := m.Receive(now, Received{Src: addrB, Priority: 100, Interval: time.Second}); len(acts) != 0 {
		t.Fatalf("nopreempt: %s", kinds(acts))
	}
	if m.State() != Backup || m.Master() != addrB {
		t.Fatalf("state %v master %v", m.State(), m.Master())
	}
}

func TestBackupIgnoresLowerRouterWhileFollowingBetterMaster(t *testing.T) {
	m := New(cfg(150), addrA)
	m.Start(t0)
	m.Receive(t0, Received{Src: addrB, Priority: 200, Interval: time.Second})
	c := netip.MustParseAddr("192.0.2.3")
	if acts := m.Receive(t0.Add(100*time.Millisecond), Received{Src: c, Priority: 100, Interval: time.Second}); len(acts) != 0 {
		t.Fatalf("preempted a lower router while following a better master: %s", kinds(acts))
	}
	if m.Master() != addrB {
		t.Fatalf("master %v", m.Master())
	}
	// Once the better master has been silent for a master-down interval, the
	// master-down timer has fired anyway; a lower advert alone then preempts.
	m2 := New(cfg(150), addrA)
	m2.Start(t0)
	if got := kinds(m2.Receive(t0, Received{Src: c, Priority: 100, Interval: time.Second})); got != "send(150) acquire BACKUP->MASTER" {
		t.Fatalf("no master followed: %s", got)
	}
}

// TestSplitBrainLoserTellsWinner: after a heal the loser may hear the winner first;
// its last advertisement still reaches the winner, which announces the addresses.
func TestSplitBrainLoserTellsWinner(t *testing.T) {
	a := masterAt(t, cfg(100), addrA)
	b := masterAt(t, cfg(200), addrB)
	now := t0.Add(time.Minute)
	acts := a.Receive(now, Received{Src: addrB, Priority: 200, Interval: time.Second})
	if got := kinds(acts); got != "send(100) release MASTER->BACKUP" {
		t.Fatalf("loser: %s", got)
	}
	if got := kinds(b.Receive(now, Received{Src: addrA, Priority: acts[0].Priority, Interval: time.Second})); got != "send(200) announce" {
		t.Fatalf("winner: %s", got)
	}
}

func TestPreemptDelay(t *testing.T) {
	c := cfg(200)
	c.PreemptDelay = 5 * time.Second
	m := New(c, addrA)
	m.Start(t0)
	adv := Received{Src: addrB, Priority: 100, Interval: time.Second}
	for s := 1; s < 5; s++ {
		if acts := m.Receive(t0.Add(time.Duration(s)*time.Second), adv); len(acts) != 0 {
			t.Fatalf("at %ds: %s", s, kinds(acts))
		}
	}
	if !m.Deadline().Equal(t0.Add(5 * time.Second)) {
		t.Fatalf("preempt check at %v", m.Deadline())
	}
	if got := kinds(m.Tick(t0.Add(5 * time.Second))); got != "send(200) acquire BACKUP->MASTER" {
		t.Fatalf("after the delay: %s", got)
	}
}

func TestHandoverHoldsPreemption(t *testing.T) {
	m := masterAt(t, cfg(200), addrA)
	now := t0.Add(10 * time.Second)
	acts, err := m.Handover(now, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(acts); got != "send(0) release MASTER->BACKUP" {
		t.Fatalf("handover: %s", got)
	}
	adv := Received{Src: addrB, Priority: 100, Interval: time.Second}
	if acts := m.Receive(now.Add(time.Second), adv); len(acts) != 0 {
		t.Fatalf("preempted during hold: %s", kinds(acts))
	}
	// The lower-priority master keeps advertising; no preemption until the hold ends.
	for s := 2; s < 60; s++ {
		if acts := append(m.Receive(now.Add(time.Duration(s)*time.Second), adv), m.Tick(now.Add(time.Duration(s)*time.Second))...); len(acts) != 0 {
			t.Fatalf("at %ds of the hold: %s", s, kinds(acts))
		}
	}
	if !m.Deadline().Equal(now.Add(time.Minute)) {
		t.Fatalf("re-check at %v", m.Deadline())
	}
	if got := kinds(m.Tick(now.Add(time.Minute))); got != "send(200) acquire BACKUP->MASTER" {
		t.Fatalf("after hold: %s", got)
	}
	// A hold without end lasts until Resume; a dead master is still replaced.
	m = masterAt(t, cfg(200), addrA)
	m.Handover(now, time.Time{})
	m.Receive(now.Add(time.Second), adv)
	if m.State() != Backup {
		t.Fatal("preempted during an open hold")
	}
	m.Resume(now.Add(2 * time.Second))
	if got := kinds(m.Tick(now.Add(2 * time.Second))); got != "send(200) acquire BACKUP->MASTER" {
		t.Fatalf("after resume: %s", got)
	}
	m = masterAt(t, cfg(200), addrA)
	m.Handover(now, time.Time{})
	if got := kinds(m.Tick(now.Add(m.MasterDownInterval()))); got != "send(200) acquire BACKUP->MASTER" {
		t.Fatalf("no other master after handover: %s", got)
	}
	if _, err := New(cfg(255), addrA).Handover(now, time.Time{}); err == nil {
		t.Fatal("owner handed over")
	}
}

func TestFault(t *testing.T) {
	m := masterAt(t, cfg(100), addrA)
	now := t0.Add(10 * time.Second)
	if got := kinds(m.SetFault(now, "eth1 down")); got != "send(0) release MASTER->FAULT" {
		t.Fatalf("fault: %s", got)
	}
	if !m.Deadline().IsZero() {
		t.Fatal("timers armed in FAULT")
	}
	if acts := m.Receive(now, Received{Src: addrB, Priority: 50, Interval: time.Second}); len(acts) != 0 {
		t.Fatalf("FAULT handled an advert: %s", kinds(acts))
	}
	if got := kinds(m.SetFault(now, "")); got != "FAULT->BACKUP" {
		t.Fatalf("clear: %s", got)
	}
	// A fault before Start: Start goes to FAULT.
	m = New(cfg(100), addrA)
	m.SetFault(t0, "no address")
	if got := kinds(m.Start(t0)); got != "INIT->FAULT" {
		t.Fatalf("start in fault: %s", got)
	}
}

func TestOwner(t *testing.T) {
	m := New(cfg(255), addrA)
	if got := kinds(m.Start(t0)); got != "send(255) acquire INIT->MASTER" {
		t.Fatalf("owner start: %s", got)
	}
	if acts := m.Receive(t0, Received{Src: addrB, Priority: 255, Interval: time.Second}); len(acts) != 0 {
		t.Fatalf("owner handled an advert: %s", kinds(acts))
	}
	if acts := m.SetPriority(t0, 10); len(acts) != 0 || m.Priority() != 255 {
		t.Fatal("owner priority changed")
	}
}

func TestStopResigns(t *testing.T) {
	m := masterAt(t, cfg(100), addrA)
	if got := kinds(m.Stop(t0.Add(time.Minute), "stopped")); got != "send(0) release MASTER->INIT" {
		t.Fatalf("stop: %s", got)
	}
	if got := kinds(m.Start(t0.Add(2 * time.Minute))); got != "INIT->BACKUP" {
		t.Fatalf("restart: %s", got)
	}
}

func TestSetPriorityWhileMasterAdvertisesAtOnce(t *testing.T) {
	m := masterAt(t, cfg(150), addrA)
	if got := kinds(m.SetPriority(t0.Add(time.Minute), 50)); got != "send(50)" {
		t.Fatalf("lower priority: %s", got)
	}
}

// sim connects machines through a lossless wire with a fixed delay and runs them in
// virtual time.
type sim struct {
	t     *testing.T
	now   time.Time
	nodes []*simNode
	delay time.Duration
	queue []delivery
	log   []string
}

type simNode struct {
	name     string
	m        *Machine
	cut      bool // link down: sends and receives nothing
	acquired bool
	stopped  bool
}

type delivery struct {
	at   time.Time
	from *simNode
	r    Received
}

func (s *sim) apply(n *simNode, acts []Action) {
	for _, a := range acts {
		switch a.Kind {
		case ActSend:
			if n.cut {
				continue
			}
			for _, o := range s.nodes {
				if o != n {
					s.queue = append(s.queue, delivery{at: s.now.Add(s.delay), from: n, r: Received{Src: n.m.Primary(), Priority: a.Priority, Interval: n.m.Config().Interval}})
				}
			}
		case ActAcquire:
			n.acquired = true
		case ActRelease:
			n.acquired = false
		case ActTransition:
			s.log = append(s.log, fmt.Sprintf("%v %s %s (%s)", s.now.Sub(t0), n.name, a, a.Reason))
		}
	}
}

// run advances virtual time to until, delivering packets and ticking timers.
func (s *sim) run(until time.Time) {
	for {
		next := until
		for _, n := range s.nodes {
			if d := n.m.Deadline(); !n.stopped && !d.IsZero() && d.Before(next) {
				next = d
			}
		}
		for _, d := range s.queue {
			if d.at.Before(next) {
				next = d.at
			}
		}
		due := false
		for _, d := range s.queue {
			due = due || !d.at.After(until)
		}
		if next.After(until) || next.Equal(until) && !due {
			s.now = until
			return
		}
		s.now = next
		var rest []delivery
		for _, d := range s.queue {
			if d.at.After(s.now) {
				rest = append(rest, d)
				continue
			}
			for _, o := range s.nodes {
				if o != d.from && !o.cut && !d.from.cut && !o.stopped {
					s.apply(o, o.m.Receive(s.now, d.r))
				}
			}
		}
		s.queue = rest
		for _, n := range s.nodes {
			if !n.stopped {
				s.apply(n, n.m.Tick(s.now))
			}
		}
	}
}

func (s *sim) masters() []string {
	var out []string
	for _, n := range s.nodes {
		if n.m.State() == Master {
			out = append(out, n.name)
		}
	}
	return out
}

func newSim(t *testing.T, cfgs ...Config) *sim {
	s := &sim{t: t, now: t0, delay: time.Millisecond}
	for i, c := range cfgs {
		n := &simNode{name: string(rune('a' + i)), m: New(c, netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}))}
		s.nodes = append(s.nodes, n)
	}
	for _, n := range s.nodes {
		s.apply(n, n.m.Start(s.now))
	}
	return s
}

func TestSimElectionAndSplitBrain(t *testing.T) {
	s := newSim(t, cfg(100), cfg(200))
	s.run(t0.Add(10 * time.Second))
	if got := s.masters(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("masters %v\n%s", got, strings.Join(s.log, "\n"))
	}
	// Cut b's link: a takes over after its master-down interval.
	s.nodes[1].cut = true
	s.run(s.now.Add(5 * time.Second))
	if got := s.masters(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("split brain masters %v", got)
	}
	// Heal: within one master-down interval exactly one master remains.
	s.nodes[1].cut = false
	s.run(s.now.Add(s.nodes[0].m.MasterDownInterval()))
	if got := s.masters(); !slices.Equal(got, []string{"b"}) || s.nodes[0].acquired {
		t.Fatalf("after heal masters %v\n%s", got, strings.Join(s.log, "\n"))
	}
}

func TestSimTieBreakEqualPriority(t *testing.T) {
	s := newSim(t, cfg(100), cfg(100), cfg(100))
	s.run(t0.Add(10 * time.Second))
	if got := s.masters(); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("masters %v (want the highest address)\n%s", got, strings.Join(s.log, "\n"))
	}
}

func TestSimMasterStopsBackupTakesOverAfterSkew(t *testing.T) {
	s := newSim(t, cfg(100), cfg(200))
	s.run(t0.Add(10 * time.Second))
	stop := s.now
	s.apply(s.nodes[1], s.nodes[1].m.Stop(s.now, "stopped"))
	s.nodes[1].stopped = true
	s.run(s.now.Add(2 * time.Second))
	if got := s.masters(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("masters %v", got)
	}
	// a became master one skew time (609 ms) after the priority-0 advert.
	want := fmt.Sprintf("%v a BACKUP->MASTER", stop.Add(s.delay+s.nodes[0].m.SkewTime()).Sub(t0))
	if !strings.HasPrefix(s.log[len(s.log)-1], want) {
		t.Fatalf("last transition %q, want prefix %q", s.log[len(s.log)-1], want)
	}
}
