package mss

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/sitelink/sitelink/plugins/tunnel/tunneltest"
	"github.com/sitelink/sitelink/testenv"
)

func TestMain(m *testing.M) { os.Exit(tunneltest.RunInNamespace(m)) }

func nft(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("nft", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestApplyRemove(t *testing.T) {
	tunneltest.RequireNamespace(t)
	testenv.RequireTools(t, "nft")
	// Someone else's table, which must survive everything.
	nft(t, "add", "table", "ip", "other")
	nft(t, "add", "chain", "ip", "other", "fw", "{ type filter hook forward priority 0; }")
	nft(t, "add", "rule", "ip", "other", "fw", "counter")

	changed, err := Apply(Clamp{Interface: "sitelink-wg", MTU: 1420})
	if err != nil || !changed {
		t.Fatalf("apply: %v %v", changed, err)
	}
	v4 := nft(t, "list", "table", "ip", Table)
	v6 := nft(t, "list", "table", "ip6", Table)
	for _, s := range []string{"hook forward priority mangle", `oifname "sitelink-wg"`, `iifname "sitelink-wg"`,
		"tcp flags syn / syn,rst", "tcp option maxseg size > 1380", "tcp option maxseg size set 1380"} {
		if !strings.Contains(v4, s) {
			t.Errorf("ip table lacks %q:\n%s", s, v4)
		}
	}
	if !strings.Contains(v6, "tcp option maxseg size set 1360") {
		t.Errorf("ip6 table:\n%s", v6)
	}
	if changed, err := Apply(Clamp{Interface: "sitelink-wg", MTU: 1420}); err != nil || changed {
		t.Fatalf("second apply changed=%v %v", changed, err)
	}
	// Drift: a rule removed by hand is restored.
	nft(t, "flush", "chain", "ip", Table, Chain)
	if changed, err := Apply(Clamp{Interface: "sitelink-wg", MTU: 1420}); err != nil || !changed {
		t.Fatalf("drift apply changed=%v %v", changed, err)
	}
	if changed, err := Apply(Clamp{Interface: "sitelink-wg", MTU: 1380}); err != nil || !changed {
		t.Fatalf("new MTU changed=%v %v", changed, err)
	}
	if v4 := nft(t, "list", "table", "ip", Table); !strings.Contains(v4, "set 1340") || strings.Contains(v4, "1380") {
		t.Fatalf("after MTU change:\n%s", v4)
	}
	removed, err := Remove()
	if err != nil || len(removed) != 2 {
		t.Fatalf("remove: %v %v", removed, err)
	}
	if removed, err := Remove(); err != nil || len(removed) != 0 {
		t.Fatalf("second remove: %v %v", removed, err)
	}
	all := nft(t, "list", "ruleset")
	if strings.Contains(all, Table) || !strings.Contains(all, "table ip other") || !strings.Contains(all, "counter") {
		t.Fatalf("ruleset after remove:\n%s", all)
	}
}
