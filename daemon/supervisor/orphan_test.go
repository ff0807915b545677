package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// childConfig is what the stand-in daemon (a child process of the test) runs.
type childConfig struct {
	StateDir, RuntimeDir, Binary string
}

// runDaemonChild is a minimal sitelinkd: it supervises two plugins, prints their pids
// as a JSON line once they run, and waits to be killed.
func runDaemonChild(spec string) int {
	var cc childConfig
	if err := json.Unmarshal([]byte(spec), &cc); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := New(context.Background(), Options{Self: self, StateDir: cc.StateDir, RuntimeDir: cc.RuntimeDir,
		PluginUser: "nobody", Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	specs := []Spec{{Name: "one", Enabled: true, Required: true, Binary: cc.Binary, Config: json.RawMessage(`{}`)},
		{Name: "two", Enabled: true, Required: true, Binary: cc.Binary, Config: json.RawMessage(`{}`)}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Apply(ctx, specs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := s.WaitReady(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "wait ready:", err)
		return 1
	}
	var pids []int
	for _, st := range s.Snapshot() {
		pids = append(pids, st.PID)
	}
	b, _ := json.Marshal(pids)
	fmt.Println(string(b))
	select {}
}

// `kill -9 sitelinkd` leaves no plugin process, and the next start's reaping finds
// the records and kills nothing that is not ours.
func TestPluginsDieWithKilledDaemon(t *testing.T) {
	needRoot(t)
	cc := childConfig{StateDir: mkdir0755(t), RuntimeDir: mkdir0755(t), Binary: pluginBinary(t)}
	b, _ := json.Marshal(cc)
	daemon := exec.Command(selfExe(t), "-test.run=^$")
	// The killed daemon cannot remove its own (host services) sockets: keep them in a
	// directory of the test's.
	daemon.Env = append(os.Environ(), daemonChildEnv+"="+string(b), "TMPDIR="+mkdir0755(t))
	out, err := daemon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	daemon.Stderr = &testWriter{t: t}
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = daemon.Wait(); close(done) }()
	t.Cleanup(func() { _ = daemon.Process.Kill(); <-done })
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		lines <- line
		_, _ = io.Copy(io.Discard, r)
	}()
	var pids []int
	select {
	case line := <-lines:
		if err := json.Unmarshal([]byte(line), &pids); err != nil || len(pids) != 2 {
			t.Fatalf("daemon said %q", line)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not start its plugins")
	}
	for _, pid := range pids {
		if !isPluginProcess(pid) {
			t.Fatalf("pid %d is not a plugin", pid)
		}
		pid := pid
		t.Cleanup(func() {
			if !processGone(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		})
	}
	recs, _ := filepath.Glob(filepath.Join(cc.RuntimeDir, "pids", "*.pid"))
	if len(recs) != 2 {
		t.Fatalf("pid records = %v", recs)
	}
	if err := daemon.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	waitFor(t, 10*time.Second, "the plugins to die with the daemon", func() bool {
		return processGone(pids[0]) && processGone(pids[1])
	})
	killed, err := ReapLeftovers(cc.RuntimeDir)
	if err != nil || len(killed) != 0 {
		t.Fatalf("ReapLeftovers = %+v, %v", killed, err)
	}
	if recs, _ := filepath.Glob(filepath.Join(cc.RuntimeDir, "pids", "*")); len(recs) != 0 {
		t.Fatalf("records left: %v", recs)
	}
}

// sleeper is a `sleep` in its own process group, like a leftover plugin.
type sleeper struct {
	pid  int
	done chan struct{}
}

func startSleep(t *testing.T) sleeper {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := sleeper{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-s.done })
	return s
}
