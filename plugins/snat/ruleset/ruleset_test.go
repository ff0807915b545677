package ruleset

import (
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"

	"github.com/sitelink/sitelink/plugins/snat/config"
	"github.com/sitelink/sitelink/plugins/snat/nft"
)

func specs(t nft.Table) map[string][]string {
	out := map[string][]string{}
	for _, c := range t.Chains {
		out[c.Name] = []string{}
		for _, r := range c.Rules {
			out[c.Name] = append(out[c.Name], r.Ref+": "+r.Spec())
		}
	}
	return out
}

func TestBuild(t *testing.T) {
	c, err := config.Parse([]byte(goldenCases["snat_to_dual_stack"]))
	if err != nil {
		t.Fatal(err)
	}
	rs := Build(c)
	if len(rs.Tables) != 2 || rs.Tables[0].Family != nftables.TableFamilyIPv4 || rs.Tables[1].Family != nftables.TableFamilyIPv6 {
		t.Fatalf("tables %+v", rs.Tables)
	}
	got := specs(rs.Tables[1])
	want := map[string][]string{
		ChainForward: {"client_ranges[1]: ip6 saddr fd7a:115c:a1e0::/48 jump access"},
		ChainAccess: {"app/access: ip6 saddr fd7a:115c:a1e0::/48 ip6 daddr fd00:2::/64 counter accept",
			"drop: counter drop"},
		ChainPostrouting: {`app/snat: oifname "eth2" ip6 saddr fd7a:115c:a1e0::/48 ip6 daddr fd00:2::/64 counter snat to fd00:2::5`},
		ChainPrerouting:  {},
	}
	for chain, rules := range want {
		if strings.Join(got[chain], "\n") != strings.Join(rules, "\n") {
			t.Errorf("ip6 %s:\n%s\nwant\n%s", chain, strings.Join(got[chain], "\n"), strings.Join(rules, "\n"))
		}
	}
	if len(got) != len(want) {
		t.Errorf("chains %v", got)
	}
}

func TestBuildSNATOffHasNoNATChains(t *testing.T) {
	c, err := config.Parse([]byte(goldenCases["snat_off"]))
	if err != nil {
		t.Fatal(err)
	}
	rs := Build(c)
	if len(rs.Tables) != 1 {
		t.Fatalf("tables %+v", rs.Tables)
	}
	got := specs(rs.Tables[0])
	if _, ok := got[ChainPostrouting]; ok || len(got) != 2 {
		t.Fatalf("chains %v: NAT chains without NAT rules", got)
	}
}

func TestBuildAccessListExpands(t *testing.T) {
	c, err := config.Parse([]byte(goldenCases["access_list"]))
	if err != nil {
		t.Fatal(err)
	}
	got := specs(Build(c).Tables[0])[ChainAccess]
	want := []string{
		"erp/access[0]: ip saddr 100.64.1.0/24 ip daddr 10.1.2.0/23 tcp dport 443 counter accept",
		"erp/access[0]: ip saddr 100.64.1.0/24 ip daddr 10.1.2.0/23 tcp dport 8000-8100 counter accept",
		"erp/access[1]: ip saddr 100.64.0.7 ip daddr 10.1.0.0/16 udp dport 53 counter accept",
		"erp/access[2]: ip saddr 100.64.0.0/10 ip daddr 10.1.0.0/16 meta l4proto icmp counter accept",
		"drop: counter drop",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("access:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// FuzzBuild: every config Parse accepts builds rules that encode (no kernel needed)
// and as many as RuleCount says.
func FuzzBuild(f *testing.F) {
	for _, js := range goldenCases {
		f.Add([]byte(js))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data)
		if err != nil {
			return
		}
		rs := Build(c)
		if n := rs.RuleCount(); n != c.RuleCount() {
			t.Fatalf("built %d rules, config says %d", n, c.RuleCount())
		}
		conn, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
			return nil, nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		if err := nft.QueueCreate(conn, rs); err != nil {
			t.Fatalf("queue: %v", err)
		}
		if err := conn.Flush(); err != nil {
			t.Fatalf("encode: %v", err)
		}
	})
}
