package sitelinkd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/sitelink/sitelink/daemon/admin"
	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/daemon/config"
	"github.com/sitelink/sitelink/daemon/supervisor"
	"github.com/sitelink/sitelink/plugins/sdk"
)

// System is the admin socket's backend.
var _ admin.Backend = (*System)(nil)

// Status reports the daemon and every plugin.
func (s *System) Status(ctx context.Context) api.Status {
	s.mu.Lock()
	st := api.Status{Version: s.opts.Version.Version, PID: os.Getpid(), StartedAt: s.started,
		ConfigFile: s.cfg.Source, LastReload: s.lastReload, ConfigError: s.configErr}
	s.mu.Unlock()
	st.Plugins = s.sup.Status(ctx) // refreshes what the state and the line are made of
	st.State = s.daemonState()
	st.StatusLine = s.statusLine()
	st.Role = string(s.sup.Role())
	return st
}

// Plugins lists the plugins.
func (s *System) Plugins(ctx context.Context) []api.PluginStatus { return s.sup.Status(ctx) }

// Plugin shows one plugin.
func (s *System) Plugin(ctx context.Context, name string) (api.PluginStatus, error) {
	st, err := s.sup.PluginStatus(ctx, name)
	return st, mapErr(err)
}

// RestartPlugin restarts a plugin (also a failed one) and waits until it runs again (or
// fails), so the caller sees the new state.
func (s *System) RestartPlugin(ctx context.Context, name string) error {
	before, err := s.sup.PluginStatus(ctx, name)
	if err != nil {
		return mapErr(err)
	}
	if err := s.sup.Restart(name); err != nil {
		return mapErr(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return mapErr(s.sup.WaitFor(ctx, name, func(p api.PluginStatus) bool {
		switch p.State {
		case api.PluginRunning, api.PluginStandby:
			return p.PID != 0 && p.PID != before.PID
		case api.PluginFailed, api.PluginDisabled:
			return p.Since.After(before.Since)
		}
		return false
	}))
}

// EnablePlugin enables a plugin disabled with DisablePlugin; kept across restarts.
func (s *System) EnablePlugin(_ context.Context, name string) error {
	return s.setDisabled(name, false)
}

// DisablePlugin stops a plugin until enabled again; kept across restarts.
func (s *System) DisablePlugin(_ context.Context, name string) error {
	return s.setDisabled(name, true)
}

func (s *System) disabledPath() string {
	return filepath.Join(s.config().Daemon.StateDir, "disabled.json")
}

func (s *System) setDisabled(name string, disabled bool) error {
	if err := s.sup.SetDisabled(name, disabled); err != nil {
		return mapErr(err)
	}
	set := s.loadDisabled()
	if disabled {
		set[name] = true
	} else {
		delete(set, name)
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	b, _ := json.Marshal(names)
	tmp := s.disabledPath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return fmt.Errorf("save disabled plugins: %w", err)
	}
	if err := os.Rename(tmp, s.disabledPath()); err != nil {
		return fmt.Errorf("save disabled plugins: %w", err)
	}
	return nil
}

func (s *System) loadDisabled() map[string]bool {
	set := map[string]bool{}
	b, err := os.ReadFile(s.disabledPath())
	if err != nil {
		return set
	}
	var names []string
	if json.Unmarshal(b, &names) != nil {
		s.log.Warn("ignoring unreadable disabled-plugins file", "path", s.disabledPath())
		return set
	}
	for _, n := range names {
		set[n] = true
	}
	return set
}

// Reload reloads the config file (admin API and D-Bus).
func (s *System) Reload(ctx context.Context) (api.ReloadResult, error) {
	res, err := s.reloadConfig(ctx)
	return res, mapErr(err)
}

// Config shows the effective config.
func (s *System) Config(context.Context) api.ConfigView {
	cfg := s.config()
	b, err := cfg.Marshal()
	if err != nil {
		return api.ConfigView{File: cfg.Source, YAML: "# cannot render: " + err.Error()}
	}
	return api.ConfigView{File: cfg.Source, YAML: string(b)}
}

// CheckConfig checks a config text as a reload would, without applying it.
func (s *System) CheckConfig(ctx context.Context, yaml []byte) api.ConfigCheck {
	file := s.config().Source
	cfg, err := config.Parse(file, yaml)
	if err == nil {
		var want []supervisor.Spec
		var manifests []config.Manifest
		if manifests, err = config.LoadManifests(cfg.Daemon.PluginsD); err == nil {
			if want, err = specs(cfg, manifests); err == nil {
				err = s.validate(ctx, cfg, want)
			}
		}
	}
	if err != nil {
		return api.ConfigCheck{Errors: errorLines(err)}
	}
	return api.ConfigCheck{OK: true}
}

// Action finds an action's spec.
func (s *System) Action(_ context.Context, plugin, action string) (api.ActionSpec, error) {
	a, err := s.sup.Action(plugin, action)
	return a, mapErr(err)
}

// InvokeAction runs a plugin action.
func (s *System) InvokeAction(ctx context.Context, plugin, action string, args map[string]string) (json.RawMessage, error) {
	c, err := s.sup.Client(plugin)
	if err != nil {
		return nil, mapErr(err)
	}
	b, err := c.InvokeAction(ctx, action, args)
	return b, mapErr(err)
}

// StreamAction runs a streaming plugin action.
func (s *System) StreamAction(ctx context.Context, plugin, action string, args map[string]string, emit func(json.RawMessage) error) error {
	c, err := s.sup.Client(plugin)
	if err != nil {
		return mapErr(err)
	}
	return mapErr(c.StreamAction(ctx, action, args, func(b []byte) error { return emit(b) }))
}

// Events streams bus events.
func (s *System) Events(ctx context.Context, types []string, emit func(api.Event) error) error {
	for ev := range s.bus.Subscribe(ctx, types...) {
		if err := emit(api.Event{Type: ev.Type, Source: ev.Source, Time: ev.Time, Attrs: ev.Attrs, Message: ev.Message, Data: ev.Data}); err != nil {
			return err
		}
	}
	return nil
}

// Version reports build information.
func (s *System) Version() api.VersionInfo {
	return api.VersionInfo{Version: s.opts.Version.Version, Commit: s.opts.Version.Commit, BuildDate: s.opts.Version.Date,
		GoVersion: runtime.Version(), APIVersion: api.Version, PluginAPIVersions: []int{sdk.APIVersion}}
}

// Audit records an accepted admin change in the log and on the bus (the log cache keeps
// the bus's audit events).
func (s *System) Audit(_ context.Context, who admin.Peer, what string) {
	s.log.Info("admin: "+what, "event", "audit", "uid", who.UID, "pid", who.PID)
	s.bus.Publish(sdk.Event{Type: sdk.EventAudit, Source: "sitelinkd",
		Attrs:   map[string]string{"action": what, "uid": fmt.Sprint(who.UID)},
		Message: fmt.Sprintf("uid %d: %s", who.UID, what)})
}

// mapErr turns supervisor and plugin errors into the admin package's sentinels.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var ce *sdk.CallError
	switch {
	case errors.Is(err, supervisor.ErrNotFound):
		return fmt.Errorf("%w: %v", admin.ErrNotFound, err)
	case errors.Is(err, supervisor.ErrNotRunning), errors.Is(err, sdk.ErrPluginGone):
		return fmt.Errorf("%w: %v", admin.ErrUnavailable, err)
	case errors.As(err, &ce) && ce.Code == codes.InvalidArgument:
		return fmt.Errorf("%w: %v", admin.ErrInvalidArgument, err)
	case errors.As(err, &ce) && ce.Code == codes.NotFound:
		return fmt.Errorf("%w: %v", admin.ErrNotFound, err)
	}
	var cfgErr *config.Errors
	if errors.As(err, &cfgErr) {
		return &admin.ConfigError{Errors: errorLines(err)}
	}
	return err
}

// errorLines splits a config error into its FILE:LINE:COL lines.
func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	var ce *config.Errors
	if errors.As(err, &ce) {
		out := make([]string, 0, len(*ce))
		for _, e := range *ce {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}
