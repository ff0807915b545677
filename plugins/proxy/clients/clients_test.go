package clients

import (
	"net/netip"
	"testing"
	"time"
)

func TestAdmitLimitsAndList(t *testing.T) {
	r := New()
	r.SetLimits(Limits{MaxConns: 2})
	a := netip.MustParseAddr("::ffff:10.0.0.1")
	b := netip.MustParseAddr("10.0.0.2")
	c1, why := r.Admit(a)
	c2, _ := r.Admit(a)
	if c1 == nil || c2 == nil || why != "" {
		t.Fatalf("first two refused: %q", why)
	}
	if _, why := r.Admit(a); why != ReasonClientConns {
		t.Fatalf("third connection: %q", why)
	}
	cb, _ := r.Admit(b)
	cb.AddIn(100)
	cb.AddOut(7)
	if r.Connected() != 2 || r.ActiveConns() != 3 {
		t.Fatalf("connected %d active %d", r.Connected(), r.ActiveConns())
	}
	r.Done(c1)
	if _, why := r.Admit(a); why != "" {
		t.Fatalf("after one closed: %q", why)
	}
	list := r.List("bytes_in", 0)
	if len(list) != 2 || list[0].Addr != "10.0.0.2" || list[0].BytesIn != 100 || list[0].BytesOut != 7 {
		t.Fatalf("list %+v", list)
	}
	if l := r.List("active", 1); len(l) != 1 || l[0].Addr != "10.0.0.1" || l[0].Active != 2 || l[0].Total != 3 || l[0].Refusals[ReasonClientConns] != 1 {
		t.Fatalf("by active: %+v", l)
	}
	// Lifting the limit applies at once.
	r.SetLimits(Limits{})
	for range 5 {
		if _, why := r.Admit(a); why != "" {
			t.Fatal(why)
		}
	}
}

func TestConnRateAndPrune(t *testing.T) {
	r := New()
	r.SetLimits(Limits{ConnRate: 1})
	a := netip.MustParseAddr("192.0.2.1")
	c, why := r.Admit(a)
	if why != "" {
		t.Fatal(why)
	}
	if _, why := r.Admit(a); why != ReasonClientRate {
		t.Fatalf("second in the same instant: %q", why)
	}
	r.Done(c)
	now := time.Now().Add(2 * time.Hour)
	r.now = func() time.Time { return now }
	if n := r.Prune(time.Hour); n != 1 || len(r.List("addr", 0)) != 0 {
		t.Fatalf("pruned %d", n)
	}
}
