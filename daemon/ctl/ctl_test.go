package ctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sitelink/sitelink/daemon/admin"
	"github.com/sitelink/sitelink/daemon/admin/admintest"
	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/daemon/ctl"
)

var build = ctl.BuildInfo{Version: "9.9.9", Commit: "abc1234", Date: "2026-05-01"}

type env struct {
	b    *admintest.Backend
	sock string
}

func newBackend() *admintest.Backend {
	now := time.Now()
	return &admintest.Backend{
		StatusValue: api.Status{
			Version: "1.2.3", State: api.DaemonDegraded, StatusLine: "2 of 3 plugins healthy", Role: "MASTER",
			PID: 42, StartedAt: now.Add(-3 * time.Hour), ConfigFile: "/etc/sitelink/sitelink.yaml",
			LastReload: now.Add(-5 * time.Minute), ConfigError: "sitelink.yaml:3:1: unknown plugin \"foo\"",
		},
		PluginValues: admintest.SamplePlugins(),
		ReloadResult: api.ReloadResult{Added: []string{"proxy"}, Changed: []string{"tunnel"}, Unchanged: []string{"snat"}, DaemonChanged: []string{"log_level"}},
		ConfigValue:  api.ConfigView{File: "/etc/sitelink/sitelink.yaml", YAML: "plugins:\n  tunnel: {}\n"},
		VersionValue: api.VersionInfo{Version: "1.2.3", Commit: "def5678", GoVersion: "go1.26.8", APIVersion: "v1", PluginAPIVersions: []int{1, 2}},
	}
}

func setup(t *testing.T, opts admin.Options) *env {
	t.Helper()
	b := newBackend()
	srv := admintest.Serve(t, b, opts)
	return &env{b: b, sock: srv.SocketPath()}
}

// syncBuffer is a bytes.Buffer safe for a writer and a concurrent reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runCtl runs sitelinkctl in-process with SITELINK_SOCKET pointing at sock.
func runCtl(ctx context.Context, sock, stdin string, args ...string) (string, string, int) {
	var out, errOut syncBuffer
	code := ctl.Main(ctx, args, build, ctl.IO{
		In: strings.NewReader(stdin), Out: &out, Err: &errOut,
		Getenv: func(k string) string {
			if k == ctl.EnvSocket {
				return sock
			}
			return ""
		},
	})
	return out.String(), errOut.String(), code
}

func (e *env) run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	// A command that hangs fails the test (as if interrupted) instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, errOut, code := runCtl(ctx, e.sock, "", args...)
	if ctx.Err() != nil {
		t.Errorf("sitelinkctl %s: still running after 30s", strings.Join(args, " "))
	}
	return out, errOut, code
}

// expect runs a command and checks its exit code and that stdout contains want.
func (e *env) expect(t *testing.T, code int, want []string, args ...string) (string, string) {
	t.Helper()
	out, errOut, got := e.run(t, args...)
	if got != code {
		t.Errorf("sitelinkctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), got, code, out, errOut)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("sitelinkctl %s: stdout lacks %q:\n%s\nstderr:\n%s", strings.Join(args, " "), w, out, errOut)
		}
	}
	return out, errOut
}

func TestStatus(t *testing.T) {
	e := setup(t, admin.Options{})
	out, _ := e.expect(t, 0, []string{
		"● sitelinkd 1.2.3 - degraded\n",
		"    Status: 2 of 3 plugins healthy\n",
		"      Role: MASTER\n",
		"       PID: 42, up 3h0m since ",
		"    Config: /etc/sitelink/sitelink.yaml\n",
		"  Reloaded: ", " (5m",
		"     Error: last reload rejected: sitelink.yaml:3:1: unknown plugin \"foo\"\n",
		"NAME      STATE    HEALTH    PID   RESTARTS  SUMMARY\n",
		"tunnel    running  ok        1300  1         up to gw-a\n",
		"logcache  running  degraded  1301  0         disk 91% full\n",
		"snat      failed   down      -     5         exit status 1\n",
	}, "status")
	if strings.Count(out, "\n") != 12 {
		t.Errorf("status has %d lines:\n%s", strings.Count(out, "\n"), out)
	}
}

func TestJSONEverywhere(t *testing.T) {
	e := setup(t, admin.Options{})
	out, _ := e.expect(t, 0, nil, "status", "--json")
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Role != "MASTER" || len(st.Plugins) != 3 {
		t.Errorf("status --json: %v\n%s", err, out)
	}
	// --json before the command works too.
	out2, _ := e.expect(t, 0, nil, "--json", "status")
	if out2 != out {
		t.Errorf("--json status differs from status --json")
	}
	for _, args := range [][]string{
		{"plugins", "--json"}, {"plugins", "show", "tunnel", "--json"}, {"reload", "--json"},
		{"config", "show", "--json"}, {"config", "check", "--json"}, {"version", "--json"},
		{"plugins", "restart", "snat", "--json"}, {"tunnel", "peers", "--json"}, {"--json", "tunnel", "peers"},
	} {
		out, _ := e.expect(t, 0, nil, args...)
		if !json.Valid([]byte(out)) {
			t.Errorf("sitelinkctl %s: not JSON:\n%s", strings.Join(args, " "), out)
		}
	}
	out, _ = e.expect(t, 0, []string{`"name": "tunnel"`}, "plugins", "show", "tunnel", "--json")
	var p api.PluginStatus
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.Actions[0].Args[0].Name != "peer" {
		t.Errorf("plugins show --json: %v", err)
	}
}

func TestPlugins(t *testing.T) {
	e := setup(t, admin.Options{})
	want := []string{
		"NAME      VERSION  STATE    HEALTH    PID   RESTARTS  ACTIVE  SUMMARY\n",
		"tunnel    1.0.0    running  ok        1300  1         always  up to gw-a\n",
		"snat      -        failed   down      -     5         master  exit status 1\n",
	}
	out1, _ := e.expect(t, 0, want, "plugins")
	out2, _ := e.expect(t, 0, want, "plugins", "list")
	out3, _ := e.expect(t, 0, want, "plugins", "ls")
	if out1 != out2 || out2 != out3 {
		t.Error("plugins, plugins list and plugins ls differ")
	}
	e.expect(t, 0, []string{
		"Name:          tunnel\n",
		"Description:   WireGuard tunnel to the hub\n",
		"State:         running since 2026-05-01",
		"PID:           1300\n",
		"Required:      yes\n",
		"Capabilities:  CAP_NET_ADMIN\n",
		"  rx_bytes  1234\n",
		"Details:\n  {\n    \"active_peer\": \"gw-a\"\n  }\n",
		"Actions:\n  switch PEER [--force]  - Switch the active peer [mutating]\n",
		"      --peer string            peer to switch to (required)\n",
		"      --force                  switch even if the peer is down\n",
		"  peers  - List the peers\n",
	}, "plugins", "show", "tunnel")
	e.expect(t, 0, []string{"Reasons:       - disk 91% full\n", "-f, --follow", "--lines int", "(default 10)", "[streaming]"}, "plugins", "show", "logcache")

	_, errOut := e.expect(t, 5, nil, "plugins", "show", "nope")
	if !strings.Contains(errOut, `plugin "nope": not found`) {
		t.Errorf("plugins show nope: stderr %q", errOut)
	}
	e.expect(t, 2, nil, "plugins", "show")
	e.expect(t, 2, nil, "plugins", "show", "a", "b")
	e.expect(t, 2, nil, "plugins", "frobnicate")
}

func TestPluginOperations(t *testing.T) {
	e := setup(t, admin.Options{})
	e.expect(t, 0, []string{"Restarted snat: failed\n"}, "plugins", "restart", "snat")
	e.expect(t, 0, []string{"Restarted tunnel: running (pid 1300)\n", "Restarted logcache: running (pid 1301)\n"}, "plugins", "restart", "tunnel", "logcache")
	e.expect(t, 0, []string{"Enabled snat: failed\n"}, "plugins", "enable", "snat")
	e.expect(t, 0, []string{"Disabled snat: failed\n"}, "plugins", "disable", "snat")
	_, errOut := e.expect(t, 5, nil, "plugins", "restart", "nope")
	if !strings.Contains(errOut, "restart nope:") {
		t.Errorf("stderr %q", errOut)
	}
	e.expect(t, 2, nil, "plugins", "restart")
	want := "restart snat|restart tunnel|restart logcache|enable snat|disable snat"
	if got := strings.Join(e.b.Calls(), "|"); got != want {
		t.Errorf("calls %q, want %q", got, want)
	}
	e.b.OpErr = fmt.Errorf("plugin is starting: %w", admin.ErrConflict)
	_, errOut = e.expect(t, 1, nil, "plugins", "restart", "snat")
	if !strings.Contains(errOut, "plugin is starting: conflict") {
		t.Errorf("stderr %q", errOut)
	}
}

func TestReload(t *testing.T) {
	e := setup(t, admin.Options{})
	e.expect(t, 0, []string{
		"Reloaded.\n", "  added:     proxy\n", "  changed:   tunnel\n", "  unchanged: snat\n",
		"Restart sitelinkd to apply these changed daemon settings: log_level\n",
	}, "reload")
	e.b.ReloadErr = &admin.ConfigError{Errors: []string{"sitelink.yaml:3:1: unknown plugin \"foo\"", "sitelink.yaml:9:5: bad port"}}
	out, errOut := e.expect(t, 6, nil, "reload")
	if out != "" || !strings.Contains(errOut, "reload rejected") ||
		!strings.Contains(errOut, "\n  sitelink.yaml:9:5: bad port\n") {
		t.Errorf("rejected reload: stdout %q stderr %q", out, errOut)
	}
	e.expect(t, 2, nil, "reload", "now")
}

func TestConfig(t *testing.T) {
	e := setup(t, admin.Options{})
	e.expect(t, 0, []string{"# /etc/sitelink/sitelink.yaml (effective configuration, defaults filled in)\nplugins:\n  tunnel: {}\n"}, "config", "show")

	var got []byte
	e.b.Check = func(yaml []byte) api.ConfigCheck {
		got = yaml
		if strings.Contains(string(yaml), "bad") {
			return api.ConfigCheck{Errors: []string{"-:1:10: bad value", "-:2:1: unknown key"}}
		}
		return api.ConfigCheck{OK: true}
	}
	e.expect(t, 0, []string{"the daemon's config file: configuration OK\n"}, "config", "check")
	if got != nil {
		t.Errorf("config check without FILE sent %q", got)
	}
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("plugins: {}\n"), 0o600)
	os.WriteFile(bad, []byte("plugins: bad\n"), 0o600)
	e.expect(t, 0, []string{good + ": configuration OK\n"}, "config", "check", good)
	if string(got) != "plugins: {}\n" {
		t.Errorf("config check FILE sent %q", got)
	}
	_, errOut := e.expect(t, 6, []string{"-:1:10: bad value\n-:2:1: unknown key\n"}, "config", "check", bad)
	if !strings.Contains(errOut, "is invalid (2 errors)") {
		t.Errorf("stderr %q", errOut)
	}
	out, _ := e.expect(t, 6, nil, "config", "check", bad, "--json")
	var cc api.ConfigCheck
	if json.Unmarshal([]byte(out), &cc) != nil || cc.OK || len(cc.Errors) != 2 {
		t.Errorf("config check --json: %s", out)
	}
	// Standard input.
	out, _, code := runCtl(context.Background(), e.sock, "plugins: {}\n", "config", "check", "-")
	if code != 0 || out != "standard input: configuration OK\n" || string(got) != "plugins: {}\n" {
		t.Errorf("config check -: %d %q", code, out)
	}
	e.expect(t, 1, nil, "config", "check", filepath.Join(dir, "missing.yaml"))
	e.expect(t, 2, nil, "config", "check", "a", "b")
	e.expect(t, 2, nil, "config", "frobnicate")
}

func TestVersion(t *testing.T) {
	e := setup(t, admin.Options{})
	e.expect(t, 0, []string{
		"Client: sitelinkctl 9.9.9 (commit abc1234, built 2026-05-01, go",
		"Daemon: sitelinkd 1.2.3 (commit def5678, go1.26.8)\n",
		"        admin API v1, plugin API 1, 2\n",
	}, "version")
	out, _ := e.expect(t, 0, []string{"Client: sitelinkctl 9.9.9"}, "version", "--client")
	if strings.Contains(out, "Daemon") {
		t.Errorf("version --client asked the daemon:\n%s", out)
	}
	out, _ = e.expect(t, 0, nil, "version", "--json")
	var v struct{ Client, Daemon api.VersionInfo }
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Client.Version != "9.9.9" || v.Daemon.Version != "1.2.3" {
		t.Errorf("version --json: %v %s", err, out)
	}
	// No daemon: the client's version, then exit 3.
	out, errOut, code := runCtl(context.Background(), filepath.Join(t.TempDir(), "none.sock"), "", "version")
	if code != 3 || !strings.Contains(out, "sitelinkctl 9.9.9") || !strings.Contains(errOut, "sitelinkd is not running") {
		t.Errorf("version without daemon: %d %q %q", code, out, errOut)
	}
}

func TestEvents(t *testing.T) {
	e := setup(t, admin.Options{})
	var gotTypes []string
	ts := time.Date(2026, 5, 1, 10, 0, 0, 0, time.Local)
	e.b.EventsFunc = func(ctx context.Context, types []string, emit func(api.Event) error) error {
		gotTypes = types
		emit(api.Event{Type: "ha.role", Source: "vrrp", Time: ts, Message: "became MASTER", Attrs: map[string]string{"role": "MASTER", "prio": "100"}})
		emit(api.Event{Type: "plugin.state", Source: "sitelinkd", Time: ts, Attrs: map[string]string{"plugin": "snat", "state": "failed"}})
		return nil
	}
	e.expect(t, 0, []string{
		"2026-05-01 10:00:00.000 vrrp ha.role became MASTER prio=100 role=MASTER\n",
		"2026-05-01 10:00:00.000 sitelinkd plugin.state snat state=failed\n",
	}, "events", "--type", "ha.role,plugin.state", "--type", "x")
	if strings.Join(gotTypes, ",") != "ha.role,plugin.state,x" {
		t.Errorf("types %q", gotTypes)
	}
	out, _ := e.expect(t, 0, nil, "events", "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !json.Valid([]byte(lines[0])) || !strings.Contains(lines[0], `"source":"vrrp"`) {
		t.Errorf("events --json:\n%s", out)
	}
}

func TestPluginActions(t *testing.T) {
	e := setup(t, admin.Options{})
	var mu sync.Mutex
	var lastArgs map[string]string
	e.b.Invoke = func(_ context.Context, plugin, action string, args map[string]string) (json.RawMessage, error) {
		mu.Lock()
		lastArgs = args
		mu.Unlock()
		if action == "peers" {
			return json.RawMessage(`[{"name":"gw-a","state":"up","rtt_ms":12.5,"active":true},{"name":"gw-b","state":"down","active":false,"note":null}]`), nil
		}
		return json.RawMessage(`{"switched_to":"` + args["peer"] + `","took":"1.2s"}`), nil
	}
	args := func() string {
		mu.Lock()
		defer mu.Unlock()
		b, _ := json.Marshal(lastArgs)
		return string(b)
	}

	for _, tc := range []struct {
		cmdline []string
		args    string
	}{
		{[]string{"tunnel", "switch", "gw-b"}, `{"peer":"gw-b"}`},
		{[]string{"tunnel", "switch", "--peer", "gw-b"}, `{"peer":"gw-b"}`},
		{[]string{"tunnel", "switch", "--peer=gw-b", "--force"}, `{"force":"true","peer":"gw-b"}`},
		{[]string{"tunnel", "switch", "gw-b", "--force=false"}, `{"force":"false","peer":"gw-b"}`},
		{[]string{"tunnel", "switch", "--arg", "peer=gw-b", "--arg", "force=yes"}, `{"force":"yes","peer":"gw-b"}`},
		{[]string{"--timeout", "5s", "tunnel", "switch", "--", "-odd-name"}, `{"peer":"-odd-name"}`},
	} {
		e.expect(t, 0, nil, tc.cmdline...)
		if got := args(); got != tc.args {
			t.Errorf("sitelinkctl %s: args %s, want %s", strings.Join(tc.cmdline, " "), got, tc.args)
		}
	}
	// A result object is printed as indented JSON, a list of flat objects as a table.
	e.expect(t, 0, []string{"{\n  \"switched_to\": \"gw-b\",\n  \"took\": \"1.2s\"\n}\n"}, "tunnel", "switch", "gw-b")
	e.expect(t, 0, []string{
		"NAME  STATE  RTT_MS  ACTIVE  NOTE\n",
		"gw-a  up     12.5    true    \n",
		"gw-b  down           false   -\n",
	}, "tunnel", "peers")

	// Usage errors (exit 2), unknown plugins and actions (exit 5).
	for _, tc := range []struct {
		code    int
		stderr  string
		cmdline []string
	}{
		{2, "missing required argument PEER", []string{"tunnel", "switch"}},
		{2, `unexpected argument "extra"`, []string{"tunnel", "switch", "gw-b", "extra"}},
		{2, "unknown flag: --speed", []string{"tunnel", "switch", "gw-b", "--speed", "3"}},
		{2, "--arg wants NAME=VALUE", []string{"tunnel", "switch", "gw-b", "--arg", "force"}},
		{2, "unknown argument \"speed\"", []string{"tunnel", "switch", "gw-b", "--arg", "speed=3"}}, // the daemon says so
		{2, "missing ACTION for plugin tunnel", []string{"tunnel"}},
		{2, `unknown command "stauts"; did you mean status?`, []string{"stauts"}},
		{2, "unknown flag -x", []string{"-x", "tunnel", "peers"}},
		{5, `plugin tunnel has no action "nope" (actions: switch, peers)`, []string{"tunnel", "nope"}},
		{5, `unknown command or plugin "frobnicate"`, []string{"frobnicate", "now"}},
	} {
		out, errOut := e.expect(t, tc.code, nil, tc.cmdline...)
		if !strings.Contains(errOut, tc.stderr) {
			t.Errorf("sitelinkctl %s: stderr lacks %q:\n%s%s", strings.Join(tc.cmdline, " "), tc.stderr, out, errOut)
		}
	}
	// "tunnel" alone lists the actions on stderr; with --help on stdout.
	_, errOut := e.expect(t, 2, nil, "tunnel")
	if !strings.Contains(errOut, "Usage: sitelinkctl tunnel ACTION") || !strings.Contains(errOut, "switch PEER [--force]") {
		t.Errorf("tunnel without action: stderr\n%s", errOut)
	}
	e.expect(t, 0, []string{"Usage: sitelinkctl tunnel ACTION", "tunnel 1.0.0 - WireGuard tunnel to the hub (running)", "  peers  - List the peers"}, "tunnel", "--help")
	e.expect(t, 0, []string{
		"Usage: sitelinkctl tunnel switch PEER [--force] [flags]\n",
		"Changes state: needs root or group sitelink-admin.\n",
		"  --peer string            peer to switch to (required) [positional 1]\n",
	}, "tunnel", "switch", "--help")
	e.expect(t, 0, []string{"Streams its output", "  -f, --follow"}, "logcache", "tail", "-h")
}

func TestStreamingAction(t *testing.T) {
	e := setup(t, admin.Options{})
	var mu sync.Mutex
	var gotArgs map[string]string
	block := make(chan struct{})
	e.b.Stream = func(ctx context.Context, _, _ string, args map[string]string, emit func(json.RawMessage) error) error {
		mu.Lock()
		gotArgs = args
		mu.Unlock()
		for _, item := range []string{
			`{"time":"2026-05-01T10:00:00Z","source":"proxy","level":"info","msg":"accepted","client":"10.0.0.5:4433","bytes":12}`,
			`"plain text line"`,
		} {
			if err := emit(json.RawMessage(item)); err != nil {
				return err
			}
		}
		if args["follow"] == "true" {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-block:
			}
		}
		if args["source"] == "broken" {
			return fmt.Errorf("segment 3 unreadable: %w", admin.ErrUnavailable)
		}
		return nil
	}
	e.expect(t, 0, []string{
		"2026-05-01T10:00:00Z info proxy accepted bytes=12 client=10.0.0.5:4433\n",
		"plain text line\n",
	}, "logcache", "tail", "--source", "proxy")
	out, _ := e.expect(t, 0, nil, "logcache", "tail", "--json")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || lines[1] != `"plain text line"` || !strings.HasPrefix(lines[0], `{"time":`) {
		t.Errorf("tail --json:\n%s", out)
	}
	_, errOut := e.expect(t, 1, []string{"plain text line\n"}, "logcache", "tail", "--source", "broken")
	if !strings.Contains(errOut, "logcache tail: segment 3 unreadable") {
		t.Errorf("stream error: stderr %q", errOut)
	}

	// Follow mode runs until Ctrl-C (the context), printing items as they come; then
	// it exits 0.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out2, errOut2 syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- ctl.Main(ctx, []string{"logcache", "tail", "-f", "--source", "proxy"}, build, ctl.IO{
			Out: &out2, Err: &errOut2, Getenv: func(k string) string { return e.sock },
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out2.String(), "plain text line") {
		if time.Now().After(deadline) {
			t.Fatalf("no streamed items within 10s: %q %q", out2.String(), errOut2.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case code := <-done:
		t.Fatalf("follow ended by itself with %d", code)
	default:
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("follow interrupted: exit %d, stderr %q", code, errOut2.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end within 10s of Ctrl-C")
	}
	mu.Lock()
	defer mu.Unlock()
	if gotArgs["follow"] != "true" || gotArgs["source"] != "proxy" {
		t.Errorf("stream args %v", gotArgs)
	}
}

func TestDaemonNotRunning(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	for _, args := range [][]string{{"status"}, {"plugins"}, {"reload"}, {"tunnel", "switch", "gw-b"}, {"events"}} {
		_, errOut, code := runCtl(context.Background(), missing, "", args...)
		if code != 3 || errOut != "sitelinkctl: sitelinkd is not running (no socket at "+missing+")\n" {
			t.Errorf("sitelinkctl %s: %d %q", strings.Join(args, " "), code, errOut)
		}
	}
	// A stale socket nobody listens on.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	_, errOut, code := runCtl(context.Background(), stale, "", "status")
	if code != 3 || !strings.Contains(errOut, "sitelinkd is not running (nothing listens on "+stale+")") {
		t.Errorf("stale socket: %d %q", code, errOut)
	}
}

func TestSocketSelection(t *testing.T) {
	e := setup(t, admin.Options{})
	wrong := filepath.Join(t.TempDir(), "wrong.sock")
	// --socket beats $SITELINK_SOCKET, wherever it is on the line.
	for _, args := range [][]string{
		{"--socket", e.sock, "status"},
		{"status", "--socket=" + e.sock},
		{"--socket", e.sock, "tunnel", "peers"},
		{"tunnel", "peers", "--socket", e.sock},
		{"--socket=" + e.sock, "--json", "tunnel", "peers"},
	} {
		if _, errOut, code := runCtl(context.Background(), wrong, "", args...); code != 0 {
			t.Errorf("sitelinkctl %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
	}
	if _, _, code := runCtl(context.Background(), wrong, "", "status"); code != 3 {
		t.Errorf("$SITELINK_SOCKET not used: exit %d", code)
	}
}

func TestPermissionDenied(t *testing.T) {
	var mu sync.Mutex
	level := admin.AccessReader
	e := setup(t, admin.Options{AdminGroup: "sltest-admins", ReaderGroup: "sltest-readers", Authorize: func(admin.Peer) admin.Access {
		mu.Lock()
		defer mu.Unlock()
		return level
	}})
	// A reader may read and run non-mutating actions.
	e.expect(t, 0, nil, "status")
	e.expect(t, 0, nil, "tunnel", "peers")
	for _, args := range [][]string{{"reload"}, {"plugins", "restart", "snat"}, {"tunnel", "switch", "gw-b"}} {
		_, errOut := e.expect(t, 4, nil, args...)
		if !strings.Contains(errOut, "may not change sitelinkd; be root or a member of group sltest-admins") {
			t.Errorf("sitelinkctl %s: stderr %q", strings.Join(args, " "), errOut)
		}
	}
	mu.Lock()
	level = admin.AccessNone
	mu.Unlock()
	_, errOut := e.expect(t, 4, nil, "status")
	if !strings.Contains(errOut, "sltest-readers") {
		t.Errorf("outsider: stderr %q", errOut)
	}
	e.expect(t, 4, nil, "tunnel", "peers")
	if n := len(e.b.Calls()); n != 1 {
		t.Errorf("backend calls %q", e.b.Calls())
	}
}

func TestCompletion(t *testing.T) {
	e := setup(t, admin.Options{})
	complete := func(args ...string) string {
		t.Helper()
		out, errOut, code := e.run(t, append([]string{"__complete"}, args...)...)
		if code != 0 {
			t.Fatalf("__complete %q: %d %s", args, code, errOut)
		}
		return out
	}
	if out := complete(""); !strings.Contains(out, "status\t") || !strings.Contains(out, "tunnel\tplugin: WireGuard tunnel to the hub") || !strings.Contains(out, "logcache") {
		t.Errorf("first word:\n%s", out)
	}
	if out := complete("tunnel", ""); !strings.Contains(out, "switch\tSwitch the active peer\n") || !strings.Contains(out, "peers\t") || strings.Contains(out, "status") {
		t.Errorf("actions:\n%s", out)
	}
	if out := complete("tunnel", "switch", "--"); !strings.Contains(out, "--peer\tpeer to switch to\n") || !strings.Contains(out, "--force\t") || !strings.Contains(out, "--json") {
		t.Errorf("action flags:\n%s", out)
	}
	if out := complete("plugins", "show", "t"); !strings.Contains(out, "tunnel\t") || strings.Contains(out, "snat") {
		t.Errorf("plugins show:\n%s", out)
	}
	if out := complete("plugins", "restart", "tunnel", ""); !strings.Contains(out, "snat") {
		t.Errorf("plugins restart (several names):\n%s", out)
	}
	// No daemon: no plugin names, but no error either.
	out, _, code := runCtl(context.Background(), filepath.Join(t.TempDir(), "none.sock"), "", "__complete", "")
	if code != 0 || !strings.Contains(out, "status") || strings.Contains(out, "tunnel") {
		t.Errorf("completion without daemon: %d\n%s", code, out)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		out, _ := e.expect(t, 0, []string{"sitelinkctl"}, "completion", shell)
		if len(out) < 1000 {
			t.Errorf("completion %s: %d bytes", shell, len(out))
		}
	}
}

func TestGenManAndCompletion(t *testing.T) {
	e := setup(t, admin.Options{})
	dir := t.TempDir()
	e.expect(t, 0, nil, "gen-man", filepath.Join(dir, "man"))
	for _, page := range []string{"sitelinkctl.8", "sitelinkctl-status.8", "sitelinkctl-plugins-restart.8", "sitelinkctl-config-check.8", "sitelinkctl-events.8"} {
		data, err := os.ReadFile(filepath.Join(dir, "man", page))
		if err != nil {
			t.Errorf("man page %s: %v", page, err)
			continue
		}
		if !strings.Contains(string(data), `.TH "SITELINKCTL" "8" "May 2026" "Sitelink 9.9.9"`) {
			t.Errorf("%s header: %.200s", page, data)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "man", "sitelinkctl.8")); !strings.Contains(string(data), "Exit status") {
		t.Error("sitelinkctl.8 does not document the exit status")
	}
	if _, err := os.Stat(filepath.Join(dir, "man", "sitelinkctl-gen-man.8")); !errors.Is(err, os.ErrNotExist) {
		t.Error("hidden gen-man has a man page")
	}
	e.expect(t, 0, nil, "gen-completion", filepath.Join(dir, "compl"))
	for _, f := range []string{"sitelinkctl.bash", "_sitelinkctl", "sitelinkctl.fish"} {
		data, err := os.ReadFile(filepath.Join(dir, "compl", f))
		if err != nil || !strings.Contains(string(data), "sitelinkctl") {
			t.Errorf("completion file %s: %v", f, err)
		}
	}
	e.expect(t, 2, nil, "gen-man")
}

func TestUsageErrors(t *testing.T) {
	e := setup(t, admin.Options{})
	for _, args := range [][]string{
		{"status", "extra"}, {"status", "--bogus"}, {"plugins", "frobnicate"}, {"--timeout", "soon", "status"},
		{"reload", "x"}, {"events", "x"}, {"version", "--frob"},
	} {
		_, errOut := e.expect(t, 2, nil, args...)
		if !strings.Contains(errOut, "--help' for usage") {
			t.Errorf("sitelinkctl %s: no usage hint: %q", strings.Join(args, " "), errOut)
		}
	}
	out, _ := e.expect(t, 0, []string{"Usage:", "Exit status:", "  3  sitelinkd is not running"}, "--help")
	if out2, _ := e.expect(t, 0, nil); out2 != out {
		t.Error("sitelinkctl without arguments does not print the help")
	}
}
