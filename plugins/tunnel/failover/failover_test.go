package failover

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// sim feeds a selector with gateways whose "alive" flag makes their rx grow.
type sim struct {
	t     *testing.T
	s     *Selector
	now   time.Time
	rx    map[string]uint64
	alive map[string]bool
}

func newSim(t *testing.T, p Params, names ...string) *sim {
	return &sim{t: t, s: New(names, p, t0), now: t0, rx: map[string]uint64{}, alive: map[string]bool{}}
}

// step advances the clock by d in ticks of 100 ms and returns every change seen.
func (m *sim) step(d time.Duration) []Decision {
	var out []Decision
	for end := m.now.Add(d); m.now.Before(end); {
		m.now = m.now.Add(100 * time.Millisecond)
		samples := map[string]Sample{}
		for name := range m.rx {
			if m.alive[name] {
				m.rx[name] += 32
			}
			samples[name] = Sample{RxBytes: m.rx[name]}
		}
		if d := m.s.Observe(m.now, samples); d.Changed {
			out = append(out, d)
		}
	}
	return out
}

func (m *sim) set(name string, alive bool) {
	if _, ok := m.rx[name]; !ok {
		m.rx[name] = 0
	}
	m.alive[name] = alive
}

func TestStartupPrefersFirst(t *testing.T) {
	m := newSim(t, Params{Window: 2 * time.Second, Hold: 10 * time.Second, Grace: time.Second}, "a", "b")
	m.set("a", false)
	m.set("b", true)
	if ch := m.step(900 * time.Millisecond); len(ch) != 0 {
		t.Fatalf("chose during the grace period: %+v", ch)
	}
	ch := m.step(300 * time.Millisecond)
	if len(ch) != 1 || ch[0].Active != "b" || !ch[0].Up || ch[0].Reason != ReasonStartup {
		t.Fatalf("after grace: %+v", ch)
	}
	// a comes alive: taken back only after Hold.
	m.set("a", true)
	if ch := m.step(9 * time.Second); len(ch) != 0 {
		t.Fatalf("returned before hold: %+v", ch)
	}
	ch = m.step(2 * time.Second)
	if len(ch) != 1 || ch[0].Active != "a" || ch[0].Previous != "b" || ch[0].Reason != ReasonPreferred {
		t.Fatalf("after hold: %+v", ch)
	}
}

func TestStartupFirstAnswers(t *testing.T) {
	m := newSim(t, Params{Window: 2 * time.Second, Hold: 10 * time.Second, Grace: time.Second}, "a", "b")
	m.set("a", true)
	m.set("b", true)
	ch := m.step(200 * time.Millisecond)
	if len(ch) != 1 || ch[0].Active != "a" || ch[0].Reason != ReasonStartup {
		t.Fatalf("%+v", ch)
	}
}

func TestFailoverWithinWindow(t *testing.T) {
	p := Params{Window: 2 * time.Second, Hold: 5 * time.Second, Grace: time.Second}
	m := newSim(t, p, "a", "b")
	m.set("a", true)
	m.set("b", true)
	m.step(10 * time.Second)
	if m.s.Active() != "a" || !m.s.Up() {
		t.Fatal("not on a")
	}
	m.set("a", false)
	died := m.now
	var ch []Decision
	for len(ch) == 0 && m.now.Sub(died) < 10*time.Second {
		ch = m.step(100 * time.Millisecond)
	}
	took := m.now.Sub(died)
	if len(ch) != 1 || ch[0].Active != "b" || ch[0].Reason != ReasonDead || !ch[0].Up {
		t.Fatalf("%+v", ch)
	}
	if took < p.Window || took > p.Window+200*time.Millisecond {
		t.Fatalf("failover after %s, want just over the %s window", took, p.Window)
	}
	// a is back and flaps: never alive for Hold in a row, so never taken back.
	for i := 0; i < 5; i++ {
		m.set("a", true)
		if ch := m.step(4 * time.Second); len(ch) != 0 {
			t.Fatalf("flap %d: %+v", i, ch)
		}
		m.set("a", false)
		m.step(3 * time.Second)
	}
	m.set("a", true)
	ch = m.step(6 * time.Second)
	if len(ch) != 1 || ch[0].Active != "a" {
		t.Fatalf("stable a not taken back: %+v", ch)
	}
}

func TestAllDeadThenRecover(t *testing.T) {
	m := newSim(t, Params{Window: time.Second, Hold: time.Minute}, "a", "b")
	m.set("a", true)
	m.set("b", false)
	m.step(2 * time.Second)
	m.set("a", false)
	ch := m.step(2 * time.Second)
	if len(ch) != 1 || ch[0].Up || ch[0].Active != "a" || ch[0].Reason != ReasonDown {
		t.Fatalf("down: %+v", ch)
	}
	m.set("a", true)
	ch = m.step(time.Second)
	if len(ch) != 1 || !ch[0].Up || ch[0].Active != "a" || ch[0].Reason != ReasonRecovered {
		t.Fatalf("recovered: %+v", ch)
	}
	// While all are dead, b answering first takes over.
	m.set("a", false)
	m.step(2 * time.Second)
	m.set("b", true)
	ch = m.step(time.Second)
	if len(ch) != 1 || ch[0].Active != "b" || !ch[0].Up || ch[0].Reason != ReasonDead {
		t.Fatalf("b takes over: %+v", ch)
	}
}

func TestHandshakeCountsAsLife(t *testing.T) {
	s := New([]string{"a"}, Params{Window: 6 * time.Second}, t0)
	d := s.Observe(t0.Add(time.Second), map[string]Sample{"a": {LastHandshake: t0.Add(500 * time.Millisecond)}})
	if !d.Up || d.Active != "a" {
		t.Fatalf("%+v", d)
	}
	// Same handshake, no rx: dead 6 s after the handshake.
	if d := s.Observe(t0.Add(6400*time.Millisecond), map[string]Sample{"a": {LastHandshake: t0.Add(500 * time.Millisecond)}}); !d.Up {
		t.Fatal("dead too early")
	}
	if d := s.Observe(t0.Add(6600*time.Millisecond), map[string]Sample{"a": {LastHandshake: t0.Add(500 * time.Millisecond)}}); d.Up {
		t.Fatal("alive too long")
	}
	// A handshake stamped in the future (clock skew) counts as now.
	d = s.Observe(t0.Add(7*time.Second), map[string]Sample{"a": {LastHandshake: t0.Add(time.Hour)}})
	if !d.Up {
		t.Fatal("new handshake ignored")
	}
	if st := s.States(t0.Add(7 * time.Second)); st[0].LastSeen != t0.Add(7*time.Second) {
		t.Fatalf("last seen %v", st[0].LastSeen)
	}
}

func TestPin(t *testing.T) {
	m := newSim(t, Params{Window: 2 * time.Second, Hold: time.Second}, "a", "b", "c")
	m.set("a", true)
	m.set("b", true)
	m.set("c", false)
	m.step(3 * time.Second)
	if _, err := m.s.Pin("zz", false, m.now); err == nil {
		t.Fatal("unknown gateway accepted")
	}
	if _, err := m.s.Pin("c", false, m.now); err == nil || !strings.Contains(err.Error(), "has not answered") {
		t.Fatalf("dead gateway: %v", err)
	}
	d, err := m.s.Pin("b", false, m.now)
	if err != nil || d.Active != "b" || d.Reason != ReasonManual || !d.Changed {
		t.Fatalf("%+v %v", d, err)
	}
	// Pinned: a (preferred, alive) is not taken back.
	if ch := m.step(10 * time.Second); len(ch) != 0 {
		t.Fatalf("pin ignored: %+v", ch)
	}
	// b dies: the pin ends, a takes over.
	m.set("b", false)
	ch := m.step(3 * time.Second)
	if len(ch) != 1 || ch[0].Active != "a" || m.s.Pinned() {
		t.Fatalf("%+v pinned=%v", ch, m.s.Pinned())
	}
	// Pin then auto: preference decides again at once (a alive for long).
	m.set("b", true)
	m.step(3 * time.Second)
	m.s.Pin("b", false, m.now)
	d, _ = m.s.Pin("auto", false, m.now)
	if d.Active != "a" || d.Reason != ReasonPreferred {
		t.Fatalf("auto: %+v", d)
	}
}

func TestUpdateKeepsState(t *testing.T) {
	m := newSim(t, Params{Window: 2 * time.Second, Hold: time.Second}, "a", "b")
	m.set("a", true)
	m.set("b", true)
	m.step(3 * time.Second)
	m.s.Update([]string{"b", "a", "c"}, Params{Window: 2 * time.Second, Hold: time.Second})
	if m.s.Active() != "a" {
		t.Fatal("active lost")
	}
	// b is now preferred and has been alive for long: taken at once.
	ch := m.step(100 * time.Millisecond)
	if len(ch) != 1 || ch[0].Active != "b" || ch[0].Reason != ReasonPreferred {
		t.Fatalf("%+v", ch)
	}
	// Remove the active gateway: another is chosen.
	m.s.Update([]string{"a"}, Params{Window: 2 * time.Second})
	delete(m.rx, "b")
	ch = m.step(100 * time.Millisecond)
	if len(ch) != 1 || ch[0].Active != "a" || !ch[0].Up || ch[0].Reason != ReasonConfig {
		t.Fatalf("%+v", ch)
	}
}

func TestForget(t *testing.T) {
	m := newSim(t, Params{Window: 2 * time.Second, Hold: time.Second}, "a", "b")
	m.set("a", true)
	m.set("b", true)
	m.step(3 * time.Second)
	m.s.Forget("b")
	if st := m.s.States(m.now); st[1].Alive || !st[1].LastSeen.IsZero() {
		t.Fatalf("b not forgotten: %+v", st[1])
	}
	m.s.Forget("nope") // no-op
}
