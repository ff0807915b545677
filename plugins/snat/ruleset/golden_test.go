package ruleset

import (
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/sitelink/sitelink/plugins/snat/config"
	"github.com/sitelink/sitelink/plugins/snat/nft"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenCases are the rule shapes, each checked byte for byte against testdata/NAME.golden.
var goldenCases = map[string]string{
	"masquerade": `{"client_ranges": ["100.64.0.0/10"], "applications": [
	  {"name": "app", "networks": ["10.1.0.0/16"], "interface": "eth1", "snat": "masquerade"}]}`,
	"snat_to_dual_stack": `{"client_ranges": ["100.64.0.0/16", "fd7a:115c:a1e0::/48"], "applications": [
	  {"name": "app", "networks": ["10.2.0.0/24", "fd00:2::/64"], "interface": "eth2", "snat": "to 10.2.0.5, fd00:2::5"}]}`,
	"snat_off": `{"client_ranges": ["100.64.0.0/16"], "applications": [
	  {"name": "app", "networks": ["10.3.0.0/24"], "interface": "eth3", "snat": "off"}]}`,
	"access_list": `{"client_ranges": ["100.64.0.0/10", "fd7a:115c:a1e0::/48"], "applications": [
	  {"name": "erp", "networks": ["10.1.0.0/16", "fd00:1::/60"], "interface": "eth1", "snat": "off", "access": [
	    {"from": ["100.64.1.0/24"], "to": ["10.1.2.0/23"], "protocol": "tcp", "ports": [443, "8000-8100"]},
	    {"from": ["100.64.0.7"], "protocol": "udp", "ports": [53]},
	    {"protocol": "icmp"},
	    {"from": ["fd7a:115c:a1e0:1::/64"], "to": ["fd00:1::5"], "protocol": "tcp"}]}]}`,
}

// recordBatch runs QueueCreate + Flush against a fake netlink socket and returns the
// messages sent, one line each: type, flags and the payload in hex.
func recordBatch(t *testing.T, rs nft.Ruleset) string {
	t.Helper()
	var lines []string
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		for _, m := range req {
			lines = append(lines, fmt.Sprintf("%s flags=%#04x %s", msgName(m.Header.Type), uint16(m.Header.Flags), hex.EncodeToString(m.Data)))
		}
		return req, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := nft.QueueCreate(c, rs); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n") + "\n"
}

func msgName(t netlink.HeaderType) string {
	switch uint16(t) {
	case unix.NFNL_MSG_BATCH_BEGIN:
		return "BATCH_BEGIN"
	case unix.NFNL_MSG_BATCH_END:
		return "BATCH_END"
	}
	names := map[int]string{unix.NFT_MSG_NEWTABLE: "NEWTABLE", unix.NFT_MSG_DELTABLE: "DELTABLE",
		unix.NFT_MSG_NEWCHAIN: "NEWCHAIN", unix.NFT_MSG_NEWRULE: "NEWRULE", unix.NFT_MSG_DELRULE: "DELRULE"}
	if uint16(t)>>8 == unix.NFNL_SUBSYS_NFTABLES {
		if n, ok := names[int(uint16(t)&0xff)]; ok {
			return n
		}
	}
	return fmt.Sprintf("type%#04x", uint16(t))
}

func TestGoldenBatches(t *testing.T) {
	for name, js := range goldenCases {
		t.Run(name, func(t *testing.T) {
			c, err := config.Parse([]byte(js))
			if err != nil {
				t.Fatal(err)
			}
			rs := Build(c)
			var b strings.Builder
			b.WriteString("# The batch that creates these rules in an empty kernel (QueueCreate), one netlink\n")
			b.WriteString("# message a line: type, flags, payload after the netlink header. Regenerate with\n")
			b.WriteString("# go test ./plugins/snat/ruleset -run TestGoldenBatches -update and review the diff.\n")
			for _, tb := range rs.Tables {
				for _, ch := range tb.Chains {
					for _, r := range ch.Rules {
						fmt.Fprintf(&b, "# %s %s: %s\n", nft.FamilyName(tb.Family), ch.Name, r.Spec())
					}
				}
			}
			b.WriteString(recordBatch(t, rs))
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got := b.String(); got != string(want) {
				t.Errorf("batch differs from %s:\n%s", path, lineDiff(string(want), got))
			}
		})
	}
}

func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			out = append(out, fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, a, b))
		}
	}
	return strings.Join(out, "\n")
}
