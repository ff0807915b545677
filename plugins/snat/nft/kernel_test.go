package nft_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/sitelink/sitelink/plugins/snat/config"
	"github.com/sitelink/sitelink/plugins/snat/nft"
	"github.com/sitelink/sitelink/plugins/snat/ruleset"
	"github.com/sitelink/sitelink/testenv"
)

// nsReconciler returns a throwaway namespace and a Reconciler programming it.
func nsReconciler(t testing.TB) (*testenv.Host, *nft.Reconciler) {
	t.Helper()
	testenv.Require(t, "ip", "nft")
	env := testenv.New(t)
	h, err := env.Host("fw")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(h.NSPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return h, nft.NewReconciler(nftables.WithNetNSFd(int(f.Fd())))
}

func build(t testing.TB, js string) nft.Ruleset {
	t.Helper()
	c, err := config.Parse([]byte(js))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return ruleset.Build(c)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func nftRun(t *testing.T, h *testenv.Host, args ...string) string {
	t.Helper()
	out, err := h.Run(ctx(t), "nft", args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const richConfig = `{
  "client_ranges": ["100.64.0.0/10", "fd7a:115c:a1e0::/48"],
  "applications": [
    {"name": "erp", "networks": ["10.1.0.0/16", "fd00:1::/64"], "interface": "eth1", "snat": "masquerade",
     "access": [
       {"from": ["100.64.1.0/24"], "to": ["10.1.2.0/24"], "protocol": "tcp", "ports": [443, "8000-8100"]},
       {"protocol": "icmp"},
       {"from": ["100.64.0.7"], "protocol": "udp", "ports": ["53"]}
     ]},
    {"name": "db", "networks": ["10.2.0.0/22"], "interface": "eth2", "snat": "to 10.2.0.5"},
    {"name": "legacy", "networks": ["192.168.50.0/24", "fd00:2::/60"], "interface": "eth1", "snat": "off"}
  ]
}`

// tableText returns the listing of one table as nft prints it, and as Render does.
func tableTexts(t *testing.T, h *testenv.Host, r *nft.Reconciler, rs nft.Ruleset, fam nftables.TableFamily) (kernel, ours string) {
	t.Helper()
	kernel = nftRun(t, h, "list", "table", nft.FamilyName(fam), nft.TableName)
	snap, err := r.Snapshot(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	one := &nft.Snapshot{}
	for _, ts := range snap.Tables {
		if ts.Family == fam {
			one.Tables = append(one.Tables, ts)
		}
	}
	ours, err = nft.Render(one, rs)
	if err != nil {
		t.Fatal(err)
	}
	return kernel, ours
}

func TestApplyFromEmptyMatchesNftListing(t *testing.T) {
	h, r := nsReconciler(t)
	rs := build(t, richConfig)
	res, err := r.Apply(ctx(t), rs)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.Added != rs.RuleCount() || res.Deleted != 0 || res.Kept != 0 {
		t.Fatalf("result %+v, want %d added", res, rs.RuleCount())
	}
	for _, fam := range nft.Families() {
		kernel, ours := tableTexts(t, h, r, rs, fam)
		if kernel != ours {
			t.Errorf("family %s: nft lists\n%s\nRender gives\n%s", nft.FamilyName(fam), kernel, ours)
		}
	}
	// Spot-check the shapes in nft's own words.
	all := nftRun(t, h, "list", "ruleset")
	for _, want := range []string{
		`ip saddr 100.64.0.0/10 jump access`,
		`ip saddr 100.64.1.0/24 ip daddr 10.1.2.0/24 tcp dport 443 counter packets 0 bytes 0 accept`,
		`tcp dport 8000-8100 counter`,
		`ip saddr 100.64.0.7 ip daddr 10.1.0.0/16 udp dport 53 counter`,
		`ip6 saddr fd7a:115c:a1e0::/48 ip6 daddr fd00:1::/64 meta l4proto ipv6-icmp counter`,
		`counter packets 0 bytes 0 drop`,
		`oifname "eth1" ip saddr 100.64.0.0/10 ip daddr 10.1.0.0/16 counter packets 0 bytes 0 masquerade`,
		`oifname "eth2" ip saddr 100.64.0.0/10 ip daddr 10.2.0.0/22 counter packets 0 bytes 0 snat to 10.2.0.5`,
		`type nat hook prerouting priority dstnat; policy accept;`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "192.168.50.0/24 counter packets 0 bytes 0 masquerade") {
		t.Errorf("SNAT off application got a NAT rule:\n%s", all)
	}
}

func handles(t *testing.T, r *nft.Reconciler) map[string]uint64 {
	t.Helper()
	snap, err := r.Snapshot(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, tb := range snap.Tables {
		for _, c := range tb.Chains {
			for _, rl := range c.Rules {
				out[nft.FamilyName(tb.Family)+"/"+c.Name+"/"+rl.Tag] = rl.Handle
			}
		}
	}
	return out
}

func TestApplyIsIdempotent(t *testing.T) {
	h, r := nsReconciler(t)
	rs := build(t, richConfig)
	if _, err := r.Apply(ctx(t), rs); err != nil {
		t.Fatal(err)
	}
	before := handles(t, r)
	listing := nftRun(t, h, "-a", "list", "ruleset")
	res, err := r.Apply(ctx(t), rs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed || res.Added != 0 || res.Deleted != 0 || res.Kept != len(before) || len(res.Drift) != 0 {
		t.Fatalf("second apply: %+v, want no change and %d kept", res, len(before))
	}
	// A freshly built, equal ruleset (new expression values) is just as unchanged.
	if res, err := r.Apply(ctx(t), build(t, richConfig)); err != nil || res.Changed {
		t.Fatalf("third apply: %+v, %v", res, err)
	}
	if after := handles(t, r); !mapsEqual(before, after) {
		t.Fatalf("handles changed:\n%v\n%v", before, after)
	}
	if again := nftRun(t, h, "-a", "list", "ruleset"); again != listing {
		t.Fatalf("ruleset changed:\n%s\n---\n%s", listing, again)
	}
	if drift, err := r.Check(ctx(t), rs); err != nil || len(drift) != 0 {
		t.Fatalf("Check: %v %v", drift, err)
	}
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestConfigChangeKeepsUnchangedRules(t *testing.T) {
	h, r := nsReconciler(t)
	base := `{"client_ranges": ["100.64.0.0/16"], "applications": [
	  {"name": "a", "networks": ["10.1.0.0/16"], "interface": "eth1", "snat": "masquerade", "access": [
	    {"protocol": "tcp", "ports": [22]}, {"protocol": "tcp", "ports": [80]}, {"protocol": "tcp", "ports": [443]}]}]}`
	changed := `{"client_ranges": ["100.64.0.0/16"], "applications": [
	  {"name": "a", "networks": ["10.1.0.0/16"], "interface": "eth1", "snat": "masquerade", "access": [
	    {"protocol": "tcp", "ports": [21]}, {"protocol": "tcp", "ports": [22]}, {"protocol": "tcp", "ports": [443]},
	    {"protocol": "tcp", "ports": [8443]}]},
	  {"name": "b", "networks": ["10.9.0.0/16"], "interface": "eth2", "snat": "to 10.9.0.1"}]}`
	if _, err := r.Apply(ctx(t), build(t, base)); err != nil {
		t.Fatal(err)
	}
	before := handles(t, r)
	res, err := r.Apply(ctx(t), build(t, changed))
	if err != nil {
		t.Fatal(err)
	}
	// Tags carry the access entry's index: [1] 80 is gone, 22 moved from [0] to [1], 443
	// from [2] to [2] stays, new: 21 as [0], 22 as [1], 8443 as [3], b's access, b's snat.
	if res.Deleted == 0 || res.Added == 0 || res.Kept == 0 {
		t.Fatalf("result %+v: want some kept, some added, some deleted", res)
	}
	after := handles(t, r)
	kept := 0
	for k, v := range before {
		if after[k] == v {
			kept++
		}
	}
	if kept != res.Kept {
		t.Errorf("%d handles survived, result says %d kept", kept, res.Kept)
	}
	kernel, ours := tableTexts(t, h, r, build(t, changed), nftables.TableFamilyIPv4)
	if kernel != ours {
		t.Fatalf("after change nft lists\n%s\nwant\n%s", kernel, ours)
	}
	// And back: everything in order again.
	if _, err := r.Apply(ctx(t), build(t, base)); err != nil {
		t.Fatal(err)
	}
	kernel, ours = tableTexts(t, h, r, build(t, base), nftables.TableFamilyIPv4)
	if kernel != ours {
		t.Fatalf("after change back nft lists\n%s\nwant\n%s", kernel, ours)
	}
}

func TestSurvivesFlushRulesetAndKeepsForeignTable(t *testing.T) {
	h, r := nsReconciler(t)
	rs := build(t, richConfig)
	foreign := "table inet firewalld_like {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 22 counter packets 0 bytes 0 accept\n\t}\n}\n"
	if _, err := r.Apply(ctx(t), rs); err != nil {
		t.Fatal(err)
	}
	nftRun(t, h, "-f", writeFile(t, foreign))
	nftRun(t, h, "add", "table", "ip", "nat")
	nftRun(t, h, "add", "chain", "ip", "nat", "post", "{ type nat hook postrouting priority srcnat; }")
	nftRun(t, h, "add", "rule", "ip", "nat", "post", "oifname", "eth9", "masquerade")
	if res, err := r.Apply(ctx(t), rs); err != nil || res.Changed {
		t.Fatalf("foreign tables made a change: %+v %v", res, err)
	}

	nftRun(t, h, "flush", "ruleset")
	drift, err := r.Check(ctx(t), rs)
	if err != nil || len(drift) == 0 {
		t.Fatalf("Check after flush ruleset: %v, %v; want drift", drift, err)
	}
	res, err := r.Apply(ctx(t), rs)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.Added != rs.RuleCount() {
		t.Fatalf("re-apply after flush: %+v", res)
	}
	// A foreign rule slipped into our chain, and one of ours deleted by hand.
	nftRun(t, h, "add", "rule", "ip", nft.TableName, "access", "ip", "saddr", "1.2.3.4", "accept")
	var victim uint64
	for k, v := range handles(t, r) {
		if strings.HasPrefix(k, "ip/access/sitelink:erp/access[1]") {
			victim = v
		}
	}
	nftRun(t, h, "delete", "rule", "ip", nft.TableName, "access", "handle", itoa(victim))
	drift, err = r.Check(ctx(t), rs)
	if err != nil || len(drift) != 2 {
		t.Fatalf("drift %q, %v; want the untagged rule and the missing one", drift, err)
	}
	if _, err := r.Apply(ctx(t), rs); err != nil {
		t.Fatal(err)
	}
	kernel, ours := tableTexts(t, h, r, rs, nftables.TableFamilyIPv4)
	if kernel != ours {
		t.Fatalf("after repair nft lists\n%s\nwant\n%s", kernel, ours)
	}

	// Cleanup removes only Sitelink's tables.
	nftRun(t, h, "-f", writeFile(t, foreign))
	removed, err := r.Remove(ctx(t))
	if err != nil || len(removed) != 2 {
		t.Fatalf("Remove: %v %v", removed, err)
	}
	left := nftRun(t, h, "list", "ruleset")
	if left != foreign {
		t.Fatalf("after Remove the ruleset is\n%s\nwant only\n%s", left, foreign)
	}
	if removed, err := r.Remove(ctx(t)); err != nil || len(removed) != 0 {
		t.Fatalf("second Remove: %v %v", removed, err)
	}
}

func TestDormantOrAlteredTableIsRebuilt(t *testing.T) {
	h, r := nsReconciler(t)
	rs := build(t, richConfig)
	if _, err := r.Apply(ctx(t), rs); err != nil {
		t.Fatal(err)
	}
	nftRun(t, h, "add", "table", "ip", nft.TableName, "{ flags dormant; }")
	res, err := r.Apply(ctx(t), rs)
	if err != nil || len(res.Rebuilt) != 1 {
		t.Fatalf("dormant table: %+v %v", res, err)
	}
	nftRun(t, h, "add", "chain", "ip", nft.TableName, "extra")
	res, err = r.Apply(ctx(t), rs)
	if err != nil || len(res.Rebuilt) != 1 {
		t.Fatalf("extra chain: %+v %v", res, err)
	}
	if out := nftRun(t, h, "list", "table", "ip", nft.TableName); strings.Contains(out, "dormant") || strings.Contains(out, "extra") {
		t.Fatalf("not rebuilt:\n%s", out)
	}
}

func TestFailedBatchKeepsPreviousRules(t *testing.T) {
	h, r := nsReconciler(t)
	rs := build(t, richConfig)
	if _, err := r.Apply(ctx(t), rs); err != nil {
		t.Fatal(err)
	}
	before := nftRun(t, h, "-a", "list", "ruleset")
	bad := build(t, `{"client_ranges": ["100.64.0.0/10"], "applications": [
	  {"name": "other", "networks": ["10.7.0.0/16"], "interface": "eth7", "snat": "masquerade"}]}`)
	// A rule the kernel refuses (a jump to a chain that does not exist) at the end of the batch.
	bad.Tables[0].Chains[1].Rules = append(bad.Tables[0].Chains[1].Rules, nft.Rule{Ref: "bad",
		Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: "nowhere"}}})
	if _, err := r.Apply(ctx(t), bad); err == nil {
		t.Fatal("a batch with an invalid rule succeeded")
	}
	if after := nftRun(t, h, "-a", "list", "ruleset"); after != before {
		t.Fatalf("failed batch changed the ruleset:\n%s\n---\n%s", before, after)
	}
	if drift, err := r.Check(ctx(t), rs); err != nil || len(drift) != 0 {
		t.Fatalf("previous rules not intact: %v %v", drift, err)
	}
}

func TestWatchSeesForeignChanges(t *testing.T) {
	h, r := nsReconciler(t)
	rs := build(t, richConfig)
	if _, err := r.Apply(ctx(t), rs); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx(t))
	var mu sync.Mutex
	var seen []string
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- r.Watch(wctx, func() { close(ready) }, func(what string) {
			mu.Lock()
			seen = append(seen, what)
			mu.Unlock()
		})
	}()
	<-ready
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
	// Changes elsewhere are not ours.
	nftRun(t, h, "add", "table", "inet", "other")
	nftRun(t, h, "add", "chain", "inet", "other", "c")
	nftRun(t, h, "add", "rule", "inet", "other", "c", "accept")
	// A marker change to know the monitor has seen the ones before.
	nftRun(t, h, "add", "chain", "ip", nft.TableName, "marker")
	testenv.Eventually(t, 10*time.Second, "the marker change", func() (bool, error) { return count() >= 1, nil })
	if n := count(); n != 1 {
		t.Fatalf("saw %d changes (%q), want only the marker", n, seen)
	}
	nftRun(t, h, "flush", "ruleset")
	testenv.Eventually(t, 10*time.Second, "flush ruleset seen", func() (bool, error) { return count() >= 2, nil })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
}

func TestLargeAccessListFromEmptyAndUnchanged(t *testing.T) {
	_, r := nsReconciler(t)
	rs := build(t, accessListConfig(1000))
	res, err := r.Apply(ctx(t), rs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != rs.RuleCount() {
		t.Fatalf("added %d, want %d", res.Added, rs.RuleCount())
	}
	res, err = r.Apply(ctx(t), rs)
	if err != nil || res.Changed {
		t.Fatalf("unchanged re-apply: %+v %v", res, err)
	}
}

func writeFile(t testing.TB, text string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "*.nft")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return f.Name()
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

// accessListConfig is a config whose access list expands to n accept rules.
func accessListConfig(n int) string {
	var b strings.Builder
	b.WriteString(`{"client_ranges": ["100.64.0.0/10"], "applications": [{"name": "big", "networks": ["10.0.0.0/8"],
	  "interface": "eth1", "snat": "masquerade", "access": [`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"from": ["100.64.%d.%d"], "to": ["10.%d.0.0/16"], "protocol": "tcp", "ports": [%d]}`,
			i/250, i%250+1, i%200, 1000+i)
	}
	b.WriteString("]}]}")
	return b.String()
}

// TestWatchSurvivesLargeBatch: one batch of 3,000 rules is 3,000 events at once; the
// monitor's socket must hold them (no ENOBUFS) and keep watching.
func TestWatchSurvivesLargeBatch(t *testing.T) {
	_, r := nsReconciler(t)
	rs := build(t, accessListConfig(3000))
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	var mu sync.Mutex
	count := 0
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- r.Watch(wctx, func() { close(ready) }, func(string) { mu.Lock(); count++; mu.Unlock() })
	}()
	<-ready
	seen := func(n int) func() (bool, error) {
		return func() (bool, error) {
			select {
			case err := <-done:
				return false, fmt.Errorf("watch ended: %v", err)
			default:
			}
			mu.Lock()
			defer mu.Unlock()
			return count >= n, nil
		}
	}
	if _, err := r.Apply(ctx(t), rs); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the big batch seen", seen(1))
	if _, err := r.Remove(ctx(t)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the next change seen", seen(2))
}
