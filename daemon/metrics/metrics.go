// Package metrics exports sitelinkd's Prometheus metrics — the daemon's own and every
// plugin's, merged with a `plugin` label — and the health answers (/healthz, /readyz)
// that tell "running" from "running but degraded".
package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"

	"github.com/sitelink/sitelink/daemon/api"
)

// Source is what the exporter reads from the daemon.
type Source interface {
	// Snapshot is every plugin's last observed status (no plugin calls).
	Snapshot() []api.PluginStatus
	// DaemonState is starting, running, degraded, reloading or stopping.
	DaemonState() string
	// Role is the HA role.
	Role() string
	// PluginMetrics returns the Prometheus text of each running plugin.
	PluginMetrics(ctx context.Context) map[string][]byte
}

// Exporter owns the daemon's registry and the plugin merge.
type Exporter struct {
	src     Source
	reg     *prometheus.Registry
	log     *slog.Logger
	timeout time.Duration

	reloads      *prometheus.CounterVec
	configErrors prometheus.Counter
}

// New registers the daemon's metrics.
func New(src Source, version, commit string, log *slog.Logger) *Exporter {
	e := &Exporter{src: src, reg: prometheus.NewRegistry(), log: log, timeout: 2 * time.Second}
	e.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "sitelink_build_info",
		Help:        "Build information of sitelinkd; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "commit": commit}})
	build.Set(1)
	e.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sitelink_config_reloads_total",
		Help: "Config reloads, by result (applied or rejected)."}, []string{"result"})
	e.configErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "sitelink_config_errors_total",
		Help: "Errors found in rejected configs."})
	e.reloads.WithLabelValues("applied")
	e.reloads.WithLabelValues("rejected")
	e.reg.MustRegister(build, e.reloads, e.configErrors, &stateCollector{src: src})
	return e
}

// Reloaded counts a reload: applied or rejected with n errors.
func (e *Exporter) Reloaded(applied bool, errors int) {
	if applied {
		e.reloads.WithLabelValues("applied").Inc()
		return
	}
	e.reloads.WithLabelValues("rejected").Inc()
	e.configErrors.Add(float64(errors))
}

var pluginStates = []string{api.PluginStarting, api.PluginRunning, api.PluginStandby, api.PluginBackoff,
	api.PluginFailed, api.PluginStopped, api.PluginDisabled}

var roles = []string{"MASTER", "BACKUP", "FAULT", "UNKNOWN"}

// stateCollector reports the supervisor's view at scrape time.
type stateCollector struct{ src Source }

var (
	descPluginState = prometheus.NewDesc("sitelink_plugin_state", "1 for the plugin's current state.", []string{"plugin", "state"}, nil)
	descPluginUp    = prometheus.NewDesc("sitelink_plugin_up", "1 when the plugin runs (or stands by for its role) and is healthy.", []string{"plugin"}, nil)
	descRestarts    = prometheus.NewDesc("sitelink_plugin_restarts_total", "Restarts of the plugin since sitelinkd started.", []string{"plugin"}, nil)
	descHealth      = prometheus.NewDesc("sitelink_plugin_healthy", "1 when the plugin reports health ok.", []string{"plugin"}, nil)
	descDaemon      = prometheus.NewDesc("sitelink_daemon_state", "1 for the daemon's current state.", []string{"state"}, nil)
	descRole        = prometheus.NewDesc("sitelink_role", "1 for the connector's current HA role.", []string{"role"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPluginState, descPluginUp, descRestarts, descHealth, descDaemon, descRole} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.src.Snapshot() {
		for _, st := range pluginStates {
			ch <- prometheus.MustNewConstMetric(descPluginState, prometheus.GaugeValue, b2f(p.State == st), p.Name, st)
		}
		up := (p.State == api.PluginRunning || p.State == api.PluginStandby) && p.Health != "down"
		ch <- prometheus.MustNewConstMetric(descPluginUp, prometheus.GaugeValue, b2f(up), p.Name)
		ch <- prometheus.MustNewConstMetric(descHealth, prometheus.GaugeValue, b2f(p.Health == "ok"), p.Name)
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(p.Restarts), p.Name)
	}
	state := c.src.DaemonState()
	for _, st := range []string{api.DaemonStarting, api.DaemonRunning, api.DaemonDegraded, api.DaemonReloading, api.DaemonStopping} {
		ch <- prometheus.MustNewConstMetric(descDaemon, prometheus.GaugeValue, b2f(st == state), st)
	}
	role := c.src.Role()
	for _, r := range roles {
		ch <- prometheus.MustNewConstMetric(descRole, prometheus.GaugeValue, b2f(r == role), r)
	}
}

// Gather returns the daemon's families merged with every plugin's (each plugin series
// gains plugin="NAME"). A plugin whose text cannot be parsed is skipped and logged.
func (e *Exporter) Gather(ctx context.Context) ([]*dto.MetricFamily, error) {
	own, err := e.reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather daemon metrics: %w", err)
	}
	byName := make(map[string]*dto.MetricFamily, len(own))
	for _, mf := range own {
		byName[mf.GetName()] = mf
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	texts := e.src.PluginMetrics(ctx)
	names := make([]string, 0, len(texts))
	for n := range texts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, plugin := range names {
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(bytes.NewReader(texts[plugin]))
		if err != nil {
			e.log.Warn("plugin metrics unreadable", "plugin", plugin, "error", err)
			continue
		}
		for name, mf := range fams {
			for _, m := range mf.Metric {
				m.Label = append(m.Label, &dto.LabelPair{Name: proto.String("plugin"), Value: proto.String(plugin)})
			}
			if have, ok := byName[name]; ok {
				if have.GetType() != mf.GetType() {
					e.log.Warn("plugin metric clashes with another of a different type", "plugin", plugin, "metric", name)
					continue
				}
				have.Metric = append(have.Metric, mf.Metric...)
				continue
			}
			byName[name] = mf
		}
	}
	out := make([]*dto.MetricFamily, 0, len(byName))
	for _, mf := range byName {
		out = append(out, mf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, nil
}

// MetricsHandler serves the merged metrics in the text exposition format.
func (e *Exporter) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fams, err := e.Gather(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		format := expfmt.NewFormat(expfmt.TypeTextPlain)
		w.Header().Set("Content-Type", string(format))
		enc := expfmt.NewEncoder(w, format)
		for _, mf := range fams {
			if err := enc.Encode(mf); err != nil {
				return
			}
		}
	})
}

// Health is the body of /healthz and /readyz.
type Health struct {
	Status  string   `json:"status"` // running, degraded, starting, reloading, stopping
	Reasons []string `json:"reasons,omitempty"`
}

func (e *Exporter) health() Health {
	h := Health{Status: e.src.DaemonState()}
	for _, p := range e.src.Snapshot() {
		switch {
		case p.State == api.PluginFailed || p.State == api.PluginBackoff:
			h.Reasons = append(h.Reasons, fmt.Sprintf("plugin %s is %s: %s", p.Name, p.State, p.LastExit))
		case p.State == api.PluginRunning && p.Health != "ok" && p.Health != "unknown":
			for _, r := range p.Reasons {
				h.Reasons = append(h.Reasons, fmt.Sprintf("plugin %s is %s: %s", p.Name, p.Health, r))
			}
			if len(p.Reasons) == 0 {
				h.Reasons = append(h.Reasons, fmt.Sprintf("plugin %s is %s", p.Name, p.Health))
			}
		}
	}
	return h
}

// HealthHandler answers /healthz: 200 while the daemon runs, degraded or not (the body
// says which and why), 503 while it starts or stops. /readyz (ready=true) answers 200
// only when it runs and nothing is degraded.
func (e *Exporter) HealthHandler(ready bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := e.health()
		code := http.StatusOK
		switch {
		case h.Status == api.DaemonRunning || h.Status == api.DaemonReloading:
		case h.Status == api.DaemonDegraded && !ready:
		default:
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(h)
	})
}
