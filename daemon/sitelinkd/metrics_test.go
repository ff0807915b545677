package sitelinkd_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sitelink/sitelink/daemon/api"
)

// TestMetricsAndHealth: /metrics merges the daemon's and the plugins' metrics, on the
// admin socket and on the optional TCP listener; /healthz and /readyz tell running from
// degraded.
func TestMetricsAndHealth(t *testing.T) {
	s := newSite(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := strings.Replace(s.daemonSection(), "  plugin_user: nobody\n", fmt.Sprintf("  plugin_user: nobody\n  metrics_listen: %q\n", addr), 1)
	plugins := "plugins:\n  alpha:\n    binary: " + bins.testplugin + "\n  broken:\n    binary: " + bins.testplugin + "\n    required: false\n    config:\n      crash_on_start: true\n"
	if err := writeFile(s.config, cfg+plugins); err != nil {
		t.Fatal(err)
	}
	s.start()
	unix := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", s.socket)
	}}, Timeout: 10 * time.Second}
	get := func(c *http.Client, url string) (int, string) {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	s.waitPlugin("broken", "failed", func(p api.PluginStatus) bool { return p.State == api.PluginFailed })
	for _, c := range []struct {
		client *http.Client
		base   string
	}{{unix, "http://sitelinkd"}, {&http.Client{Timeout: 10 * time.Second}, "http://" + addr}} {
		code, body := get(c.client, c.base+"/metrics")
		for _, want := range []string{`sitelink_plugin_state{plugin="broken",state="failed"} 1`, `sitelink_plugin_up{plugin="alpha"} 1`,
			`process_resident_memory_bytes{plugin="alpha"}`, `sitelink_build_info{`} {
			if code != 200 || !strings.Contains(body, want) {
				t.Errorf("%s/metrics: %d, lacks %s", c.base, code, want)
			}
		}
		if code, body := get(c.client, c.base+"/healthz"); code != 200 || !strings.Contains(body, `"degraded"`) || !strings.Contains(body, "broken") {
			t.Errorf("%s/healthz = %d %s, want 200 degraded naming the failed plugin", c.base, code, body)
		}
		if code, _ := get(c.client, c.base+"/readyz"); code != 503 {
			t.Errorf("%s/readyz = %d, want 503 while degraded", c.base, code)
		}
	}
	// The TCP listener serves nothing else.
	if code, _ := get(&http.Client{Timeout: 10 * time.Second}, "http://"+addr+"/v1/status"); code == 200 {
		t.Error("the metrics listener answers /v1/status")
	}
}

func writeFile(path, text string) error { return os.WriteFile(path, []byte(text), 0o644) }
