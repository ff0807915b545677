package sitelinkd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/testenv"
)

func logcacheConfig(dir, sync string) string {
	return fmt.Sprintf(`  logcache:
    config:
      dir: %s
      max_bytes: 64MiB
      segment_bytes: 4MiB
      sync: %s
  alpha:
    binary: %s
    after: [logcache]
`, filepath.Join(dir, "cache"), sync, bins.testplugin)
}

// TestLogCacheThroughDaemon: another plugin appends over the host service, the records
// and the audit trail can be read with sitelinkctl, and tail -f follows like journalctl -f.
func TestLogCacheThroughDaemon(t *testing.T) {
	s := newSite(t)
	makeCacheDir(t, s.dir)
	s.writeConfig(logcacheConfig(s.dir, "always"))
	s.start()
	var seqs map[string]uint64
	if err := s.action("alpha", "log", map[string]string{"text": "hello cache"}, &seqs); err != nil {
		t.Fatal(err)
	}
	if seqs["first"] == 0 || seqs["last"] != seqs["first"] {
		t.Fatalf("append acknowledged seqs %v", seqs)
	}
	out, code := s.sitelinkctl("logcache", "tail", "--lines", "50", "--json")
	if code != 0 || !strings.Contains(out, `"hello cache"`) {
		t.Fatalf("tail: exit %d\n%s", code, out)
	}

	// tail -f prints records as they come.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	follow := exec.CommandContext(ctx, bins.sitelinkctl, "--socket", s.socket, "logcache", "tail", "-f", "--lines", "0", "--source", "test")
	var buf lockedBuffer
	follow.Stdout, follow.Stderr = &buf, &buf
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = follow.Process.Kill(); _ = follow.Wait() }()
	err := testenv.WaitFor(ctx, "tail -f prints a new record", func() (bool, error) {
		if err := s.action("alpha", "log", map[string]string{"text": "live line"}, nil); err != nil {
			return false, err
		}
		return strings.Contains(buf.String(), "live line"), nil
	})
	if err != nil {
		t.Fatalf("%v\noutput: %s", err, buf.String())
	}

	// A plugin restart lands in the audit trail, in order, with timestamps.
	pid := s.plugin("alpha").PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.waitPlugin("alpha", "restarted", func(p api.PluginStatus) bool { return p.State == api.PluginRunning && p.PID != pid })
	err = testenv.WaitFor(ctx, "restart in the audit trail", func() (bool, error) {
		out, _ := s.sitelinkctl("logcache", "tail", "--source", "audit", "--lines", "100", "--json")
		var last time.Time
		sawBackoff := false
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var it struct {
				Time time.Time       `json:"time"`
				Data json.RawMessage `json:"data"`
			}
			if json.Unmarshal([]byte(line), &it) != nil {
				continue
			}
			if it.Time.Before(last) {
				return false, fmt.Errorf("audit records out of order: %s", out)
			}
			last = it.Time
			if strings.Contains(string(it.Data), `"plugin":"alpha"`) && strings.Contains(string(it.Data), `"state":"backoff"`) {
				sawBackoff = true
			}
			if sawBackoff && strings.Contains(string(it.Data), `"plugin":"alpha"`) && strings.Contains(string(it.Data), `"state":"running"`) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkLogCacheThroughPlugin: records of 256 bytes appended by another plugin
// process over the SDK host service (plugin → sitelinkd → logcache), sync: interval.
// Goal ≥ 300,000 records/s.
func BenchmarkLogCacheThroughPlugin(b *testing.B) {
	requireRootB(b)
	s := newBenchSite(b, logcacheConfig)
	c := clientFor(s)
	var total float64
	for i := 0; i < b.N; i++ {
		raw, err := c.Action(context.Background(), "alpha", "flood", map[string]string{"n": "500000", "size": "256", "batch": "1000"}, nil)
		if err != nil {
			b.Fatal(err)
		}
		var res struct {
			Rate float64 `json:"records_per_second"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			b.Fatal(err)
		}
		total += res.Rate
	}
	b.ReportMetric(total/float64(b.N), "records/s")
}

// makeCacheDir makes the cache directory the package would: owned by the plugin user.
func makeCacheDir(t testing.TB, dir string) {
	t.Helper()
	d := filepath.Join(dir, "cache")
	if err := os.MkdirAll(d, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, 65534, 65534); err != nil {
		t.Fatal(err)
	}
}
