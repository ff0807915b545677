package access

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// WriteTestDB writes a small Country database: each prefix → ISO code.
func writeTestDB(t *testing.T, countries map[string]string) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-Country", RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, cc := range countries {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		rec := mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(cc)}}
		if err := tree.Insert(n, rec); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "geo.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPolicy(t *testing.T) {
	db := writeTestDB(t, map[string]string{"10.1.0.0/16": "DE", "10.2.0.0/16": "CN", "2001:db8::/32": "FR"})
	geo, err := OpenGeoIP(db)
	if err != nil {
		t.Fatal(err)
	}
	defer geo.Close()
	allow, err := ParsePrefixes([]string{"10.0.0.0/8", "2001:db8::1"})
	if err != nil {
		t.Fatal(err)
	}
	p := &Policy{Allow: allow, Countries: map[string]bool{"DE": true, "FR": true}, Geo: geo}
	for addr, want := range map[string]string{
		"10.1.2.3":        "",
		"::ffff:10.1.2.3": "",
		"10.2.2.3":        ReasonCountry,
		"10.3.0.1":        ReasonCountry, // unknown
		"192.168.1.1":     ReasonSource,
		"2001:db8::1":     "",
		"2001:db8::2":     ReasonSource,
	} {
		if got, detail := p.Check(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: %q (%s), want %q", addr, got, detail, want)
		}
	}
	p.AllowUnknownCountry = true
	if got, _ := p.Check(netip.MustParseAddr("10.3.0.1")); got != "" {
		t.Errorf("unknown country with allow_unknown: %q", got)
	}
	if _, err := ParsePrefixes([]string{"10.0.0.0/33"}); err == nil {
		t.Error("bad prefix accepted")
	}
	if _, err := OpenGeoIP(filepath.Join(t.TempDir(), "missing.mmdb")); err == nil {
		t.Error("missing database opened")
	}
}
