// Package admintest provides a fake admin.Backend and a helper that serves it on a unix
// socket in a test's temporary directory, for tests of the admin server and of clients
// (sitelinkctl).
package admintest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sitelink/sitelink/daemon/admin"
	"github.com/sitelink/sitelink/daemon/api"
)

// Backend is a configurable fake admin.Backend. Set the fields before serving; the
// recorded calls and audits are read with Calls and Audits.
type Backend struct {
	StatusValue  api.Status
	PluginValues []api.PluginStatus
	ReloadResult api.ReloadResult
	ReloadErr    error
	ConfigValue  api.ConfigView
	VersionValue api.VersionInfo
	// OpErr, when set, is returned by RestartPlugin, EnablePlugin and DisablePlugin.
	OpErr error
	// Check answers CheckConfig (default: OK).
	Check func(yaml []byte) api.ConfigCheck
	// Invoke answers InvokeAction (default: {"plugin":…,"action":…,"args":…}).
	Invoke func(ctx context.Context, plugin, action string, args map[string]string) (json.RawMessage, error)
	// Stream answers StreamAction (default: no items).
	Stream func(ctx context.Context, plugin, action string, args map[string]string, emit func(json.RawMessage) error) error
	// EventsFunc answers Events (default: wait for ctx).
	EventsFunc func(ctx context.Context, types []string, emit func(api.Event) error) error

	mu     sync.Mutex
	calls  []string
	audits []Audit
}

// Audit is one recorded Backend.Audit call.
type Audit struct {
	Who  admin.Peer
	What string
}

var _ admin.Backend = (*Backend)(nil)

func (b *Backend) record(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, fmt.Sprintf(format, args...))
}

// Calls returns the backend methods called so far that change things or run actions,
// like "restart tunnel", "reload", "invoke tunnel switch".
func (b *Backend) Calls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// Audits returns the recorded audits.
func (b *Backend) Audits() []Audit {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.audits)
}

// Status implements admin.Backend.
func (b *Backend) Status(context.Context) api.Status {
	st := b.StatusValue
	st.Plugins = b.PluginValues
	return st
}

// Plugins implements admin.Backend.
func (b *Backend) Plugins(context.Context) []api.PluginStatus { return b.PluginValues }

// Plugin implements admin.Backend.
func (b *Backend) Plugin(_ context.Context, name string) (api.PluginStatus, error) {
	for _, p := range b.PluginValues {
		if p.Name == name {
			return p, nil
		}
	}
	return api.PluginStatus{}, fmt.Errorf("plugin %q: %w", name, admin.ErrNotFound)
}

func (b *Backend) op(verb, name string) error {
	if _, err := b.Plugin(context.Background(), name); err != nil {
		return err
	}
	b.record("%s %s", verb, name)
	return b.OpErr
}

// RestartPlugin implements admin.Backend.
func (b *Backend) RestartPlugin(_ context.Context, name string) error { return b.op("restart", name) }

// EnablePlugin implements admin.Backend.
func (b *Backend) EnablePlugin(_ context.Context, name string) error { return b.op("enable", name) }

// DisablePlugin implements admin.Backend.
func (b *Backend) DisablePlugin(_ context.Context, name string) error { return b.op("disable", name) }

// Reload implements admin.Backend.
func (b *Backend) Reload(context.Context) (api.ReloadResult, error) {
	b.record("reload")
	return b.ReloadResult, b.ReloadErr
}

// Config implements admin.Backend.
func (b *Backend) Config(context.Context) api.ConfigView { return b.ConfigValue }

// CheckConfig implements admin.Backend.
func (b *Backend) CheckConfig(_ context.Context, yaml []byte) api.ConfigCheck {
	if yaml == nil {
		b.record("check (daemon file)")
	} else {
		b.record("check %d bytes", len(yaml))
	}
	if b.Check != nil {
		return b.Check(yaml)
	}
	return api.ConfigCheck{OK: true}
}

// Action implements admin.Backend from the Actions of PluginValues.
func (b *Backend) Action(ctx context.Context, plugin, action string) (api.ActionSpec, error) {
	p, err := b.Plugin(ctx, plugin)
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

// InvokeAction implements admin.Backend.
func (b *Backend) InvokeAction(ctx context.Context, plugin, action string, args map[string]string) (json.RawMessage, error) {
	b.record("invoke %s %s", plugin, action)
	if b.Invoke != nil {
		return b.Invoke(ctx, plugin, action, args)
	}
	return json.Marshal(map[string]any{"plugin": plugin, "action": action, "args": args})
}

// StreamAction implements admin.Backend.
func (b *Backend) StreamAction(ctx context.Context, plugin, action string, args map[string]string, emit func(json.RawMessage) error) error {
	b.record("stream %s %s", plugin, action)
	if b.Stream != nil {
		return b.Stream(ctx, plugin, action, args, emit)
	}
	return nil
}

// Events implements admin.Backend.
func (b *Backend) Events(ctx context.Context, types []string, emit func(api.Event) error) error {
	if b.EventsFunc != nil {
		return b.EventsFunc(ctx, types, emit)
	}
	<-ctx.Done()
	return ctx.Err()
}

// Version implements admin.Backend.
func (b *Backend) Version() api.VersionInfo { return b.VersionValue }

// Audit implements admin.Backend.
func (b *Backend) Audit(_ context.Context, who admin.Peer, what string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.audits = append(b.audits, Audit{Who: who, What: what})
}

// Serve serves backend on a unix socket in a new temporary directory of t until the test
// ends, and returns the server (its SocketPath is the socket). Zero opts fields get
// test-friendly values: group names that do not exist, and a quiet logger.
func Serve(t testing.TB, backend admin.Backend, opts admin.Options) *admin.Server {
	t.Helper()
	if opts.SocketPath == "" {
		opts.SocketPath = filepath.Join(t.TempDir(), "admin.sock")
	}
	if opts.AdminGroup == "" {
		opts.AdminGroup = "sltest-no-such-admin-group"
	}
	if opts.ReaderGroup == "" {
		opts.ReaderGroup = "sltest-no-such-reader-group"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	srv := admin.New(backend, opts)
	if err := srv.Listen(); err != nil {
		t.Fatalf("admin server: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("admin server: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("admin server did not stop within 10s")
		}
	})
	return srv
}

// SamplePlugins are plugins with a few actions, for tests: tunnel (switch: mutating, one
// required arg; peers: a list), logcache (tail: streaming with follow and source).
func SamplePlugins() []api.PluginStatus {
	since := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	return []api.PluginStatus{
		{
			Name: "tunnel", Version: "1.0.0", Description: "WireGuard tunnel to the hub",
			State: api.PluginRunning, Health: "ok", Summary: "up to gw-a", PID: 1300, Restarts: 1,
			Since: since, ActiveWhen: "always", Required: true, Binary: "/usr/lib/sitelink/plugins/tunnel",
			APIVersion: 1, Capabilities: []string{"CAP_NET_ADMIN"},
			Counters: map[string]uint64{"rx_bytes": 1234, "tx_bytes": 5678},
			Details:  json.RawMessage(`{"active_peer":"gw-a"}`),
			Actions: []api.ActionSpec{
				{Name: "switch", Description: "Switch the active peer", Mutating: true,
					Args: []api.ArgSpec{{Name: "peer", Type: "string", Required: true, Description: "peer to switch to"},
						{Name: "force", Type: "bool", Description: "switch even if the peer is down"}}},
				{Name: "peers", Description: "List the peers"},
			},
		},
		{
			Name: "logcache", Version: "1.0.0", State: api.PluginRunning, Health: "degraded",
			Reasons: []string{"disk 91% full"}, PID: 1301, Since: since, ActiveWhen: "always",
			Binary: "/usr/lib/sitelink/plugins/logcache",
			Actions: []api.ActionSpec{
				{Name: "tail", Description: "Show recent log records", Streaming: true,
					Args: []api.ArgSpec{{Name: "follow", Type: "bool", Description: "keep following"},
						{Name: "source", Type: "string", Description: "only this source"},
						{Name: "lines", Type: "int", Default: "10"}}},
			},
		},
		{
			Name: "snat", State: api.PluginFailed, Health: "down", LastExit: "exit status 1",
			Restarts: 5, Since: since, ActiveWhen: "master", Binary: "/usr/lib/sitelink/plugins/snat",
		},
	}
}
