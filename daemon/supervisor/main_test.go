package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/daemon/proc"
)

// The test binary doubles as sitelinkd's privilege-dropping launcher (proc.ExecMain)
// and, for the orphan test, as a stand-in daemon (runDaemonChild).
const daemonChildEnv = "SITELINK_TEST_DAEMON_CHILD"

// testBin is the testplugin binary, built once in TestMain into a 0755 directory so
// that a plugin running as nobody can reach it.
var testBin struct {
	path string
	dir  string
	err  error
	once sync.Once
}

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == proc.LauncherArg {
		if err := proc.ExecMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(127)
		}
		os.Exit(0) // not reached: ExecMain execs or fails
	}
	if spec := os.Getenv(daemonChildEnv); spec != "" {
		os.Exit(runDaemonChild(spec))
	}
	code := m.Run()
	if testBin.dir != "" {
		_ = os.RemoveAll(testBin.dir)
	}
	os.Exit(code)
}

// pluginBinary builds daemon/internal/testplugin once (lazily, so that unit tests that
// need no plugin do not pay for it).
func pluginBinary(t testing.TB) string {
	t.Helper()
	testBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "sitelink-suptest-bin-")
		if err != nil {
			testBin.err = err
			return
		}
		testBin.dir = dir
		if err := os.Chmod(dir, 0o755); err != nil {
			testBin.err = err
			return
		}
		out := filepath.Join(dir, "testplugin")
		cmd := exec.Command("go", "build", "-o", out, "github.com/sitelink/sitelink/daemon/internal/testplugin")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			testBin.err = fmt.Errorf("go build testplugin: %v\n%s", err, b)
			return
		}
		testBin.path = out
	})
	if testBin.err != nil {
		t.Fatal(testBin.err)
	}
	return testBin.path
}

// copyPlugin copies the test plugin into a fresh 0755 directory (for tests that modify
// or chmod the binary).
func copyPlugin(t testing.TB) string {
	t.Helper()
	src := pluginBinary(t)
	dir := mkdir0755(t)
	dst := filepath.Join(dir, "testplugin")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// mkdir0755 makes a temporary directory that user nobody can traverse (t.TempDir is
// 0700) and removes it with the test.
func mkdir0755(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sitelink-suptest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// needRoot skips (or, with CI=true, fails) a test that needs root.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (CI=true)")
	}
	t.Skip("needs root")
}

func selfExe(t testing.TB) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testLogger writes the supervisor's log to the test log (only shown on failure or -v).
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("SUPTEST_QUIET") != "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testOptions are short timings for tests.
func testOptions(t testing.TB) Options {
	return Options{
		Self:           selfExe(t),
		HostVersion:    "test",
		StateDir:       mkdir0755(t),
		RuntimeDir:     mkdir0755(t),
		PluginUser:     "nobody",
		HealthInterval: 200 * time.Millisecond,
		HealthTimeout:  500 * time.Millisecond,
		HealthFailures: 2,
		StopTimeout:    2 * time.Second,
		StartTimeout:   20 * time.Second,
		Restart:        RestartPolicy{Max: 3, Window: time.Minute, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
		Logger:         testLogger(t),
	}
}

// newSupervisor starts a supervisor that is stopped (and its plugins with it) when the
// test ends.
func newSupervisor(t testing.TB, opts Options) *Supervisor {
	t.Helper()
	s, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.Stop(ctx)
	})
	return s
}

func pluginSpec(t testing.TB, name string, config string, args ...string) Spec {
	if config == "" {
		config = "{}"
	}
	return Spec{Name: name, Enabled: true, Binary: pluginBinary(t), Args: args, Required: true, Config: json.RawMessage(config)}
}

func apply(t testing.TB, s *Supervisor, specs ...Spec) {
	t.Helper()
	if err := s.Apply(context.Background(), specs); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// waitFor polls cond until it is true or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func statusOf(t testing.TB, s *Supervisor, name string) api.PluginStatus {
	t.Helper()
	for _, st := range s.Snapshot() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no plugin %q in the snapshot", name)
	return api.PluginStatus{}
}

// waitState waits until the plugin is in state (and, for running, has a PID).
func waitState(t testing.TB, s *Supervisor, name, state string, timeout time.Duration) api.PluginStatus {
	t.Helper()
	var st api.PluginStatus
	deadline := time.Now().Add(timeout)
	for {
		st = statusOf(t, s, name)
		if st.State == state && (state != api.PluginRunning || st.PID > 0) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin %s: timed out after %s waiting for state %s; status: %+v", name, timeout, state, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pluginState is the testplugin's `state` action result.
type pluginState struct {
	PID      int      `json:"pid"`
	Role     string   `json:"role"`
	Starts   int      `json:"starts"`
	Stops    int      `json:"stops"`
	Configs  int      `json:"configs"`
	Greeting string   `json:"greeting"`
	Events   int      `json:"events"`
	UID      int      `json:"uid"`
	CapEff   []string `json:"cap_eff"`
	CapPrm   []string `json:"cap_prm"`
	CapBnd   []string `json:"cap_bnd"`
}

func invoke(t testing.TB, s *Supervisor, name, action string, args map[string]string) []byte {
	t.Helper()
	cl, err := s.Client(name)
	if err != nil {
		t.Fatalf("client of %s: %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := cl.InvokeAction(ctx, action, args)
	if err != nil {
		t.Fatalf("%s %s: %v", name, action, err)
	}
	return b
}

func stateOf(t testing.TB, s *Supervisor, name string) pluginState {
	t.Helper()
	var ps pluginState
	if err := json.Unmarshal(invoke(t, s, name, "state", nil), &ps); err != nil {
		t.Fatalf("decode state of %s: %v", name, err)
	}
	return ps
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
