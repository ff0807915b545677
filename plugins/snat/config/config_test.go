package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sitelink/sitelink/plugins/sdk"
)

const valid = `{
  "client_ranges": ["100.64.0.0/10", "fd7a:115c:a1e0::/48"],
  "client_interfaces": ["wg0"],
  "recheck_interval": "10s",
  "applications": [
    {"name": "erp", "networks": ["10.1.0.0/16", "fd00:1::/64"], "interface": "eth1", "snat": "masquerade",
     "access": [
       {"from": ["100.64.1.0/24"], "to": ["10.1.2.0/24"], "protocol": "tcp", "ports": [443, "8000-8100"]},
       {"protocol": "icmp"}
     ]},
    {"name": "db", "networks": ["10.2.0.5"], "interface": "eth2", "snat": "to 10.2.0.1"},
    {"name": "legacy", "networks": ["192.168.50.0/24"], "interface": "eth1", "snat": "off"}
  ]
}`

func TestParseValid(t *testing.T) {
	c, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if !c.ManageForwarding || c.RecheckInterval != 10*time.Second {
		t.Errorf("defaults: %+v", c)
	}
	if len(c.Applications) != 3 {
		t.Fatalf("applications: %+v", c.Applications)
	}
	erp := c.Applications[0]
	if erp.SNAT.Mode != SNATMasquerade || len(erp.Access) != 2 {
		t.Fatalf("erp: %+v", erp)
	}
	a0 := erp.Access[0]
	if a0.Protocol != ProtoTCP || len(a0.Ports) != 2 || a0.Ports[0] != (PortRange{443, 443}) || a0.Ports[1] != (PortRange{8000, 8100}) {
		t.Errorf("access[0]: %+v", a0)
	}
	if a1 := erp.Access[1]; len(a1.From) != 2 || len(a1.To) != 2 || a1.Protocol != ProtoICMP {
		t.Errorf("access[1] defaults: %+v", a1)
	}
	db := c.Applications[1]
	if db.Networks[0] != netip.MustParsePrefix("10.2.0.5/32") || db.SNAT.To4 != netip.MustParseAddr("10.2.0.1") || db.SNAT.String() != "to 10.2.0.1" {
		t.Errorf("db: %+v", db)
	}
	if len(db.Access) != 1 || !db.Access[0].Implicit {
		t.Errorf("db implicit access: %+v", db.Access)
	}
	if got := strings.Join(c.Interfaces(), ","); got != "wg0,eth1,eth2" {
		t.Errorf("interfaces %q", got)
	}
	// ip: jump + drop + erp snat 1 + erp access 2+1 + db snat 1 + db access 1 + legacy access 1
	// ip6: jump + drop + erp snat 1 + erp access[1] 1
	if n := c.RuleCount(); n != 9+4 {
		t.Errorf("RuleCount %d", n)
	}
}

func TestParseErrorsHavePaths(t *testing.T) {
	cases := []struct {
		name, js, path, msg string
	}{
		{"empty", `{}`, "client_ranges", "required"},
		{"unknown field", `{"client_range": []}`, "client_range", "unknown field"},
		{"wrong type", `{"client_ranges": "10.0.0.0/8"}`, "client_ranges", "expected"},
		{"host bits", `{"client_ranges": ["100.64.0.1/10"], "applications": []}`, "client_ranges[0]", "did you mean 100.64.0.0/10"},
		{"zero prefix", `{"client_ranges": ["0.0.0.0/0"]}`, "client_ranges[0]", "every address"},
		{"overlapping ranges", `{"client_ranges": ["100.64.0.0/10", "100.64.1.0/24"]}`, "client_ranges[1]", "overlaps"},
		{"no apps", `{"client_ranges": ["100.64.0.0/10"]}`, "applications", "at least one"},
		{"clash with clients", app(`"networks": ["100.64.5.0/24"], "interface": "eth1", "snat": "off"`), "applications[0].networks[0]", "must not clash"},
		{"bad name", app(`"name": "Bad Name", "networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "off"`), "applications[0].name", "must be"},
		{"long ifname", app(`"networks": ["10.0.0.0/8"], "interface": "a-very-long-interface", "snat": "off"`), "applications[0].interface", "longer than 15"},
		{"bad snat", app(`"networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "hide"`), "applications[0].snat", "expected masquerade"},
		{"snat missing", app(`"networks": ["10.0.0.0/8"], "interface": "eth1"`), "applications[0].snat", "required"},
		{"snat to family", app(`"networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "to fd00::1"`), "applications[0].snat", "no IPv6 network"},
		{"snat to inside clients", app(`"networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "to 100.64.0.1"`), "applications[0].snat", "inside the client range"},
		{"v6 net without v6 range", app(`"networks": ["fd00::/64"], "interface": "eth1", "snat": "off"`), "applications[0].networks[0]", "no client range is"},
		{"from outside clients", app(`"networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "off", "access": [{"from": ["10.9.0.0/16"]}]`), "applications[0].access[0].from[0]", "not inside a client range"},
		{"to outside networks", app(`"networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "off", "access": [{"to": ["11.0.0.0/8"]}]`), "applications[0].access[0].to[0]", "not inside the application's networks"},
		{"ports without protocol", app(`"networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "off", "access": [{"ports": [80]}]`), "applications[0].access[0].ports", "need protocol"},
		{"bad port", app(`"networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "off", "access": [{"protocol": "tcp", "ports": [70000]}]`), "applications[0].access[0].ports[0]", "1-65535"},
		{"reversed range", app(`"networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "off", "access": [{"protocol": "udp", "ports": ["90-80"]}]`), "applications[0].access[0].ports[0]", "ends before"},
		{"bad protocol", app(`"networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "off", "access": [{"protocol": "sctp"}]`), "applications[0].access[0].protocol", "expected tcp"},
		{"family mismatch", `{"client_ranges": ["100.64.0.0/10", "fd7a::/48"], "applications": [{"name": "a", "networks": ["10.0.0.0/8", "fd00::/64"], "interface": "eth1", "snat": "off", "access": [{"from": ["fd7a::/64"], "to": ["10.0.0.0/8"]}]}]}`, "applications[0].access[0]", "matches nothing"},
		{"duplicate name", `{"client_ranges": ["100.64.0.0/10"], "applications": [{"name": "a", "networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "off"}, {"name": "a", "networks": ["11.0.0.0/8"], "interface": "eth1", "snat": "off"}]}`, "applications[1].name", "already used"},
		{"overlapping apps", `{"client_ranges": ["100.64.0.0/10"], "applications": [{"name": "a", "networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "off"}, {"name": "b", "networks": ["10.1.0.0/16"], "interface": "eth1", "snat": "off"}]}`, "applications[1].networks", "overlaps network 10.0.0.0/8"},
		{"bad interval", `{"client_ranges": ["100.64.0.0/10"], "recheck_interval": "1ms", "applications": [{"name": "a", "networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "off"}]}`, "recheck_interval", "between"},
		{"dup client interface", `{"client_ranges": ["100.64.0.0/10"], "client_interfaces": ["wg0", "wg0"], "applications": [{"name": "a", "networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "off"}]}`, "client_interfaces[1]", "twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.js))
			var fes sdk.FieldErrors
			if !errors.As(err, &fes) {
				t.Fatalf("got %v, want FieldErrors", err)
			}
			for _, fe := range fes {
				if fe.Path == tc.path && strings.Contains(fe.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("errors %v lack %s: ...%s...", fes, tc.path, tc.msg)
		})
	}
}

func app(fields string) string {
	if !strings.Contains(fields, `"name"`) {
		fields = `"name": "a", ` + fields
	}
	return `{"client_ranges": ["100.64.0.0/10"], "applications": [{` + fields + `}]}`
}

func TestRuleLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"client_ranges": ["100.64.0.0/10"], "applications": [{"name": "a", "networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "off", "access": [`)
	for i := 0; i < 400; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"protocol": "tcp", "ports": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51]}`)
	}
	b.WriteString(`]}]}`)
	_, err := Parse([]byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "20402 kernel rules") {
		t.Fatalf("got %v", err)
	}
}

func TestParsePorts(t *testing.T) {
	for in, want := range map[string]PortRange{`443`: {443, 443}, `"443"`: {443, 443}, `" 80 - 90 "`: {80, 90}, `"1-65535"`: {1, 65535}} {
		got, err := ParsePorts(json.RawMessage(in))
		if err != nil || got != want {
			t.Errorf("ParsePorts(%s) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{`0`, `65536`, `"a"`, `"-5"`, `"5-"`, `1.5`, `null`, `"1-2-3"`, `[]`} {
		if got, err := ParsePorts(json.RawMessage(in)); err == nil {
			t.Errorf("ParsePorts(%s) = %v, want an error", in, got)
		}
	}
}

func TestParseSNAT(t *testing.T) {
	s, err := parseSNAT("to 10.0.0.1, fd00::1")
	if err != nil || s.To4 != netip.MustParseAddr("10.0.0.1") || s.To6 != netip.MustParseAddr("fd00::1") || s.String() != "to 10.0.0.1, fd00::1" {
		t.Fatalf("%+v %v", s, err)
	}
	for _, in := range []string{"to", "to ", "to 10.0.0.1, 10.0.0.2", "to 1.2.3.4, ::1, fd00::2", "to 0.0.0.0", "to 224.0.0.1", "to fe80::1%eth0", "masq"} {
		if s, err := parseSNAT(in); err == nil {
			t.Errorf("parseSNAT(%q) = %+v, want an error", in, s)
		}
	}
}

// TestSchemaAgreesWithParse checks that what the daemon's schema check accepts and
// refuses matches Parse for typical configs.
func TestSchemaAgreesWithParse(t *testing.T) {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(Schema))
	if err != nil {
		t.Fatal(err)
	}
	comp := jsonschema.NewCompiler()
	if err := comp.AddResource("urn:snat", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := comp.Compile("urn:snat")
	if err != nil {
		t.Fatal(err)
	}
	check := func(js string) error {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(js)))
		if err != nil {
			t.Fatal(err)
		}
		return sch.Validate(inst)
	}
	if err := check(valid); err != nil {
		t.Fatalf("schema refuses the valid config: %v", err)
	}
	for _, bad := range []string{
		`{}`,
		`{"client_ranges": ["100.64.0.0/10"], "applications": [{"name": "a", "networks": ["10.0.0.0/8"], "interface": "eth1"}]}`,
		`{"client_ranges": ["100.64.0.0/10"], "applications": [{"name": "a", "networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "hide"}]}`,
		`{"client_ranges": ["100.64.0.0/10"], "applications": [{"name": "a", "networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "off", "access": [{"protocol": "sctp"}]}]}`,
		`{"client_ranges": ["100.64.0.0/10"], "applications": [{"name": "a", "networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "off", "access": [{"protocol": "tcp", "ports": [0]}]}]}`,
		`{"client_ranges": ["100.64.0.0/10"], "extra": 1, "applications": [{"name": "a", "networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "off"}]}`,
	} {
		if check(bad) == nil {
			t.Errorf("schema accepts %s", bad)
		}
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse accepts %s", bad)
		}
	}
}

// FuzzParse: the config is operator input; Parse must never panic, and whatever it
// accepts must be self-consistent and bounded.
func FuzzParse(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte(app(`"networks": ["10.0.0.0/8"], "interface": "eth1", "snat": "to 10.0.0.1", "access": [{"protocol": "udp", "ports": ["1-2", 3]}]`)))
	f.Add([]byte(`{"client_ranges": ["::/1"], "applications": [{"name": "x", "networks": ["8000::/1"], "interface": "i", "snat": "to 8000::1"}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			var fes sdk.FieldErrors
			if !errors.As(err, &fes) {
				t.Fatalf("error is not FieldErrors: %v", err)
			}
			return
		}
		if n := c.RuleCount(); n > MaxRules || n <= 0 {
			t.Fatalf("accepted a config of %d rules", n)
		}
		for _, p := range c.ClientRanges {
			if p != p.Masked() || p.Bits() == 0 {
				t.Fatalf("accepted client range %s", p)
			}
		}
		for _, a := range c.Applications {
			if a.SNAT.Mode < SNATMasquerade || a.SNAT.Mode > SNATOff || len(a.Access) == 0 || len(a.Interface) > 15 {
				t.Fatalf("accepted application %+v", a)
			}
			for _, acc := range a.Access {
				for _, pr := range acc.Ports {
					if pr.First == 0 || pr.Last < pr.First {
						t.Fatalf("accepted ports %v", pr)
					}
				}
			}
		}
	})
}
