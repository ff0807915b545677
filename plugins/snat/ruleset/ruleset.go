// Package ruleset turns a validated snat config into the nftables rules Sitelink wants:
// the rule shapes (matches, counters, verdicts, NAT) encoded exactly as `nft` encodes
// them, with the text `nft list` prints for each.
//
// Per family (ip, ip6) with a client range, table "sitelink" holds:
//
//	chain forward      type filter hook forward priority filter; policy accept;
//	                   ip saddr CLIENT_RANGE jump access          (one per client range)
//	chain access       ip saddr FROM ip daddr TO [tcp dport P] counter accept
//	                   …                                           (the access lists)
//	                   counter drop                                (everything else from clients)
//	chain postrouting  type nat hook postrouting priority srcnat; policy accept;
//	                   oifname IF ip saddr CLIENT_RANGE ip daddr NET counter masquerade | snat to A
//	chain prerouting   type nat hook prerouting priority dstnat; policy accept;   (empty)
//
// The NAT chains exist only when an application of that family uses SNAT; the empty
// prerouting chain is what kernels before 4.18 need to NAT the reply direction.
package ruleset

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/sitelink/sitelink/plugins/snat/config"
	"github.com/sitelink/sitelink/plugins/snat/nft"
)

// Chain names.
const (
	ChainForward     = "forward"
	ChainAccess      = "access"
	ChainPostrouting = "postrouting"
	ChainPrerouting  = "prerouting"
)

// Refs of the rules that do not come from an application.
const (
	RefDrop = "drop"
)

// Build returns the rules for c.
func Build(c *config.Config) nft.Ruleset {
	var rs nft.Ruleset
	for _, v4 := range []bool{true, false} {
		if !c.HasFamily(v4) {
			continue
		}
		rs.Tables = append(rs.Tables, buildFamily(c, v4))
	}
	return rs
}

func buildFamily(c *config.Config, v4 bool) nft.Table {
	fam := nftables.TableFamilyIPv4
	if !v4 {
		fam = nftables.TableFamilyIPv6
	}
	forward := nft.Chain{Name: ChainForward, Hook: &nft.Hook{Type: nftables.ChainTypeFilter,
		Num: *nftables.ChainHookForward, Priority: *nftables.ChainPriorityFilter, Policy: nftables.ChainPolicyAccept}}
	for i, cr := range c.ClientRanges {
		if cr.Addr().Is4() != v4 {
			continue
		}
		forward.Rules = append(forward.Rules, JumpRule(fmt.Sprintf("client_ranges[%d]", i), cr, ChainAccess))
	}
	access := nft.Chain{Name: ChainAccess}
	post := nft.Chain{Name: ChainPostrouting, Hook: &nft.Hook{Type: nftables.ChainTypeNAT,
		Num: *nftables.ChainHookPostrouting, Priority: *nftables.ChainPriorityNATSource, Policy: nftables.ChainPolicyAccept}}
	for _, a := range c.Applications {
		for xi, acc := range a.Access {
			ref := fmt.Sprintf("%s/access[%d]", a.Name, xi)
			if acc.Implicit {
				ref = a.Name + "/access"
			}
			for _, from := range acc.From {
				if from.Addr().Is4() != v4 {
					continue
				}
				for _, to := range acc.To {
					if to.Addr().Is4() != v4 {
						continue
					}
					if len(acc.Ports) == 0 {
						access.Rules = append(access.Rules, AcceptRule(ref, from, to, acc.Protocol, nil))
						continue
					}
					for _, pr := range acc.Ports {
						pr := pr
						access.Rules = append(access.Rules, AcceptRule(ref, from, to, acc.Protocol, &pr))
					}
				}
			}
		}
		if a.SNAT.Mode == config.SNATOff {
			continue
		}
		to := a.SNAT.To4
		if !v4 {
			to = a.SNAT.To6
		}
		for _, cr := range c.ClientRanges {
			if cr.Addr().Is4() != v4 {
				continue
			}
			for _, n := range a.Networks {
				if n.Addr().Is4() != v4 {
					continue
				}
				ref := fmt.Sprintf("%s/snat", a.Name)
				if a.SNAT.Mode == config.SNATMasquerade {
					post.Rules = append(post.Rules, MasqueradeRule(ref, a.Interface, cr, n))
				} else {
					post.Rules = append(post.Rules, SNATRule(ref, a.Interface, cr, n, to))
				}
			}
		}
	}
	access.Rules = append(access.Rules, DropRule(RefDrop))
	t := nft.Table{Family: fam, Chains: []nft.Chain{forward, access}}
	if len(post.Rules) > 0 {
		pre := nft.Chain{Name: ChainPrerouting, Hook: &nft.Hook{Type: nftables.ChainTypeNAT,
			Num: *nftables.ChainHookPrerouting, Priority: *nftables.ChainPriorityNATDest, Policy: nftables.ChainPolicyAccept}}
		t.Chains = append(t.Chains, post, pre)
	}
	return t
}

// JumpRule is `ip saddr RANGE jump CHAIN`.
func JumpRule(ref string, from netip.Prefix, chain string) nft.Rule {
	m := matcher{}
	m.prefix(offSaddr(from), from, "saddr")
	return nft.Rule{Ref: ref, Match: m.text(), Verdict: "jump " + chain,
		Exprs: append(m.exprs, &expr.Verdict{Kind: expr.VerdictJump, Chain: chain})}
}

// AcceptRule is `ip saddr FROM ip daddr TO [proto/ports] counter accept`.
func AcceptRule(ref string, from, to netip.Prefix, proto config.Protocol, ports *config.PortRange) nft.Rule {
	m := matcher{}
	m.prefix(offSaddr(from), from, "saddr")
	m.prefix(offDaddr(to), to, "daddr")
	m.proto(proto, to.Addr().Is4(), ports)
	return nft.Rule{Ref: ref, Match: m.text(), Counter: true, Verdict: "accept",
		Exprs: append(m.exprs, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept})}
}

// DropRule is `counter drop`.
func DropRule(ref string) nft.Rule {
	return nft.Rule{Ref: ref, Counter: true, Verdict: "drop",
		Exprs: []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}}
}

// MasqueradeRule is `oifname IF ip saddr FROM ip daddr TO counter masquerade`.
func MasqueradeRule(ref, ifname string, from, to netip.Prefix) nft.Rule {
	m := matcher{}
	m.oifname(ifname)
	m.prefix(offSaddr(from), from, "saddr")
	m.prefix(offDaddr(to), to, "daddr")
	return nft.Rule{Ref: ref, Match: m.text(), Counter: true, Verdict: "masquerade",
		Exprs: append(m.exprs, &expr.Counter{}, &expr.Masq{})}
}

// SNATRule is `oifname IF ip saddr FROM ip daddr TO counter snat to ADDR`.
func SNATRule(ref, ifname string, from, to netip.Prefix, addr netip.Addr) nft.Rule {
	m := matcher{}
	m.oifname(ifname)
	m.prefix(offSaddr(from), from, "saddr")
	m.prefix(offDaddr(to), to, "daddr")
	fam := uint32(unix.NFPROTO_IPV4)
	if !addr.Is4() {
		fam = unix.NFPROTO_IPV6
	}
	return nft.Rule{Ref: ref, Match: m.text(), Counter: true, Verdict: "snat to " + addr.String(),
		Exprs: append(m.exprs, &expr.Counter{},
			&expr.Immediate{Register: 1, Data: addr.AsSlice()},
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: fam, RegAddrMin: 1, RegAddrMax: 1})}
}
