package dbusapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sitelink/sitelink/daemon/admin"
	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/plugins/sdk"
)

// fakeBackend is an admin.Backend with a little daemon behind it: plugins with states, a
// role, a config file that Reload parses (lines "plugin NAME"; anything else is rejected
// with FILE:LINE:COL), and an event stream. It is safe for concurrent use.
type fakeBackend struct {
	mu          sync.Mutex
	status      api.Status
	configFile  string
	subscribers map[int]chan api.Event
	nextSub     int
	calls       []string
	audits      []fakeAudit
	statusCalls int
}

type fakeAudit struct {
	who  admin.Peer
	what string
}

var _ admin.Backend = (*fakeBackend)(nil)

// newFakeBackend returns a running daemon with plugins tunnel (running) and snat
// (failed), role BACKUP, configured from configFile (which Reload re-reads).
func newFakeBackend(configFile string) *fakeBackend {
	return &fakeBackend{
		configFile:  configFile,
		subscribers: map[int]chan api.Event{},
		status: api.Status{
			Version: "1.2.3-test", State: api.DaemonDegraded, Role: string(sdk.RoleBackup), PID: 4242,
			ConfigFile: configFile, LastReload: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC),
			Plugins: []api.PluginStatus{
				{Name: "tunnel", State: api.PluginRunning, Health: "ok", Actions: []api.ActionSpec{
					{Name: "switch", Mutating: true, Args: []api.ArgSpec{
						{Name: "peer", Type: "string", Required: true}, {Name: "force", Type: "bool"}}},
					{Name: "peers"},
					{Name: "broken"},
				}},
				{Name: "snat", State: api.PluginFailed, Health: "down", Actions: []api.ActionSpec{
					{Name: "tail", Streaming: true},
				}},
			},
		},
	}
}

// daemonState derives the daemon state from the plugins. The caller holds f.mu.
func (f *fakeBackend) daemonStateLocked() string {
	for _, p := range f.status.Plugins {
		if p.State != api.PluginRunning {
			return api.DaemonDegraded
		}
	}
	return api.DaemonRunning
}

func (f *fakeBackend) publishLocked(ev api.Event) {
	ev.Source, ev.Time = "sitelinkd", time.Now()
	for _, ch := range f.subscribers {
		select {
		case ch <- ev:
		default: // a slow subscriber loses events, like the real bus
		}
	}
}

// setPluginState changes a plugin's state (recording it before publishing the event,
// like the supervisor).
func (f *fakeBackend) setPluginState(name, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.status.Plugins {
		p := &f.status.Plugins[i]
		if p.Name == name && p.State != state {
			old := p.State
			p.State = state
			f.status.State = f.daemonStateLocked()
			f.publishLocked(api.Event{Type: sdk.EventPlugin, Attrs: map[string]string{"plugin": name, "state": state, "previous": old}})
		}
	}
}

// setRole changes the role and publishes a role event.
func (f *fakeBackend) setRole(role string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.status.Role
	f.status.Role = role
	f.publishLocked(api.Event{Type: sdk.EventRole, Attrs: map[string]string{"role": role, "previous": old}})
}

// setRoleQuietly changes the role without an event (the event comes late or is lost).
func (f *fakeBackend) setRoleQuietly(role string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status.Role = role
}

// publishRole publishes a role event without changing Status (the supervisor has not
// handled it yet).
func (f *fakeBackend) publishRole(role, previous string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.publishLocked(api.Event{Type: sdk.EventRole, Attrs: map[string]string{"role": role, "previous": previous}})
}

// statusCount returns how many times Status was called.
func (f *fakeBackend) statusCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.statusCalls
}

// subscribers returns the number of event subscribers.
func (f *fakeBackend) subscriberCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subscribers)
}

func (f *fakeBackend) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeBackend) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeBackend) auditList() []fakeAudit {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.audits)
}

func (f *fakeBackend) Status(context.Context) api.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statusCalls++
	st := f.status
	st.Plugins = slices.Clone(f.status.Plugins)
	return st
}

func (f *fakeBackend) Plugins(ctx context.Context) []api.PluginStatus { return f.Status(ctx).Plugins }

func (f *fakeBackend) Plugin(ctx context.Context, name string) (api.PluginStatus, error) {
	for _, p := range f.Status(ctx).Plugins {
		if p.Name == name {
			return p, nil
		}
	}
	return api.PluginStatus{}, fmt.Errorf("plugin %q: %w", name, admin.ErrNotFound)
}

func (f *fakeBackend) RestartPlugin(ctx context.Context, name string) error {
	if _, err := f.Plugin(ctx, name); err != nil {
		return err
	}
	f.record("restart %s", name)
	return nil
}

func (f *fakeBackend) EnablePlugin(context.Context, string) error  { return admin.ErrConflict }
func (f *fakeBackend) DisablePlugin(context.Context, string) error { return admin.ErrConflict }

// Reload parses the config file: "plugin NAME" lines, "#" comments and blank lines.
// Anything else rejects the whole file and keeps the running config.
func (f *fakeBackend) Reload(context.Context) (api.ReloadResult, error) {
	f.record("reload")
	data, err := os.ReadFile(f.configFile)
	if err != nil {
		return api.ReloadResult{}, fmt.Errorf("read config: %w", err)
	}
	var names, problems []string
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		col := len(line) - len(strings.TrimLeft(line, " \t")) + 1
		word, name, _ := strings.Cut(trimmed, " ")
		if word != "plugin" || strings.TrimSpace(name) == "" {
			problems = append(problems, fmt.Sprintf("%s:%d:%d: unknown directive %q", f.configFile, n, col, word))
			continue
		}
		names = append(names, strings.TrimSpace(name))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(problems) > 0 {
		ce := &admin.ConfigError{Errors: problems}
		f.status.ConfigError = ce.Error()
		return api.ReloadResult{}, fmt.Errorf("reload: %w", ce)
	}
	var res api.ReloadResult
	kept := f.status.Plugins[:0:0]
	for _, p := range f.status.Plugins {
		if slices.Contains(names, p.Name) {
			kept = append(kept, p)
			res.Unchanged = append(res.Unchanged, p.Name)
		} else {
			res.Removed = append(res.Removed, p.Name)
		}
	}
	f.status.Plugins = kept
	for _, n := range names {
		if !slices.ContainsFunc(kept, func(p api.PluginStatus) bool { return p.Name == n }) {
			f.status.Plugins = append(f.status.Plugins, api.PluginStatus{Name: n, State: api.PluginRunning})
			res.Added = append(res.Added, n)
		}
	}
	f.status.ConfigError = ""
	f.status.LastReload = time.Now().UTC()
	f.status.State = f.daemonStateLocked()
	return res, nil
}

func (f *fakeBackend) Config(context.Context) api.ConfigView {
	return api.ConfigView{File: f.configFile}
}

func (f *fakeBackend) CheckConfig(context.Context, []byte) api.ConfigCheck {
	return api.ConfigCheck{OK: true}
}

func (f *fakeBackend) Action(ctx context.Context, plugin, action string) (api.ActionSpec, error) {
	p, err := f.Plugin(ctx, plugin)
	if err != nil {
		return api.ActionSpec{}, err
	}
	for _, a := range p.Actions {
		if a.Name == action {
			return a, nil
		}
	}
	return api.ActionSpec{}, fmt.Errorf("plugin %s has no action %q: %w", plugin, action, admin.ErrNotFound)
}

// InvokeAction echoes its input as JSON; the action "broken" fails as if the plugin
// were gone.
func (f *fakeBackend) InvokeAction(_ context.Context, plugin, action string, args map[string]string) (json.RawMessage, error) {
	f.record("invoke %s %s", plugin, action)
	if action == "broken" {
		return nil, fmt.Errorf("plugin %s: %w", plugin, admin.ErrUnavailable)
	}
	return json.MarshalIndent(map[string]any{"plugin": plugin, "action": action, "args": args}, "", "  ")
}

func (f *fakeBackend) StreamAction(context.Context, string, string, map[string]string, func(json.RawMessage) error) error {
	return fmt.Errorf("streaming: %w", admin.ErrInvalidArgument)
}

// Events delivers published events of the given types until ctx ends.
func (f *fakeBackend) Events(ctx context.Context, types []string, emit func(api.Event) error) error {
	ch := make(chan api.Event, 64)
	f.mu.Lock()
	id := f.nextSub
	f.nextSub++
	f.subscribers[id] = ch
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.subscribers, id)
		f.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-ch:
			if len(types) > 0 && !slices.Contains(types, ev.Type) {
				continue
			}
			if err := emit(ev); err != nil {
				return err
			}
		}
	}
}

func (f *fakeBackend) Version() api.VersionInfo { return api.VersionInfo{Version: "1.2.3-test"} }

func (f *fakeBackend) Audit(_ context.Context, who admin.Peer, what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.audits = append(f.audits, fakeAudit{who, what})
}

// logRecorder is a slog.Handler that keeps every record (all levels).
type logRecorder struct {
	mu      *sync.Mutex
	records *[]slog.Record
}

func newLogRecorder() logRecorder {
	return logRecorder{mu: &sync.Mutex{}, records: &[]slog.Record{}}
}

func (l logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (l logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	*l.records = append(*l.records, r.Clone())
	return nil
}

func (l logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logRecorder) WithGroup(string) slog.Handler      { return l }

// count returns the number of records at level whose message contains substr.
func (l logRecorder) count(level slog.Level, substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range *l.records {
		if r.Level == level && strings.Contains(r.Message, substr) {
			n++
		}
	}
	return n
}

// levelCount returns the number of records at level.
func (l logRecorder) levelCount(level slog.Level) int { return l.count(level, "") }

// dump returns every record as text, for failure messages.
func (l logRecorder) dump() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, r := range *l.records {
		fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		})
		b.WriteByte('\n')
	}
	return b.String()
}
