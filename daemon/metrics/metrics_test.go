package metrics

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sitelink/sitelink/daemon/api"
)

type fakeSource struct {
	plugins []api.PluginStatus
	state   string
	texts   map[string][]byte
}

func (f *fakeSource) Snapshot() []api.PluginStatus { return f.plugins }
func (f *fakeSource) DaemonState() string          { return f.state }
func (f *fakeSource) Role() string                 { return "MASTER" }
func (f *fakeSource) PluginMetrics(context.Context) map[string][]byte {
	return f.texts
}

func scrape(t *testing.T, h http.Handler) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func TestMergedMetrics(t *testing.T) {
	src := &fakeSource{
		state: api.DaemonRunning,
		plugins: []api.PluginStatus{
			{Name: "tunnel", State: api.PluginRunning, Health: "ok", Restarts: 2},
			{Name: "snat", State: api.PluginFailed, Health: "unknown"},
		},
		texts: map[string][]byte{
			"tunnel": []byte("# HELP tunnel_bytes_total Bytes.\n# TYPE tunnel_bytes_total counter\ntunnel_bytes_total{dir=\"in\"} 42\n" +
				"# HELP process_resident_memory_bytes RSS.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 1e+07\n"),
			"snat": []byte("garbage {{{\n"),
		},
	}
	e := New(src, "1.2.3", "abc", slog.New(slog.NewTextHandler(io.Discard, nil)))
	e.Reloaded(true, 0)
	e.Reloaded(false, 3)
	code, body := scrape(t, e.MetricsHandler())
	if code != 200 {
		t.Fatalf("code %d", code)
	}
	for _, want := range []string{
		`sitelink_build_info{commit="abc",version="1.2.3"} 1`,
		`sitelink_plugin_state{plugin="tunnel",state="running"} 1`,
		`sitelink_plugin_state{plugin="snat",state="failed"} 1`,
		`sitelink_plugin_up{plugin="snat"} 0`,
		`sitelink_plugin_restarts_total{plugin="tunnel"} 2`,
		`sitelink_config_reloads_total{result="rejected"} 1`,
		`sitelink_config_errors_total 3`,
		`sitelink_role{role="MASTER"} 1`,
		`tunnel_bytes_total{dir="in",plugin="tunnel"} 42`,
		`process_resident_memory_bytes{plugin="tunnel"} 1e+07`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The output must parse as one valid exposition (families merged, no duplicates).
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("merged exposition does not parse: %v", err)
	}
	if n := len(fams["process_resident_memory_bytes"].GetMetric()); n != 2 {
		t.Fatalf("process_resident_memory_bytes has %d series, want the daemon's and the plugin's", n)
	}
	if t.Failed() {
		t.Log(body)
	}
}

func TestHealth(t *testing.T) {
	src := &fakeSource{state: api.DaemonRunning, plugins: []api.PluginStatus{{Name: "a", State: api.PluginRunning, Health: "ok"}}}
	e := New(src, "v", "c", slog.New(slog.NewTextHandler(io.Discard, nil)))
	check := func(ready bool, wantCode int, wantStatus string) Health {
		t.Helper()
		code, body := scrape(t, e.HealthHandler(ready))
		var h Health
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			t.Fatal(err)
		}
		if code != wantCode || h.Status != wantStatus {
			t.Fatalf("ready=%v: %d %+v, want %d %s", ready, code, h, wantCode, wantStatus)
		}
		return h
	}
	check(false, 200, "running")
	check(true, 200, "running")
	src.state = api.DaemonDegraded
	src.plugins = append(src.plugins, api.PluginStatus{Name: "tunnel", State: api.PluginRunning, Health: "degraded", Reasons: []string{"gateway gw-a down"}})
	h := check(false, 200, "degraded")
	if len(h.Reasons) != 1 || !strings.Contains(h.Reasons[0], "gw-a") {
		t.Fatalf("reasons %v", h.Reasons)
	}
	check(true, 503, "degraded")
	src.state = api.DaemonStarting
	check(false, 503, "starting")
}
