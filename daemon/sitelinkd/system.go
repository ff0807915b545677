package sitelinkd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sitelink/sitelink/daemon/admin"
	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/daemon/config"
	"github.com/sitelink/sitelink/daemon/dbusapi"
	"github.com/sitelink/sitelink/daemon/eventbus"
	"github.com/sitelink/sitelink/daemon/logging"
	"github.com/sitelink/sitelink/daemon/metrics"
	"github.com/sitelink/sitelink/daemon/supervisor"
	"github.com/sitelink/sitelink/plugins/sdk"
)

// Options are the command line's choices.
type Options struct {
	ConfigPath string
	// SocketPath overrides the config's admin socket when not empty.
	SocketPath string
	// LogFormat overrides the config's log format when not empty.
	LogFormat string
	Version   VersionInfo
	// Self is the sitelinkd executable (the plugin launcher).
	Self string
	// DBusAddress is the bus to serve on ("" = the system bus).
	DBusAddress string
}

// VersionInfo is stamped at build time.
type VersionInfo struct {
	Version, Commit, Date string
}

// System holds the daemon's long-lived parts.
type System struct {
	opts    Options
	log     *slog.Logger
	logCtl  *logging.Logger
	bus     *eventbus.Bus
	sup     *supervisor.Supervisor
	schemas *config.SchemaCache
	notify  *notifier
	metrics *metrics.Exporter
	started time.Time

	mu         sync.Mutex
	cfg        *config.Config
	manifests  []config.Manifest
	state      string
	lastReload time.Time
	configErr  string
	reloadMu   sync.Mutex // one reload at a time
}

// Run runs the daemon until ctx ends or SIGTERM/SIGINT, reloading on SIGHUP.
func Run(ctx context.Context, opts Options) error {
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return err
	}
	logCtl, err := newLogger(cfg, opts)
	if err != nil {
		return err
	}
	s := &System{opts: opts, log: logCtl.Logger, logCtl: logCtl, bus: eventbus.New(), schemas: config.NewSchemaCache(),
		notify: newNotifier(logCtl.Logger), started: time.Now(), cfg: cfg, state: api.DaemonStarting}
	return s.run(ctx)
}

func (s *System) run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg := s.config()
	s.log.Info("sitelinkd starting", "version", s.opts.Version.Version, "config", cfg.Source, "pid", os.Getpid())
	if killed, err := supervisor.ReapLeftovers(cfg.Daemon.RuntimeDir); err != nil {
		s.log.Warn("could not stop every leftover plugin of a previous daemon", "error", err)
	} else {
		for _, r := range killed {
			s.log.Warn("stopped a plugin left running by a previous daemon", "event", "leftover", "plugin", r.Plugin, "pid", r.PID)
		}
	}
	manifests, err := config.LoadManifests(cfg.Daemon.PluginsD)
	if err != nil {
		return err
	}
	s.manifests = manifests
	sup, err := supervisor.New(ctx, supervisor.Options{
		Self: s.opts.Self, HostVersion: s.opts.Version.Version,
		StateDir: cfg.Daemon.StateDir, RuntimeDir: cfg.Daemon.RuntimeDir, PluginUser: cfg.Daemon.PluginUser,
		HealthInterval: cfg.Daemon.HealthInterval, HealthTimeout: cfg.Daemon.HealthTimeout,
		StopTimeout: cfg.Daemon.StopTimeout,
		Restart: supervisor.RestartPolicy{Max: cfg.Daemon.Restart.Max, Window: cfg.Daemon.Restart.Window,
			BackoffMax: cfg.Daemon.Restart.BackoffMax},
		Logger: s.log, Bus: s.bus,
	})
	if err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	s.sup = sup
	for name := range s.loadDisabled() {
		_ = sup.SetDisabled(name, true)
	}
	want, err := specs(cfg, manifests)
	if err != nil {
		return err
	}
	if err := s.validate(ctx, cfg, want); err != nil {
		return err
	}
	socket := cfg.Daemon.Socket
	if s.opts.SocketPath != "" {
		socket = s.opts.SocketPath
	}
	srv := admin.New(s, admin.Options{SocketPath: socket, Logger: s.log})
	if err := srv.Listen(); err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if err := s.serveObservability(ctx, srv, cfg.Daemon.MetricsListen); err != nil {
		return err
	}
	go s.serveDBus(ctx)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ctx) }()

	go s.followStatus(ctx)
	loopPing := make(chan chan struct{})
	go s.watchdog(ctx, loopPing)
	hang := testHang()
	if err := sup.Apply(ctx, want); err != nil {
		s.log.Error("applying the plugin set", "error", err)
	}
	s.mu.Lock()
	s.lastReload = time.Now()
	s.mu.Unlock()
	go func() {
		if err := sup.WaitReady(ctx); err == nil {
			s.setState(api.DaemonRunning)
			s.log.Info("sitelinkd ready", "event", "ready", "plugins", len(want), "startup", time.Since(s.started).Round(time.Millisecond).String())
			s.notify.ready(s.statusLine())
		}
	}()

	for {
		select {
		case reply := <-loopPing:
			close(reply)
		case <-hang:
			s.log.Warn("test hook: blocking the main loop forever", "event", "test_hang")
			select {}
		case <-hup:
			if _, err := s.reloadConfig(ctx); err != nil {
				s.log.Error("reload rejected; the previous config stays in force", "event", "reload", "error", err)
			}
		case err := <-serveErr:
			if err != nil && ctx.Err() == nil {
				s.log.Error("admin socket failed", "error", err)
			}
			serveErr = nil
		case <-ctx.Done():
			s.setState(api.DaemonStopping)
			s.notify.stopping()
			s.log.Info("sitelinkd stopping", "event", "stopping")
			sctx, cancel := context.WithTimeout(context.Background(), cfg.Daemon.StopTimeout+5*time.Second)
			sup.Stop(sctx)
			cancel()
			s.log.Info("sitelinkd stopped", "event", "stopped")
			return nil
		}
	}
}

func (s *System) config() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

func (s *System) setState(st string) {
	s.mu.Lock()
	s.state = st
	s.mu.Unlock()
}

// reloadConfig reads the config file again and applies what changed. A bad config is
// rejected whole and the running one stays.
func (s *System) reloadConfig(ctx context.Context) (api.ReloadResult, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.config()
	s.notify.reloading()
	defer func() { s.notify.ready(s.statusLine()) }()
	res, err := s.reload(ctx, old)
	if s.metrics != nil {
		s.metrics.Reloaded(err == nil, len(errorLines(err)))
	}
	if err != nil {
		s.mu.Lock()
		s.configErr = err.Error()
		s.mu.Unlock()
		s.bus.Publish(sdk.Event{Type: sdk.EventAudit, Source: "sitelinkd", Attrs: map[string]string{"action": "reload", "result": "rejected"},
			Message: "config reload rejected: " + firstLine(err.Error())})
		return res, err
	}
	s.bus.Publish(sdk.Event{Type: sdk.EventAudit, Source: "sitelinkd", Attrs: map[string]string{"action": "reload", "result": "applied"},
		Message: fmt.Sprintf("config reloaded: added %v, removed %v, changed %v", res.Added, res.Removed, res.Changed)})
	return res, nil
}

func (s *System) reload(ctx context.Context, old *config.Config) (api.ReloadResult, error) {
	cfg, err := config.Load(old.Source)
	if err != nil {
		return api.ReloadResult{}, err
	}
	manifests, err := config.LoadManifests(cfg.Daemon.PluginsD)
	if err != nil {
		return api.ReloadResult{}, err
	}
	want, err := specs(cfg, manifests)
	if err != nil {
		return api.ReloadResult{}, err
	}
	if err := s.validate(ctx, cfg, want); err != nil {
		return api.ReloadResult{}, err
	}
	ch := config.Diff(old, cfg)
	res := api.ReloadResult{Added: ch.Added, Removed: ch.Removed, Changed: ch.Changed, Unchanged: ch.Unchanged, DaemonChanged: ch.DaemonKeys}
	s.logCtl.SetLevel(cfg.Daemon.LogLevel)
	if err := s.sup.Apply(ctx, want); err != nil {
		s.log.Warn("reload applied with errors", "error", err)
	}
	s.mu.Lock()
	s.cfg = cfg
	s.manifests = manifests
	s.lastReload = time.Now()
	s.configErr = ""
	s.mu.Unlock()
	s.log.Info("config reloaded", "event", "reload", "added", res.Added, "removed", res.Removed, "changed", res.Changed,
		"needs_restart", res.DaemonChanged)
	return res, nil
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// statusLine is the one line systemd and `sitelinkctl status` show, e.g.
// "5/5 plugins running; role MASTER; tunnel up (gw-a)".
func (s *System) statusLine() string {
	if s.sup == nil {
		return "starting"
	}
	plugins := s.sup.Snapshot()
	running, enabled := 0, 0
	var failed []string
	var summaries []string
	for _, p := range plugins {
		if p.State == api.PluginDisabled {
			continue
		}
		enabled++
		switch p.State {
		case api.PluginRunning, api.PluginStandby:
			running++
		case api.PluginFailed:
			failed = append(failed, p.Name)
		}
		if p.Summary != "" && p.State == api.PluginRunning {
			summaries = append(summaries, p.Summary)
		}
	}
	parts := []string{fmt.Sprintf("%d/%d plugins running", running, enabled)}
	if role := s.sup.Role(); role != sdk.RoleUnknown {
		parts = append(parts, "role "+string(role))
	}
	if len(failed) > 0 {
		parts = append(parts, "failed: "+strings.Join(failed, ","))
	}
	parts = append(parts, summaries...)
	return strings.Join(parts, "; ")
}

// followStatus keeps systemd's STATUS= line current.
func (s *System) followStatus(ctx context.Context) {
	events := s.bus.Subscribe(ctx, sdk.EventPlugin, sdk.EventRole, sdk.EventTunnel)
	last := ""
	for range events {
		if line := s.statusLine(); line != last {
			s.notify.status(line)
			last = line
		}
	}
}

// daemonState derives running/degraded from the plugins.
func (s *System) daemonState() string {
	s.mu.Lock()
	st := s.state
	s.mu.Unlock()
	if st != api.DaemonRunning || s.sup == nil {
		return st
	}
	for _, p := range s.sup.Snapshot() {
		if p.State == api.PluginFailed || p.State == api.PluginBackoff ||
			(p.State == api.PluginRunning && p.Health != string(sdk.HealthOK) && p.Health != string(sdk.HealthUnknown)) {
			return api.DaemonDegraded
		}
	}
	return st
}

// newLogger builds the daemon's logger: the command line's format wins over the config's.
func newLogger(cfg *config.Config, opts Options) (*logging.Logger, error) {
	format := cfg.Daemon.LogFormat
	if opts.LogFormat != "" {
		format = opts.LogFormat
	}
	return logging.Stderr(format, cfg.Daemon.LogLevel)
}

// serveDBus offers the daemon on the system bus; without a bus it warns once and keeps
// trying (the dbusapi package reconnects by itself).
func (s *System) serveDBus(ctx context.Context) {
	if err := dbusapi.Serve(ctx, s, dbusapi.Options{Address: s.opts.DBusAddress, Logger: s.log}); err != nil {
		s.log.Error("D-Bus service not available", "error", err)
	}
}
