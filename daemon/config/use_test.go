package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func names(ps []Plugin) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
	}
	return out
}

func TestOrdered(t *testing.T) {
	c := mustParse(t, `
plugins:
  a: {}
  b: {after: [c]}
  c: {}
  d: {after: [b, a]}
  e: {enabled: false}
  f: {after: [d]}
`)
	got, err := c.Ordered()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "c", "b", "d", "f"}; !reflect.DeepEqual(names(got), want) {
		t.Errorf("Ordered = %v, want %v", names(got), want)
	}

	// No dependencies: the order as written.
	c = mustParse(t, "plugins:\n  z: {}\n  y: {}\n  x: {}\n")
	got, _ = c.Ordered()
	if want := []string{"z", "y", "x"}; !reflect.DeepEqual(names(got), want) {
		t.Errorf("Ordered = %v, want %v", names(got), want)
	}

	// A config built in code can hold a cycle; Ordered names it.
	c = &Config{Plugins: []Plugin{
		{Name: "x", Enabled: true, After: []string{"y"}},
		{Name: "y", Enabled: true, After: []string{"w"}},
		{Name: "w", Enabled: true, After: []string{"x"}},
		{Name: "free", Enabled: true, After: []string{"off", "ghost"}},
		{Name: "off", Enabled: false},
	}}
	_, err = c.Ordered()
	if err == nil || !strings.Contains(err.Error(), "dependency cycle: x -> y -> w -> x") {
		t.Errorf("Ordered(cycle) = %v", err)
	}
	c.Plugins = c.Plugins[3:]
	got, err = c.Ordered()
	if err != nil || !reflect.DeepEqual(names(got), []string{"free"}) {
		t.Errorf("Ordered ignoring disabled and unknown deps = %v, %v", names(got), err)
	}
	c.Plugins = []Plugin{{Name: "self", Enabled: true, After: []string{"self"}}}
	if _, err := c.Ordered(); err == nil || !strings.Contains(err.Error(), "self -> self") {
		t.Errorf("Ordered(self loop) = %v", err)
	}
}

func TestFindCyclesTwoCycles(t *testing.T) {
	cycles := findCycles([]string{"a", "b", "c", "d"}, map[string][]string{
		"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"},
	})
	want := [][]string{{"a", "b", "a"}, {"c", "d", "c"}}
	if !reflect.DeepEqual(cycles, want) {
		t.Errorf("findCycles = %v, want %v", cycles, want)
	}
}

const errorAtConfig = `plugins:
  tunnel:
    config:
      gateways:
        - endpoint: gw1:51820
          weight: 1
        - endpoint: gw2:51820
      mode: fast
      peers:
        "a.b": {key: x}
  bare: {}
  nocfg:
    enabled: true
`

func TestErrorAt(t *testing.T) {
	c := mustParse(t, errorAtConfig)
	for _, tc := range []struct {
		plugin, path string
		want         string
	}{
		{"tunnel", "gateways[1].endpoint", "f.yaml:7:21: plugins.tunnel.config.gateways[1].endpoint: bad"},
		{"tunnel", "/gateways/1/endpoint", "f.yaml:7:21: plugins.tunnel.config.gateways[1].endpoint: bad"},
		{"tunnel", "gateways.1.endpoint", "f.yaml:7:21: plugins.tunnel.config.gateways[1].endpoint: bad"},
		{"tunnel", "$.gateways[0].weight", "f.yaml:6:19: plugins.tunnel.config.gateways[0].weight: bad"},
		// A missing field: its nearest existing ancestor (the list item).
		{"tunnel", "gateways[1].port", "f.yaml:7:11: plugins.tunnel.config.gateways[1].port: bad"},
		{"tunnel", "/gateways/1/port", "f.yaml:7:11: plugins.tunnel.config.gateways[1].port: bad"},
		// A list or mapping field: its key.
		{"tunnel", "gateways", "f.yaml:4:7: plugins.tunnel.config.gateways: bad"},
		{"tunnel", "gateways[5].endpoint", "f.yaml:4:7: plugins.tunnel.config.gateways[5].endpoint: bad"},
		{"tunnel", "mode", "f.yaml:8:13: plugins.tunnel.config.mode: bad"},
		{"tunnel", "mode.x", "f.yaml:8:13: plugins.tunnel.config.mode.x: bad"},
		{"tunnel", `peers["a.b"].key`, `f.yaml:10:22: plugins.tunnel.config.peers["a.b"].key: bad`},
		{"tunnel", `peers['a.b'].key`, `f.yaml:10:22: plugins.tunnel.config.peers["a.b"].key: bad`},
		{"tunnel", "/peers/a.b/key", `f.yaml:10:22: plugins.tunnel.config.peers["a.b"].key: bad`},
		// Nothing of the path exists: the config: key.
		{"tunnel", "missing.deep", "f.yaml:3:5: plugins.tunnel.config.missing.deep: bad"},
		// No path: the plugin's name.
		{"tunnel", "", "f.yaml:2:3: plugins.tunnel: bad"},
		// No config: section: the plugin's name.
		{"bare", "x", "f.yaml:11:3: plugins.bare.config.x: bad"},
		{"nocfg", "/x/0", "f.yaml:12:3: plugins.nocfg.config.x[0]: bad"},
		// Not configured at all: the plugins: key.
		{"ghost", "x", "f.yaml:1:1: plugins.ghost.config.x: bad"},
	} {
		if got := c.ErrorAt(tc.plugin, tc.path, "bad").Error(); got != tc.want {
			t.Errorf("ErrorAt(%q, %q) = %s\n                          want %s", tc.plugin, tc.path, got, tc.want)
		}
	}
	// A config made in code has no positions.
	d := Default()
	d.Source = "x.yaml"
	if got := d.ErrorAt("a", "b", "bad").Error(); got != "x.yaml: plugins.a.config.b: bad" {
		t.Errorf("ErrorAt on Default() = %s", got)
	}
}

func TestSplitPath(t *testing.T) {
	for path, want := range map[string][]string{
		"":                    nil,
		"a":                   {"a"},
		"a.b[2].c":            {"a", "b", "2", "c"},
		"$.a[0]":              {"a", "0"},
		`a["x.y"][1]`:         {"a", "x.y", "1"},
		`a['x]y']`:            {"a", "x]y"},
		"/a~1b/c~0d/0":        {"a/b", "c~d", "0"},
		"/":                   {""},
		"a[unterminated":      {"a", "unterminated"},
		`a["bad\q"]`:          {"a", `"bad\q"`},
		"gateways.1.endpoint": {"gateways", "1", "endpoint"},
	} {
		if got := splitPath(path); !reflect.DeepEqual(got, want) {
			t.Errorf("splitPath(%q) = %q, want %q", path, got, want)
		}
	}
}

const tunnelSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "gateways": {
      "type": "array",
      "minItems": 1,
      "items": {
        "type": "object",
        "required": ["endpoint", "port"],
        "properties": {
          "endpoint": {"type": "string", "pattern": "^[a-z0-9.]+$"},
          "weight": {"type": "integer", "maximum": 0},
          "port": {"type": "integer"}
        }
      }
    },
    "mode": {"enum": ["slow", "normal"]},
    "peers": {"type": "object"}
  }
}`

func errorLines(t *testing.T, err error) []string {
	t.Helper()
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %T is not *Errors: %v", err, err)
	}
	var out []string
	for _, e := range *errs {
		out = append(out, e.Error())
	}
	return out
}

// checkLines compares error lines with want, each "PREFIX…SUBSTRING": the text up to
// "…" must start the line, the rest must occur in it.
func checkLines(t *testing.T, got, want []string) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		prefix, sub, _ := strings.Cut(want[i], "…")
		ok = strings.HasPrefix(got[i], prefix) && strings.Contains(got[i], sub)
	}
	if !ok {
		t.Errorf("got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestValidateSchema(t *testing.T) {
	c := mustParse(t, errorAtConfig)
	err := ValidateSchema(c, "tunnel", []byte(tunnelSchema))
	checkLines(t, errorLines(t, err), []string{
		"f.yaml:5:11: plugins.tunnel.config.gateways[0]: …missing property 'port'",
		"f.yaml:5:21: plugins.tunnel.config.gateways[0].endpoint: …does not match pattern",
		"f.yaml:6:19: plugins.tunnel.config.gateways[0].weight: …maximum: got 1, want 0",
		"f.yaml:7:11: plugins.tunnel.config.gateways[1]: …missing property 'port'",
		"f.yaml:7:21: plugins.tunnel.config.gateways[1].endpoint: …does not match pattern",
		"f.yaml:8:13: plugins.tunnel.config.mode: …'slow'",
	})

	good := mustParse(t, "plugins:\n  tunnel:\n    config:\n      gateways: [{endpoint: gw, port: 1}]\n      mode: slow\n")
	if err := ValidateSchema(good, "tunnel", []byte(tunnelSchema)); err != nil {
		t.Errorf("valid config rejected: %v", err)
	}
	// An absent config section is {} for the schema.
	empty := mustParse(t, "plugins:\n  tunnel: {}\n")
	if err := ValidateSchema(empty, "tunnel", []byte(`{"required": ["gateways"]}`)); err == nil {
		t.Error("an empty config passed a schema with a required property")
	} else {
		checkLines(t, errorLines(t, err), []string{"f.yaml:2:3: plugins.tunnel: …missing property 'gateways'"})
	}
}

func TestValidateSchemaDraft7AndUnknownProperties(t *testing.T) {
	c := mustParse(t, errorAtConfig)
	draft7 := `{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
		"properties": {"gateways": {"type": "array"}, "mode": {"type": "integer"}}, "additionalProperties": false}`
	err := ValidateSchema(c, "tunnel", []byte(draft7))
	checkLines(t, errorLines(t, err), []string{
		"f.yaml:8:13: plugins.tunnel.config.mode: …want integer",
		`f.yaml:9:7: plugins.tunnel.config.peers: unknown property "peers"…`,
	})
	// format is asserted (ipv4 here).
	c = mustParse(t, "plugins:\n  a:\n    config:\n      addr: 300.1.1.1\n")
	err = ValidateSchema(c, "a", []byte(`{"properties": {"addr": {"type": "string", "format": "ipv4"}}}`))
	checkLines(t, errorLines(t, err), []string{"f.yaml:4:13: plugins.a.config.addr: …ipv4"})
}

func TestValidateSchemaBadSchemas(t *testing.T) {
	c := mustParse(t, errorAtConfig)
	for name, schema := range map[string]string{
		"not JSON":         `{`,
		"invalid keyword":  `{"type": 5}`,
		"remote reference": `{"$ref": "https://example.com/schema.json"}`,
		"file reference":   `{"$ref": "file:///etc/passwd"}`,
	} {
		err := ValidateSchema(c, "tunnel", []byte(schema))
		var errs *Errors
		if err == nil || errors.As(err, &errs) {
			t.Errorf("%s: ValidateSchema = %v, want a plain error", name, err)
		}
	}
	if err := ValidateSchema(c, "ghost", []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("ValidateSchema(unconfigured plugin) = %v", err)
	}
}

func TestSchemaCache(t *testing.T) {
	c := mustParse(t, errorAtConfig)
	var sc SchemaCache // the zero value works
	for range 3 {
		if err := sc.Validate(c, "bare", []byte(tunnelSchema)); err != nil {
			t.Fatal(err)
		}
	}
	if len(sc.schemas) != 1 {
		t.Errorf("cache holds %d schemas after validating with one, want 1", len(sc.schemas))
	}
	for i := range maxCachedSchemas + 10 {
		if err := sc.Validate(c, "bare", []byte(fmt.Sprintf(`{"title": "s%d"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	if len(sc.schemas) != maxCachedSchemas || len(sc.order) != maxCachedSchemas {
		t.Errorf("cache holds %d/%d schemas, want the bound %d", len(sc.schemas), len(sc.order), maxCachedSchemas)
	}
	done := make(chan error)
	for i := range 4 {
		go func() {
			done <- sc.Validate(c, "tunnel", []byte(fmt.Sprintf(`{"title": "c%d", "type": "object"}`, i%2)))
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestDiff(t *testing.T) {
	base := mustParse(t, `
daemon:
  log_level: info
plugins:
  a:
    config: {x: 1, y: [1, 2], z: {p: 1.0}}
  b:
    after: [a, c]
  c: {}
  d: {}
`)
	same := mustParse(t, `
# moved around, keys reordered, numbers spelt differently
daemon:
  log_level: info
plugins:
  a:
    config:
      z: {p: 1}
      y: [1, 2]
      x: 1.0
  b: {after: [c, a]}
  c:
  d: {enabled: true, required: true, active_when: always, binary: "", config: {}}
`)
	ch := Diff(base, same)
	if want := (Changes{Unchanged: []string{"a", "b", "c", "d"}}); !reflect.DeepEqual(ch, want) {
		t.Errorf("Diff(equivalent) = %+v", ch)
	}
	changed := mustParse(t, `
daemon:
  log_level: debug
  restart: {max: 2}
plugins:
  e: {}
  a:
    config: {x: 1, y: [2, 1], z: {p: 1.0}}
  b:
    after: [a, c]
    active_when: master
  c: {}
`)
	ch = Diff(base, changed)
	want := Changes{DaemonChanged: true, DaemonKeys: []string{"log_level", "restart.max"},
		Added: []string{"e"}, Removed: []string{"d"}, Changed: []string{"a", "b"}, Unchanged: []string{"c"}}
	if !reflect.DeepEqual(ch, want) {
		t.Errorf("Diff = %+v\nwant %+v", ch, want)
	}
	ch = Diff(nil, base)
	if !reflect.DeepEqual(ch.Added, []string{"a", "b", "c", "d"}) || ch.DaemonChanged {
		t.Errorf("Diff(nil, base) = %+v", ch)
	}
	ch = Diff(base, nil)
	if !reflect.DeepEqual(ch.Removed, []string{"a", "b", "c", "d"}) {
		t.Errorf("Diff(base, nil) = %+v", ch)
	}
	for _, tc := range []struct {
		field string
		edit  func(p *Plugin)
	}{
		{"enabled", func(p *Plugin) { p.Enabled = false }},
		{"binary", func(p *Plugin) { p.Binary = "/x" }},
		{"required", func(p *Plugin) { p.Required = false }},
		{"after", func(p *Plugin) { p.After = []string{"c"} }},
		{"active_when", func(p *Plugin) { p.ActiveWhen = "master" }},
		{"config", func(p *Plugin) { p.Config = json.RawMessage(`{"x":2}`) }},
	} {
		next := *base
		next.Plugins = append([]Plugin(nil), base.Plugins...)
		tc.edit(&next.Plugins[0])
		if ch := Diff(base, &next); !reflect.DeepEqual(ch.Changed, []string{"a"}) {
			t.Errorf("changing %s: Diff = %+v", tc.field, ch)
		}
	}
}

func TestJSONEqual(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{`{"a":1,"b":2}`, `{ "b": 2, "a": 1.0 }`, true},
		{`{}`, ``, true},
		{`[1,2]`, `[2,1]`, false},
		{`{"a":1e2}`, `{"a":100}`, true},
		{`{"a":0.1}`, `{"a":0.10}`, true},
		{`{"a":"1"}`, `{"a":1}`, false},
		{`{"a":18446744073709551615}`, `{"a":18446744073709551615}`, true},
		{`{"a":null}`, `{}`, false},
		{`not json`, `not json`, true},
		{`not json`, `{}`, false},
	} {
		if got := JSONEqual(json.RawMessage(tc.a), json.RawMessage(tc.b)); got != tc.want {
			t.Errorf("JSONEqual(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
}

// sameConfig describes how two configs differ, ignoring positions; "" if they do not.
func sameConfig(a, b *Config) string {
	if a.Source != b.Source {
		return fmt.Sprintf("source %q != %q", a.Source, b.Source)
	}
	if a.Daemon != b.Daemon {
		return fmt.Sprintf("daemon %+v != %+v", a.Daemon, b.Daemon)
	}
	if len(a.Plugins) != len(b.Plugins) {
		return fmt.Sprintf("plugins %v != %v", names(a.Plugins), names(b.Plugins))
	}
	for i := range a.Plugins {
		p, q := a.Plugins[i], b.Plugins[i]
		p.Pos, q.Pos = Pos{}, Pos{}
		if !reflect.DeepEqual(p, q) {
			return fmt.Sprintf("plugin %d: %+v (%s) != %+v (%s)", i, p, p.Config, q, q.Config)
		}
	}
	return ""
}

func TestMarshalRoundTrip(t *testing.T) {
	example, err := Load("testdata/sitelink.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	example.Source = "f.yaml"
	for name, c := range map[string]*Config{
		"full":    mustParse(t, fullConfig),
		"example": example,
		"default": mustParse(t, ""),
		"odd strings": mustParse(t, `
daemon:
  plugin_user: "123"
plugins:
  a:
    binary: "/opt/with space/and: colon"
    config:
      "true": "true"
      "1": "1.5"
      "": ""
      multi: "line one\nline two\n"
      quote: "it's \"quoted\""
      lead: " spaced "
      unicode: "é ☃ \u2028"
      nul: "a\0b"
      null_string: "null"
      tilde: "~"
      big: 18446744073709551615
      neg: -9223372036854775808
      float: 1.5e300
      tiny: 1e-7
      negzero: -0.0
      hex: 0x1F
      list: [[], {}, [null]]
`),
	} {
		b, err := c.Marshal()
		if err != nil {
			t.Fatalf("%s: Marshal: %v", name, err)
		}
		back, err := Parse("f.yaml", b)
		if err != nil {
			t.Fatalf("%s: Parse(Marshal()) failed:\n%s\n%v", name, b, err)
		}
		if d := sameConfig(c, back); d != "" {
			t.Errorf("%s: round trip changed the config: %s\n%s", name, d, b)
		}
	}
	// Marshal writes every daemon key and every plugin key.
	b, _ := mustParse(t, "plugins:\n  a: {}\n").Marshal()
	for _, key := range append(append(append([]string{}, daemonKeys...), restartKeys...), pluginKeys...) {
		if !strings.Contains(string(b), "\n    "+key+":") && !strings.Contains(string(b), "\n  "+key+":") &&
			!strings.Contains(string(b), "\n      "+key+":") {
			t.Errorf("Marshal output lacks %s:\n%s", key, b)
		}
	}
}

func TestBinaryPath(t *testing.T) {
	d := Default().Daemon
	ms := []Manifest{{Name: "hello", Path: "/opt/acme/hello"}}
	for _, tc := range []struct {
		p    Plugin
		want string
	}{
		{Plugin{Name: "x", Binary: "/bin/x"}, "/bin/x"},
		{Plugin{Name: "hello"}, "/opt/acme/hello"},
		{Plugin{Name: "logcache"}, "/usr/libexec/sitelink/plugins/logcache"},
	} {
		if got := tc.p.BinaryPath(d, ms); got != tc.want {
			t.Errorf("BinaryPath(%s) = %s, want %s", tc.p.Name, got, tc.want)
		}
	}
}
