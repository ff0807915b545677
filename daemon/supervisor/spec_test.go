package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sitelink/sitelink/plugins/sdk/pluginpb"
)

func TestRestartPolicyDelay(t *testing.T) {
	p := RestartPolicy{BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second}
	want := []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		800 * time.Millisecond, time.Second, time.Second, time.Second}
	for n, w := range want {
		if got := p.delay(n); got != w {
			t.Errorf("delay(%d) = %v, want %v", n, got, w)
		}
	}
	if got := p.delay(1000); got != time.Second {
		t.Errorf("delay(1000) = %v", got)
	}
	// Without a minimum, 100ms is assumed.
	if got := (RestartPolicy{BackoffMax: time.Minute}).delay(3); got != 200*time.Millisecond {
		t.Errorf("default minimum: delay(3) = %v", got)
	}
	// A maximum below the minimum wins.
	if got := (RestartPolicy{BackoffMin: time.Second, BackoffMax: 300 * time.Millisecond}).delay(2); got != 300*time.Millisecond {
		t.Errorf("max below min: delay(2) = %v", got)
	}
	// Options.defaults gives a maximum, so the backoff grows.
	var o Options
	o.defaults()
	if o.Restart.delay(4) != 400*time.Millisecond || o.Restart.delay(100) != 30*time.Second || o.Restart.Max != 5 || o.Restart.Window != time.Minute {
		t.Errorf("default policy %+v: delay(4) = %v, delay(100) = %v", o.Restart, o.Restart.delay(4), o.Restart.delay(100))
	}
}

func TestConfigEqual(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		eq   bool
	}{
		{`{"a":1,"b":[1,2]}`, ` { "b" : [1,2], "a" : 1 } `, true},
		{`{"a":1}`, `{"a":2}`, false},
		{`{"a":1.0}`, `{"a":1}`, true},
		{`{}`, `{}`, true},
		{`{}`, `null`, false},
		{``, ``, true},
		{`not json`, `not json`, true},
		{`not json`, `{}`, false},
	} {
		if got := configEqual(json.RawMessage(tc.a), json.RawMessage(tc.b)); got != tc.eq {
			t.Errorf("configEqual(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
}

func TestLaunchEqual(t *testing.T) {
	base := Spec{Name: "a", Enabled: true, Binary: "/bin/a", Args: []string{"-x"}, Caps: []string{"CAP_NET_RAW"},
		Config: json.RawMessage(`{"a":1}`), After: []string{"b"}, ActiveWhen: "master", Required: true}
	if !launchEqual(base, base) {
		t.Fatal("a spec differs from itself")
	}
	// What a running process can take live.
	live := base
	live.Config, live.After, live.ActiveWhen, live.Required = json.RawMessage(`{"a":2}`), nil, "always", false
	if !launchEqual(base, live) {
		t.Fatal("config, dependencies, role gating or required need a relaunch")
	}
	for name, change := range map[string]func(*Spec){
		"binary":  func(s *Spec) { s.Binary = "/bin/b" },
		"args":    func(s *Spec) { s.Args = []string{"-y"} },
		"vendor":  func(s *Spec) { s.Vendor = true },
		"sha256":  func(s *Spec) { s.SHA256 = "00" },
		"api":     func(s *Spec) { s.APIVersion = 2 },
		"caps":    func(s *Spec) { s.Caps = nil },
		"user":    func(s *Spec) { s.User = "other" },
		"enabled": func(s *Spec) { s.Enabled = false },
	} {
		other := base
		change(&other)
		if launchEqual(base, other) {
			t.Errorf("a change of %s does not relaunch", name)
		}
	}
}

func TestNegotiate(t *testing.T) {
	info := func(v ...int32) *pluginpb.InfoResponse { return &pluginpb.InfoResponse{ApiVersions: v} }
	if v, err := negotiate("p", info(1), 0); err != nil || v != 1 {
		t.Fatalf("negotiate [1] = %d, %v", v, err)
	}
	if v, err := negotiate("p", info(3, 1, 2), 1); err != nil || v != 1 {
		t.Fatalf("negotiate [3 1 2] pinned 1 = %d, %v", v, err)
	}
	_, err := negotiate("tunnel", info(2, 3), 0)
	if !errors.Is(err, ErrRefused) || err.Error() != `refused: plugin "tunnel" speaks API version [2 3]; sitelinkd v1 speaks [1]` {
		t.Fatalf("mismatch = %v", err)
	}
	_, err = negotiate("p", info(1), 2)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "manifest says API version 2, the binary speaks [1]") {
		t.Fatalf("pinned mismatch = %v", err)
	}
	if _, err := negotiate("p", info(), 0); !errors.Is(err, ErrRefused) {
		t.Fatalf("no versions = %v", err)
	}
}

func TestGrantedCaps(t *testing.T) {
	info := &pluginpb.InfoResponse{Capabilities: []string{"CAP_NET_ADMIN", "net_raw"}}
	got, err := grantedCaps(Spec{Name: "builtin"}, info)
	if err != nil || got.String() != "CAP_NET_ADMIN,CAP_NET_RAW" {
		t.Fatalf("built-in = %v, %v", got, err)
	}
	got, err = grantedCaps(Spec{Name: "v", Vendor: true, Caps: []string{"CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_KILL"}}, info)
	if err != nil || got.String() != "CAP_NET_ADMIN,CAP_NET_RAW" {
		t.Fatalf("vendor granted more = %v, %v", got, err)
	}
	_, err = grantedCaps(Spec{Name: "v", Vendor: true, Caps: []string{"CAP_NET_RAW"}}, info)
	if !errors.Is(err, ErrRefused) || err.Error() != `refused: plugin "v" needs CAP_NET_ADMIN, which its manifest does not grant` {
		t.Fatalf("vendor not granted = %v", err)
	}
	_, err = grantedCaps(Spec{Name: "v"}, &pluginpb.InfoResponse{Capabilities: []string{"CAP_FLY"}})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), `plugin "v" declares unknown capability "CAP_FLY"`) {
		t.Fatalf("unknown capability = %v", err)
	}
	_, err = grantedCaps(Spec{Name: "v", Vendor: true, Caps: []string{"CAP_FLY"}}, info)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "manifest") {
		t.Fatalf("bad manifest capability = %v", err)
	}
}

func TestCheckBinary(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := checkBinary(write("ok", 0o755)); err != nil {
		t.Fatalf("good binary: %v", err)
	}
	for _, tc := range []struct {
		path, want string
	}{
		{"relative/plugin", "not an absolute path"},
		{filepath.Join(dir, "missing"), "no such file"},
		{dir, "is not a regular file"},
		{write("ww", 0o757), "is world-writable (mode -rwxr-xrwx); fix with chmod o-w"},
		{write("noexec", 0o644), "is not executable"},
	} {
		err := checkBinary(tc.path)
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.path, err, tc.want)
		}
	}
	wwdir := filepath.Join(dir, "wwdir")
	if err := os.Mkdir(wwdir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(wwdir, "p")
	if err := os.WriteFile(bin, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(wwdir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := checkBinary(bin); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "in world-writable directory "+wwdir) {
		t.Fatalf("world-writable directory: %v", err)
	}
	if err := os.Chmod(wwdir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := checkBinary(bin); err != nil {
		t.Fatalf("sticky directory: %v", err)
	}
}

func TestVerifySHA256(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(p, []byte("plugin"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("plugin"))
	good := hex.EncodeToString(sum[:])
	if err := verifySHA256(p, good); err != nil {
		t.Fatal(err)
	}
	if err := verifySHA256(p, strings.ToUpper(good)); err != nil {
		t.Fatalf("upper-case hex: %v", err)
	}
	other := sha256.Sum256([]byte("other"))
	err := verifySHA256(p, hex.EncodeToString(other[:]))
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "does not match the sha256 in its manifest") {
		t.Fatalf("mismatch: %v", err)
	}
	for _, bad := range []string{"", "xyz", good[:62]} {
		if err := verifySHA256(p, bad); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "is not 64 hex digits") {
			t.Fatalf("sha256 %q: %v", bad, err)
		}
	}
	if err := verifySHA256(filepath.Join(t.TempDir(), "missing"), good); !errors.Is(err, ErrRefused) {
		t.Fatalf("missing file: %v", err)
	}
}

// Without a log sink plugin, a plugin's AppendLogs is refused as Unavailable.
func TestHostAppendLogsWithoutSink(t *testing.T) {
	s, err := New(context.Background(), Options{StateDir: t.TempDir(), RuntimeDir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	h := newHostService(s, "p")
	_, err = h.AppendLogs(context.Background(), &pluginpb.AppendRequest{})
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable || st.Message() != "no log cache plugin is running" {
		t.Fatalf("AppendLogs = %v", err)
	}
	if err := h.AppendLogsStream(nil); status.Code(err) != codes.Unavailable {
		t.Fatalf("AppendLogsStream = %v", err)
	}
	if _, err := h.Publish(context.Background(), &pluginpb.PublishRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Publish without an event = %v", err)
	}
	// The source is the plugin's name, whatever it claims.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Bus().Subscribe(ctx, "x")
	if _, err := h.Publish(context.Background(), &pluginpb.PublishRequest{Event: &pluginpb.Event{Type: "x", Source: "vrrp"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-ch:
		if ev.Source != "p" {
			t.Fatalf("source = %q", ev.Source)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
}
