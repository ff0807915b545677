package config

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// mustParse parses src as f.yaml and fails the test on error.
func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse("f.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse:\n%s\nerror:\n%v", src, err)
	}
	return c
}

func TestExampleParses(t *testing.T) {
	c, err := Load("testdata/sitelink.example.yaml")
	if err != nil {
		t.Fatalf("the example config does not parse:\n%v", err)
	}
	if got, want := c.Daemon, Default().Daemon; got != want {
		t.Errorf("the example's daemon section is not the defaults:\n got %+v\nwant %+v", got, want)
	}
	var names []string
	for _, p := range c.Plugins {
		names = append(names, p.Name)
	}
	if want := []string{"logcache", "tunnel", "proxy", "vrrp", "snat"}; !reflect.DeepEqual(names, want) {
		t.Errorf("plugins = %v, want %v", names, want)
	}
	if _, err := c.Ordered(); err != nil {
		t.Errorf("Ordered: %v", err)
	}
}

func TestEmptyIsDefault(t *testing.T) {
	for _, src := range []string{"", "\n\n", "# just a comment\n", "---\n", "~\n", "null\n", "daemon:\nplugins:\n", "daemon: {}\nplugins: {}\n", "\uFEFF# BOM\n"} {
		c := mustParse(t, src)
		want := Default()
		if c.Daemon != want.Daemon || len(c.Plugins) != 0 || c.Source != "f.yaml" {
			t.Errorf("Parse(%q) = %+v, want the defaults", src, c)
		}
	}
}

func TestDefault(t *testing.T) {
	d := Default().Daemon
	want := Daemon{
		PluginDir: "/usr/libexec/sitelink/plugins", PluginsD: "/etc/sitelink/plugins.d",
		StateDir: "/var/lib/sitelink", RuntimeDir: "/run/sitelink", Socket: "/run/sitelink/admin.sock",
		PluginUser: "sitelink", LogLevel: "info", LogFormat: "auto",
		HealthInterval: 5 * time.Second, HealthTimeout: 2 * time.Second, StopTimeout: 10 * time.Second,
		Restart: Restart{Max: 5, Window: time.Minute, BackoffMax: 30 * time.Second},
	}
	if d != want {
		t.Errorf("Default().Daemon = %+v, want %+v", d, want)
	}
	// Default must return a fresh value each time.
	a := Default()
	a.Daemon.LogLevel = "debug"
	if Default().Daemon.LogLevel != "info" {
		t.Error("Default shares state between calls")
	}
}

const fullConfig = `
daemon:
  plugin_dir: /opt/sl/plugins
  plugins_d: /opt/sl/plugins.d
  state_dir: /srv/state
  runtime_dir: /srv/run
  socket: /srv/run/admin.sock
  plugin_user: nobody
  log_level: debug
  log_format: json
  health_interval: 3s
  health_timeout: 500ms
  stop_timeout: 1m30s
  restart:
    max: 3
    window: 2m
    backoff_max: 10s
  metrics_listen: 127.0.0.1:9101
plugins:
  logcache:
    required: false
    config:
      dir: /var/cache/x
      max_bytes: 64MiB
  tunnel:
    binary: /opt/acme/tunnel
    after: [logcache]
    config:
      gateways:
        - endpoint: gw1.example.net:51820
          weight: 1.5
        - endpoint: gw2.example.net:51820
          keepalive: true
          tags: &tags [a, "b", 3]
      other_tags: *tags
      empty:
      date: 2024-05-01
  snat:
    enabled: false
    active_when: master
  proxy:
`

func TestGoodConfig(t *testing.T) {
	c := mustParse(t, fullConfig)
	want := Daemon{
		PluginDir: "/opt/sl/plugins", PluginsD: "/opt/sl/plugins.d", StateDir: "/srv/state",
		RuntimeDir: "/srv/run", Socket: "/srv/run/admin.sock", PluginUser: "nobody",
		LogLevel: "debug", LogFormat: "json", HealthInterval: 3 * time.Second,
		HealthTimeout: 500 * time.Millisecond, StopTimeout: 90 * time.Second,
		Restart:       Restart{Max: 3, Window: 2 * time.Minute, BackoffMax: 10 * time.Second},
		MetricsListen: "127.0.0.1:9101",
	}
	if c.Daemon != want {
		t.Errorf("Daemon = %+v\nwant %+v", c.Daemon, want)
	}
	wantPlugins := []Plugin{
		{Name: "logcache", Enabled: true, Required: false, ActiveWhen: "always",
			Config: json.RawMessage(`{"dir":"/var/cache/x","max_bytes":"64MiB"}`), Pos: Pos{20, 3}},
		{Name: "tunnel", Enabled: true, Binary: "/opt/acme/tunnel", Required: true, After: []string{"logcache"}, ActiveWhen: "always",
			Config: json.RawMessage(`{"gateways":[{"endpoint":"gw1.example.net:51820","weight":1.5},` +
				`{"endpoint":"gw2.example.net:51820","keepalive":true,"tags":["a","b",3]}],` +
				`"other_tags":["a","b",3],"empty":null,"date":"2024-05-01"}`), Pos: Pos{25, 3}},
		{Name: "snat", Enabled: false, Required: true, ActiveWhen: "master", Config: json.RawMessage(`{}`), Pos: Pos{38, 3}},
		{Name: "proxy", Enabled: true, Required: true, ActiveWhen: "always", Config: json.RawMessage(`{}`), Pos: Pos{41, 3}},
	}
	if len(c.Plugins) != len(wantPlugins) {
		t.Fatalf("got %d plugins, want %d", len(c.Plugins), len(wantPlugins))
	}
	for i, w := range wantPlugins {
		if g := c.Plugins[i]; !reflect.DeepEqual(g, w) {
			t.Errorf("plugin %d:\n got %+v\n     %s\nwant %+v\n     %s", i, g, g.Config, w, w.Config)
		}
	}
	if p, ok := c.Plugin("snat"); !ok || p.ActiveWhen != "master" {
		t.Errorf("Plugin(snat) = %+v, %v", p, ok)
	}
	if _, ok := c.Plugin("nope"); ok {
		t.Error("Plugin(nope) found something")
	}
}

// badConfigs are distinct mistakes, each with every error it must produce, exactly.
var badConfigs = []struct {
	name string
	src  string
	want []string
}{
	{"unknown top-level key", "daemons:\n  x: 1\n",
		[]string{`f.yaml:1:1: unknown top-level key "daemons" (did you mean "daemon"?); known keys: daemon, plugins`}},
	{"unknown daemon key", "daemon:\n  log_levl: debug\n",
		[]string{`f.yaml:2:3: daemon: unknown key "log_levl" (did you mean "log_level"?); known keys: plugin_dir, plugins_d, state_dir, runtime_dir, socket, plugin_user, log_level, log_format, health_interval, health_timeout, stop_timeout, restart, metrics_listen`}},
	{"unknown restart key", "daemon:\n  restart:\n    tries: 3\n",
		[]string{`f.yaml:3:5: daemon.restart: unknown key "tries"; known keys: max, window, backoff_max`}},
	{"unknown plugin key", "plugins:\n  a:\n    enable: true\n",
		[]string{`f.yaml:3:5: plugins.a: unknown key "enable" (did you mean "enabled"?); known keys: enabled, binary, required, after, active_when, config`}},
	{"duplicate daemon key", "daemon:\n  socket: /a\n  socket: /b\n",
		[]string{`f.yaml:3:3: daemon: duplicate key "socket" (first defined at 2:3)`}},
	{"duplicate top-level key", "daemon: {}\nplugins: {}\ndaemon: {}\n",
		[]string{`f.yaml:3:1: top level: duplicate key "daemon" (first defined at 1:1)`}},
	{"plugin configured twice", "plugins:\n  a: {}\n  a: {}\n",
		[]string{`f.yaml:3:3: plugins: plugin "a" is configured twice (first at 2:3)`}},
	{"duplicate key in a plugin's config", "plugins:\n  a:\n    config:\n      x: 1\n      x: 2\n",
		[]string{`f.yaml:5:7: plugins.a.config: duplicate key "x" (first defined at 4:7)`}},
	{"duration that is not one", "daemon:\n  health_interval: abc\n",
		[]string{`f.yaml:2:20: daemon.health_interval: expected a duration like 5s, got "abc"`}},
	{"duration without a unit", "daemon:\n  stop_timeout: 10\n",
		[]string{`f.yaml:2:17: daemon.stop_timeout: expected a duration like 5s, got 10 (add a unit: ns, us, ms, s, m or h)`}},
	{"zero duration", "daemon:\n  restart:\n    window: 0s\n",
		[]string{`f.yaml:3:13: daemon.restart.window: must be longer than 0, got "0s"`}},
	{"negative duration", "daemon:\n  health_timeout: -1s\n",
		[]string{`f.yaml:2:19: daemon.health_timeout: must be longer than 0, got "-1s"`}},
	{"duration as a list", "daemon:\n  health_timeout: [1s]\n",
		[]string{`f.yaml:2:19: daemon.health_timeout: expected a duration like 5s, got a list`}},
	{"health timeout longer than the interval", "daemon:\n  health_interval: 1s\n  health_timeout: 2s\n",
		[]string{`f.yaml:3:19: daemon.health_timeout (2s) must not be longer than daemon.health_interval (1s)`}},
	{"log level not in the enum", "daemon:\n  log_level: verbose\n",
		[]string{`f.yaml:2:14: daemon.log_level: must be one of debug, info, warn, error; got "verbose"`}},
	{"log format not in the enum", "daemon:\n  log_format: xml\n",
		[]string{`f.yaml:2:15: daemon.log_format: must be one of auto, text, json; got "xml"`}},
	{"active_when not in the enum", "plugins:\n  a:\n    active_when: backup\n",
		[]string{`f.yaml:3:18: plugins.a.active_when: must be one of always, master; got "backup"`}},
	{"yes is not a boolean", "plugins:\n  a:\n    enabled: yes\n",
		[]string{`f.yaml:3:14: plugins.a.enabled: expected true or false, got "yes"`}},
	{"trailing document marker", "daemon:\n  restart:\n    max: 5\n---\n",
		[]string{`f.yaml:4:1: only one YAML document is allowed in the file (found a second one)`}},
	{"restart.max not a number", "daemon:\n  restart:\n    max: \"5\"\n",
		[]string{`f.yaml:3:10: daemon.restart.max: expected a whole number, got "5"`}},
	{"restart.max zero", "daemon:\n  restart:\n    max: 0\n",
		[]string{`f.yaml:3:10: daemon.restart.max: must be at least 1, got 0`}},
	{"restart.max out of range", "daemon:\n  restart:\n    max: 9223372036854775808\n",
		[]string{`f.yaml:3:10: daemon.restart.max: 9223372036854775808 is out of range`}},
	{"restart.max beyond any integer", "daemon:\n  restart:\n    max: 99999999999999999999\n",
		[]string{`f.yaml:3:10: daemon.restart.max: expected a whole number, got 99999999999999999999`}},
	{"plugin name with a capital", "plugins:\n  Tunnel: {}\n",
		[]string{`f.yaml:2:3: plugins: invalid plugin name "Tunnel": must match ^[a-z][a-z0-9_-]{0,31}$`}},
	{"plugin name too long", "plugins:\n  a23456789012345678901234567890123: {}\n",
		[]string{`f.yaml:2:3: plugins: invalid plugin name "a23456789012345678901234567890123": must match ^[a-z][a-z0-9_-]{0,31}$`}},
	{"after names an unknown plugin", "plugins:\n  tunnel: {}\n  proxy:\n    after: [tunel]\n",
		[]string{`f.yaml:4:13: plugins.proxy.after: no plugin named "tunel" is configured (did you mean "tunnel"?)`}},
	{"after cycle", "plugins:\n  a:\n    after: [c]\n  b:\n    after: [a]\n  c:\n    after: [b]\n",
		[]string{`f.yaml:3:13: plugins.a.after: dependency cycle: a -> c -> b -> a`}},
	{"after itself", "plugins:\n  a:\n    after: [a]\n",
		[]string{`f.yaml:3:13: plugins.a.after: a plugin cannot wait for itself`}},
	{"after a disabled plugin", "plugins:\n  a:\n    enabled: false\n  b:\n    after: [a]\n",
		[]string{`f.yaml:5:13: plugins.b.after: plugin "a" is disabled (enabled: false), so b would never start`}},
	{"after listed twice", "plugins:\n  a: {}\n  b:\n    after: [a, a]\n",
		[]string{`f.yaml:4:16: plugins.b.after: "a" is listed twice`}},
	{"after as a string", "plugins:\n  a: {}\n  b:\n    after: a\n",
		[]string{`f.yaml:4:12: plugins.b.after: expected a list of plugin names, got "a" (write [a])`}},
	{"relative path", "daemon:\n  state_dir: var/lib/sitelink\n",
		[]string{`f.yaml:2:14: daemon.state_dir: must be an absolute path, got "var/lib/sitelink"`}},
	{"relative binary", "plugins:\n  a:\n    binary: bin/a\n",
		[]string{`f.yaml:3:13: plugins.a.binary: must be an absolute path (or empty for the default), got "bin/a"`}},
	{"number where a string is expected", "daemon:\n  plugin_user: 1000\n",
		[]string{`f.yaml:2:16: daemon.plugin_user: expected a string, got 1000; quote it if you mean the text`}},
	{"bad user name", "daemon:\n  plugin_user: \"a b\"\n",
		[]string{`f.yaml:2:16: daemon.plugin_user: "a b" is not a valid user name (letters, digits, _ . -; at most 32)`}},
	{"metrics_listen without a port", "daemon:\n  metrics_listen: localhost\n",
		[]string{`f.yaml:2:19: daemon.metrics_listen: expected host:port (e.g. 127.0.0.1:9101 or :9101), got "localhost"`}},
	{"metrics_listen port 0", "daemon:\n  metrics_listen: \":0\"\n",
		[]string{`f.yaml:2:19: daemon.metrics_listen: port must be a number from 1 to 65535, got "0"`}},
	{"top level is a list", "- daemon\n",
		[]string{`f.yaml:1:1: expected a mapping with the keys daemon and plugins at the top level, got a list`}},
	{"daemon is a list", "daemon: [1]\n",
		[]string{`f.yaml:1:9: daemon: expected a mapping, got a list`}},
	{"plugins as a list", "plugins:\n  - name: a\n",
		[]string{`f.yaml:2:3: plugins: expected a mapping of plugin name to settings, got a list`}},
	{"plugin entry as a string", "plugins:\n  a: yes\n",
		[]string{`f.yaml:2:6: plugins.a: expected a mapping of plugin settings (enabled, binary, required, after, active_when, config), got "yes"`}},
	{"config as a list", "plugins:\n  a:\n    config: [1]\n",
		[]string{`f.yaml:3:13: plugins.a.config: expected a mapping of the plugin's settings, got a list`}},
	{"NaN in a plugin's config", "plugins:\n  a:\n    config:\n      ratio: .nan\n",
		[]string{`f.yaml:4:14: plugins.a.config.ratio: .nan cannot be represented in JSON`}},
	{"custom tag", "plugins:\n  a:\n    config:\n      k: !secret abc\n",
		[]string{`f.yaml:4:10: plugins.a.config.k: unsupported YAML tag !secret`}},
	{"wrong explicit tag", "plugins:\n  a:\n    config:\n      k: !!int abc\n",
		[]string{`f.yaml:4:10: plugins.a.config.k: "abc" is not a valid !!int`}},
	{"merge key", "base: &b {x: 1}\n",
		[]string{`f.yaml:1:1: unknown top-level key "base"; known keys: daemon, plugins`}},
	{"merge key in config", "plugins:\n  a:\n    config:\n      b: &b {x: 1}\n      c:\n        <<: *b\n",
		[]string{`f.yaml:6:9: plugins.a.config.c: merge keys (<<) are not supported; write the keys out`}},
	{"recursive alias", "plugins:\n  a:\n    config:\n      x: &n [1, *n]\n",
		[]string{`f.yaml:4:17: plugins.a.config.x[1]: alias *n refers to a value that contains it`}},
	{"tab indentation", "daemon:\n\tsocket: /a\n",
		[]string{`f.yaml:2:1: YAML syntax error: found character that cannot start any token`}},
	{"bad indentation", "daemon:\n  socket: /a\n stop_timeout: 1s\n",
		[]string{`f.yaml:3:2: YAML syntax error: did not find expected key`}},
	{"unclosed flow list", "plugins:\n  a:\n    after: [b, c\n",
		[]string{`f.yaml:3:13: YAML syntax error: did not find expected ',' or ']'`}},
	{"two documents", "daemon: {}\n---\nplugins: {}\n",
		[]string{`f.yaml:2:1: only one YAML document is allowed in the file (found a second one)`}},
	{"control character", "daemon:\n  socket: /a\x01b\n",
		[]string{`f.yaml:2:13: control character U+0001 is not allowed in YAML`}},
	{"not UTF-8", "daemon:\n  socket: /\xff\n",
		[]string{`f.yaml:2:12: the file is not valid UTF-8 (byte 0xff)`}},
	{"escaped control character in a string", "daemon:\n  socket: \"/a\\nb\"\n",
		[]string{`f.yaml:2:11: daemon.socket: control characters are not allowed, got "/a\nb"`}},
	{"many mistakes at once", "daemon:\n  log_level: loud\n  health_interval: 5\nplugins:\n  A: {}\n  b:\n    after: [zz]\n    required: maybe\n",
		[]string{
			`f.yaml:2:14: daemon.log_level: must be one of debug, info, warn, error; got "loud"`,
			`f.yaml:3:20: daemon.health_interval: expected a duration like 5s, got 5 (add a unit: ns, us, ms, s, m or h)`,
			`f.yaml:5:3: plugins: invalid plugin name "A": must match ^[a-z][a-z0-9_-]{0,31}$`,
			`f.yaml:7:13: plugins.b.after: no plugin named "zz" is configured`,
			`f.yaml:8:15: plugins.b.required: expected true or false, got "maybe"`,
		}},
}

func TestBadConfigs(t *testing.T) {
	if len(badConfigs) < 20 {
		t.Fatalf("only %d bad configs", len(badConfigs))
	}
	for _, tc := range badConfigs {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("f.yaml", []byte(tc.src))
			if err == nil {
				t.Fatalf("Parse accepted:\n%s\n-> %+v", tc.src, c)
			}
			if c != nil {
				t.Errorf("Parse returned a config with an error")
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, not *Errors: %v", err, err)
			}
			var got []string
			for _, e := range *errs {
				got = append(got, e.Error())
				if e.File != "f.yaml" || e.Line < 1 || e.Col < 1 {
					t.Errorf("error without a position: %+v", e)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("source:\n%s\ngot:\n  %s\nwant:\n  %s", tc.src, strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			if err.Error() != strings.Join(tc.want, "\n") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestErrorsAreInspectable(t *testing.T) {
	_, err := Parse("/etc/sitelink/sitelink.yaml", []byte("daemon:\n  log_level: loud\n  stop_timeout: x\n"))
	var one *Error
	if !errors.As(err, &one) {
		t.Fatalf("errors.As(*Error) failed on %v", err)
	}
	if one.File != "/etc/sitelink/sitelink.yaml" || one.Line != 2 || one.Col != 14 || !strings.Contains(one.Msg, "log_level") {
		t.Errorf("first error = %+v", one)
	}
	var all *Errors
	if !errors.As(err, &all) || len(*all) != 2 {
		t.Fatalf("want 2 errors, got %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
	path := filepath.Join(dir, "sitelink.yaml")
	if err := os.WriteFile(path, []byte("plugins:\n  a: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != path || len(c.Plugins) != 1 {
		t.Errorf("Load = %+v", c)
	}
	if err := os.WriteFile(path, []byte("plugins:\n  a: {x: 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2:7: ") {
		t.Errorf("Load(bad) = %v, want an error at %s:2:7", err, path)
	}
}

func TestTooLarge(t *testing.T) {
	big := make([]byte, maxFileSize+1)
	for i := range big {
		big[i] = '\n'
	}
	_, err := Parse("f.yaml", big)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Parse(17 MiB) = %v", err)
	}
}

func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("plugins:\n  a:\n    config:\n      l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		b.WriteString("      l" + itoa(i) + ": &l" + itoa(i) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*l" + itoa(i-1))
		}
		b.WriteString("]\n")
	}
	start := time.Now()
	_, err := Parse("f.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "expand to more than") {
		t.Fatalf("Parse(alias bomb) = %v", err)
	}
	t.Logf("rejected in %v", time.Since(start))
}

func itoa(i int) string { return string(rune('0' + i)) }
