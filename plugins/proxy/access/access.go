// Package access decides whether a source address may use a listener: allowed source
// prefixes, trusted prefixes for control-console traffic, and a GeoIP country
// allow-list read from a MaxMind .mmdb file.
package access

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Prefixes is a set of address prefixes; empty matches nothing.
type Prefixes []netip.Prefix

// ParsePrefixes parses CIDRs or single addresses.
func ParsePrefixes(list []string) (Prefixes, error) {
	out := make(Prefixes, 0, len(list))
	for _, s := range list {
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a prefix nor an address", s)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("bad prefix %q: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Contains says whether a (IPv4-mapped addresses unmapped) is in one of the prefixes.
func (ps Prefixes) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// GeoIP looks up countries in a MaxMind database (GeoLite2/GeoIP2 Country or City, or
// any database with a country.iso_code).
type GeoIP struct {
	db *maxminddb.Reader
}

// OpenGeoIP opens a .mmdb file.
func OpenGeoIP(path string) (*GeoIP, error) {
	db, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open GeoIP database %s: %w", path, err)
	}
	return &GeoIP{db: db}, nil
}

// Country returns the ISO 3166 code of a's country, "" when unknown.
func (g *GeoIP) Country(a netip.Addr) (string, error) {
	var rec struct {
		Country struct {
			ISOCode string `maxminddb:"iso_code"`
		} `maxminddb:"country"`
	}
	if err := g.db.Lookup(a.Unmap()).Decode(&rec); err != nil {
		return "", fmt.Errorf("GeoIP lookup of %s: %w", a, err)
	}
	return strings.ToUpper(rec.Country.ISOCode), nil
}

// Close releases the database.
func (g *GeoIP) Close() error { return g.db.Close() }

// Policy is one listener's source policy.
type Policy struct {
	// Allow, when not empty, are the only sources admitted.
	Allow Prefixes
	// Countries, when not empty, are the only countries admitted (needs Geo).
	Countries map[string]bool
	// AllowUnknownCountry admits addresses the database does not know (private ranges).
	AllowUnknownCountry bool
	// Geo is the database for Countries.
	Geo *GeoIP
}

// Refusal reasons.
const (
	ReasonSource  = "source"
	ReasonCountry = "country"
)

// Check returns "" when a is admitted, else the refusal reason and a detail.
func (p *Policy) Check(a netip.Addr) (reason, detail string) {
	if len(p.Allow) > 0 && !p.Allow.Contains(a) {
		return ReasonSource, "source not in the listener's allowed prefixes"
	}
	if len(p.Countries) > 0 {
		if p.Geo == nil {
			return ReasonCountry, "no GeoIP database"
		}
		cc, err := p.Geo.Country(a)
		if err != nil {
			return ReasonCountry, err.Error()
		}
		if cc == "" {
			if p.AllowUnknownCountry {
				return "", ""
			}
			return ReasonCountry, "country unknown"
		}
		if !p.Countries[cc] {
			return ReasonCountry, "country " + cc + " not allowed"
		}
	}
	return "", ""
}
