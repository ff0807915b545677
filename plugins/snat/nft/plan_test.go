package nft

import (
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// testRules makes a chain of rules whose expressions differ by an immediate value.
func testRuleset(names ...string) Ruleset {
	c := Chain{Name: "c", Hook: &Hook{Type: nftables.ChainTypeFilter, Num: *nftables.ChainHookForward,
		Priority: 0, Policy: nftables.ChainPolicyAccept}}
	for _, n := range names {
		c.Rules = append(c.Rules, Rule{Ref: n, Verdict: "accept",
			Exprs: []expr.Any{&expr.Immediate{Register: 1, Data: []byte(n)}, &expr.Verdict{Kind: expr.VerdictAccept}}})
	}
	return Ruleset{Tables: []Table{{Family: nftables.TableFamilyIPv4, Chains: []Chain{c}}}}
}

// simulate applies a plan to a model of the kernel (a list of tags with handles) the
// way the kernel would, and returns the resulting tag order.
func simulate(t *testing.T, have []*nftables.Rule, p *plan) []string {
	t.Helper()
	type kr struct {
		tag    string
		handle uint64
	}
	var list []kr
	next := uint64(1000)
	for _, r := range have {
		list = append(list, kr{tagOf(r), r.Handle})
	}
	find := func(h uint64) int {
		for i, r := range list {
			if r.handle == h {
				return i
			}
		}
		t.Fatalf("plan refers to handle %d that is not there", h)
		return -1
	}
	for _, o := range p.ops {
		switch o.kind {
		case opDelRule:
			i := find(o.handle)
			list = slices.Delete(list, i, i+1)
		case opAppend:
			next++
			list = append(list, kr{o.rule.tag, next})
		case opAddAfter:
			next++
			i := find(o.handle)
			list = slices.Insert(list, i+1, kr{o.rule.tag, next})
		case opInsertBefore:
			next++
			i := find(o.handle)
			list = slices.Insert(list, i, kr{o.rule.tag, next})
		}
	}
	var out []string
	for _, r := range list {
		out = append(out, r.tag)
	}
	return out
}

func kernelOf(t *testing.T, rs Ruleset, order ...int) (map[nftables.TableFamily]*kernelTable, []*nftables.Rule) {
	t.Helper()
	want, err := prepare(rs)
	if err != nil {
		t.Fatal(err)
	}
	pc := want.tables[nftables.TableFamilyIPv4].chains[0]
	var rules []*nftables.Rule
	for i, idx := range order {
		rules = append(rules, &nftables.Rule{Handle: uint64(i + 1), UserData: userData(pc.rules[idx].tag)})
	}
	prio := nftables.ChainPriority(0)
	policy := nftables.ChainPolicyAccept
	ch := &nftables.Chain{Name: "c", Hooknum: nftables.ChainHookForward, Priority: &prio, Type: nftables.ChainTypeFilter, Policy: &policy}
	return map[nftables.TableFamily]*kernelTable{nftables.TableFamilyIPv4: {family: nftables.TableFamilyIPv4,
		chains: []*kernelChain{{chain: ch, rules: rules}}}}, rules
}

func tagsOf(t *testing.T, rs Ruleset) []string {
	want, err := prepare(rs)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range want.tables[nftables.TableFamilyIPv4].chains[0].rules {
		out = append(out, r.tag)
	}
	return out
}

func TestPlanFromEmpty(t *testing.T) {
	rs := testRuleset("a", "b", "c")
	want, _ := prepare(rs)
	p := makePlan(want, nil)
	var kinds []opKind
	for _, o := range p.ops {
		kinds = append(kinds, o.kind)
	}
	if !reflect.DeepEqual(kinds, []opKind{opAddTable, opAddChain, opAppend, opAppend, opAppend}) || p.added != 3 {
		t.Fatalf("ops %v added %d", kinds, p.added)
	}
	if got := simulate(t, nil, p); !reflect.DeepEqual(got, tagsOf(t, rs)) {
		t.Fatalf("order %v", got)
	}
}

func TestPlanUnchangedIsEmpty(t *testing.T) {
	rs := testRuleset("a", "b", "c")
	have, _ := kernelOf(t, rs, 0, 1, 2)
	want, _ := prepare(rs)
	if p := makePlan(want, have); !p.empty() || p.kept != 3 || len(p.drift) != 0 {
		t.Fatalf("plan %+v", p)
	}
}

// TestPlanReachesAnyOrder: from any kernel content (wanted rules in any order, with
// duplicates and foreign rules) the plan produces exactly the wanted order, keeping as
// many rules as an increasing run allows.
func TestPlanReachesAnyOrder(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for iter := 0; iter < 500; iter++ {
		n := 1 + rng.Intn(len(names))
		rs := testRuleset(names[:n]...)
		full := testRuleset(names...)
		// Kernel: a random sample of all names (some unwanted), possibly repeated.
		var order []int
		for i := 0; i < rng.Intn(12); i++ {
			order = append(order, rng.Intn(len(names)))
		}
		have, rules := kernelOf(t, full, order...)
		// A foreign rule somewhere.
		if rng.Intn(3) == 0 {
			at := rng.Intn(len(rules) + 1)
			rules = slices.Insert(rules, at, &nftables.Rule{Handle: 999})
			have[nftables.TableFamilyIPv4].chains[0].rules = rules
		}
		want, _ := prepare(rs)
		p := makePlan(want, have)
		got := simulate(t, rules, p)
		if exp := tagsOf(t, rs); !reflect.DeepEqual(got, exp) {
			t.Fatalf("iteration %d: kernel %v wanted %v: got %v", iter, order, names[:n], got)
		}
		if p.kept+p.deleted != len(rules) || p.kept+p.added != n {
			t.Fatalf("iteration %d: counts kept %d deleted %d added %d for %d kernel rules, %d wanted", iter, p.kept, p.deleted, p.added, len(rules), n)
		}
	}
}

func TestPlanInsertInMiddleKeepsOthers(t *testing.T) {
	before := testRuleset("a", "b", "drop")
	after := testRuleset("a", "new1", "new2", "b", "drop")
	have, rules := kernelOf(t, before, 0, 1, 2)
	want, _ := prepare(after)
	p := makePlan(want, have)
	if p.kept != 3 || p.added != 2 || p.deleted != 0 {
		t.Fatalf("plan %+v", p)
	}
	if got := simulate(t, rules, p); !reflect.DeepEqual(got, tagsOf(t, after)) {
		t.Fatalf("order %v", got)
	}
}

func TestStructureDiffers(t *testing.T) {
	rs := testRuleset("a")
	want, _ := prepare(rs)
	have, _ := kernelOf(t, rs, 0)
	prio := nftables.ChainPriority(10)
	have[nftables.TableFamilyIPv4].chains[0].chain.Priority = &prio
	p := makePlan(want, have)
	if len(p.rebuilds) != 1 || p.ops[0].kind != opDelTable || p.ops[1].kind != opAddTable {
		t.Fatalf("plan %+v", p)
	}
	have, _ = kernelOf(t, rs, 0)
	have[nftables.TableFamilyIPv4].chains = append(have[nftables.TableFamilyIPv4].chains, &kernelChain{chain: &nftables.Chain{Name: "x"}})
	if p := makePlan(want, have); len(p.rebuilds) != 1 || !strings.Contains(p.rebuilds[0], "chain x is not wanted") {
		t.Fatalf("extra chain: %+v", p.rebuilds)
	}
}

func TestPlanRemovesUnwantedFamily(t *testing.T) {
	have, _ := kernelOf(t, testRuleset("a"), 0)
	want, _ := prepare(Ruleset{})
	p := makePlan(want, have)
	if len(p.ops) != 1 || p.ops[0].kind != opDelTable || p.deleted != 1 {
		t.Fatalf("plan %+v", p)
	}
}

func TestPrepareRefusesBadRulesets(t *testing.T) {
	long := strings.Repeat("x", 200)
	for name, rs := range map[string]Ruleset{
		"inet":       {Tables: []Table{{Family: nftables.TableFamilyINet}}},
		"two tables": {Tables: []Table{{Family: nftables.TableFamilyIPv4}, {Family: nftables.TableFamilyIPv4}}},
		"dup chain":  {Tables: []Table{{Family: nftables.TableFamilyIPv4, Chains: []Chain{{Name: "c"}, {Name: "c"}}}}},
		"long tag":   testRuleset(long),
	} {
		if _, err := prepare(rs); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// The same rule twice is kept once.
	p, err := prepare(testRuleset("a", "a"))
	if err != nil || len(p.tables[nftables.TableFamilyIPv4].chains[0].rules) != 1 {
		t.Fatalf("duplicate: %v", err)
	}
}

func TestLongestIncreasing(t *testing.T) {
	for _, tc := range []struct{ in, want []int }{
		{nil, nil},
		{[]int{5}, []int{0}},
		{[]int{3, 1, 2, 0, 4}, []int{1, 2, 4}},
		{[]int{0, 1, 2, 3}, []int{0, 1, 2, 3}},
		{[]int{3, 2, 1}, []int{2}},
	} {
		got := longestIncreasing(len(tc.in), func(i int) int { return tc.in[i] })
		if len(got) != len(tc.want) {
			t.Errorf("%v: got %v want %v", tc.in, got, tc.want)
		}
		for i := 1; i < len(got); i++ {
			if tc.in[got[i]] <= tc.in[got[i-1]] || got[i] <= got[i-1] {
				t.Errorf("%v: %v is not increasing", tc.in, got)
			}
		}
	}
}

func TestTagAndRefOfTag(t *testing.T) {
	r := testRuleset("erp/access[3]").Tables[0].Chains[0].Rules[0]
	tag, err := r.Tag(nftables.TableFamilyIPv4, "c")
	if err != nil || !strings.HasPrefix(tag, "sitelink:erp/access[3]:") || len(tag) != len("sitelink:erp/access[3]:")+12 {
		t.Fatalf("tag %q %v", tag, err)
	}
	if RefOfTag(tag) != "erp/access[3]" || RefOfTag("foreign comment") != "" {
		t.Fatalf("RefOfTag")
	}
	other, _ := r.Tag(nftables.TableFamilyIPv6, "c")
	inChain, _ := r.Tag(nftables.TableFamilyIPv4, "d")
	if other == tag || inChain == tag {
		t.Fatal("tag ignores family or chain")
	}
	if got := tagOf(&nftables.Rule{UserData: userData(tag)}); got != tag {
		t.Fatalf("userdata round trip: %q", got)
	}
}
