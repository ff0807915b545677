package ruleset

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/sitelink/sitelink/plugins/snat/config"
	"github.com/sitelink/sitelink/plugins/snat/nft"
	"github.com/sitelink/sitelink/testenv"
)

// TestShapesEncodeLikeNft lets nft compile every rule's text (Spec) in a throwaway
// namespace, reads the rule back, and compares its expressions, byte for byte, with
// what Build made: the goldens then pin an encoding nft itself agrees with.
func TestShapesEncodeLikeNft(t *testing.T) {
	testenv.Require(t, "ip", "nft")
	env := testenv.New(t)
	h, err := env.Host("shapes")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(h.NSPath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	checked := 0
	for name, js := range goldenCases {
		c, err := config.Parse([]byte(js))
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range Build(c).Tables {
			fam := nft.FamilyName(tb.Family)
			for _, ch := range tb.Chains {
				for _, r := range ch.Rules {
					spec := r.Spec()
					script := fmt.Sprintf("table %s t\ndelete table %s t\ntable %s t {\n chain access {}\n chain %s {\n  %s\n }\n}\n",
						fam, fam, fam, ch.Name, spec)
					if _, err := h.Run(ctx, "nft", "-f", writeTemp(t, script)); err != nil {
						t.Fatalf("%s: nft refuses %q: %v", name, spec, err)
					}
					tbl := &nftables.Table{Name: "t", Family: tb.Family}
					got, err := conn.GetRules(tbl, &nftables.Chain{Name: ch.Name, Table: tbl})
					if err != nil || len(got) != 1 {
						t.Fatalf("%s: read back %q: %d rules, %v", name, spec, len(got), err)
					}
					want, have := encode(t, tb.Family, r.Exprs), encode(t, tb.Family, got[0].Exprs)
					if !bytes.Equal(want, have) {
						t.Errorf("%s %s %s: %q\n Build: %s\n nft:   %s", name, fam, ch.Name, spec, describe(r.Exprs), describe(got[0].Exprs))
					}
					checked++
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d rules checked", checked)
	}
}

// encode marshals expressions as the library would send them (counters zeroed).
func encode(t *testing.T, fam nftables.TableFamily, exprs []expr.Any) []byte {
	t.Helper()
	var out []byte
	for _, e := range exprs {
		if c, ok := e.(*expr.Counter); ok {
			e = &expr.Counter{Bytes: 0 * c.Bytes}
		}
		b, err := expr.Marshal(byte(fam), e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

func describe(exprs []expr.Any) string {
	var parts []string
	for _, e := range exprs {
		parts = append(parts, fmt.Sprintf("%T%+v", e, e))
	}
	return strings.Join(parts, " ")
}

func writeTemp(t *testing.T, text string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "*.nft")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}
