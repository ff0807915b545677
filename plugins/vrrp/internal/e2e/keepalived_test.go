package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sitelink/sitelink/plugins/vrrp/internal/harness"
	"github.com/sitelink/sitelink/plugins/vrrp/packet"
	"github.com/sitelink/sitelink/testenv"
)

// keepalived runs keepalived 2.x (vrrp_version 3, advert_int 0.1) on router name,
// which is router number i (address 10.0.0.i).
func (l *lan) keepalived(name string, prio int, peers ...string) *harness.Keepalived {
	l.t.Helper()
	testenv.Require(l.t, "keepalived")
	cfg := harness.KeepalivedConfig{Interface: "eth0", VRID: 51, Priority: prio, AdvertInt: "0.1", VIPs: []string{"10.0.0.50/24"}}
	if len(peers) > 0 {
		cfg.UnicastSrc = strings.TrimPrefix(name, "r")
		cfg.UnicastSrc = "10.0.0." + cfg.UnicastSrc
		cfg.Peers = peers
	}
	k, err := harness.StartKeepalived(l.ctx, l.env, l.hosts[name], name, cfg)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		k.Kill()
		if l.t.Failed() {
			l.t.Logf("keepalived %s output:\n%s", name, k.Proc.Output())
		}
	})
	return k
}

func (l *lan) waitKeepalived(k *harness.Keepalived, state string, timeout time.Duration) {
	l.t.Helper()
	testenv.Eventually(l.t, timeout, "keepalived "+k.Name+" in state "+state, func() (bool, error) {
		return k.State() == state, nil
	})
}

// noInvalid checks that the plugin dropped nothing (keepalived's packets parse).
func (l *lan) noInvalid(p *harness.Plugin) {
	l.t.Helper()
	if inv := l.status(p).Counters.Invalid; len(inv) > 0 {
		l.t.Fatalf("%s dropped packets: %v", p.Name, inv)
	}
}

func TestKeepalivedMasterSitelinkBackup(t *testing.T) {
	t.Parallel()
	for _, stop := range []string{"SIGKILL", "SIGTERM"} {
		for _, mode := range []string{"multicast", "unicast"} {
			t.Run(stop+"/"+mode, func(t *testing.T) {
				t.Parallel()
				l := newLAN(t, "r1", "r2")
				var kpeers []string
				opts := map[string]any{}
				if mode == "unicast" {
					kpeers = []string{addr(1)}
					opts["unicast_peers"] = []string{addr(2)}
				}
				k := l.keepalived("r2", 200, kpeers...)
				l.waitKeepalived(k, "MASTER", 5*time.Second)
				r1 := l.plugin("r1", instance(100, opts))
				testenv.Eventually(t, 2*time.Second, "r1 follows keepalived", func() (bool, error) {
					st := l.status(r1)
					return st.State == "BACKUP" && st.Master == addr(2) && st.MasterPriority == 200, nil
				})
				time.Sleep(3 * mdi100)
				if s := l.state(r1); s != "BACKUP" {
					t.Fatalf("r1 is %s under a keepalived master", s)
				}
				l.onlyOwner("r2", "r1", "r2")
				l.noInvalid(r1)
				at := time.Now()
				if stop == "SIGKILL" {
					if err := k.Kill(); err != nil {
						t.Fatal(err)
					}
				} else if err := k.Terminate(); err != nil {
					t.Fatal(err)
				}
				l.waitState(r1, "MASTER", 2*time.Second)
				if stop == "SIGTERM" {
					// keepalived resigned with priority 0: r1 took over on that, before
					// a master-down interval could pass (how fast is measured by the
					// benchmark, not here).
					if took := masterSince(r1).Sub(at); took >= mdi100 {
						t.Fatalf("r1 took over %v after keepalived's SIGTERM: not on its priority 0", took)
					}
					if !strings.Contains(lastReason(l.status(r1)), "priority 0") {
						t.Fatalf("r1's takeover reason %q, want the resignation (a pair: immediate)", lastReason(l.status(r1)))
					}
				}
				if !l.hasVIP("r1") {
					t.Fatal("r1 is master without the VIP")
				}
				if stop == "SIGTERM" {
					l.onlyOwner("r1", "r1", "r2")
				} else if ans := l.answerers(); !ans[l.mac("r1")] {
					// keepalived leaves its VIP behind when killed; r1 must answer too.
					t.Fatalf("ARP answers %v, want r1 among them", ans)
				}
				l.noInvalid(r1)
			})
		}
	}
}

func TestSitelinkMasterKeepalivedBackup(t *testing.T) {
	t.Parallel()
	for _, stop := range []string{"SIGKILL", "SIGTERM"} {
		for _, mode := range []string{"multicast", "unicast"} {
			t.Run(stop+"/"+mode, func(t *testing.T) {
				t.Parallel()
				l := newLAN(t, "r1", "r2")
				var kpeers []string
				opts := map[string]any{}
				if mode == "unicast" {
					kpeers = []string{addr(1)}
					opts["unicast_peers"] = []string{addr(2)}
				}
				r1 := l.plugin("r1", instance(200, opts))
				l.waitState(r1, "MASTER", 5*time.Second)
				k := l.keepalived("r2", 100, kpeers...)
				l.waitKeepalived(k, "BACKUP", 5*time.Second)
				time.Sleep(3 * mdi100)
				if s := k.State(); s != "BACKUP" {
					t.Fatalf("keepalived is %s under a Sitelink master", s)
				}
				l.onlyOwner("r1", "r1", "r2")
				l.noInvalid(r1)
				if stop == "SIGKILL" {
					if err := r1.Kill(); err != nil {
						t.Fatal(err)
					}
				} else if err := r1.Terminate(); err != nil {
					t.Fatal(err)
				}
				l.waitKeepalived(k, "MASTER", 2*time.Second)
				testenv.Eventually(t, time.Second, "VIP on keepalived's router", func() (bool, error) { return l.hasVIP("r2"), nil })
				if stop == "SIGTERM" {
					l.onlyOwner("r2", "r1", "r2")
				}
			})
		}
	}
}

// TestKeepalivedAdvertGolden checks the checksum of a real keepalived advertisement
// against the package's own encoding of the same fields.
func TestKeepalivedAdvertGolden(t *testing.T) {
	t.Parallel()
	l := newLAN(t, "r1", "r2")
	k := l.keepalived("r2", 150)
	l.waitKeepalived(k, "MASTER", 5*time.Second)
	var got []harness.VRRPPacket
	testenv.Eventually(t, 2*time.Second, "an advertisement from keepalived", func() (bool, error) {
		got = l.arp.VRRP()
		return len(got) > 0, nil
	})
	p := got[len(got)-1]
	if p.TTL != 255 || p.VRID != 51 || p.Priority != 150 || p.Dst.String() != "224.0.0.18" {
		t.Fatalf("keepalived advert %+v", p)
	}
	// The parser accepts keepalived's bytes (checksum over the pseudo-header in
	// version 3) and the encoder reproduces them exactly.
	adv, err := packet.Parse(p.Payload, p.Src, p.Dst)
	if err != nil {
		t.Fatalf("parse keepalived advert % x: %v", p.Payload, err)
	}
	if adv.Interval != 10 || len(adv.Addrs) != 1 || adv.Addrs[0] != vip {
		t.Fatalf("keepalived advert decoded as %+v", adv)
	}
	again, err := adv.Marshal(p.Src, p.Dst)
	if err != nil || !bytes.Equal(again, p.Payload) {
		t.Fatalf("re-encoded % x, keepalived sent % x (%v)", again, p.Payload, err)
	}
	t.Logf("keepalived advert from %s: % x", p.Src, p.Payload)
	// A Sitelink backup accepts it.
	r1 := l.plugin("r1", instance(100, nil))
	testenv.Eventually(t, 2*time.Second, "r1 receives keepalived's adverts", func() (bool, error) {
		st := l.status(r1)
		if len(st.Counters.Invalid) > 0 {
			return false, fmt.Errorf("invalid %v", st.Counters.Invalid)
		}
		return st.Counters.AdvertsReceived > 0, nil
	})
	l.noInvalid(r1)
}

// lastReason is the reason of the instance's last transition.
func lastReason(st harness.InstanceStatus) string {
	if len(st.Transitions) == 0 {
		return ""
	}
	var t struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(st.Transitions[len(st.Transitions)-1], &t)
	return t.Reason
}

// TestKeepalivedIPv6 runs keepalived as an IPv6 master and Sitelink as the backup.
func TestKeepalivedIPv6(t *testing.T) {
	t.Parallel()
	testenv.Require(t, "keepalived")
	l := newLAN(t, "r1", "r2")
	for i, name := range []string{"r1", "r2"} {
		if err := l.hosts[name].AddAddr("eth0", fmt.Sprintf("fd00::%d/64", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	k, err := harness.StartKeepalived(l.ctx, l.env, l.hosts["r2"], "r2", harness.KeepalivedConfig{Interface: "eth0",
		VRID: 52, Priority: 200, AdvertInt: "0.1", VIPs: []string{"fd00::50/64"}, IPv6: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		k.Kill()
		if t.Failed() {
			t.Logf("keepalived output:\n%s", k.Proc.Output())
		}
	})
	l.waitKeepalived(k, "MASTER", 5*time.Second)
	r1 := l.plugin("r1", map[string]any{"instances": []any{map[string]any{"name": "vi6", "interface": "eth0", "vrid": 52,
		"priority": 100, "virtual_ips": []string{"fd00::50/64"}, "advert_interval": 10}}})
	testenv.Eventually(t, 2*time.Second, "r1 follows keepalived over IPv6", func() (bool, error) {
		st := l.status(r1)
		if len(st.Counters.Invalid) > 0 {
			return false, fmt.Errorf("invalid %v", st.Counters.Invalid)
		}
		return st.State == "BACKUP" && st.MasterPriority == 200 && strings.HasPrefix(st.Master, "fe80::"), nil
	})
	time.Sleep(3 * mdi100)
	if s := l.state(r1); s != "BACKUP" {
		t.Fatalf("r1 is %s under an IPv6 keepalived master", s)
	}
	if err := k.Kill(); err != nil {
		t.Fatal(err)
	}
	l.waitState(r1, "MASTER", 2*time.Second)
	if ok, _ := harness.HasAddr(l.hosts["r1"], "eth0", netip.MustParseAddr("fd00::50")); !ok {
		t.Fatal("r1 did not take the IPv6 VIP")
	}
	// The other way round: keepalived (lower priority) stays backup under Sitelink's
	// IPv6 adverts, and takes over when the plugin dies.
	k2, err := harness.StartKeepalived(l.ctx, l.env, l.hosts["r2"], "r2b", harness.KeepalivedConfig{Interface: "eth0",
		VRID: 52, Priority: 50, AdvertInt: "0.1", VIPs: []string{"fd00::50/64"}, IPv6: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k2.Kill() })
	l.waitKeepalived(k2, "BACKUP", 5*time.Second)
	time.Sleep(3 * mdi100)
	if s := k2.State(); s != "BACKUP" {
		t.Fatalf("keepalived is %s under a Sitelink IPv6 master", s)
	}
	if err := r1.Kill(); err != nil {
		t.Fatal(err)
	}
	l.waitKeepalived(k2, "MASTER", 2*time.Second)
}
