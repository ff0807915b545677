// Package mss owns the tunnel's TCP MSS clamping: an nftables table of its own,
// "sitelink-tunnel", in the ip and ip6 families (never inet, which old kernels lack for
// some expressions; never any other table). Its one chain hooks forward at mangle
// priority and lowers the MSS option of TCP SYNs that enter or leave the tunnel
// interface to what fits its MTU: MTU-40 for IPv4, MTU-60 for IPv6, the equivalent of
//
//	tcp flags & (syn|rst) == syn tcp option maxseg size > MSS tcp option maxseg size set MSS
//
// Traffic the connector itself originates needs no rule: the kernel derives its MSS from
// the interface's MTU. Rules are tagged with UserData, compared with the kernel's before
// any change, and replaced in one atomic batch.
package mss

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Table is the name of the plugin's nftables table (in the ip and ip6 families).
const Table = "sitelink-tunnel"

// Chain is the name of its chain.
const Chain = "mss-clamp"

// Families are the families the table exists in.
var families = []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6}

// For returns the clamped MSS for an MTU: IPv4 and IPv6.
func For(mtu int) (v4, v6 int) { return mtu - 40, mtu - 60 }

// Clamp is the desired clamping.
type Clamp struct {
	Interface string
	MTU       int
}

// Apply makes the kernel's tables match c; it reports whether it changed anything.
func Apply(c Clamp) (bool, error) {
	conn, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	v4, v6 := For(c.MTU)
	changed := false
	for _, fam := range families {
		mss := v4
		if fam == nftables.TableFamilyIPv6 {
			mss = v6
		}
		want := rules(c.Interface, mss)
		ok, err := current(conn, fam, want)
		if err != nil {
			return changed, err
		}
		if ok {
			continue
		}
		t := &nftables.Table{Name: Table, Family: fam}
		// Add, delete and re-create the table in one transaction: atomic, and it works
		// whether the table exists or not.
		conn.AddTable(t)
		conn.DelTable(t)
		conn.AddTable(t)
		ch := conn.AddChain(&nftables.Chain{Name: Chain, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityMangle})
		for _, r := range want {
			conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r.exprs, UserData: r.tag})
		}
		if err := conn.Flush(); err != nil {
			return changed, fmt.Errorf("program nftables table %s %s (MSS clamping to %d): %w", familyName(fam), Table, mss, err)
		}
		changed = true
	}
	return changed, nil
}

// Remove deletes the table from both families and says what it removed.
func Remove() ([]string, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	var removed []string
	var errs []error
	for _, fam := range families {
		if _, err := conn.ListTableOfFamily(Table, fam); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			errs = append(errs, fmt.Errorf("look up nftables table %s %s: %w", familyName(fam), Table, err))
			continue
		}
		conn.DelTable(&nftables.Table{Name: Table, Family: fam})
		if err := conn.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("delete nftables table %s %s: %w", familyName(fam), Table, err))
			continue
		}
		removed = append(removed, "nftables table "+familyName(fam)+" "+Table)
	}
	return removed, errors.Join(errs...)
}

// current reports whether the family's table holds exactly the wanted rules.
func current(conn *nftables.Conn, fam nftables.TableFamily, want []rule) (bool, error) {
	t, err := conn.ListTableOfFamily(Table, fam)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("look up nftables table %s %s: %w", familyName(fam), Table, err)
	}
	chains, err := conn.ListChainsOfTableFamily(fam)
	if err != nil {
		return false, fmt.Errorf("list nftables chains: %w", err)
	}
	var ours []*nftables.Chain
	for _, c := range chains {
		if c.Table.Name == Table {
			ours = append(ours, c)
		}
	}
	if len(ours) != 1 || ours[0].Name != Chain || ours[0].Hooknum == nil || *ours[0].Hooknum != *nftables.ChainHookForward ||
		ours[0].Priority == nil || *ours[0].Priority != *nftables.ChainPriorityMangle {
		return false, nil
	}
	have, err := conn.GetRules(t, ours[0])
	if err != nil {
		return false, fmt.Errorf("list rules of %s %s: %w", familyName(fam), Table, err)
	}
	var got, exp []string
	for _, r := range have {
		got = append(got, string(r.UserData))
	}
	for _, r := range want {
		exp = append(exp, string(r.tag))
	}
	sort.Strings(got)
	sort.Strings(exp)
	return fmt.Sprint(got) == fmt.Sprint(exp), nil
}

type rule struct {
	tag   []byte
	exprs []expr.Any
}

// rules clamps SYNs leaving through the interface and SYNs arriving from it.
func rules(ifname string, mss int) []rule {
	name := make([]byte, unix.IFNAMSIZ)
	copy(name, ifname)
	val := binary.BigEndian.AppendUint16(nil, uint16(mss))
	var out []rule
	for _, dir := range []struct {
		tag string
		key expr.MetaKey
	}{{"out", expr.MetaKeyOIFNAME}, {"in", expr.MetaKeyIIFNAME}} {
		out = append(out, rule{
			tag: fmt.Appendf(nil, "sitelink-tunnel/v1 mss %s %s %d", dir.tag, ifname, mss),
			exprs: []expr.Any{
				&expr.Meta{Key: dir.key, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
				// tcp flags & (syn|rst) == syn
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x06}, Xor: []byte{0x00}},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}},
				// tcp option maxseg size > mss
				&expr.Exthdr{DestRegister: 1, Type: 2, Offset: 2, Len: 2, Op: expr.ExthdrOpTcpopt},
				&expr.Cmp{Op: expr.CmpOpGt, Register: 1, Data: val},
				// tcp option maxseg size set mss
				&expr.Immediate{Register: 1, Data: val},
				&expr.Exthdr{SourceRegister: 1, Type: 2, Offset: 2, Len: 2, Op: expr.ExthdrOpTcpopt},
			},
		})
	}
	return out
}

func familyName(f nftables.TableFamily) string {
	if f == nftables.TableFamilyIPv6 {
		return "ip6"
	}
	return "ip"
}
