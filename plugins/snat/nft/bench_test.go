package nft_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/sitelink/sitelink/plugins/snat/nft"
	"github.com/sitelink/sitelink/testenv"
)

// The reconcile benchmarks program a throwaway namespace with a config whose access
// list expands to 1,000 accept rules (1,004 rules in all):
//
//	go test -run XXX -bench Reconcile -benchtime 20x ./plugins/snat/nft
//
// FromEmpty measures read + one batch + read back and verify into an empty namespace;
// Unchanged measures the re-apply of the same config (read, diff, nothing to send).

func BenchmarkReconcile1000FromEmpty(b *testing.B) {
	_, r := benchReconciler(b)
	rs := build(b, accessListConfig(1000))
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if _, err := r.Remove(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := r.Apply(ctx, rs)
		if err != nil || res.Added != rs.RuleCount() {
			b.Fatalf("%+v %v", res, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/apply")
	b.ReportMetric(float64(rs.RuleCount()), "rules")
}

func BenchmarkReconcile1000Unchanged(b *testing.B) {
	_, r := benchReconciler(b)
	rs := build(b, accessListConfig(1000))
	ctx := context.Background()
	if _, err := r.Apply(ctx, rs); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := r.Apply(ctx, rs)
		if err != nil || res.Changed {
			b.Fatalf("%+v %v", res, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/apply")
	b.ReportMetric(float64(rs.RuleCount()), "rules")
}

// BenchmarkReconcile1000OneChanged changes one access entry of 1,000 (one rule out, one
// in, all others kept).
func BenchmarkReconcile1000OneChanged(b *testing.B) {
	_, r := benchReconciler(b)
	rsA := build(b, accessListConfig(1000))
	rsB := build(b, accessListConfig(1000))
	// Entry 500 gets another port in B.
	access := &rsB.Tables[0].Chains[1]
	alt := build(b, accessListConfig(1001)).Tables[0].Chains[1].Rules[1000]
	alt.Ref = access.Rules[500].Ref
	access.Rules[500] = alt
	ctx := context.Background()
	if _, err := r.Apply(ctx, rsA); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rs := rsB
		if i%2 == 1 {
			rs = rsA
		}
		res, err := r.Apply(ctx, rs)
		if err != nil || res.Added != 1 || res.Deleted != 1 {
			b.Fatalf("%+v %v", res, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/apply")
	b.ReportMetric(float64(rsA.RuleCount()), "rules")
}

func benchReconciler(b *testing.B) (*testenv.Host, *nft.Reconciler) {
	b.Helper()
	return nsReconciler(b)
}

// nftScript renders rs as an `nft -f` script that replaces Sitelink's tables in one
// transaction, the way a tool without a diff would.
func nftScript(b *testing.B, rs nft.Ruleset) string {
	var s strings.Builder
	for _, t := range rs.Tables {
		fam := nft.FamilyName(t.Family)
		fmt.Fprintf(&s, "table %s %s\ndelete table %s %s\ntable %s %s {\n", fam, nft.TableName, fam, nft.TableName, fam, nft.TableName)
		for _, c := range t.Chains {
			fmt.Fprintf(&s, "\tchain %s {\n", c.Name)
			if c.Hook != nil {
				fmt.Fprintf(&s, "\t\t%s\n", nft.HookText(c.Hook))
			}
			for i := range c.Rules {
				tag, err := c.Rules[i].Tag(t.Family, c.Name)
				if err != nil {
					b.Fatal(err)
				}
				fmt.Fprintf(&s, "\t\t%s comment %q\n", c.Rules[i].Spec(), tag)
			}
			s.WriteString("\t}\n")
		}
		s.WriteString("}\n")
	}
	return s.String()
}

// BenchmarkNftCLI1000FromEmpty is the peer of BenchmarkReconcile1000FromEmpty: the same
// rules loaded by `nft -f` (process start included) into an empty namespace.
func BenchmarkNftCLI1000FromEmpty(b *testing.B) {
	h, r := benchReconciler(b)
	rs := build(b, accessListConfig(1000))
	file := writeFile(b, nftScript(b, rs))
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if _, err := r.Remove(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if out, err := h.Run(ctx, "nft", "-f", file); err != nil {
			b.Fatalf("%v %s", err, out)
		}
	}
	b.StopTimer()
	if drift, err := r.Check(ctx, rs); err != nil || len(drift) != 0 {
		b.Fatalf("nft loaded something else: %v %v", drift, err)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/apply")
	b.ReportMetric(float64(rs.RuleCount()), "rules")
}

// BenchmarkNftCLI1000Reload is the peer of BenchmarkReconcile1000Unchanged: `nft -f`
// replacing the tables with the same rules (it cannot tell nothing changed, so every
// rule gets a new handle and a zero counter).
func BenchmarkNftCLI1000Reload(b *testing.B) {
	h, _ := benchReconciler(b)
	rs := build(b, accessListConfig(1000))
	file := writeFile(b, nftScript(b, rs))
	ctx := context.Background()
	if out, err := h.Run(ctx, "nft", "-f", file); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if out, err := h.Run(ctx, "nft", "-f", file); err != nil {
			b.Fatalf("%v %s", err, out)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/apply")
	b.ReportMetric(float64(rs.RuleCount()), "rules")
}
