// Package nft owns Sitelink's nftables tables: one table named "sitelink" in each of
// the ip and ip6 families (NAT in the inet family needs Linux 5.2). It reconciles them
// with a desired Ruleset: it reads what the kernel has, computes the difference, applies
// it in one atomic batch, reads back and verifies that every rule is there in order.
// Every rule carries a tag in its UserData (shown by `nft` as a comment) that names the
// config element it comes from and a hash of its expressions, so unchanged rules keep
// their handles and counters.
//
// It touches nothing else: never `flush ruleset`, never another table. Watch reports
// when another tool changed Sitelink's tables, so the caller can re-apply.
package nft

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// TableName is the name of Sitelink's table in every family.
const TableName = "sitelink"

// TagPrefix starts every tag (the rule's comment).
const TagPrefix = "sitelink:"

// Families returns the families Sitelink may own a table in, in the order it handles them.
func Families() []nftables.TableFamily {
	return []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6}
}

// FamilyName is the nft name of a family ("ip", "ip6").
func FamilyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	}
	return fmt.Sprintf("family%d", f)
}

// Ruleset is the desired content of Sitelink's tables. A family without a Table has
// its table removed.
type Ruleset struct {
	Tables []Table
}

// Table is the desired content of one family's table.
type Table struct {
	Family nftables.TableFamily
	Chains []Chain
}

// Chain is a chain of the table, with its rules in order.
type Chain struct {
	Name string
	// Hook makes it a base chain; nil for a regular chain (a jump target).
	Hook  *Hook
	Rules []Rule
}

// Hook describes a base chain.
type Hook struct {
	Type     nftables.ChainType
	Num      nftables.ChainHook
	Priority nftables.ChainPriority
	Policy   nftables.ChainPolicy
}

// Rule is one desired rule.
type Rule struct {
	// Ref names the config element the rule comes from ("applications[0].access[2]").
	Ref string
	// Match is the rule's matches as nft prints them (may be empty).
	Match string
	// Counter says the rule counts (Exprs then hold an expr.Counter).
	Counter bool
	// Verdict is the rule's action as nft prints it ("accept", "masquerade").
	Verdict string
	// Exprs are the expressions sent to the kernel.
	Exprs []expr.Any
}

// Tag identifies the rule in the kernel: its Ref and a hash of the family, chain and
// expressions. Two rules with the same tag are the same rule.
func (r *Rule) Tag(fam nftables.TableFamily, chain string) (string, error) {
	h := sha256.New()
	h.Write([]byte{byte(fam)})
	h.Write([]byte(chain))
	h.Write([]byte{0})
	for _, e := range r.Exprs {
		b, err := expr.Marshal(byte(fam), e)
		if err != nil {
			return "", fmt.Errorf("encode rule %s (%T): %w", r.Ref, e, err)
		}
		h.Write(b)
	}
	sum := h.Sum(nil)
	return TagPrefix + r.Ref + ":" + hex.EncodeToString(sum[:6]), nil
}

// maxCommentLen is the longest comment nft accepts (NFT_USERDATA_MAXLEN is 256, with
// the TLV header and the NUL inside it).
const maxCommentLen = 128

// userData encodes a tag the way nft encodes a comment.
func userData(tag string) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, tag)
}

// tagOf returns the comment of a kernel rule ("" when none).
func tagOf(r *nftables.Rule) string {
	s, ok := userdata.GetString(r.UserData, userdata.TypeComment)
	if !ok {
		return ""
	}
	return s
}

// RefOfTag returns the config reference inside a tag ("" for a foreign comment).
func RefOfTag(tag string) string {
	rest, ok := strings.CutPrefix(tag, TagPrefix)
	if !ok {
		return ""
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return ""
	}
	return rest[:i]
}

// Spec renders the rule as written for `nft add rule` (no counter values, no comment).
func (r *Rule) Spec() string {
	var parts []string
	for _, p := range []string{r.Match, map[bool]string{true: "counter"}[r.Counter], r.Verdict} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " ")
}

// Text renders the rule as `nft list` prints it, with counter values and comment.
func (r *Rule) Text(tag string, packets, bytes uint64) string {
	var parts []string
	if r.Match != "" {
		parts = append(parts, r.Match)
	}
	if r.Counter {
		parts = append(parts, fmt.Sprintf("counter packets %d bytes %d", packets, bytes))
	}
	if r.Verdict != "" {
		parts = append(parts, r.Verdict)
	}
	if tag != "" {
		parts = append(parts, fmt.Sprintf("comment %q", tag))
	}
	return strings.Join(parts, " ")
}

// prepared is a Ruleset with tags computed and duplicates removed.
type prepared struct {
	tables map[nftables.TableFamily]*preparedTable
}

type preparedTable struct {
	family nftables.TableFamily
	chains []*preparedChain
}

type preparedChain struct {
	name  string
	hook  *Hook
	rules []*preparedRule
}

type preparedRule struct {
	tag  string
	rule *Rule
}

func prepare(rs Ruleset) (*prepared, error) {
	p := &prepared{tables: map[nftables.TableFamily]*preparedTable{}}
	for ti := range rs.Tables {
		t := &rs.Tables[ti]
		if t.Family != nftables.TableFamilyIPv4 && t.Family != nftables.TableFamilyIPv6 {
			return nil, fmt.Errorf("table family %s: only ip and ip6 are supported", FamilyName(t.Family))
		}
		if _, dup := p.tables[t.Family]; dup {
			return nil, fmt.Errorf("two tables for family %s", FamilyName(t.Family))
		}
		pt := &preparedTable{family: t.Family}
		names := map[string]bool{}
		for ci := range t.Chains {
			c := &t.Chains[ci]
			if c.Name == "" || len(c.Name) > 64 || names[c.Name] {
				return nil, fmt.Errorf("family %s: chain name %q is empty, too long or used twice", FamilyName(t.Family), c.Name)
			}
			names[c.Name] = true
			pc := &preparedChain{name: c.Name, hook: c.Hook}
			seen := map[string]bool{}
			for ri := range c.Rules {
				r := &c.Rules[ri]
				tag, err := r.Tag(t.Family, c.Name)
				if err != nil {
					return nil, err
				}
				if len(tag) > maxCommentLen {
					return nil, fmt.Errorf("rule %s: tag %q is longer than %d bytes", r.Ref, tag, maxCommentLen)
				}
				if seen[tag] {
					continue // the same rule twice: once is enough
				}
				seen[tag] = true
				pc.rules = append(pc.rules, &preparedRule{tag: tag, rule: r})
			}
			pt.chains = append(pt.chains, pc)
		}
		p.tables[t.Family] = pt
	}
	return p, nil
}

// RuleCount is the number of rules in the ruleset (before removing duplicates).
func (rs Ruleset) RuleCount() int {
	n := 0
	for _, t := range rs.Tables {
		for _, c := range t.Chains {
			n += len(c.Rules)
		}
	}
	return n
}
