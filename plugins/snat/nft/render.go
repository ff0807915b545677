package nft

import (
	"fmt"
	"strings"

	"github.com/google/nftables"
)

// Render prints a snapshot the way `nft list table` prints Sitelink's tables, using
// the desired rules of rs to spell out each tagged rule. A rule in the kernel that rs
// does not know (added by hand, or left from an older config) is printed as a comment
// line with its handle.
func Render(s *Snapshot, rs Ruleset) (string, error) {
	want, err := prepare(rs)
	if err != nil {
		return "", err
	}
	byTag := map[string]*Rule{}
	for _, t := range want.tables {
		for _, c := range t.chains {
			for _, r := range c.rules {
				byTag[r.tag] = r.rule
			}
		}
	}
	var b strings.Builder
	for _, t := range s.Tables {
		fmt.Fprintf(&b, "table %s %s {\n", FamilyName(t.Family), TableName)
		for i, c := range t.Chains {
			if i > 0 {
				b.WriteString("\n")
			}
			fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
			if c.Hook != nil {
				fmt.Fprintf(&b, "\t\t%s\n", HookText(c.Hook))
			}
			for _, r := range c.Rules {
				if wr, ok := byTag[r.Tag]; ok {
					fmt.Fprintf(&b, "\t\t%s\n", wr.Text(r.Tag, r.Packets, r.Bytes))
					continue
				}
				fmt.Fprintf(&b, "\t\t# handle %d: a rule Sitelink did not make", r.Handle)
				if r.Tag != "" {
					fmt.Fprintf(&b, " (comment %q)", r.Tag)
				}
				b.WriteString("\n")
			}
			b.WriteString("\t}\n")
		}
		b.WriteString("}\n")
	}
	return b.String(), nil
}

// HookText renders a base chain's header line as nft prints it.
func HookText(h *Hook) string {
	policy := "accept"
	if h.Policy == nftables.ChainPolicyDrop {
		policy = "drop"
	}
	return fmt.Sprintf("type %s hook %s priority %s; policy %s;", h.Type, hookName(h.Num), priorityName(h), policy)
}

func hookName(h nftables.ChainHook) string {
	switch h {
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookForward:
		return "forward"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	}
	return fmt.Sprint(uint32(h))
}

// priorityName spells standard priorities by name, as nft does for ip and ip6.
func priorityName(h *Hook) string {
	named := []struct {
		name string
		prio nftables.ChainPriority
		ok   func() bool
	}{
		{"raw", -300, func() bool { return true }},
		{"mangle", -150, func() bool { return true }},
		{"dstnat", -100, func() bool { return h.Num == *nftables.ChainHookPrerouting || h.Num == *nftables.ChainHookOutput }},
		{"filter", 0, func() bool { return true }},
		{"security", 50, func() bool { return true }},
		{"srcnat", 100, func() bool { return h.Num == *nftables.ChainHookPostrouting || h.Num == *nftables.ChainHookInput }},
	}
	for _, n := range named {
		if h.Priority == n.prio && n.ok() {
			return n.name
		}
	}
	return fmt.Sprint(int32(h.Priority))
}
