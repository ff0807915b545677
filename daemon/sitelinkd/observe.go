package sitelinkd

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/sitelink/sitelink/daemon/admin"
	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/daemon/metrics"
)

// System is the metrics exporter's source.
var _ metrics.Source = (*System)(nil)

// Snapshot is every plugin's last observed status.
func (s *System) Snapshot() []api.PluginStatus { return s.sup.Snapshot() }

// DaemonState is the daemon's state.
func (s *System) DaemonState() string { return s.daemonState() }

// Role is the HA role.
func (s *System) Role() string { return string(s.sup.Role()) }

// PluginMetrics is each running plugin's metrics text.
func (s *System) PluginMetrics(ctx context.Context) map[string][]byte {
	return s.sup.PluginMetrics(ctx)
}

// serveObservability registers /metrics, /healthz and /readyz on the admin socket and,
// when configured, serves them on a TCP address too (loopback when no host is given).
func (s *System) serveObservability(ctx context.Context, srv *admin.Server, listen string) error {
	s.metrics = metrics.New(s, s.opts.Version.Version, s.opts.Version.Commit, s.log)
	srv.Handle("GET /metrics", s.metrics.MetricsHandler(), admin.AccessNone)
	srv.Handle("GET /healthz", s.metrics.HealthHandler(false), admin.AccessNone)
	srv.Handle("GET /readyz", s.metrics.HealthHandler(true), admin.AccessNone)
	if listen == "" {
		return nil
	}
	if strings.HasPrefix(listen, ":") {
		listen = "127.0.0.1" + listen
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	s.log.Info("serving metrics over TCP", "address", ln.Addr().String())
	go func() {
		if err := srv.ServeListener(ctx, ln); err != nil && ctx.Err() == nil {
			s.log.Error("metrics listener failed", "error", err)
		}
	}()
	return nil
}
