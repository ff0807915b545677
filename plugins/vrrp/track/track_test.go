package track

import (
	"testing"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/vrrp/config"
)

func TestEffective(t *testing.T) {
	cases := []struct {
		name  string
		base  uint8
		objs  []Object
		prio  uint8
		fault string
	}{
		{"nothing tracked", 100, nil, 100, ""},
		{"negative weight, up", 100, []Object{{Name: "a", Weight: -30, Up: true}}, 100, ""},
		{"negative weight, down", 100, []Object{{Name: "a", Weight: -30}}, 70, ""},
		{"positive weight, up", 100, []Object{{Name: "a", Weight: 20, Up: true}}, 120, ""},
		{"positive weight, down", 100, []Object{{Name: "a", Weight: 20}}, 100, ""},
		{"fault", 100, []Object{{Name: "interface eth1", Up: false}, {Name: "b", Weight: -10}}, 90, "interface eth1 is down"},
		{"clamped high", 250, []Object{{Name: "a", Weight: 50, Up: true}}, 254, ""},
		{"clamped low", 10, []Object{{Name: "a", Weight: -50}}, 1, ""},
		{"owner keeps 255", 255, []Object{{Name: "x", Up: false}}, 255, "x is down"},
	}
	for _, c := range cases {
		p, f := Effective(c.base, c.objs)
		if p != c.prio || f != c.fault {
			t.Errorf("%s: got %d %q, want %d %q", c.name, p, f, c.prio, c.fault)
		}
	}
}

func TestEventRule(t *testing.T) {
	r := EventRule(config.TrackEvent{Type: "tunnel", Source: "tunnel", Match: map[string]string{"gateway": "gw-a"},
		Up: map[string]string{"state": "up"}})
	ev := func(src string, attrs map[string]string) sdk.Event {
		return sdk.Event{Type: "tunnel", Source: src, Attrs: attrs}
	}
	if !r.Follows(ev("tunnel", map[string]string{"gateway": "gw-a", "state": "up"})) {
		t.Fatal("does not follow its gateway")
	}
	if r.Follows(ev("tunnel", map[string]string{"gateway": "gw-b", "state": "up"})) {
		t.Fatal("follows another gateway")
	}
	if r.Follows(ev("other", map[string]string{"gateway": "gw-a"})) {
		t.Fatal("follows another source")
	}
	if !r.IsUp(ev("tunnel", map[string]string{"gateway": "gw-a", "state": "up"})) || r.IsUp(ev("tunnel", map[string]string{"state": "down"})) {
		t.Fatal("up/down misread")
	}
	if got := r.Name(); got != "event tunnel from tunnel gateway=gw-a" {
		t.Fatalf("name %q", got)
	}
}
