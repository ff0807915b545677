package proc

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestIdentifyAlive(t *testing.T) {
	r, err := Identify("self", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if r.PID != os.Getpid() || r.StartTime == 0 || r.BootID == "" || r.Plugin != "self" {
		t.Fatalf("record = %+v", r)
	}
	if !r.Alive() {
		t.Fatal("the test process is not alive by its own record")
	}
	reused := r
	reused.StartTime++
	if reused.Alive() {
		t.Fatal("a record with another start time (a reused pid) counts as alive")
	}
	otherBoot := r
	otherBoot.BootID = "00000000-0000-0000-0000-000000000000"
	if otherBoot.Alive() {
		t.Fatal("a record from another boot counts as alive")
	}
	if _, err := Identify("x", 1<<30); err == nil {
		t.Fatal("Identify of a pid that cannot exist did not fail")
	}
}

func TestStartTimeOddCommandName(t *testing.T) {
	// The command name may contain spaces and ')': the start time must still be field 22.
	dir := t.TempDir()
	odd := filepath.Join(dir, "a) b (c")
	if err := os.Symlink("/bin/sleep", odd); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(odd, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	st, err := startTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	self, err := startTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st < self {
		t.Fatalf("start time of the child %d is before the test's %d", st, self)
	}
}

func TestRecordSave(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.pid")
	r := Record{Plugin: "p", PID: 42, StartTime: 7, BootID: "b"}
	if err := r.Save(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got Record
	if err := json.Unmarshal(b, &got); err != nil || got != r {
		t.Fatalf("read back %+v (%v), want %+v", got, err, r)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left: %v", err)
	}
	if err := r.Save(filepath.Join(dir, "missing", "p.pid")); err == nil {
		t.Fatal("Save into a missing directory did not fail")
	}
}

// groupLeader starts `sh -c 'sleep 60 & echo $!; wait'` as the leader of its own process
// group, like a plugin, and returns it with the pid of its sleeping child.
func groupLeader(t *testing.T) (*exec.Cmd, int, *waited) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "sleep 60 & echo $!; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	w := &waited{done: make(chan struct{})}
	go func() { w.err = cmd.Wait(); close(w.done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-w.done
	})
	return cmd, child, w
}

// waited is the end of a process: done closes when Wait returned err.
type waited struct {
	done chan struct{}
	err  error
}

// gone reports whether pid no longer runs (a zombie counts as gone).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

func waitGone(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !gone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still runs after %s", pid, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReap(t *testing.T) {
	dir := t.TempDir()
	ours, oursChild, oursDone := groupLeader(t)
	reused, _, reusedDone := groupLeader(t)

	rec, err := Identify("ours", ours.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Save(filepath.Join(dir, "ours.pid")); err != nil {
		t.Fatal(err)
	}
	// A live process whose start time does not match the record: its pid was reused
	// after the plugin died, so it is somebody else's and must survive.
	other, err := Identify("reused", reused.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	other.StartTime--
	if err := other.Save(filepath.Join(dir, "reused.pid")); err != nil {
		t.Fatal(err)
	}
	// A record of another boot, a garbage file and a record of pid 1.
	boot := rec
	boot.Plugin, boot.BootID = "boot", "another-boot"
	if err := boot.Save(filepath.Join(dir, "boot.pid")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "garbage.pid"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (Record{Plugin: "init", PID: 1}).Save(filepath.Join(dir, "init.pid")); err != nil {
		t.Fatal(err)
	}
	// Not a record at all: left alone.
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	killed, err := Reap(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(killed) != 1 || killed[0] != rec {
		t.Fatalf("killed %+v, want only %+v", killed, rec)
	}
	select {
	case <-oursDone.done:
		err := oursDone.err
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("leftover ended with %v, want SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the leftover was not killed")
	}
	// The whole process group goes, not just its leader.
	waitGone(t, oursChild, 5*time.Second)
	select {
	case <-reusedDone.done:
		t.Fatalf("the process that reuses a recorded pid was killed: %v", reusedDone.err)
	default:
	}
	if gone(reused.Process.Pid) {
		t.Fatal("the process that reuses a recorded pid is gone")
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(left) != 1 || filepath.Base(left[0]) != "notes.txt" {
		t.Fatalf("left in the pid directory: %v, want only notes.txt", left)
	}
	// Reaping again finds nothing.
	if killed, err := Reap(dir); err != nil || len(killed) != 0 {
		t.Fatalf("second Reap = %v, %v", killed, err)
	}
	if killed, err := Reap(filepath.Join(dir, "missing")); err != nil || len(killed) != 0 {
		t.Fatalf("Reap of a missing directory = %v, %v", killed, err)
	}
}

// A zombie (exited, not yet reaped by its parent) is not alive: there is nothing to kill.
func TestZombieNotAlive(t *testing.T) {
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Wait() })
	pid := cmd.Process.Pid
	rec, err := Identify("z", pid)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, state, err := stat(pid); err == nil && state == "Z" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child did not become a zombie")
		}
		time.Sleep(time.Millisecond)
	}
	if rec.Alive() {
		t.Fatal("a zombie counts as alive")
	}
	dir := t.TempDir()
	if err := rec.Save(filepath.Join(dir, "z.pid")); err != nil {
		t.Fatal(err)
	}
	if killed, err := Reap(dir); err != nil || len(killed) != 0 {
		t.Fatalf("Reap of a zombie's record = %+v, %v", killed, err)
	}
}
