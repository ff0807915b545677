package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sitelink/sitelink/plugins/sdk"
)

const keyA = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
const keyB = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="

func minimal() string {
	return `{"gateways":[{"name":"gw-a","endpoint":"192.0.2.11:51820","public_key":"` + keyA + `","allowed_prefixes":["10.200.0.0/16"]}]}`
}

func TestDefaults(t *testing.T) {
	c, err := Parse(json.RawMessage(minimal()))
	if err != nil {
		t.Fatal(err)
	}
	if c.Interface != DefaultInterface || c.Backend != BackendAuto || c.MTU != 1420 || c.OnDown != OnDownBlackhole ||
		c.RouteTable != 254 || c.RouteMetric != 50 || !c.MSSClamp || c.PersistentKeepalive != 25*time.Second ||
		c.Health.Window != 8*time.Second || c.Health.ProbeInterval != 2*time.Second || c.Health.Hold != time.Minute {
		t.Fatalf("defaults: %+v", c)
	}
	g := c.Gateways[0]
	if g.Host != "192.0.2.11" || g.Port != 51820 || g.PublicKey.String() != keyA || g.AllowedPrefixes[0].String() != "10.200.0.0/16" || g.Probe.IsValid() {
		t.Fatalf("gateway: %+v", g)
	}
}

func TestFull(t *testing.T) {
	c, err := Parse(json.RawMessage(`{
		"interface": "wgt0", "backend": "userspace", "addresses": ["100.64.0.2/32", "fd00:64::2/128"],
		"mtu": 1380, "listen_port": 51000, "persistent_keepalive": "0", "on_down": "withdraw",
		"route_table": 100, "route_metric": 0, "mss_clamp": false,
		"health": {"window": "2s", "probe_interval": "500ms", "hold": "0s"},
		"gateways": [
			{"name": "a", "endpoint": "gw-a.example.net:51820", "public_key": "` + keyA + `", "allowed_prefixes": ["10.200.0.0/16", "fd00:200::/48"], "probe": "100.64.1.1"},
			{"name": "b", "endpoint": "[2001:db8::1]:51820", "public_key": "` + keyB + `", "allowed_prefixes": ["10.200.0.0/16"], "probe": "fd00:64::1"}
		]}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.PersistentKeepalive != 0 || c.Health.Hold != 0 || c.MSSClamp || c.Gateways[1].Host != "2001:db8::1" ||
		c.Gateways[1].Probe.String() != "fd00:64::1" || len(c.AllPrefixes()) != 2 {
		t.Fatalf("%+v", c)
	}
	if g, ok := c.Gateway("b"); !ok || g.Port != 51820 {
		t.Fatal("Gateway(b)")
	}
}

func TestErrors(t *testing.T) {
	gw := func(fields string) string {
		return `{"gateways":[{"name":"gw-a","endpoint":"192.0.2.11:51820","public_key":"` + keyA + `","allowed_prefixes":["10.200.0.0/16"]` + fields + `}]}`
	}
	cases := []struct {
		name, cfg, path, msg string
	}{
		{"bad key", strings.Replace(minimal(), keyA, "not-a-key", 1), "gateways[0].public_key", "not a WireGuard public key"},
		{"short key", strings.Replace(minimal(), keyA, keyA[:40], 1), "gateways[0].public_key", "not a WireGuard public key"},
		{"zero key", strings.Replace(minimal(), keyA, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 1), "gateways[0].public_key", "all-zero"},
		{"no port", strings.Replace(minimal(), "192.0.2.11:51820", "192.0.2.11", 1), "gateways[0].endpoint", "want host:port"},
		{"port range", strings.Replace(minimal(), ":51820", ":70000", 1), "gateways[0].endpoint", "port must be"},
		{"bad host", strings.Replace(minimal(), "192.0.2.11", "bad_host!", 1), "gateways[0].endpoint", "neither an IP address nor a DNS name"},
		{"unspecified", strings.Replace(minimal(), "192.0.2.11", "0.0.0.0", 1), "gateways[0].endpoint", "not a unicast"},
		{"host bits", strings.Replace(minimal(), "10.200.0.0/16", "10.200.0.1/16", 1), "gateways[0].allowed_prefixes[0]", "did you mean 10.200.0.0/16"},
		{"loop", strings.Replace(minimal(), "10.200.0.0/16", "192.0.2.0/24", 1), "gateways[0].allowed_prefixes[0]", "own endpoint"},
		{"no prefixes", strings.Replace(minimal(), `"10.200.0.0/16"`, "", 1), "gateways[0].allowed_prefixes", "at least one"},
		{"no gateways", `{"gateways":[]}`, "gateways", "at least one gateway"},
		{"unknown field", `{"gatways":[]}`, "gatways", "unknown field"},
		{"backend", `{"backend":"magic",` + minimal()[1:], "backend", "auto, userspace or kernel"},
		{"on_down", `{"on_down":"open",` + minimal()[1:], "on_down", "withdraw or blackhole"},
		{"mtu", `{"mtu":100,` + minimal()[1:], "mtu", "between 576 and 9000"},
		{"mtu v6", `{"mtu":1000,"addresses":["fd00::2/128"],` + minimal()[1:], "mtu", "between 1280 and 9000"},
		{"interface", `{"interface":"this-name-is-too-long",` + minimal()[1:], "interface", "not a valid interface name"},
		{"table", `{"route_table":255,` + minimal()[1:], "route_table", "other than 253"},
		{"keepalive", `{"persistent_keepalive":"1500ms",` + minimal()[1:], "persistent_keepalive", "whole seconds"},
		{"duration", `{"health":{"window":"soon"},` + minimal()[1:], "health.window", "want a duration"},
		{"window probe ratio", `{"addresses":["100.64.0.2/32"],"health":{"window":"2s","probe_interval":"2s"},` + gw(`,"probe":"100.64.1.1"`)[1:], "health.window", "twice"},
		{"handshake window", `{"health":{"window":"3s","probe_interval":"1s"},` + minimal()[1:], "health.window", "no probe address"},
		{"probe without address", gw(`,"probe":"100.64.1.1"`), "gateways[0].probe", "needs an IPv4 address"},
		{"probe garbage", `{"addresses":["100.64.0.2/32"],` + gw(`,"probe":"gw"`)[1:], "gateways[0].probe", "want an IP address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(json.RawMessage(tc.cfg))
			var fes sdk.FieldErrors
			if !errors.As(err, &fes) {
				t.Fatalf("want FieldErrors, got %v", err)
			}
			for _, fe := range fes {
				if fe.Path == tc.path && strings.Contains(fe.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("want an error at %s containing %q, got %v", tc.path, tc.msg, err)
		})
	}
}

func TestHandshakeCadence(t *testing.T) {
	for _, c := range []struct{ probe, want time.Duration }{
		{2 * time.Second, 6 * time.Second}, {time.Second, 5 * time.Second}, {500 * time.Millisecond, 5 * time.Second},
		{3 * time.Second, 6 * time.Second}, {7 * time.Second, 7 * time.Second}, {1500 * time.Millisecond, 6 * time.Second},
	} {
		if got := HandshakeCadence(c.probe); got != c.want {
			t.Errorf("HandshakeCadence(%s) = %s, want %s", c.probe, got, c.want)
		}
	}
	// The defaults are valid without probe addresses; a longer probe interval needs a
	// longer window.
	if _, err := Parse(json.RawMessage(`{"health":{"probe_interval":"4s"},` + minimal()[1:])); err == nil ||
		!strings.Contains(err.Error(), "must be at least 10s") {
		t.Fatalf("got %v", err)
	}
}

func TestDuplicates(t *testing.T) {
	_, err := Parse(json.RawMessage(`{"gateways":[
		{"name":"a","endpoint":"192.0.2.1:1","public_key":"` + keyA + `","allowed_prefixes":["10.0.0.0/8"]},
		{"name":"a","endpoint":"192.0.2.2:1","public_key":"` + keyA + `","allowed_prefixes":["10.0.0.0/8"]}]}`))
	if err == nil || !strings.Contains(err.Error(), `gateways[1].name: "a" is already the name of gateways[0]`) ||
		!strings.Contains(err.Error(), "gateways[1].public_key: is already the key of gateways[0]") {
		t.Fatalf("got %v", err)
	}
}

func TestDeviceEqual(t *testing.T) {
	a, _ := Parse(json.RawMessage(minimal()))
	b, _ := Parse(json.RawMessage(`{"on_down":"withdraw",` + minimal()[1:]))
	c, _ := Parse(json.RawMessage(`{"mtu":1400,` + minimal()[1:]))
	if !DeviceEqual(a, b) || DeviceEqual(a, c) {
		t.Fatal("DeviceEqual")
	}
}

// TestSchema compiles the schema and checks that it accepts what Parse accepts and
// rejects the obvious mistakes, as the daemon will.
func TestSchema(t *testing.T) {
	comp := jsonschema.NewCompiler()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(Schema))
	if err != nil {
		t.Fatal(err)
	}
	if err := comp.AddResource("urn:tunnel", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := comp.Compile("urn:tunnel")
	if err != nil {
		t.Fatal(err)
	}
	validate := func(cfg string) error {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		return sch.Validate(inst)
	}
	good := `{"interface":"wgt0","backend":"auto","addresses":["100.64.0.2/32"],"mtu":1420,"listen_port":0,
		"persistent_keepalive":"25s","on_down":"blackhole","route_table":254,"route_metric":50,"mss_clamp":true,
		"health":{"window":"2s","probe_interval":"500ms","hold":"1m30s"},
		"gateways":[{"name":"gw-a","endpoint":"192.0.2.11:51820","public_key":"` + keyA + `","allowed_prefixes":["10.200.0.0/16"],"probe":"100.64.1.1"}]}`
	if err := validate(good); err != nil {
		t.Fatalf("schema rejects a good config: %v", err)
	}
	if _, err := Parse(json.RawMessage(good)); err != nil {
		t.Fatalf("Parse rejects the schema's good config: %v", err)
	}
	for _, bad := range []string{
		`{}`,
		`{"gateways":[]}`,
		`{"backend":"magic",` + minimal()[1:],
		`{"health":{"window":"soon"},` + minimal()[1:],
		`{"extra":1,` + minimal()[1:],
		`{"gateways":[{"name":"a","endpoint":"x:1","public_key":"short","allowed_prefixes":["10.0.0.0/8"]}]}`,
	} {
		if err := validate(bad); err == nil {
			t.Errorf("schema accepts %s", bad)
		}
	}
}
