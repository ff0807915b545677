package main

// End to end: the real sitelinkd with the logcache and proxy plugins as child processes.
// Agents stream records into the proxy's cache listener; the proxy is killed with
// SIGKILL mid-ingest; every record the proxy acknowledged must be in the log cache.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/daemon/ctl"
	"github.com/sitelink/sitelink/testenv"
)

func moduleRoot(t *testing.T) string {
	wd, _ := os.Getwd()
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	t.Fatal("no go.mod above", wd)
	return ""
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestCacheModeSurvivesKill9(t *testing.T) {
	testenv.Require(t)
	if testing.Short() {
		t.Skip("builds the daemon")
	}
	dir, err := os.MkdirTemp("", "proxy-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	_ = os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "bin")
	root := moduleRoot(t)
	for out, pkg := range map[string]string{"sitelinkd": "./daemon/cmd/sitelinkd", "sitelinkctl": "./daemon/cmd/sitelinkctl",
		"plugins/logcache": "./plugins/logcache", "plugins/proxy": "./plugins/proxy"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, out), pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, b)
		}
	}
	for _, d := range []string{bin, filepath.Join(bin, "plugins")} {
		_ = os.Chmod(d, 0o755)
	}
	cache := filepath.Join(dir, "cache")
	if err := os.MkdirAll(cache, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(cache, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_ = os.MkdirAll(filepath.Join(dir, "plugins.d"), 0o755)
	port := freePort(t)
	socket := filepath.Join(dir, "admin.sock")
	cfg := fmt.Sprintf(`daemon:
  plugin_dir: %s
  plugins_d: %s
  state_dir: %s
  runtime_dir: %s
  socket: %s
  plugin_user: nobody
  health_interval: 300ms
  health_timeout: 200ms
  stop_timeout: 3s
  restart:
    max: 5
    window: 30s
    backoff_max: 1s
plugins:
  logcache:
    config:
      dir: %s
      max_bytes: 256MiB
      segment_bytes: 8MiB
      sync: always
  proxy:
    after: [logcache]
    config:
      listeners:
        - {name: cache, address: "127.0.0.1:%d", mode: cache}
`, filepath.Join(bin, "plugins"), filepath.Join(dir, "plugins.d"), filepath.Join(dir, "state"), filepath.Join(dir, "run"), socket, cache, port)
	config := filepath.Join(dir, "sitelink.yaml")
	if err := os.WriteFile(config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuf
	d := exec.Command(filepath.Join(bin, "sitelinkd"), "--config", config, "--log-format", "json")
	d.Stdout, d.Stderr = &logs, &logs
	d.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = d.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = d.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-d.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("sitelinkd log:\n%s", logs.String())
		}
	})
	client := ctl.NewClient(socket)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var proxyPID int
	if err := testenv.WaitFor(ctx, "proxy plugin running", func() (bool, error) {
		p, err := client.Plugin(ctx, "proxy")
		proxyPID = p.PID
		return err == nil && p.State == api.PluginRunning, nil
	}); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := testenv.WaitFor(ctx, "cache listener", func() (bool, error) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil, nil
	}); err != nil {
		t.Fatal(err)
	}

	// Agents: each sends numbered 512-byte records and counts the acknowledged ones.
	const agents = 8
	pad := strings.Repeat("x", 480)
	acked := make([]atomic.Int64, agents)
	var total atomic.Int64
	var wg sync.WaitGroup
	for i := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			go func() {
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					var ack struct {
						Acked int64 `json:"acked"`
					}
					if json.Unmarshal([]byte(line), &ack) == nil && ack.Acked > 0 {
						total.Add(ack.Acked - acked[i].Load())
						acked[i].Store(ack.Acked)
					}
				}
			}()
			w := bufio.NewWriter(c)
			for n := 0; ; n++ {
				fmt.Fprintf(w, "{\"id\":\"a%d-%d\",\"pad\":%q}\n", i, n, pad)
				if n%16 == 15 {
					if w.Flush() != nil {
						return
					}
				}
			}
		}()
	}
	if err := testenv.WaitFor(ctx, "records acknowledged", func() (bool, error) { return total.Load() >= 5000, nil }); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(proxyPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait() // every agent sees its connection die
	time.Sleep(100 * time.Millisecond)
	var ackedPer [agents]int64
	for i := range agents {
		ackedPer[i] = acked[i].Load()
	}
	t.Logf("acknowledged before the kill: %v (total %d)", ackedPer, total.Load())

	// The daemon restarts the proxy; the log cache has every acknowledged record.
	if err := testenv.WaitFor(ctx, "proxy restarted", func() (bool, error) {
		p, err := client.Plugin(ctx, "proxy")
		return err == nil && p.State == api.PluginRunning && p.PID != proxyPID, nil
	}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(bin, "sitelinkctl"), "--socket", socket, "logcache", "export", "--source", "proxy/*").CombinedOutput()
	if err != nil {
		t.Fatalf("export: %v\n%.2000s", err, out)
	}
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`a(\d+)-(\d+)`).FindAllString(string(out), -1) {
		seen[m] = true
	}
	missing := 0
	for i := range agents {
		for n := int64(0); n < ackedPer[i]; n++ {
			if !seen[fmt.Sprintf("a%d-%d", i, n)] {
				if missing < 5 {
					t.Errorf("acknowledged record a%d-%d is not in the log cache", i, n)
				}
				missing++
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d acknowledged records missing (cache holds %d)", missing, len(seen))
	}
	t.Logf("all %d acknowledged records are in the cache (%d records stored)", total.Load(), len(seen))
}
