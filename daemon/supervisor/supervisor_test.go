package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/daemon/eventbus"
	"github.com/sitelink/sitelink/daemon/proc"
	"github.com/sitelink/sitelink/plugins/sdk"
)

const startWait = 20 * time.Second

func TestStartConfigureStatusActions(t *testing.T) {
	needRoot(t)
	s := newSupervisor(t, testOptions(t))
	apply(t, s, pluginSpec(t, "a", `{"greeting":"hello"}`))
	if err := waitReady(s, startWait); err != nil {
		t.Fatalf("WaitReady: %v; %+v", err, s.Snapshot())
	}
	st := waitState(t, s, "a", api.PluginRunning, startWait)
	if st.Version != "0.0.1" || st.APIVersion != sdk.APIVersion || st.Binary != pluginBinary(t) || st.ActiveWhen != "always" || !st.Required {
		t.Fatalf("status = %+v", st)
	}
	if !isPluginProcess(st.PID) {
		t.Fatalf("pid %d is not the plugin", st.PID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fresh, err := s.PluginStatus(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Health != string(sdk.HealthOK) || fresh.Summary != "test ok" || fresh.Counters["starts"] != 1 {
		t.Fatalf("fresh status = %+v", fresh)
	}
	if all := s.Status(ctx); len(all) != 1 || all[0].Name != "a" || all[0].Summary != "test ok" {
		t.Fatalf("Status = %+v", all)
	}
	if _, err := s.PluginStatus(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status of an unknown plugin: %v", err)
	}

	// Action specs come from the plugin's Info.
	spec, err := s.Action("a", "count")
	if err != nil || !spec.Streaming || len(spec.Args) != 2 || spec.Args[1].Type != "duration" || spec.Args[0].Default != "3" {
		t.Fatalf("count spec = %+v, %v", spec, err)
	}
	if spec, err := s.Action("a", "publish"); err != nil || !spec.Mutating || spec.Streaming || !spec.Args[0].Required {
		t.Fatalf("publish spec = %+v, %v", spec, err)
	}
	if _, err := s.Action("a", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown action: %v", err)
	}
	if _, err := s.Action("nope", "echo"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("action of an unknown plugin: %v", err)
	}

	// Unary action.
	var echo struct {
		Greeting, Text string
		N              int
	}
	if err := json.Unmarshal(invoke(t, s, "a", "echo", map[string]string{"text": "hi", "n": "42"}), &echo); err != nil {
		t.Fatal(err)
	}
	if echo.Greeting != "hello" || echo.Text != "hi" || echo.N != 42 {
		t.Fatalf("echo = %+v", echo)
	}
	cl, err := s.Client("a")
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.InvokeAction(ctx, "echo", map[string]string{"n": "many"})
	var ce *sdk.CallError
	if !errors.As(err, &ce) || ce.Code != codes.InvalidArgument || !strings.Contains(err.Error(), `argument "n"`) {
		t.Fatalf("bad argument: %v", err)
	}
	if _, err := cl.InvokeAction(ctx, "nope", nil); !errors.As(err, &ce) || ce.Code != codes.NotFound {
		t.Fatalf("unknown action: %v", err)
	}

	// Streaming action: to its end, and cancelled midway.
	var items []string
	err = cl.StreamAction(ctx, "count", map[string]string{"n": "5"}, func(b []byte) error {
		items = append(items, string(b))
		return nil
	})
	if err != nil || strings.Join(items, ",") != `{"i":1},{"i":2},{"i":3},{"i":4},{"i":5}` {
		t.Fatalf("count = %v, %v", items, err)
	}
	sctx, scancel := context.WithCancel(ctx)
	n := 0
	err = cl.StreamAction(sctx, "count", map[string]string{"n": "0", "every": "1ms"}, func([]byte) error {
		n++
		if n == 20 {
			scancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n < 20 {
		t.Fatalf("cancelled stream: %d items, %v", n, err)
	}
	// The plugin is still fine after the cancelled stream.
	if ps := stateOf(t, s, "a"); ps.Greeting != "hello" || ps.Starts != 1 || ps.Configs != 1 || ps.PID != st.PID {
		t.Fatalf("state = %+v", ps)
	}
	if m, err := cl.Metrics(ctx); err != nil || !strings.Contains(string(m), "process_resident_memory_bytes") {
		t.Fatalf("metrics: %v\n%s", err, m)
	}
}

func waitReady(s *Supervisor, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.WaitReady(ctx)
}

// isPluginProcess reports whether pid runs the test plugin binary.
func isPluginProcess(pid int) bool {
	exe, err := os.Readlink(filepathProc(pid, "exe"))
	return err == nil && filepath.Base(strings.TrimSuffix(exe, " (deleted)")) == "testplugin"
}

func filepathProc(pid int, name string) string {
	return filepath.Join("/proc", strconv.Itoa(pid), name)
}

// processGone reports whether pid has exited (a zombie counts as exited).
func processGone(pid int) bool {
	b, err := os.ReadFile(filepathProc(pid, "stat"))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

func TestConfigChangeLiveVsRestart(t *testing.T) {
	needRoot(t)
	s := newSupervisor(t, testOptions(t))
	spec := pluginSpec(t, "a", `{"greeting":"one"}`)
	apply(t, s, spec)
	pid := waitState(t, s, "a", api.PluginRunning, startWait).PID

	// The same specs again (the config spelled differently): nothing happens.
	same := spec
	same.Config = json.RawMessage(` { "greeting" : "one" } `)
	apply(t, s, same)
	if ps := stateOf(t, s, "a"); ps.PID != pid || ps.Configs != 1 || ps.Starts != 1 {
		t.Fatalf("re-applying the same spec changed something: %+v", ps)
	}

	// A config change is applied live: same process, new greeting.
	live := spec
	live.Config = json.RawMessage(`{"greeting":"two"}`)
	apply(t, s, live)
	waitFor(t, 10*time.Second, "the new greeting", func() bool { return stateOf(t, s, "a").Greeting == "two" })
	ps := stateOf(t, s, "a")
	if ps.PID != pid || ps.Configs != 2 || ps.Starts != 1 {
		t.Fatalf("live reconfigure restarted the plugin: %+v (pid was %d)", ps, pid)
	}
	if st := statusOf(t, s, "a"); st.State != api.PluginRunning || st.PID != pid || st.Restarts != 0 {
		t.Fatalf("status after live reconfigure = %+v", st)
	}

	// A launch change (arguments) restarts the process with the current config.
	relaunch := live
	relaunch.Args = []string{"--api-version", "1"}
	apply(t, s, relaunch)
	waitFor(t, startWait, "a new process", func() bool {
		st := statusOf(t, s, "a")
		return st.State == api.PluginRunning && st.PID != 0 && st.PID != pid
	})
	ps = stateOf(t, s, "a")
	if ps.PID == pid || ps.Greeting != "two" || ps.Starts != 1 || ps.Configs != 1 {
		t.Fatalf("after a launch change: %+v (old pid %d)", ps, pid)
	}
	waitFor(t, 5*time.Second, "the old process to exit", func() bool { return processGone(pid) })
	if ps.Stops != 0 {
		t.Fatalf("new process saw stops %d", ps.Stops)
	}
	// An operator's restart is not counted as a crash.
	if st := statusOf(t, s, "a"); st.Restarts != 0 {
		t.Fatalf("restarts = %d after a launch change", st.Restarts)
	}
}

func TestKillRestartsWithConfigAndRole(t *testing.T) {
	needRoot(t)
	opts := testOptions(t)
	s := newSupervisor(t, opts)
	apply(t, s, pluginSpec(t, "ha", ""))
	waitState(t, s, "ha", api.PluginRunning, startWait)
	invoke(t, s, "ha", "publish", map[string]string{"type": "role", "attrs": "role=MASTER", "retain": "true"})
	waitFor(t, 5*time.Second, "role MASTER", func() bool { return s.Role() == sdk.RoleMaster })

	apply(t, s, pluginSpec(t, "ha", ""), pluginSpec(t, "w", `{"greeting":"kept"}`))
	st := waitState(t, s, "w", api.PluginRunning, startWait)
	if ps := stateOf(t, s, "w"); ps.Greeting != "kept" || ps.Role != "MASTER" {
		t.Fatalf("before kill: %+v", ps)
	}
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, startWait, "w running again", func() bool {
		n := statusOf(t, s, "w")
		return n.State == api.PluginRunning && n.PID != 0 && n.PID != st.PID
	})
	ps := stateOf(t, s, "w")
	if ps.Greeting != "kept" || ps.Role != "MASTER" || ps.Starts != 1 || ps.Configs != 1 || ps.PID == st.PID {
		t.Fatalf("after kill -9: %+v", ps)
	}
	n := statusOf(t, s, "w")
	if n.Restarts != 1 || n.LastExit != "plugin process exited" {
		t.Fatalf("status after kill -9 = %+v", n)
	}
	// The other plugin was not touched.
	if statusOf(t, s, "ha").Restarts != 0 {
		t.Fatal("ha was restarted too")
	}
	// The killed process could not remove its socket; it was not left behind (in
	// /tmp or elsewhere): the plugin's sockets live in its runtime directory, which
	// holds only the new process's.
	if socks := sockets(t, filepath.Join(opts.RuntimeDir, "plugins", "w")); len(socks) != 1 {
		t.Fatalf("sockets in the runtime directory after a kill -9 and restart: %v", socks)
	}
}

func sockets(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Type()&os.ModeSocket != 0 {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestCrashLoopFailsAndRestartClears(t *testing.T) {
	needRoot(t)
	opts := testOptions(t)
	s := newSupervisor(t, opts)
	apply(t, s, pluginSpec(t, "crashy", `{"crash_on_start":true}`))
	st := waitState(t, s, "crashy", api.PluginFailed, startWait)
	if st.Restarts != opts.Restart.Max || !strings.Contains(st.LastExit, "restarted 3 times within 1m0s") || st.PID != 0 {
		t.Fatalf("failed status = %+v", st)
	}
	if s.Ready() {
		t.Fatal("ready with a required plugin failed")
	}
	// It stays failed: nobody restarts it behind the operator's back.
	time.Sleep(300 * time.Millisecond) // negative check: nothing may happen in this time
	if st2 := statusOf(t, s, "crashy"); st2.State != api.PluginFailed || st2.Restarts != st.Restarts {
		t.Fatalf("failed plugin changed by itself: %+v", st2)
	}

	// An operator's restart clears the count: it gets Max restarts again (not one).
	if err := s.Restart("crashy"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, startWait, "failed again after 3 more restarts", func() bool {
		st := statusOf(t, s, "crashy")
		return st.State == api.PluginFailed && st.Restarts == 2*opts.Restart.Max
	})
	if st := statusOf(t, s, "crashy"); !strings.Contains(st.LastExit, "restarted 3 times") {
		t.Fatalf("second failure = %+v", st)
	}
	if err := s.Restart("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("restart of an unknown plugin: %v", err)
	}

	// A fixed config brings it back.
	apply(t, s, pluginSpec(t, "crashy", `{"crash_on_start":false,"greeting":"fixed"}`))
	waitState(t, s, "crashy", api.PluginRunning, startWait)
	if ps := stateOf(t, s, "crashy"); ps.Greeting != "fixed" {
		t.Fatalf("state = %+v", ps)
	}
}

func TestHungPluginIsKilledAndRestarted(t *testing.T) {
	needRoot(t)
	opts := testOptions(t)
	opts.Restart.Max = 10
	s := newSupervisor(t, opts)
	apply(t, s, pluginSpec(t, "hung", `{"hang_status":true}`))
	first := waitState(t, s, "hung", api.PluginRunning, startWait)
	waitFor(t, startWait, "a restart", func() bool { return statusOf(t, s, "hung").Restarts >= 1 })
	st := statusOf(t, s, "hung")
	if !strings.Contains(st.LastExit, "did not answer 2 health checks in a row") {
		t.Fatalf("last exit = %q", st.LastExit)
	}
	waitFor(t, 5*time.Second, "the hung process to be killed", func() bool { return processGone(first.PID) })
	waitFor(t, startWait, "a new process", func() bool {
		st := statusOf(t, s, "hung")
		return st.PID != 0 && st.PID != first.PID
	})
}

func TestTamperedBinaryRefused(t *testing.T) {
	needRoot(t)
	bin := copyPlugin(t)
	orig, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(orig)
	s := newSupervisor(t, testOptions(t))
	spec := pluginSpec(t, "vendor", "")
	spec.Binary, spec.Vendor, spec.SHA256 = bin, true, hex.EncodeToString(sum[:])
	apply(t, s, spec)
	waitState(t, s, "vendor", api.PluginRunning, startWait)

	// Replace the binary with a modified copy (as an attacker would: the running file
	// cannot be written, ETXTBSY) and restart.
	tmp := bin + ".new"
	if err := os.WriteFile(tmp, append(orig, "tampered"...), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart("vendor"); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, s, "vendor", api.PluginFailed, startWait)
	if !strings.Contains(st.LastExit, "does not match the sha256 in its manifest") || !strings.Contains(st.LastExit, bin) {
		t.Fatalf("last exit = %q", st.LastExit)
	}
	if st.Restarts != 0 {
		t.Fatalf("a refused binary was retried: %+v", st)
	}

	// A bad checksum in the manifest is refused as such.
	spec.SHA256 = "abc"
	apply(t, s, spec)
	waitFor(t, 10*time.Second, "the bad manifest to be refused", func() bool {
		return strings.Contains(statusOf(t, s, "vendor").LastExit, "is not 64 hex digits")
	})
}

func TestUnsafeBinaryRefused(t *testing.T) {
	needRoot(t)
	s := newSupervisor(t, testOptions(t))
	ww := copyPlugin(t)
	if err := os.Chmod(ww, 0o777); err != nil {
		t.Fatal(err)
	}
	wwdir := copyPlugin(t)
	if err := os.Chmod(filepath.Dir(wwdir), 0o777); err != nil {
		t.Fatal(err)
	}
	sticky := copyPlugin(t)
	if err := os.Chmod(filepath.Dir(sticky), 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	a, b, c := pluginSpec(t, "ww", ""), pluginSpec(t, "wwdir", ""), pluginSpec(t, "sticky", "")
	a.Binary, b.Binary, c.Binary = ww, wwdir, sticky
	apply(t, s, a, b, c)
	st := waitState(t, s, "ww", api.PluginFailed, startWait)
	if !strings.Contains(st.LastExit, "is world-writable") || !strings.Contains(st.LastExit, ww) {
		t.Fatalf("world-writable binary: %q", st.LastExit)
	}
	st = waitState(t, s, "wwdir", api.PluginFailed, startWait)
	if !strings.Contains(st.LastExit, "in world-writable directory "+filepath.Dir(wwdir)) {
		t.Fatalf("world-writable directory: %q", st.LastExit)
	}
	// A sticky world-writable directory (like /tmp) is fine.
	waitState(t, s, "sticky", api.PluginRunning, startWait)
}

func TestAPIVersionMismatchRefused(t *testing.T) {
	needRoot(t)
	s := newSupervisor(t, testOptions(t))
	future := pluginSpec(t, "future", "", "--api-version", "99")
	pinned := pluginSpec(t, "pinned", "")
	pinned.Vendor, pinned.APIVersion = true, 2
	multi := pluginSpec(t, "multi", "", "--api-version", "1", "--api-version", "99")
	apply(t, s, future, pinned, multi)
	st := waitState(t, s, "future", api.PluginFailed, startWait)
	for _, want := range []string{`plugin "future"`, "speaks API version [99]", "speaks [1]"} {
		if !strings.Contains(st.LastExit, want) {
			t.Errorf("mismatch error %q lacks %q", st.LastExit, want)
		}
	}
	st = waitState(t, s, "pinned", api.PluginFailed, startWait)
	for _, want := range []string{`plugin "pinned"`, "manifest says API version 2", "[1]"} {
		if !strings.Contains(st.LastExit, want) {
			t.Errorf("pinned error %q lacks %q", st.LastExit, want)
		}
	}
	// A plugin that speaks the daemon's version among others runs with it.
	if st := waitState(t, s, "multi", api.PluginRunning, startWait); st.APIVersion != 1 {
		t.Fatalf("negotiated %d", st.APIVersion)
	}
}

func TestCapabilities(t *testing.T) {
	needRoot(t)
	if !proc.AmbientSupported() {
		t.Skip("kernel without ambient capabilities: plugins run as root")
	}
	s := newSupervisor(t, testOptions(t))
	apply(t, s, pluginSpec(t, "net", "", "--caps", "CAP_NET_ADMIN,CAP_NET_RAW"), pluginSpec(t, "none", ""))
	want := []string{"CAP_NET_ADMIN", "CAP_NET_RAW"}
	wantSet, _ := proc.ParseCaps(want)
	uid, _, err := proc.UserIDs("nobody")
	if err != nil {
		t.Fatal(err)
	}
	st := waitState(t, s, "net", api.PluginRunning, startWait)
	if !slices.Equal(st.Capabilities, want) {
		t.Fatalf("status capabilities = %v", st.Capabilities)
	}
	pc, err := proc.ReadProcCaps(st.PID)
	if err != nil {
		t.Fatal(err)
	}
	if pc.UID != uid || pc.Eff != wantSet || pc.Prm != wantSet || pc.Bnd != wantSet || pc.Amb != wantSet {
		t.Fatalf("/proc/%d/status: %+v, want uid %d and exactly %v", st.PID, pc, uid, want)
	}
	ps := stateOf(t, s, "net")
	if ps.UID != uid || !slices.Equal(ps.CapEff, want) || !slices.Equal(ps.CapPrm, want) || !slices.Equal(ps.CapBnd, want) {
		t.Fatalf("as the plugin sees itself: %+v", ps)
	}
	st = waitState(t, s, "none", api.PluginRunning, startWait)
	pc, err = proc.ReadProcCaps(st.PID)
	if err != nil {
		t.Fatal(err)
	}
	if pc.UID != uid || pc.Eff != 0 || pc.Prm != 0 || pc.Bnd != 0 || pc.Amb != 0 || len(st.Capabilities) != 0 {
		t.Fatalf("plugin without capabilities: %+v, status %v", pc, st.Capabilities)
	}
}

func TestVendorCapabilitiesMustBeGranted(t *testing.T) {
	needRoot(t)
	s := newSupervisor(t, testOptions(t))
	greedy := pluginSpec(t, "greedy", "", "--caps", "CAP_NET_ADMIN,CAP_NET_RAW")
	greedy.Vendor, greedy.Caps = true, []string{"CAP_NET_RAW"}
	granted := pluginSpec(t, "granted", "", "--caps", "CAP_NET_RAW")
	granted.Vendor, granted.Caps = true, []string{"CAP_NET_RAW", "CAP_NET_ADMIN"}
	apply(t, s, greedy, granted)
	st := waitState(t, s, "greedy", api.PluginFailed, startWait)
	if !strings.Contains(st.LastExit, `plugin "greedy" needs CAP_NET_ADMIN, which its manifest does not grant`) {
		t.Fatalf("last exit = %q", st.LastExit)
	}
	// A manifest may grant more than the binary asks for; it gets what it declares.
	st = waitState(t, s, "granted", api.PluginRunning, startWait)
	if pc, err := proc.ReadProcCaps(st.PID); err != nil || pc.Eff.String() != "CAP_NET_RAW" || pc.Bnd.String() != "CAP_NET_RAW" {
		t.Fatalf("granted plugin caps = %+v, %v", pc, err)
	}
}

func TestRoleGating(t *testing.T) {
	needRoot(t)
	s := newSupervisor(t, testOptions(t))
	m := pluginSpec(t, "m", `{"greeting":"master only"}`)
	m.ActiveWhen = "master"
	apply(t, s, pluginSpec(t, "ha", ""), m)
	waitState(t, s, "ha", api.PluginRunning, startWait)
	st := waitState(t, s, "m", api.PluginStandby, startWait)
	if st.ActiveWhen != "master" || st.PID == 0 {
		t.Fatalf("standby status = %+v", st)
	}
	if err := waitReady(s, startWait); err != nil {
		t.Fatalf("a standby plugin keeps the daemon from being ready: %v", err)
	}
	if ps := stateOf(t, s, "m"); ps.Starts != 0 || ps.Greeting != "master only" {
		t.Fatalf("standby plugin state = %+v", ps)
	}

	invoke(t, s, "ha", "publish", map[string]string{"type": "role", "attrs": "role=MASTER", "retain": "true"})
	st2 := waitState(t, s, "m", api.PluginRunning, 10*time.Second)
	if st2.PID != st.PID {
		t.Fatalf("gating restarted the process: %d -> %d", st.PID, st2.PID)
	}
	if ps := stateOf(t, s, "m"); ps.Starts != 1 || ps.Role != "MASTER" {
		t.Fatalf("active plugin state = %+v", ps)
	}

	invoke(t, s, "ha", "publish", map[string]string{"type": "role", "attrs": "role=BACKUP", "retain": "true"})
	waitState(t, s, "m", api.PluginStandby, 10*time.Second)
	if ps := stateOf(t, s, "m"); ps.Stops != 1 || ps.PID != st.PID {
		t.Fatalf("standby again: %+v", ps)
	}
	if s.Role() != sdk.RoleBackup {
		t.Fatalf("role = %s", s.Role())
	}

	// Back to master; a kill -9 then brings it back active, in the current role.
	invoke(t, s, "ha", "publish", map[string]string{"type": "role", "attrs": "role=MASTER", "retain": "true"})
	waitState(t, s, "m", api.PluginRunning, 10*time.Second)
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, startWait, "m running again", func() bool {
		n := statusOf(t, s, "m")
		return n.State == api.PluginRunning && n.PID != 0 && n.PID != st.PID
	})
	if ps := stateOf(t, s, "m"); ps.Role != "MASTER" || ps.Starts != 1 || ps.Greeting != "master only" {
		t.Fatalf("after kill -9: %+v", ps)
	}
}

// events records the supervisor's plugin state changes in order.
type events struct {
	mu  sync.Mutex
	got []string // "name state"
}

func recordStates(t *testing.T, bus *eventbus.Bus) *events {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch := bus.Subscribe(ctx, sdk.EventPlugin)
	e := &events{}
	go func() {
		for ev := range ch {
			e.mu.Lock()
			e.got = append(e.got, ev.Attrs["plugin"]+" "+ev.Attrs["state"])
			e.mu.Unlock()
		}
	}()
	return e
}

func (e *events) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}

func (e *events) index(s string) int { return slices.Index(e.list(), s) }

func TestDependencyOrder(t *testing.T) {
	needRoot(t)
	opts := testOptions(t)
	opts.Bus = eventbus.New()
	rec := recordStates(t, opts.Bus)
	s := newSupervisor(t, opts)
	a := pluginSpec(t, "a", "")
	a.After = []string{"c"}
	b := pluginSpec(t, "b", "")
	b.After = []string{"a"}
	// c is not configured yet: a waits for it, b for a.
	apply(t, s, a, b)
	waitFor(t, 5*time.Second, "both to wait", func() bool {
		sa, sb := statusOf(t, s, "a"), statusOf(t, s, "b")
		return len(sa.Reasons) > 0 && len(sb.Reasons) > 0
	})
	sa, sb := statusOf(t, s, "a"), statusOf(t, s, "b")
	if sa.State != api.PluginStarting || sa.PID != 0 || sa.Reasons[0] != "waiting for c (not configured)" {
		t.Fatalf("a = %+v", sa)
	}
	if sb.State != api.PluginStarting || sb.PID != 0 || sb.Reasons[0] != "waiting for a (starting)" {
		t.Fatalf("b = %+v", sb)
	}
	c := pluginSpec(t, "c", "")
	apply(t, s, c, a, b)
	if err := waitReady(s, startWait); err != nil {
		t.Fatalf("WaitReady: %v; %+v", err, s.Snapshot())
	}
	for _, name := range []string{"a", "b", "c"} {
		if st := statusOf(t, s, name); st.State != api.PluginRunning || len(st.Reasons) != 0 {
			t.Fatalf("%s = %+v", name, st)
		}
	}
	// Each one launched only once its dependency ran.
	waitFor(t, 5*time.Second, "b running recorded", func() bool { return rec.index("b running") >= 0 })
	got := rec.list()
	if !(rec.index("c running") < rec.index("a running") && rec.index("a running") < rec.index("b running")) {
		t.Fatalf("running order: %v", got)
	}
	pa, pb, pc := statusOf(t, s, "a").PID, statusOf(t, s, "b").PID, statusOf(t, s, "c").PID
	// Stop goes in reverse: b, a, c; each gone before the next is stopped.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.Stop(ctx)
	for _, pid := range []int{pa, pb, pc} {
		if !processGone(pid) {
			t.Fatalf("pid %d still runs after Stop", pid)
		}
	}
	waitFor(t, 5*time.Second, "c stopped recorded", func() bool { return rec.index("c stopped") >= 0 })
	if !(rec.index("b stopped") < rec.index("a stopped") && rec.index("a stopped") < rec.index("c stopped")) {
		t.Fatalf("stop order: %v", rec.list())
	}
	for _, st := range s.Snapshot() {
		if st.State != api.PluginStopped {
			t.Fatalf("after Stop: %+v", st)
		}
	}
}

func TestRemovedPluginStops(t *testing.T) {
	needRoot(t)
	opts := testOptions(t)
	s := newSupervisor(t, opts)
	apply(t, s, pluginSpec(t, "keep", ""), pluginSpec(t, "drop", ""))
	keep := waitState(t, s, "keep", api.PluginRunning, startWait)
	drop := waitState(t, s, "drop", api.PluginRunning, startWait)
	apply(t, s, pluginSpec(t, "keep", ""))
	if !processGone(drop.PID) {
		t.Fatal("Apply returned before the removed plugin stopped")
	}
	if _, err := os.Stat(filepath.Join(opts.RuntimeDir, "pids", "drop.pid")); !os.IsNotExist(err) {
		t.Fatalf("pid record of the removed plugin: %v", err)
	}
	if len(s.Snapshot()) != 1 || statusOf(t, s, "keep").PID != keep.PID {
		t.Fatalf("snapshot = %+v", s.Snapshot())
	}
	if _, err := os.Stat(filepath.Join(opts.RuntimeDir, "pids", "keep.pid")); err != nil {
		t.Fatalf("pid record of the running plugin: %v", err)
	}
}

func TestDisableEnable(t *testing.T) {
	needRoot(t)
	s := newSupervisor(t, testOptions(t))
	off := pluginSpec(t, "off", "")
	off.Enabled = false
	apply(t, s, pluginSpec(t, "a", ""), off)
	st := waitState(t, s, "a", api.PluginRunning, startWait)
	waitState(t, s, "off", api.PluginDisabled, startWait)
	if err := s.SetDisabled("a", true); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, "a", api.PluginDisabled, 10*time.Second)
	waitFor(t, 5*time.Second, "the disabled plugin's process to exit", func() bool { return processGone(st.PID) })
	if err := waitReady(s, 5*time.Second); err != nil {
		t.Fatalf("disabled plugins keep the daemon from being ready: %v", err)
	}
	if err := s.SetDisabled("a", false); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, "a", api.PluginRunning, startWait)
	off.Enabled = true
	apply(t, s, pluginSpec(t, "a", ""), off)
	waitState(t, s, "off", api.PluginRunning, startWait)
	if err := s.SetDisabled("nope", true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("disable an unknown plugin: %v", err)
	}
}

func TestRejectedConfigFails(t *testing.T) {
	needRoot(t)
	s := newSupervisor(t, testOptions(t))
	apply(t, s, pluginSpec(t, "bad", `{"greeting":"forbidden word"}`))
	st := waitState(t, s, "bad", api.PluginFailed, startWait)
	if !strings.Contains(st.LastExit, "config rejected: greeting: must not say forbidden") || st.Restarts != 0 {
		t.Fatalf("status = %+v", st)
	}
}

func TestAppendLogsWithoutSink(t *testing.T) {
	needRoot(t)
	s := newSupervisor(t, testOptions(t))
	apply(t, s, pluginSpec(t, "a", ""))
	st := waitState(t, s, "a", api.PluginRunning, startWait)
	cl, err := s.Client("a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = cl.InvokeAction(ctx, "log", map[string]string{"text": "hello"})
	if err == nil || !strings.Contains(err.Error(), "no log cache plugin is running") {
		t.Fatalf("log action = %v", err)
	}
	// The plugin answered: it is not "gone" and keeps running.
	var ce *sdk.CallError
	if errors.Is(err, sdk.ErrPluginGone) || !errors.As(err, &ce) || ce.Code != codes.FailedPrecondition {
		t.Fatalf("a missing log sink reads as %#v, want a FailedPrecondition answer of a live plugin", err)
	}
	if n := statusOf(t, s, "a"); n.State != api.PluginRunning || n.PID != st.PID {
		t.Fatalf("status = %+v", n)
	}
	if s.LogSink() != nil {
		t.Fatal("LogSink without a sink plugin")
	}
}

func TestEventReachesOtherPlugin(t *testing.T) {
	needRoot(t)
	opts := testOptions(t)
	opts.Bus = eventbus.New()
	s := newSupervisor(t, opts)
	apply(t, s, pluginSpec(t, "pub", ""), pluginSpec(t, "sub", ""))
	waitState(t, s, "pub", api.PluginRunning, startWait)
	waitState(t, s, "sub", api.PluginRunning, startWait)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tests := opts.Bus.Subscribe(ctx, "test")
	before := stateOf(t, s, "sub").Events
	invoke(t, s, "pub", "publish", map[string]string{"type": "test", "attrs": "k=v,x=y"})
	select {
	case ev := <-tests:
		if ev.Source != "pub" || ev.Attrs["k"] != "v" || ev.Attrs["x"] != "y" || ev.Time.IsZero() {
			t.Fatalf("event = %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the event did not reach the bus")
	}
	waitFor(t, 10*time.Second, "sub to see the event", func() bool { return stateOf(t, s, "sub").Events > before })

	// A plugin cannot publish an event without a type.
	cl, _ := s.Client("pub")
	if _, err := cl.InvokeAction(ctx, "publish", map[string]string{"type": ""}); err == nil || !strings.Contains(err.Error(), "event without a type") {
		t.Fatalf("publish without a type = %v", err)
	}
}

func TestReapLeftovers(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pids"), 0o700); err != nil {
		t.Fatal(err)
	}
	leftover := startSleep(t)
	rec, err := proc.Identify("old", leftover.pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Save(filepath.Join(dir, "pids", "old.pid")); err != nil {
		t.Fatal(err)
	}
	// A live process whose start time does not match its record reuses a dead
	// plugin's pid: it is not ours and must survive.
	stranger := startSleep(t)
	other, err := proc.Identify("reused", stranger.pid)
	if err != nil {
		t.Fatal(err)
	}
	other.StartTime++
	if err := other.Save(filepath.Join(dir, "pids", "reused.pid")); err != nil {
		t.Fatal(err)
	}
	killed, err := ReapLeftovers(dir)
	if err != nil || len(killed) != 1 || killed[0].PID != leftover.pid {
		t.Fatalf("ReapLeftovers = %+v, %v", killed, err)
	}
	select {
	case <-leftover.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the leftover still runs")
	}
	select {
	case <-stranger.done:
		t.Fatal("the process that reuses a recorded pid was killed")
	default:
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "pids", "*")); len(left) != 0 {
		t.Fatalf("records left: %v", left)
	}
}
