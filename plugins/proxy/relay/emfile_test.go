package relay

// Running out of file descriptors: the relay runs in a child process (this test binary
// re-executed) with a low RLIMIT_NOFILE, so the test process keeps its own limit. The
// parent fills the child's descriptor table with connections, checks that the failing
// accepts are counted and reported and that the accept loop backs off (few accept calls
// while the listener stays readable), then frees the descriptors and checks the proxy
// serves again.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sitelink/sitelink/plugins/sdk"
)

const emfileChildEnv = "SITELINK_RELAY_EMFILE_CHILD"

// emfileHeadroom is how many descriptors the child may open beyond those it has when it
// lowers its limit: about that many connections are accepted before EMFILE.
const emfileHeadroom = 24

// childStats is what the child reports on request.
type childStats struct {
	Attempts uint64 `json:"attempts"`
	Errors   uint64 `json:"errors"`
	Active   int64  `json:"active"`
	Limit    uint64 `json:"limit"`
}

// runEMFILEChild serves a cache listener under a low fd limit; it prints the listener's
// address, then answers every line on stdin with its stats, until stdin closes.
func runEMFILEChild() error {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	// The listener and the poller need a few more; the rest is for connections.
	rl.Cur = uint64(len(fds) + emfileHeadroom)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("setrlimit: %w", err)
	}
	s := New(Hooks{Log: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Append: func(context.Context, []sdk.LogRecord) (uint64, uint64, error) { return 1, 1, nil }})
	cfg, err := ParseConfig(json.RawMessage(`{"listeners":[{"name":"c","address":"127.0.0.1:0","mode":"cache","sniff_timeout":"10m"}]}`))
	if err != nil {
		return err
	}
	if err := s.Apply(cfg); err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		return err
	}
	fmt.Printf("addr %s\n", s.Addr("c"))
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		b, _ := json.Marshal(childStats{Attempts: s.AcceptAttempts(), Errors: s.AcceptErrors(), Active: s.ActiveConns(), Limit: rl.Cur})
		fmt.Printf("%s\n", b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.Stop(ctx)
}

type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func TestAcceptBacksOffWhenOutOfFDs(t *testing.T) {
	if os.Getenv(emfileChildEnv) == "1" {
		if err := runEMFILEChild(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAcceptBacksOffWhenOutOfFDs$", "-test.count=1")
	cmd.Env = append(os.Environ(), emfileChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedLog
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("child log:\n%s", logs.String())
		}
	})
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "addr ")
	if err != nil || !ok {
		t.Fatalf("child did not start: %q %v\n%s", line, err, logs.String())
	}
	stats := func() childStats {
		t.Helper()
		if _, err := io.WriteString(stdin, "stats\n"); err != nil {
			t.Fatalf("ask child: %v", err)
		}
		line, err := out.ReadString('\n')
		var st childStats
		if err != nil || json.Unmarshal([]byte(line), &st) != nil {
			t.Fatalf("child stats: %q %v\n%s", line, err, logs.String())
		}
		return st
	}
	waitUntil := func(what string, cond func(childStats) bool) childStats {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			st := stats()
			if cond(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %+v\n%s", what, st, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// More connections than the child can accept: the rest wait in the backlog, so the
	// listener stays readable and a loop without back-off would spin.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 2 * emfileHeadroom {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		conns = append(conns, c)
	}
	st0 := waitUntil("accept errors", func(st childStats) bool { return st.Errors >= 2 })
	if st0.Active == 0 || st0.Active >= int64(2*emfileHeadroom) {
		t.Fatalf("connections held when accepts fail: %+v", st0)
	}
	// Over a stalled period of 3 s, the back-off (5 ms doubling to 1 s) allows about a
	// dozen accept calls; a loop without back-off makes thousands.
	time.Sleep(3 * time.Second)
	st1 := stats()
	tries := st1.Attempts - st0.Attempts
	t.Logf("limit %d fds, %d connections held; accept calls in the 3 s stall: %d (errors %d -> %d)",
		st1.Limit, st1.Active, tries, st0.Errors, st1.Errors)
	if tries == 0 || st1.Errors-st0.Errors != tries {
		t.Fatalf("while out of fds every accept should fail and be counted: %d calls, errors %d -> %d", tries, st0.Errors, st1.Errors)
	}
	if tries > 20 {
		t.Fatalf("accept loop does not back off: %d accept calls in 3 s", tries)
	}
	if log := logs.String(); !strings.Contains(log, "accept failed; backing off") || !strings.Contains(log, "fd_exhausted=true") {
		t.Fatalf("fd exhaustion not reported in the log:\n%s", log)
	}

	// Free the descriptors: the proxy accepts again and serves.
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	waitUntil("connections released", func(st childStats) bool { return st.Active == 0 })
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "{\"after\":\"recovery\"}\n"); err != nil {
		t.Fatal(err)
	}
	ack, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(ack, `"acked":1`) {
		t.Fatalf("no acknowledgement after the fds were freed: %q %v\n%s", ack, err, logs.String())
	}
}
