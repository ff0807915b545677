package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestWaitForBecomesTrue(t *testing.T) {
	calls := 0
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := WaitFor(ctx, "third call", func() (bool, error) {
		calls++
		if calls < 3 {
			return false, fmt.Errorf("call %d too early", calls)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("WaitFor: %v", err)
	}
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3", calls)
	}
}

func TestWaitForTimeoutNamesWhatAndLastError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	n := 0
	start := time.Now()
	err := WaitFor(ctx, "the moon", func() (bool, error) {
		n++
		return false, fmt.Errorf("attempt %d failed", n)
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "the moon") || !strings.Contains(msg, "attempt "+strconv.Itoa(n)+" failed") {
		t.Fatalf("error %q does not name what and the last error (attempt %d)", msg, n)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("WaitFor returned after %v, deadline was 50ms", el)
	}
}

func TestWaitForTrueWithErrorIsNotDone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err := WaitFor(ctx, "x", func() (bool, error) { return true, errors.New("broken") })
	if err == nil {
		t.Fatal("WaitFor accepted (true, error)")
	}
}

func TestOutputBufferKeepsHeadAndTail(t *testing.T) {
	b := newOutputBuffer()
	if !b.Contains("") || b.Contains("x") {
		t.Fatal("empty buffer: wrong Contains")
	}
	fmt.Fprint(b, "START ")
	chunk := strings.Repeat("x", 4096)
	total := 6
	for total < outputHead+3*outputTail {
		b.Write([]byte(chunk))
		total += len(chunk)
	}
	fmt.Fprint(b, " END")
	total += 4
	s := b.String()
	if !strings.HasPrefix(s, "START ") || !strings.HasSuffix(s, " END") {
		t.Fatalf("output lost its head or tail: %q...%q", s[:10], s[len(s)-10:])
	}
	if !strings.Contains(s, "bytes dropped") {
		t.Fatal("no drop marker")
	}
	if len(s) > outputHead+outputTail+100 {
		t.Fatalf("kept %d bytes, bound is %d", len(s), outputHead+outputTail)
	}
	wantDropped := total - outputHead - outputTail
	if !strings.Contains(s, fmt.Sprintf("[... %d bytes dropped ...]", wantDropped)) {
		t.Fatalf("drop marker does not say %d bytes", wantDropped)
	}
	if !b.Contains("START") || !b.Contains("END") || b.Contains("nothere") {
		t.Fatal("Contains wrong on head/tail")
	}
}

func TestParseOwner(t *testing.T) {
	for name, want := range map[string]string{
		"sltest-123.abc-deadbeef-host":     "123.abc",
		"sltest-123.abc-deadbeef-a-b-c":    "123.abc",
		"sltest-77-sock-123456":            "77",
		"sltest-x-deadbeef-host":           "",
		"sltest-123.abc-deadbeef-":         "",
		"sltest-123.!!-deadbeef-host":      "",
		"other-123.abc-deadbeef-host":      "",
		"sltest-0-deadbeef-host":           "",
		"sltest-123.abc-deadbeef-host.xyz": "123.abc",
	} {
		got, ok := parseOwner(name)
		if ok != (want != "") || got != want {
			t.Errorf("parseOwner(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
}

func TestOwnerAlive(t *testing.T) {
	self, err := selfOwner()
	if err != nil {
		t.Fatal(err)
	}
	if !ownerAlive(self) {
		t.Fatalf("ownerAlive(%q) = false for this process", self)
	}
	if !ownerAlive(strconv.Itoa(os.Getpid())) {
		t.Fatal("ownerAlive(pid without start time) = false for this process")
	}
	pid, _, _ := strings.Cut(self, ".")
	if ownerAlive(pid + ".zzzzzz") {
		t.Fatal("a reused PID (other start time) counts as alive")
	}
	if ownerAlive(strconv.Itoa(deadPID(t)) + ".1") {
		t.Fatal("a dead PID counts as alive")
	}
}

func TestCheckIfName(t *testing.T) {
	for _, ok := range []string{"eth0", "a", "veth-a.b_c", "123456789012345"} {
		if err := checkIfName(ok); err != nil {
			t.Errorf("checkIfName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "1234567890123456", "a/b", "a b", "a:b"} {
		if err := checkIfName(bad); err == nil {
			t.Errorf("checkIfName(%q) accepted", bad)
		}
	}
}

func TestSysctlPath(t *testing.T) {
	for in, want := range map[string]string{
		"net.ipv4.ip_forward":                   "/proc/sys/net/ipv4/ip_forward",
		"net/ipv4/conf/eth0.5/forwarding":       "/proc/sys/net/ipv4/conf/eth0.5/forwarding",
		"/proc/sys/net/ipv4/conf/all/rp_filter": "/proc/sys/net/ipv4/conf/all/rp_filter",
	} {
		if got := sysctlPath(in); got != want {
			t.Errorf("sysctlPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBusConfigIncludesPolicy(t *testing.T) {
	dir := t.TempDir()
	f := dir + "/a&b.conf"
	if err := os.WriteFile(f, []byte("<busconfig/>"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf, err := busConfig("/tmp/x/bus.sock", DBusConfig{PolicyFiles: []string{f, dir}})
	if err != nil {
		t.Fatal(err)
	}
	s := string(conf)
	for _, want := range []string{
		"<listen>unix:path=/tmp/x/bus.sock</listen>",
		"<include>" + dir + "/a&amp;b.conf</include>",
		"<includedir>" + dir + "</includedir>",
		`<allow own="*"/>`,
		`<deny own="*"/>`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("bus.conf lacks %s:\n%s", want, s)
		}
	}
	strict, err := busConfig("/tmp/x/bus.sock", DBusConfig{StrictRoot: true})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(strict), `<allow own="*"/>`) {
		t.Error("StrictRoot config still lets root own any name")
	}
	if _, err := busConfig("/tmp/x/bus.sock", DBusConfig{PolicyFiles: []string{dir + "/missing.conf"}}); err == nil {
		t.Error("a missing policy file was accepted")
	}
}

// deadPID returns the PID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	return p.Pid
}
