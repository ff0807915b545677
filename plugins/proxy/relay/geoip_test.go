package relay

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

func TestGeoIPCountries(t *testing.T) {
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-Country", RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, cc := range map[string]string{"127.0.0.2/32": "DE", "127.0.0.3/32": "CN"} {
		_, n, _ := net.ParseCIDR(cidr)
		if err := tree.Insert(n, mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(cc)}}); err != nil {
			t.Fatal(err)
		}
	}
	db := filepath.Join(t.TempDir(), "geo.mmdb")
	f, _ := os.Create(db)
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	up := newUpstream(t, nil)
	h := start(t, fmt.Sprintf(`{"geoip":{"database":%q},"listeners":[{"name":"t","address":"127.0.0.1:0","mode":"tcp","upstream":"mc","countries":["de"]}],
		"upstreams":{"mc":{"servers":[%q]}}}`, db, up.addr))
	echoOnce(t, h.s.Addr("t"), "127.0.0.2", "from DE")
	for _, from := range []string{"127.0.0.3", "127.0.0.4"} { // CN, unknown
		if _, closed := closedSoon(dialFrom(t, from, h.s.Addr("t"))); !closed {
			t.Fatalf("%s relayed", from)
		}
	}
	waitFor(t, "two country refusals", func() bool {
		n := 0
		for _, r := range h.reasons() {
			if r == "country" {
				n++
			}
		}
		return n == 2
	})
}
