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

const full = `{"instances": [{
  "name": "vi1", "interface": "eth0", "vrid": 51, "priority": 150,
  "virtual_ips": ["192.0.2.10/24", "192.0.2.11"], "advert_interval": 10,
  "preempt": false, "preempt_delay": "5s", "resign_takeover": "skew",
  "unicast_peers": ["192.0.2.2"], "source_address": "192.0.2.1",
  "garp": {"count": 3, "interval": "20ms", "repeat_after": "0s", "refresh": "1m"},
  "track_interfaces": [{"name": "eth1", "weight": -50}],
  "track_events": [{"type": "tunnel", "source": "tunnel", "match": {"gateway": "gw-a"}, "weight": 0}],
  "affects_role": false
}]}`

func TestDefaults(t *testing.T) {
	rs, err := Parse(json.RawMessage(`{"instances": [{"interface": "eth0", "vrid": 7, "virtual_ips": ["2001:db8::7/64"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0]
	if r.Name != "eth0-7" || r.Priority != 100 || r.Interval != time.Second || !r.Preempt || r.PreemptDelay != 0 ||
		!r.IPv6 || !r.ResignImmediate || r.GARPCount != 5 || r.GARPInterval != 10*time.Millisecond ||
		r.GARPRepeat != 5*time.Second || r.GARPRefresh != 30*time.Second || !r.AffectsRole || r.SourceAddress.IsValid() {
		t.Fatalf("defaults: %+v", r)
	}
	if empty, err := Parse(nil); err != nil || len(empty) != 0 {
		t.Fatalf("empty section: %v %v", empty, err)
	}
}

func TestFull(t *testing.T) {
	rs, err := Parse(json.RawMessage(full))
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0]
	if r.Priority != 150 || r.Interval != 100*time.Millisecond || r.Preempt || r.PreemptDelay != 5*time.Second ||
		r.ResignImmediate || len(r.UnicastPeers) != 1 || r.SourceAddress != netip.MustParseAddr("192.0.2.1") ||
		r.GARPCount != 3 || r.GARPRepeat != 0 || r.GARPRefresh != time.Minute || r.AffectsRole {
		t.Fatalf("full: %+v", r)
	}
	if got := r.VirtualIPs[1].String(); got != "192.0.2.11/32" {
		t.Fatalf("bare address became %s", got)
	}
	if r.TrackEvents[0].Up["state"] != "up" || r.TrackEvents[0].Initial != "down" {
		t.Fatalf("track event defaults: %+v", r.TrackEvents[0])
	}
}

func TestResignTakeoverAuto(t *testing.T) {
	for peers, want := range map[string]bool{`[]`: true, `["192.0.2.2"]`: true, `["192.0.2.2","192.0.2.3"]`: false} {
		rs, err := Parse(json.RawMessage(`{"instances":[{"interface":"eth0","vrid":1,"virtual_ips":["192.0.2.9/24"],"unicast_peers":` + peers + `}]}`))
		if err != nil {
			t.Fatal(err)
		}
		if rs[0].ResignImmediate != want {
			t.Errorf("peers %s: immediate %v, want %v", peers, rs[0].ResignImmediate, want)
		}
	}
}

func TestFieldErrors(t *testing.T) {
	cases := map[string]struct{ cfg, path string }{
		"vrid":            {`{"instances":[{"interface":"eth0","vrid":0,"virtual_ips":["192.0.2.9/24"]}]}`, "instances[0].vrid"},
		"priority":        {`{"instances":[{"interface":"eth0","vrid":1,"priority":256,"virtual_ips":["192.0.2.9/24"]}]}`, "instances[0].priority"},
		"no vips":         {`{"instances":[{"interface":"eth0","vrid":1,"virtual_ips":[]}]}`, "instances[0].virtual_ips"},
		"bad vip":         {`{"instances":[{"interface":"eth0","vrid":1,"virtual_ips":["nope"]}]}`, "instances[0].virtual_ips[0]"},
		"mixed families":  {`{"instances":[{"interface":"eth0","vrid":1,"virtual_ips":["192.0.2.9/24","2001:db8::1/64"]}]}`, "instances[0].virtual_ips[1]"},
		"multicast vip":   {`{"instances":[{"interface":"eth0","vrid":1,"virtual_ips":["224.0.0.5"]}]}`, "instances[0].virtual_ips[0]"},
		"interval":        {`{"instances":[{"interface":"eth0","vrid":1,"advert_interval":4096,"virtual_ips":["192.0.2.9/24"]}]}`, "instances[0].advert_interval"},
		"delay":           {`{"instances":[{"interface":"eth0","vrid":1,"preempt_delay":"soon","virtual_ips":["192.0.2.9/24"]}]}`, "instances[0].preempt_delay"},
		"peer family":     {`{"instances":[{"interface":"eth0","vrid":1,"unicast_peers":["2001:db8::2"],"virtual_ips":["192.0.2.9/24"]}]}`, "instances[0].unicast_peers[0]"},
		"refresh":         {`{"instances":[{"interface":"eth0","vrid":1,"garp":{"refresh":"10ms"},"virtual_ips":["192.0.2.9/24"]}]}`, "instances[0].garp.refresh"},
		"takeover":        {`{"instances":[{"interface":"eth0","vrid":1,"resign_takeover":"later","virtual_ips":["192.0.2.9/24"]}]}`, "instances[0].resign_takeover"},
		"owner weight":    {`{"instances":[{"interface":"eth0","vrid":1,"priority":255,"track_interfaces":[{"name":"eth1","weight":-10}],"virtual_ips":["192.0.2.9/24"]}]}`, "instances[0].track_interfaces[0].weight"},
		"duplicate vrid":  {`{"instances":[{"interface":"eth0","vrid":1,"virtual_ips":["192.0.2.9/24"]},{"name":"b","interface":"eth0","vrid":1,"virtual_ips":["192.0.2.8/24"]}]}`, "instances[1].vrid"},
		"duplicate name":  {`{"instances":[{"name":"a","interface":"eth0","vrid":1,"virtual_ips":["192.0.2.9/24"]},{"name":"a","interface":"eth0","vrid":2,"virtual_ips":["192.0.2.8/24"]}]}`, "instances[1].name"},
		"unknown key":     {`{"instances":[{"interface":"eth0","vrid":1,"virtual_ips":["192.0.2.9/24"],"prio":5}]}`, "prio"}, // sdk.DecodeConfig names only the key
		"initial":         {`{"instances":[{"interface":"eth0","vrid":1,"virtual_ips":["192.0.2.9/24"],"track_events":[{"type":"tunnel","initial":"maybe"}]}]}`, "instances[0].track_events[0].initial"},
		"no event type":   {`{"instances":[{"interface":"eth0","vrid":1,"virtual_ips":["192.0.2.9/24"],"track_events":[{"weight":-5}]}]}`, "instances[0].track_events[0].type"},
		"long ifname":     {`{"instances":[{"interface":"a-very-long-interface","vrid":1,"virtual_ips":["192.0.2.9/24"]}]}`, "instances[0].interface"},
		"wrong type":      {`{"instances":[{"interface":"eth0","vrid":"one","virtual_ips":["192.0.2.9/24"]}]}`, "instances.vrid"},
		"source family":   {`{"instances":[{"interface":"eth0","vrid":1,"source_address":"2001:db8::1","virtual_ips":["192.0.2.9/24"]}]}`, "instances[0].source_address"},
		"track if weight": {`{"instances":[{"interface":"eth0","vrid":1,"virtual_ips":["192.0.2.9/24"],"track_interfaces":[{"name":"eth1","weight":300}]}]}`, "instances[0].track_interfaces[0].weight"},
	}
	for name, c := range cases {
		_, err := Parse(json.RawMessage(c.cfg))
		var fes sdk.FieldErrors
		if !errors.As(err, &fes) {
			t.Errorf("%s: got %v, want field errors", name, err)
			continue
		}
		found := false
		for _, fe := range fes {
			found = found || fe.Path == c.path
		}
		if !found {
			t.Errorf("%s: errors %v, want one at %s", name, fes, c.path)
		}
	}
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(Schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("vrrp.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("vrrp.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSchemaAgreesWithParse: the schema accepts what Parse accepts here, and rejects the
// structural mistakes Parse rejects.
func TestSchemaAgreesWithParse(t *testing.T) {
	s := compileSchema(t)
	validate := func(doc string) error {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(doc)))
		if err != nil {
			t.Fatal(err)
		}
		return s.Validate(v)
	}
	if err := validate(full); err != nil {
		t.Fatalf("schema rejects the full example: %v", err)
	}
	for _, bad := range []string{
		`{"instances":[{"interface":"eth0","vrid":0,"virtual_ips":["192.0.2.9/24"]}]}`,
		`{"instances":[{"interface":"eth0","vrid":1,"virtual_ips":[]}]}`,
		`{"instances":[{"interface":"eth0","vrid":1,"virtual_ips":["192.0.2.9/24"],"prio":5}]}`,
		`{"instances":[{"vrid":1,"virtual_ips":["192.0.2.9/24"]}]}`,
		`{"instance":[]}`,
	} {
		if err := validate(bad); err == nil {
			t.Errorf("schema accepts %s", bad)
		}
		if _, err := Parse(json.RawMessage(bad)); err == nil {
			t.Errorf("Parse accepts %s", bad)
		}
	}
}
