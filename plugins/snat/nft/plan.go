package nft

import (
	"fmt"
	"sort"

	"github.com/google/nftables"
)

// kernelTable is what the kernel has in one of Sitelink's tables.
type kernelTable struct {
	family nftables.TableFamily
	flags  uint32
	chains []*kernelChain // in the kernel's order
}

type kernelChain struct {
	chain *nftables.Chain
	rules []*nftables.Rule
}

func (t *kernelTable) chain(name string) *kernelChain {
	if t == nil {
		return nil
	}
	for _, c := range t.chains {
		if c.chain.Name == name {
			return c
		}
	}
	return nil
}

// opKind is one change in a batch.
type opKind int

const (
	opDelTable opKind = iota + 1
	opAddTable
	opAddChain
	opDelRule
	// opAppend adds at the end of the chain.
	opAppend
	// opAddAfter adds right after the rule with handle pos.
	opAddAfter
	// opInsertBefore adds right before the rule with handle pos.
	opInsertBefore
)

type op struct {
	kind   opKind
	family nftables.TableFamily
	chain  *preparedChain // opAddChain and rule additions
	name   string         // chain name of opDelRule
	rule   *preparedRule  // rule additions
	handle uint64         // opDelRule: the rule; opAddAfter/opInsertBefore: the anchor
	why    string
}

// plan is the batch that turns the kernel's tables into the desired ones.
type plan struct {
	ops      []op
	added    int
	deleted  int
	kept     int
	rebuilds []string // tables deleted and created again, with the reason
	drift    []string // human-readable differences
}

func (p *plan) empty() bool { return len(p.ops) == 0 }

// makePlan computes the changes from the kernel's tables (nil when absent) to the
// desired ones.
func makePlan(want *prepared, have map[nftables.TableFamily]*kernelTable) *plan {
	p := &plan{}
	for _, fam := range Families() {
		wt := want.tables[fam]
		kt := have[fam]
		switch {
		case wt == nil && kt == nil:
			continue
		case wt == nil:
			p.ops = append(p.ops, op{kind: opDelTable, family: fam})
			for _, c := range kt.chains {
				p.deleted += len(c.rules)
			}
			p.drift = append(p.drift, fmt.Sprintf("table %s %s is not wanted", FamilyName(fam), TableName))
			continue
		}
		if kt != nil {
			if why := structureDiffers(wt, kt); why != "" {
				p.ops = append(p.ops, op{kind: opDelTable, family: fam, why: why})
				for _, c := range kt.chains {
					p.deleted += len(c.rules)
				}
				p.rebuilds = append(p.rebuilds, fmt.Sprintf("table %s %s: %s", FamilyName(fam), TableName, why))
				p.drift = append(p.drift, fmt.Sprintf("table %s %s: %s", FamilyName(fam), TableName, why))
				kt = nil
			}
		}
		if kt == nil {
			p.ops = append(p.ops, op{kind: opAddTable, family: fam})
			if have[fam] == nil {
				p.drift = append(p.drift, fmt.Sprintf("table %s %s is missing", FamilyName(fam), TableName))
			}
		}
		for _, wc := range wt.chains {
			if kt.chain(wc.name) == nil {
				p.ops = append(p.ops, op{kind: opAddChain, family: fam, chain: wc})
				if kt != nil {
					p.drift = append(p.drift, fmt.Sprintf("chain %s %s %s is missing", FamilyName(fam), TableName, wc.name))
				}
			}
		}
		for _, wc := range wt.chains {
			var rules []*nftables.Rule
			if kc := kt.chain(wc.name); kc != nil {
				rules = kc.rules
			}
			p.diffChain(fam, wc, rules, kt != nil)
		}
	}
	return p
}

// structureDiffers says why the kernel's table cannot be updated rule by rule: a
// chain that should not be there, a base chain with another hook, or a dormant table.
func structureDiffers(wt *preparedTable, kt *kernelTable) string {
	if kt.flags != 0 {
		return fmt.Sprintf("table flags are %#x (dormant?)", kt.flags)
	}
	for _, kc := range kt.chains {
		var wc *preparedChain
		for _, c := range wt.chains {
			if c.name == kc.chain.Name {
				wc = c
			}
		}
		if wc == nil {
			return fmt.Sprintf("chain %s is not wanted", kc.chain.Name)
		}
		if why := hookDiffers(wc.hook, kc.chain); why != "" {
			return fmt.Sprintf("chain %s: %s", kc.chain.Name, why)
		}
	}
	return ""
}

func hookDiffers(h *Hook, c *nftables.Chain) string {
	isBase := c.Hooknum != nil
	switch {
	case h == nil && !isBase:
		return ""
	case h == nil:
		return "is a base chain, want a regular chain"
	case !isBase:
		return "is a regular chain, want a base chain"
	}
	if *c.Hooknum != h.Num || c.Priority == nil || *c.Priority != h.Priority || c.Type != h.Type {
		prio := "?"
		if c.Priority != nil {
			prio = fmt.Sprint(*c.Priority)
		}
		return fmt.Sprintf("hook %d priority %s type %s, want hook %d priority %d type %s",
			*c.Hooknum, prio, c.Type, h.Num, h.Priority, h.Type)
	}
	if c.Policy == nil || *c.Policy != h.Policy {
		return "has another policy"
	}
	return ""
}

// diffChain plans the rule changes of one chain. It keeps the longest run of kernel
// rules that are wanted and already in the wanted order (so their handles and counters
// survive), deletes the others, and places each missing rule next to a kept one.
func (p *plan) diffChain(fam nftables.TableFamily, wc *preparedChain, have []*nftables.Rule, existed bool) {
	index := make(map[string]int, len(wc.rules))
	for i, r := range wc.rules {
		index[r.tag] = i
	}
	type cand struct {
		pos    int // in have
		wanted int // in wc.rules
	}
	var cands []cand
	seen := map[string]bool{}
	for i, r := range have {
		tag := tagOf(r)
		if w, ok := index[tag]; ok && !seen[tag] {
			seen[tag] = true
			cands = append(cands, cand{pos: i, wanted: w})
		}
	}
	keep := make([]bool, len(have))
	for _, ci := range longestIncreasing(len(cands), func(i int) int { return cands[i].wanted }) {
		keep[cands[ci].pos] = true
	}
	keptHandle := map[string]uint64{}
	for i, r := range have {
		if keep[i] {
			keptHandle[tagOf(r)] = r.Handle
			p.kept++
			continue
		}
		p.ops = append(p.ops, op{kind: opDelRule, family: fam, name: wc.name, handle: r.Handle})
		p.deleted++
		tag := tagOf(r)
		_, wanted := index[tag]
		switch {
		case tag == "":
			p.drift = append(p.drift, fmt.Sprintf("chain %s %s: untagged rule (handle %d)", FamilyName(fam), wc.name, r.Handle))
		case !wanted:
			p.drift = append(p.drift, fmt.Sprintf("chain %s %s: rule %s is not wanted", FamilyName(fam), wc.name, tag))
		default:
			p.drift = append(p.drift, fmt.Sprintf("chain %s %s: rule %s is duplicated or out of order", FamilyName(fam), wc.name, tag))
		}
	}
	var run []*preparedRule
	var anchor uint64 // the last kept rule before the run
	flush := func(next uint64) {
		if len(run) == 0 {
			return
		}
		switch {
		case anchor != 0:
			// Each added right after the anchor: add in reverse to keep the order.
			for i := len(run) - 1; i >= 0; i-- {
				p.ops = append(p.ops, op{kind: opAddAfter, family: fam, chain: wc, rule: run[i], handle: anchor})
			}
		case next != 0:
			for _, r := range run {
				p.ops = append(p.ops, op{kind: opInsertBefore, family: fam, chain: wc, rule: r, handle: next})
			}
		default:
			for _, r := range run {
				p.ops = append(p.ops, op{kind: opAppend, family: fam, chain: wc, rule: r})
			}
		}
		p.added += len(run)
		if existed {
			for _, r := range run {
				p.drift = append(p.drift, fmt.Sprintf("chain %s %s: rule %s is missing", FamilyName(fam), wc.name, r.tag))
			}
		}
		run = nil
	}
	for _, r := range wc.rules {
		if h, ok := keptHandle[r.tag]; ok {
			flush(h)
			anchor = h
			continue
		}
		run = append(run, r)
	}
	flush(0)
}

// longestIncreasing returns the indexes (ascending) of a longest strictly increasing
// subsequence of key(0..n-1).
func longestIncreasing(n int, key func(int) int) []int {
	if n == 0 {
		return nil
	}
	tails := []int{} // tails[k]: index of the smallest tail of an increasing run of length k+1
	prev := make([]int, n)
	for i := 0; i < n; i++ {
		k := sort.Search(len(tails), func(j int) bool { return key(tails[j]) >= key(i) })
		if k > 0 {
			prev[i] = tails[k-1]
		} else {
			prev[i] = -1
		}
		if k == len(tails) {
			tails = append(tails, i)
		} else {
			tails[k] = i
		}
	}
	out := make([]int, len(tails))
	for i, k := len(tails)-1, tails[len(tails)-1]; i >= 0; i, k = i-1, prev[k] {
		out[i] = k
	}
	return out
}
