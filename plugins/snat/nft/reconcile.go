package nft

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Reconciler applies Rulesets to the kernel. It is safe for concurrent use; applies are
// serialised.
type Reconciler struct {
	opts []nftables.ConnOption
	mu   sync.Mutex
}

// NewReconciler returns a Reconciler whose netlink connections are made with opts
// (nftables.WithNetNSFd for another namespace, nftables.WithTestDial in tests).
func NewReconciler(opts ...nftables.ConnOption) *Reconciler {
	return &Reconciler{opts: opts}
}

// socketBuffer is the netlink socket buffer size asked for: a batch of thousands of
// rules and their echoes do not fit the default.
const socketBuffer = 8 << 20

// bigBuffers enlarges a netlink socket's buffers: with CAP_NET_ADMIN beyond
// rmem_max/wmem_max (SO_RCVBUFFORCE), else as far as they go. Best effort.
func bigBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	_ = raw.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], socketBuffer) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], socketBuffer)
			}
		}
	})
	return nil
}

func (r *Reconciler) conn() (*nftables.Conn, error) {
	opts := append([]nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(bigBuffers)}, r.opts...)
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink socket: %w", err)
	}
	return c, nil
}

// Result says what an Apply did.
type Result struct {
	// Added, Deleted and Kept count rules.
	Added, Deleted, Kept int
	// Rebuilt lists tables deleted and created again, with the reason.
	Rebuilt []string
	// Drift lists how the kernel differed from the desired rules before the apply.
	Drift []string
	// Changed says a batch was sent.
	Changed bool
	// Duration is the whole apply, reads and verification included.
	Duration time.Duration
}

// ErrVerify wraps a verification failure: the batch was accepted but the kernel does not
// hold the rules it should.
var ErrVerify = errors.New("rules missing after apply")

// Apply makes the kernel's Sitelink tables hold exactly rs, in one atomic batch, and
// verifies the result. On error the kernel keeps what it had before the batch (a failed
// batch is rolled back by the kernel as a whole).
func (r *Reconciler) Apply(ctx context.Context, rs Ruleset) (Result, error) {
	start := time.Now()
	want, err := prepare(rs)
	if err != nil {
		return Result{}, fmt.Errorf("desired rules: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	c, err := r.conn()
	if err != nil {
		return Result{}, err
	}
	defer c.CloseLasting()
	have, err := readTables(c)
	if err != nil {
		return Result{}, err
	}
	p := makePlan(want, have)
	res := Result{Added: p.added, Deleted: p.deleted, Kept: p.kept, Rebuilt: p.rebuilds, Drift: p.drift}
	if p.empty() {
		res.Duration = time.Since(start)
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if err := emit(c, p); err != nil {
		return Result{}, err
	}
	if err := c.Flush(); err != nil {
		return Result{}, fmt.Errorf("nftables batch of %d changes rejected, previous rules kept: %w", len(p.ops), err)
	}
	res.Changed = true
	after, err := readTables(c)
	if err != nil {
		return res, fmt.Errorf("read back after apply: %w", err)
	}
	if check := makePlan(want, after); !check.empty() {
		return res, fmt.Errorf("%w: %s", ErrVerify, strings.Join(limit(check.drift, 5), "; "))
	}
	res.Duration = time.Since(start)
	return res, nil
}

// Check compares the kernel with rs without changing anything and returns the
// differences (none when the kernel holds exactly rs).
func (r *Reconciler) Check(ctx context.Context, rs Ruleset) ([]string, error) {
	want, err := prepare(rs)
	if err != nil {
		return nil, fmt.Errorf("desired rules: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := r.conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	have, err := readTables(c)
	if err != nil {
		return nil, err
	}
	p := makePlan(want, have)
	if p.empty() {
		return nil, nil
	}
	if len(p.drift) == 0 {
		return []string{"rules differ"}, nil
	}
	return p.drift, nil
}

// Remove deletes Sitelink's tables in every family and returns what it removed. It
// needs no config, so it also cleans up after a crashed process.
func (r *Reconciler) Remove(ctx context.Context) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := r.conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	have, err := listOurTables(c)
	if err != nil {
		return nil, err
	}
	if len(have) == 0 {
		return nil, nil
	}
	var removed []string
	for _, fam := range Families() {
		if have[fam] {
			c.DelTable(&nftables.Table{Name: TableName, Family: fam})
			removed = append(removed, fmt.Sprintf("nftables table %s %s", FamilyName(fam), TableName))
		}
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("delete tables %s: %w", strings.Join(removed, ", "), err)
	}
	left, err := listOurTables(c)
	if err != nil {
		return removed, fmt.Errorf("read back after delete: %w", err)
	}
	if len(left) != 0 {
		return removed, fmt.Errorf("tables still present after delete")
	}
	return removed, nil
}

// listOurTables reports in which families a Sitelink table exists.
func listOurTables(c *nftables.Conn) (map[nftables.TableFamily]bool, error) {
	tables, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	out := map[nftables.TableFamily]bool{}
	for _, t := range tables {
		if t.Name == TableName && isOurFamily(t.Family) {
			out[t.Family] = true
		}
	}
	return out, nil
}

func isOurFamily(f nftables.TableFamily) bool {
	for _, x := range Families() {
		if x == f {
			return true
		}
	}
	return false
}

// readTables reads Sitelink's tables, chains and rules.
func readTables(c *nftables.Conn) (map[nftables.TableFamily]*kernelTable, error) {
	tables, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	out := map[nftables.TableFamily]*kernelTable{}
	for _, t := range tables {
		if t.Name != TableName || !isOurFamily(t.Family) {
			continue
		}
		kt := &kernelTable{family: t.Family, flags: t.Flags}
		chains, err := c.ListChainsOfTableFamily(t.Family)
		if err != nil {
			return nil, fmt.Errorf("list chains of table %s %s: %w", FamilyName(t.Family), TableName, err)
		}
		for _, ch := range chains {
			if ch.Table == nil || ch.Table.Name != TableName {
				continue
			}
			ch.Table = t
			rules, err := c.GetRules(t, ch)
			if err != nil {
				return nil, fmt.Errorf("list rules of chain %s %s %s: %w", FamilyName(t.Family), TableName, ch.Name, err)
			}
			kt.chains = append(kt.chains, &kernelChain{chain: ch, rules: rules})
		}
		out[t.Family] = kt
	}
	return out, nil
}

// emit queues the plan's changes on c.
func emit(c *nftables.Conn, p *plan) error {
	for _, o := range p.ops {
		tbl := &nftables.Table{Name: TableName, Family: o.family}
		switch o.kind {
		case opDelTable:
			c.DelTable(tbl)
		case opAddTable:
			c.AddTable(tbl)
		case opAddChain:
			c.AddChain(chainOf(tbl, o.chain))
		case opDelRule:
			if err := c.DelRule(&nftables.Rule{Table: tbl, Chain: &nftables.Chain{Name: o.name, Table: tbl}, Handle: o.handle}); err != nil {
				return fmt.Errorf("delete rule %d of chain %s: %w", o.handle, o.name, err)
			}
		case opAppend, opAddAfter:
			c.AddRule(ruleOf(tbl, o))
		case opInsertBefore:
			c.InsertRule(ruleOf(tbl, o))
		default:
			return fmt.Errorf("unknown change %d", o.kind)
		}
	}
	return nil
}

func chainOf(tbl *nftables.Table, pc *preparedChain) *nftables.Chain {
	ch := &nftables.Chain{Name: pc.name, Table: tbl}
	if h := pc.hook; h != nil {
		num, prio, policy := h.Num, h.Priority, h.Policy
		ch.Hooknum = &num
		ch.Priority = &prio
		ch.Type = h.Type
		ch.Policy = &policy
	}
	return ch
}

func ruleOf(tbl *nftables.Table, o op) *nftables.Rule {
	r := &nftables.Rule{
		Table:    tbl,
		Chain:    &nftables.Chain{Name: o.chain.name, Table: tbl},
		Exprs:    o.rule.rule.Exprs,
		UserData: userData(o.rule.tag),
	}
	if o.kind == opAddAfter || o.kind == opInsertBefore {
		r.Position = o.handle
	}
	return r
}

func limit(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
}

// Snapshot is what the kernel holds in Sitelink's tables, with counters.
type Snapshot struct {
	Tables []TableSnapshot
}

// TableSnapshot is one family's table.
type TableSnapshot struct {
	Family nftables.TableFamily
	Chains []ChainSnapshot
}

// ChainSnapshot is one chain.
type ChainSnapshot struct {
	Name string
	// Hook is nil for a regular chain.
	Hook  *Hook
	Rules []RuleSnapshot
}

// RuleSnapshot is one kernel rule.
type RuleSnapshot struct {
	Handle uint64
	// Tag is the rule's comment ("" when none); Ref the config element in it.
	Tag, Ref string
	// Packets and Bytes are the rule's counter (zero without a counter).
	Packets, Bytes uint64
	// HasCounter says the rule has a counter.
	HasCounter bool
}

// Snapshot reads Sitelink's tables with their counters.
func (r *Reconciler) Snapshot(ctx context.Context) (*Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := r.conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	have, err := readTables(c)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{}
	for _, fam := range Families() {
		kt := have[fam]
		if kt == nil {
			continue
		}
		ts := TableSnapshot{Family: fam}
		for _, kc := range kt.chains {
			cs := ChainSnapshot{Name: kc.chain.Name}
			if kc.chain.Hooknum != nil && kc.chain.Priority != nil {
				h := &Hook{Type: kc.chain.Type, Num: *kc.chain.Hooknum, Priority: *kc.chain.Priority}
				if kc.chain.Policy != nil {
					h.Policy = *kc.chain.Policy
				}
				cs.Hook = h
			}
			for _, kr := range kc.rules {
				rs := RuleSnapshot{Handle: kr.Handle, Tag: tagOf(kr)}
				rs.Ref = RefOfTag(rs.Tag)
				for _, e := range kr.Exprs {
					if ctr, ok := e.(*expr.Counter); ok {
						rs.Packets, rs.Bytes, rs.HasCounter = ctr.Packets, ctr.Bytes, true
					}
				}
				cs.Rules = append(cs.Rules, rs)
			}
			ts.Chains = append(ts.Chains, cs)
		}
		s.Tables = append(s.Tables, ts)
	}
	return s, nil
}

// QueueCreate queues on c the batch Apply sends when the kernel has none of Sitelink's
// tables: the byte-level netlink goldens are made from it (with nftables.WithTestDial).
func QueueCreate(c *nftables.Conn, rs Ruleset) error {
	want, err := prepare(rs)
	if err != nil {
		return fmt.Errorf("desired rules: %w", err)
	}
	return emit(c, makePlan(want, nil))
}
