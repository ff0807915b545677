package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/vrrp/internal/harness"
	"github.com/sitelink/sitelink/testenv"
)

// Master-down interval at 100 ms adverts and priority 100: 300 ms + 61 ms skew.
const mdi100 = 361 * time.Millisecond

func TestElectionHigherPriorityWins(t *testing.T) {
	t.Parallel()
	l := newLAN(t, "r1", "r2")
	r1 := l.plugin("r1", instance(100, nil))
	r2 := l.plugin("r2", instance(200, nil))
	l.waitState(r2, "MASTER", 5*time.Second)
	l.waitState(r1, "BACKUP", 5*time.Second)
	l.onlyOwner("r2", "r1", "r2")
	l.waitRole(r2, "MASTER", 2*time.Second)
	l.waitRole(r1, "BACKUP", 2*time.Second)
	testenv.Eventually(t, time.Second, "r1 follows r2 at priority 200", func() (bool, error) {
		st := l.status(r1)
		return st.Master == addr(2) && st.MasterPriority == 200, nil
	})
	// Adverts are multicast with TTL 255 and carry the priority.
	var seen bool
	for _, p := range l.arp.VRRP() {
		if p.Src.String() == addr(2) && p.Priority == 200 {
			seen = true
			if p.TTL != 255 || p.Dst.String() != "224.0.0.18" || p.VRID != 51 {
				t.Fatalf("advert %+v: want TTL 255 to 224.0.0.18 for VRID 51", p)
			}
		}
	}
	if !seen {
		t.Fatal("the client saw no advertisement from r2")
	}
}

func TestPreempt(t *testing.T) {
	t.Parallel()
	l := newLAN(t, "r1", "r2")
	r1 := l.plugin("r1", instance(100, nil))
	l.waitState(r1, "MASTER", 5*time.Second)
	start := time.Now()
	r2 := l.plugin("r2", instance(200, nil))
	l.waitState(r2, "MASTER", 5*time.Second)
	l.waitState(r1, "BACKUP", 2*time.Second)
	l.onlyOwner("r2", "r1", "r2")
	// Preemption is immediate on the first lower-priority advert, not after a
	// master-down interval.
	if d := masterSince(r2).Sub(start); d > 500*time.Millisecond {
		t.Fatalf("r2 preempted after %v", d)
	}
}

func TestNoPreempt(t *testing.T) {
	t.Parallel()
	l := newLAN(t, "r1", "r2")
	r1 := l.plugin("r1", instance(100, nil))
	l.waitState(r1, "MASTER", 5*time.Second)
	r2 := l.plugin("r2", instance(200, map[string]any{"preempt": false}))
	l.waitState(r2, "BACKUP", 2*time.Second)
	time.Sleep(4 * mdi100) // long enough to preempt, were it allowed
	if s := l.state(r2); s != "BACKUP" {
		t.Fatalf("nopreempt r2 is %s", s)
	}
	l.onlyOwner("r1", "r1", "r2")
	// Without preemption r2 still takes over when r1 dies.
	if err := r1.Kill(); err != nil {
		t.Fatal(err)
	}
	l.waitState(r2, "MASTER", 2*time.Second)
}

func TestPreemptDelay(t *testing.T) {
	t.Parallel()
	l := newLAN(t, "r1", "r2")
	r1 := l.plugin("r1", instance(100, nil))
	l.waitState(r1, "MASTER", 5*time.Second)
	start := time.Now()
	r2 := l.plugin("r2", instance(200, map[string]any{"preempt_delay": "1500ms"}))
	l.waitState(r2, "MASTER", 5*time.Second)
	d := masterSince(r2).Sub(start)
	if d < 1500*time.Millisecond || d > 2500*time.Millisecond {
		t.Fatalf("r2 preempted %v after start, want 1.5 s (+ start-up)", d)
	}
	l.waitState(r1, "BACKUP", 2*time.Second)
}

func TestTieBreakHigherAddressWins(t *testing.T) {
	t.Parallel()
	l := newLAN(t, "r1", "r2")
	l.partition(true)
	r1 := l.plugin("r1", instance(100, nil))
	r2 := l.plugin("r2", instance(100, nil))
	l.waitState(r1, "MASTER", 5*time.Second)
	l.waitState(r2, "MASTER", 5*time.Second)
	l.partition(false)
	l.waitState(r1, "BACKUP", 2*time.Second)
	if s := l.state(r2); s != "MASTER" {
		t.Fatalf("r2 (higher address) is %s", s)
	}
	l.onlyOwner("r2", "r1", "r2")
}

func TestSplitBrainHeals(t *testing.T) {
	t.Parallel()
	l := newLAN(t, "r1", "r2")
	r1 := l.plugin("r1", instance(100, nil))
	r2 := l.plugin("r2", instance(200, nil))
	l.waitState(r2, "MASTER", 5*time.Second)
	l.waitState(r1, "BACKUP", 2*time.Second)
	l.partition(true)
	l.waitState(r1, "MASTER", 2*time.Second)
	if s := l.state(r2); s != "MASTER" {
		t.Fatalf("r2 is %s during the split", s)
	}
	if !l.hasVIP("r1") || !l.hasVIP("r2") {
		t.Fatal("both masters should hold the VIP during the split")
	}
	healed := time.Now()
	l.partition(false)
	l.waitState(r1, "BACKUP", mdi100)
	if d := time.Since(healed); d > mdi100 {
		t.Fatalf("two masters for %v after healing, want at most one master-down interval (%v)", d, mdi100)
	}
	if s := l.state(r2); s != "MASTER" {
		t.Fatalf("r2 is %s after healing", s)
	}
	// r2 heard the lower-priority master and announced the VIP again.
	mac2 := l.mac("r2")
	testenv.Eventually(t, time.Second, "gratuitous ARP from r2 after healing", func() (bool, error) {
		for _, f := range l.arp.Frames() {
			if f.Time.After(healed) && f.Gratuitous() && f.SenderIP == vip && f.SenderMAC == mac2 {
				return true, nil
			}
		}
		return false, nil
	})
	l.onlyOwner("r2", "r1", "r2")
}

func TestStopSendsPriorityZero(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"skew", "immediate"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			l := newLAN(t, "r1", "r2")
			r1 := l.plugin("r1", instance(100, map[string]any{"resign_takeover": mode}))
			r2 := l.plugin("r2", instance(200, nil))
			l.waitState(r2, "MASTER", 5*time.Second)
			l.waitState(r1, "BACKUP", 2*time.Second)
			stop := time.Now()
			if err := r2.Stop(l.ctx); err != nil {
				t.Fatal(err)
			}
			l.waitState(r1, "MASTER", time.Second)
			// r1 took over on the priority 0, before a master-down interval could
			// pass (the benchmark measures how fast).
			if took := masterSince(r1).Sub(stop); took >= mdi100 {
				t.Fatalf("r1 took over %v after r2 stopped: not on its priority 0", took)
			}
			if reason := lastReason(l.status(r1)); mode == "immediate" && !strings.Contains(reason, "priority 0") {
				t.Fatalf("r1's takeover reason %q, want the resignation", reason)
			}
			var zero bool
			for _, p := range l.arp.VRRP() {
				zero = zero || (p.Src.String() == addr(2) && p.Priority == 0)
			}
			if !zero {
				t.Fatal("no priority-0 advertisement from r2")
			}
			l.onlyOwner("r1", "r1", "r2")
			l.waitRole(r2, "BACKUP", time.Second)
		})
	}
}

func TestSIGTERMResigns(t *testing.T) {
	t.Parallel()
	l := newLAN(t, "r1", "r2")
	r1 := l.plugin("r1", instance(100, nil))
	r2 := l.plugin("r2", instance(200, nil))
	l.waitState(r2, "MASTER", 5*time.Second)
	l.waitState(r1, "BACKUP", 2*time.Second)
	term := time.Now()
	if err := r2.Terminate(); err != nil {
		t.Fatal(err)
	}
	l.waitState(r1, "MASTER", time.Second)
	if d := masterSince(r1).Sub(term); d >= mdi100 {
		t.Fatalf("r1 took over %v after SIGTERM to r2: not on a priority 0", d)
	}
	testenv.Eventually(t, 5*time.Second, "r2 exits", func() (bool, error) { return r2.Exited(), nil })
	if r := r2.Role(); r != "BACKUP" {
		t.Fatalf("r2's last role event before exiting: %q, want BACKUP", r)
	}
	l.onlyOwner("r1", "r1", "r2")
}

func TestUnicastPeers(t *testing.T) {
	t.Parallel()
	l := newLAN(t, "r1", "r2", "r3")
	r1 := l.plugin("r1", instance(100, map[string]any{"unicast_peers": []string{addr(2)}}))
	r2 := l.plugin("r2", instance(200, map[string]any{"unicast_peers": []string{addr(1)}}))
	// r3 is in the same VRID and sends to r1, but is not r1's peer: ignored.
	r3 := l.plugin("r3", instance(250, map[string]any{"unicast_peers": []string{addr(1)}}))
	l.waitState(r2, "MASTER", 5*time.Second)
	l.waitState(r1, "BACKUP", 2*time.Second)
	testenv.Eventually(t, time.Second, "r1 follows r2", func() (bool, error) { return l.status(r1).Master == addr(2), nil })
	l.waitState(r3, "MASTER", 2*time.Second) // hears nobody
	testenv.Eventually(t, 2*time.Second, "r1 drops r3's adverts", func() (bool, error) {
		return l.status(r1).Counters.Invalid["unknown_peer"] > 0, nil
	})
	for _, p := range l.arp.VRRP() {
		if p.Dst.IsMulticast() {
			t.Fatalf("multicast advert %+v in unicast mode", p)
		}
	}
	if err := r2.Kill(); err != nil {
		t.Fatal(err)
	}
	l.waitState(r1, "MASTER", 2*time.Second)
}

func TestTrackInterface(t *testing.T) {
	t.Parallel()
	for _, weight := range []int{-150, 0} {
		t.Run(fmt.Sprintf("weight%d", weight), func(t *testing.T) {
			t.Parallel()
			l := newLAN(t, "r1", "r2")
			wan, err := l.env.Host("wan")
			if err != nil {
				t.Fatal(err)
			}
			if err := l.env.Link(l.hosts["r2"], "eth1", wan, "eth0"); err != nil {
				t.Fatal(err)
			}
			r1 := l.plugin("r1", instance(100, nil))
			r2 := l.plugin("r2", instance(200, map[string]any{
				"track_interfaces": []any{map[string]any{"name": "eth1", "weight": weight}}}))
			l.waitState(r2, "MASTER", 5*time.Second)
			l.waitState(r1, "BACKUP", 2*time.Second)
			// The far end going down takes the carrier away from r2's eth1.
			if err := wan.LinkDown("eth0"); err != nil {
				t.Fatal(err)
			}
			l.waitState(r1, "MASTER", 2*time.Second)
			if weight == 0 {
				l.waitState(r2, "FAULT", time.Second)
			} else {
				l.waitState(r2, "BACKUP", time.Second)
			}
			st := l.status(r2)
			if weight == 0 {
				if st.State != "FAULT" || !strings.Contains(st.Fault, "eth1") {
					t.Fatalf("r2 is %s (%s), want FAULT naming eth1", st.State, st.Fault)
				}
				l.waitRole(r2, "FAULT", time.Second)
			} else if st.State != "BACKUP" || st.EffectivePriority != 50 {
				t.Fatalf("r2 is %s with effective priority %d, want BACKUP 50", st.State, st.EffectivePriority)
			}
			l.onlyOwner("r1", "r1", "r2")
			if err := wan.LinkUp("eth0"); err != nil {
				t.Fatal(err)
			}
			l.waitState(r2, "MASTER", 2*time.Second)
			l.waitState(r1, "BACKUP", 2*time.Second)
			l.onlyOwner("r2", "r1", "r2")
		})
	}
}

func TestTrackTunnelEvents(t *testing.T) {
	t.Parallel()
	l := newLAN(t, "r1", "r2")
	r1 := l.plugin("r1", instance(100, nil))
	l.waitState(r1, "MASTER", 5*time.Second)
	r2 := l.plugin("r2", instance(200, map[string]any{
		"track_events": []any{map[string]any{"type": "tunnel", "match": map[string]string{"gateway": "gw-a"}, "weight": -150}}}))
	// Before any tunnel event the tunnel counts as down: 200 - 150 = 50.
	testenv.Eventually(t, 2*time.Second, "r2 at effective priority 50", func() (bool, error) {
		return l.status(r2).EffectivePriority == 50, nil
	})
	if s := l.state(r1); s != "MASTER" {
		t.Fatalf("r1 is %s", s)
	}
	tunnel := func(state, gw string) {
		r2.Publish(sdk.Event{Type: sdk.EventTunnel, Source: "tunnel", Retain: true,
			Attrs: map[string]string{"state": state, "gateway": gw}})
	}
	tunnel("up", "gw-b") // another gateway: ignored
	time.Sleep(3 * mdi100)
	if s := l.state(r2); s != "BACKUP" {
		t.Fatalf("r2 is %s after an event for another gateway", s)
	}
	tunnel("up", "gw-a")
	l.waitState(r2, "MASTER", 2*time.Second)
	l.waitState(r1, "BACKUP", 2*time.Second)
	l.onlyOwner("r2", "r1", "r2")
	// A changed instance restarts and learns the tunnel's state again from the
	// retained event.
	if err := r2.Configure(l.ctx, instance(200, map[string]any{"garp": map[string]any{"count": 2},
		"track_events": []any{map[string]any{"type": "tunnel", "match": map[string]string{"gateway": "gw-a"}, "weight": -150}}})); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 3*time.Second, "restarted r2 master at priority 200", func() (bool, error) {
		st := l.status(r2)
		return st.State == "MASTER" && st.EffectivePriority == 200, nil
	})
	tunnel("down", "gw-a")
	l.waitState(r1, "MASTER", 2*time.Second)
	l.waitState(r2, "BACKUP", 2*time.Second)
	l.onlyOwner("r1", "r1", "r2")
}

func TestHandoverAndResume(t *testing.T) {
	t.Parallel()
	l := newLAN(t, "r1", "r2")
	r1 := l.plugin("r1", instance(100, nil))
	r2 := l.plugin("r2", instance(200, nil))
	l.waitState(r2, "MASTER", 5*time.Second)
	out, err := r2.Action(l.ctx, "handover", nil)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Resigned []string `json:"resigned"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Resigned) != 1 || res.Resigned[0] != "vi1" {
		t.Fatalf("handover result %s (%v)", out, err)
	}
	l.waitState(r1, "MASTER", time.Second)
	if st := l.status(r2); st.State != "BACKUP" || st.Hold != "until resume" {
		t.Fatalf("r2 is %s hold %q", st.State, st.Hold)
	}
	time.Sleep(3 * mdi100)
	if s := l.state(r2); s != "BACKUP" {
		t.Fatalf("r2 took mastership back during the hold: %s", s)
	}
	l.onlyOwner("r1", "r1", "r2")
	if _, err := r2.Action(l.ctx, "resume", nil); err != nil {
		t.Fatal(err)
	}
	l.waitState(r2, "MASTER", time.Second)
	l.waitState(r1, "BACKUP", time.Second)
	// A timed hold ends by itself.
	if _, err := r2.Action(l.ctx, "handover", map[string]string{"instance": "vi1", "for": "1s"}); err != nil {
		t.Fatal(err)
	}
	l.waitState(r1, "MASTER", time.Second)
	l.waitState(r2, "MASTER", 3*time.Second)
	if _, err := r2.Action(l.ctx, "handover", map[string]string{"instance": "nope"}); err == nil {
		t.Fatal("handover of an unknown instance succeeded")
	}
}

func TestCrashLeftoversAreRemoved(t *testing.T) {
	t.Parallel()
	l := newLAN(t, "r1", "r2")
	r1 := l.plugin("r1", instance(100, nil))
	r2 := l.plugin("r2", instance(200, nil))
	l.waitState(r2, "MASTER", 5*time.Second)
	if err := r2.Kill(); err != nil {
		t.Fatal(err)
	}
	l.waitState(r1, "MASTER", 2*time.Second)
	if !l.hasVIP("r2") {
		t.Fatal("a SIGKILLed plugin cannot remove its VIP; it should still be there")
	}
	// The next start (same state directory) removes it before anything else...
	r2b := l.plugin("r2", instance(200, map[string]any{"preempt": false}))
	testenv.Eventually(t, 2*time.Second, "r2 without the leftover VIP", func() (bool, error) { return !l.hasVIP("r2"), nil })
	l.waitState(r2b, "BACKUP", time.Second)
	l.onlyOwner("r1", "r1", "r2")
	// ...and Cleanup (sitelinkd --cleanup) removes a crashed master's VIP without
	// configuring the plugin.
	if err := r1.Kill(); err != nil {
		t.Fatal(err)
	}
	l.waitState(r2b, "MASTER", 2*time.Second)
	fresh, err := harness.StartPlugin(l.ctx, l.env, l.hosts["r1"], "r1", harness.PluginOptions{
		Binary: pluginBinary(t), User: "nobody", Log: logWriter{t, "r1-cleanup"}})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	removed, err := fresh.Client.Cleanup(l.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != "10.0.0.50/24 on eth0" {
		t.Fatalf("cleanup removed %q", removed)
	}
	if l.hasVIP("r1") {
		t.Fatal("VIP still on r1 after cleanup")
	}
	l.onlyOwner("r2", "r1", "r2")
}

func TestInvalidPacketsCountedAndDropped(t *testing.T) {
	t.Parallel()
	l := newLAN(t, "r1")
	r1 := l.plugin("r1", instance(100, nil))
	l.waitState(r1, "MASTER", 5*time.Second)
	src := netip.MustParseAddr("10.0.0.100")
	good := harness.Advert{VRID: 51, Priority: 254, Interval: 10, Addrs: []netip.Addr{vip}}
	bad := map[string]harness.Advert{
		"ttl":       {VRID: 51, Priority: 254, Interval: 10, Addrs: []netip.Addr{vip}, TTL: 64},
		"checksum":  {VRID: 51, Priority: 254, Interval: 10, Addrs: []netip.Addr{vip}, CorruptChecksum: true},
		"version":   {VRID: 51, Priority: 254, Interval: 10, Addrs: []netip.Addr{vip}, Version: 2},
		"addr_list": {VRID: 51, Priority: 254, Interval: 10, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.51")}},
		"length":    {VRID: 51, Priority: 254, Interval: 10, Addrs: []netip.Addr{vip}, Truncate: 2},
	}
	for reason, a := range bad {
		for range 3 {
			if err := harness.SendAdvert(l.client, "eth0", src, a); err != nil {
				t.Fatalf("%s: %v", reason, err)
			}
		}
	}
	testenv.Eventually(t, 2*time.Second, "invalid packets counted", func() (bool, error) {
		inv := l.status(r1).Counters.Invalid
		for reason := range bad {
			if inv[reason] != 3 {
				return false, fmt.Errorf("counters %v", inv)
			}
		}
		return true, nil
	})
	if s := l.state(r1); s != "MASTER" {
		t.Fatalf("r1 is %s: an invalid higher-priority advert was obeyed", s)
	}
	// The same advert, valid, makes r1 step down.
	if err := harness.SendAdvert(l.client, "eth0", src, good); err != nil {
		t.Fatal(err)
	}
	l.waitState(r1, "BACKUP", time.Second)
}

func TestIPv6(t *testing.T) {
	t.Parallel()
	testenv.Require(t, "ping")
	l := newLAN(t, "r1", "r2")
	for i, name := range []string{"r1", "r2"} {
		if err := l.hosts[name].AddAddr("eth0", fmt.Sprintf("fd00::%d/64", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.client.AddAddr("eth0", "fd00::100/64"); err != nil {
		t.Fatal(err)
	}
	cfg := func(prio int) map[string]any {
		return map[string]any{"instances": []any{map[string]any{"name": "vi6", "interface": "eth0", "vrid": 52,
			"priority": prio, "virtual_ips": []string{"fd00::50/64"}, "advert_interval": 10}}}
	}
	r1 := l.plugin("r1", cfg(100))
	r2 := l.plugin("r2", cfg(200))
	l.waitState(r2, "MASTER", 5*time.Second)
	l.waitState(r1, "BACKUP", 2*time.Second)
	v6 := netip.MustParseAddr("fd00::50")
	if ok, _ := harness.HasAddr(l.hosts["r2"], "eth0", v6); !ok {
		t.Fatal("r2 does not hold the IPv6 VIP")
	}
	if ok, _ := harness.HasAddr(l.hosts["r1"], "eth0", v6); ok {
		t.Fatal("r1 holds the IPv6 VIP")
	}
	testenv.Eventually(t, 2*time.Second, "r1 follows r2's link-local address", func() (bool, error) {
		return strings.HasPrefix(l.status(r1).Master, "fe80::"), nil
	})
	if _, err := l.client.Run(l.ctx, "ping", "-6", "-c1", "-W1", "fd00::50"); err != nil {
		t.Fatal(err)
	}
	if err := r2.Kill(); err != nil {
		t.Fatal(err)
	}
	l.waitState(r1, "MASTER", 2*time.Second)
	if ok, _ := harness.HasAddr(l.hosts["r1"], "eth0", v6); !ok {
		t.Fatal("r1 did not take the IPv6 VIP")
	}
}

// TestSeveralInstancesRole: the node is MASTER only when every instance that affects
// the role is master; reconfiguring one instance leaves the other running.
func TestSeveralInstancesRole(t *testing.T) {
	t.Parallel()
	l := newLAN(t, "r1", "r2")
	cfg := func(p1, p2 int, affects bool) map[string]any {
		return map[string]any{"instances": []any{
			map[string]any{"name": "vi1", "interface": "eth0", "vrid": 51, "priority": p1,
				"virtual_ips": []string{"10.0.0.50/24"}, "advert_interval": 10},
			map[string]any{"name": "vi2", "interface": "eth0", "vrid": 52, "priority": p2,
				"virtual_ips": []string{"10.0.0.51/24"}, "advert_interval": 10, "affects_role": affects},
		}}
	}
	r1 := l.plugin("r1", cfg(200, 100, true))
	r2 := l.plugin("r2", cfg(100, 200, true))
	states := func(p *harness.Plugin) string {
		s, err := p.Status(l.ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, in := range s.Instances {
			out = append(out, in.Name+"="+in.State)
		}
		return strings.Join(out, ",")
	}
	testenv.Eventually(t, 5*time.Second, "vi1 on r1, vi2 on r2", func() (bool, error) {
		return states(r1) == "vi1=MASTER,vi2=BACKUP" && states(r2) == "vi1=BACKUP,vi2=MASTER", nil
	})
	l.waitRole(r1, "BACKUP", time.Second)
	l.waitRole(r2, "BACKUP", time.Second)
	before := l.status(r1).Counters.AdvertsSent
	if err := r1.Configure(l.ctx, cfg(200, 100, false)); err != nil {
		t.Fatal(err)
	}
	l.waitRole(r1, "MASTER", 2*time.Second)
	testenv.Eventually(t, 2*time.Second, "r1's vi2 back to BACKUP", func() (bool, error) {
		return states(r1) == "vi1=MASTER,vi2=BACKUP", nil
	})
	if st := l.status(r1); st.State != "MASTER" || st.Counters.AdvertsSent < before {
		t.Fatalf("vi1 was restarted by a change to vi2: %+v", st)
	}
}

// TestAddressOwner: priority 255 owns the VIP (a real address the plugin never adds or
// removes) and is master at once, without waiting a master-down interval.
func TestAddressOwner(t *testing.T) {
	t.Parallel()
	l := newLAN(t, "r1", "r2")
	if err := l.hosts["r2"].AddAddr("eth0", "10.0.0.50/24"); err != nil {
		t.Fatal(err)
	}
	r1 := l.plugin("r1", instance(100, nil))
	start := time.Now()
	r2 := l.plugin("r2", instance(255, nil))
	l.waitState(r2, "MASTER", 2*time.Second)
	if d := masterSince(r2).Sub(start); d > mdi100 {
		t.Fatalf("the owner became master %v after start, want at once", d)
	}
	testenv.Eventually(t, 2*time.Second, "r1 follows the owner", func() (bool, error) {
		st := l.status(r1)
		return st.State == "BACKUP" && st.MasterPriority == 255, nil
	})
	l.onlyOwner("r2", "r1", "r2")
	if err := r2.Kill(); err != nil {
		t.Fatal(err)
	}
	l.waitState(r1, "MASTER", 2*time.Second)
}

// TestGARPRefresh: a master announces its VIP periodically and puts back a VIP removed
// behind its back.
func TestGARPRefresh(t *testing.T) {
	t.Parallel()
	l := newLAN(t, "r1")
	r1 := l.plugin("r1", instance(100, map[string]any{"garp": map[string]any{"count": 1, "repeat_after": "0s", "refresh": "1s"}}))
	l.waitState(r1, "MASTER", 2*time.Second)
	became := masterSince(r1)
	if _, err := l.hosts["r1"].Run(l.ctx, "ip", "addr", "del", "10.0.0.50/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 3*time.Second, "the VIP back on r1", func() (bool, error) { return l.hasVIP("r1"), nil })
	mac := l.mac("r1")
	testenv.Eventually(t, 3*time.Second, "periodic gratuitous ARPs", func() (bool, error) {
		n := 0
		for _, f := range l.arp.Frames() {
			if f.Gratuitous() && f.SenderMAC == mac && f.Time.After(became.Add(500*time.Millisecond)) {
				n++
			}
		}
		return n >= 2, nil
	})
}
