// Package sdktest runs a plugin in-process, over the same gRPC transport sitelinkd uses,
// with a fake host that records what the plugin publishes and appends, so a vendor can
// test a plugin without the daemon.
//
//	h := sdktest.New(t, &myPlugin{})
//	if err := h.Configure(`{"port": 8080}`); err != nil { … }
//	h.Start(sdk.RoleMaster)
//	out := h.Action("show", nil)
package sdktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/sdk/pluginpb"
)

// Harness is a plugin under test and its fake host.
type Harness struct {
	t      testing.TB
	Client *sdk.Client
	host   *fakeHost
	// StateDir and RuntimeDir are temporary directories given to the plugin.
	StateDir, RuntimeDir string
}

// Options adjust New.
type Options struct {
	// Name the plugin is given (default "test").
	Name string
	// LogSink, when set, receives Host.AppendLogs calls; by default they are recorded
	// and numbered by the harness.
	LogSink func(ctx context.Context, recs []sdk.LogRecord) (first, last uint64, err error)
}

// New starts p in-process and calls Init. Everything is torn down with the test.
func New(t testing.TB, p sdk.Plugin) *Harness { return NewWithOptions(t, p, Options{}) }

// NewWithOptions is New with options.
func NewWithOptions(t testing.TB, p sdk.Plugin, opts Options) *Harness {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "test"
	}
	client, server := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{sdk.PluginKey: &sdk.GRPCPlugin{Impl: p}})
	t.Cleanup(func() { server.Stop(); _ = client.Close() })
	raw, err := client.Dispense(sdk.PluginKey)
	if err != nil {
		t.Fatalf("dispense plugin: %v", err)
	}
	h := &Harness{t: t, Client: raw.(*sdk.Client), host: newFakeHost(opts), StateDir: t.TempDir(), RuntimeDir: t.TempDir()}
	t.Cleanup(h.Client.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Client.Init(ctx, sdk.InitOptions{Name: opts.Name, APIVersion: sdk.APIVersion, StateDir: h.StateDir,
		RuntimeDir: h.RuntimeDir, HostVersion: "sdktest"}, h.host); err != nil {
		t.Fatalf("init plugin: %v", err)
	}
	return h
}

func (h *Harness) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// Info returns the plugin's Info as the host sees it.
func (h *Harness) Info() *pluginpb.InfoResponse {
	ctx, cancel := h.ctx()
	defer cancel()
	info, err := h.Client.Info(ctx)
	if err != nil {
		h.t.Fatalf("info: %v", err)
	}
	return info
}

// Configure sends a config (JSON text); field errors come back as sdk.FieldErrors.
func (h *Harness) Configure(configJSON string) error {
	ctx, cancel := h.ctx()
	defer cancel()
	return h.Client.Configure(ctx, []byte(configJSON), false)
}

// Validate checks a config without applying it.
func (h *Harness) Validate(configJSON string) error {
	ctx, cancel := h.ctx()
	defer cancel()
	return h.Client.Configure(ctx, []byte(configJSON), true)
}

// Start starts the plugin in a role.
func (h *Harness) Start(role sdk.Role) error {
	ctx, cancel := h.ctx()
	defer cancel()
	return h.Client.Start(ctx, role)
}

// Stop stops the plugin.
func (h *Harness) Stop() error {
	ctx, cancel := h.ctx()
	defer cancel()
	return h.Client.Stop(ctx)
}

// Status returns the plugin's status.
func (h *Harness) Status() *pluginpb.StatusResponse {
	ctx, cancel := h.ctx()
	defer cancel()
	st, err := h.Client.Status(ctx)
	if err != nil {
		h.t.Fatalf("status: %v", err)
	}
	return st
}

// Metrics returns the plugin's Prometheus text.
func (h *Harness) Metrics() string {
	ctx, cancel := h.ctx()
	defer cancel()
	b, err := h.Client.Metrics(ctx)
	if err != nil {
		h.t.Fatalf("metrics: %v", err)
	}
	return string(b)
}

// Action runs an action and decodes its JSON result into out (when not nil).
func (h *Harness) Action(name string, args map[string]string, out any) error {
	ctx, cancel := h.ctx()
	defer cancel()
	b, err := h.Client.InvokeAction(ctx, name, args)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode result of %s: %w", name, err)
		}
	}
	return nil
}

// StreamAction runs a streaming action, collecting up to max items (all when max <= 0)
// before cancelling it.
func (h *Harness) StreamAction(name string, args map[string]string, max int) ([]json.RawMessage, error) {
	ctx, cancel := h.ctx()
	defer cancel()
	var items []json.RawMessage
	errEnough := errors.New("enough")
	err := h.Client.StreamAction(ctx, name, args, func(b []byte) error {
		items = append(items, append(json.RawMessage(nil), b...))
		if max > 0 && len(items) >= max {
			return errEnough
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		err = nil
	}
	return items, err
}

// Cleanup calls the plugin's Cleanup.
func (h *Harness) Cleanup() ([]string, error) {
	ctx, cancel := h.ctx()
	defer cancel()
	return h.Client.Cleanup(ctx)
}

// Publish delivers an event to the plugin's subscriptions, as if another plugin had
// published it.
func (h *Harness) Publish(ev sdk.Event) { h.host.publish(ev) }

// Events returns what the plugin has published so far.
func (h *Harness) Events() []sdk.Event {
	h.host.mu.Lock()
	defer h.host.mu.Unlock()
	return append([]sdk.Event(nil), h.host.published...)
}

// WaitEvent waits until the plugin has published an event for which match is true.
func (h *Harness) WaitEvent(timeout time.Duration, match func(sdk.Event) bool) (sdk.Event, bool) {
	deadline := time.Now().Add(timeout)
	for {
		for _, ev := range h.Events() {
			if match(ev) {
				return ev, true
			}
		}
		if time.Now().After(deadline) {
			return sdk.Event{}, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Logs returns the records the plugin appended (when no LogSink option was given).
func (h *Harness) Logs() []sdk.LogRecord {
	h.host.mu.Lock()
	defer h.host.mu.Unlock()
	return append([]sdk.LogRecord(nil), h.host.logs...)
}

// fakeHost implements the Host service in memory.
type fakeHost struct {
	pluginpb.UnimplementedHostServer
	opts Options

	mu        sync.Mutex
	published []sdk.Event
	retained  map[string]sdk.Event
	subs      map[chan sdk.Event][]string
	logs      []sdk.LogRecord
	seq       uint64
}

func newFakeHost(opts Options) *fakeHost {
	return &fakeHost{opts: opts, retained: map[string]sdk.Event{}, subs: map[chan sdk.Event][]string{}}
}

func wants(types []string, t string) bool {
	if len(types) == 0 {
		return true
	}
	for _, x := range types {
		if x == t {
			return true
		}
	}
	return false
}

func (f *fakeHost) publish(ev sdk.Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if ev.Retain {
		f.retained[ev.Source+"\x00"+ev.Type] = ev
	}
	for ch, types := range f.subs {
		if wants(types, ev.Type) {
			select {
			case ch <- ev:
			default:
			}
		}
	}
}

func (f *fakeHost) Publish(_ context.Context, req *pluginpb.PublishRequest) (*pluginpb.PublishResponse, error) {
	if req.GetEvent().GetType() == "" {
		return nil, status.Error(codes.InvalidArgument, "event without a type")
	}
	ev := sdk.EventFromProto(req.GetEvent())
	ev.Source = f.opts.Name
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	f.mu.Lock()
	f.published = append(f.published, ev)
	f.mu.Unlock()
	f.publish(ev)
	return &pluginpb.PublishResponse{}, nil
}

func (f *fakeHost) Subscribe(req *pluginpb.SubscribeRequest, stream pluginpb.Host_SubscribeServer) error {
	ch := make(chan sdk.Event, 256)
	f.mu.Lock()
	for _, ev := range f.retained {
		if wants(req.GetTypes(), ev.Type) {
			ch <- ev
		}
	}
	f.subs[ch] = req.GetTypes()
	f.mu.Unlock()
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	defer func() {
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
	}()
	for {
		select {
		case ev := <-ch:
			if err := stream.Send(sdk.EventToProto(ev)); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

func (f *fakeHost) AppendLogs(ctx context.Context, req *pluginpb.AppendRequest) (*pluginpb.AppendResponse, error) {
	recs := sdk.LogRecordsFromProto(req.GetRecords())
	if f.opts.LogSink != nil {
		first, last, err := f.opts.LogSink(ctx, recs)
		if err != nil {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
		return &pluginpb.AppendResponse{FirstSeq: first, LastSeq: last}, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	first := f.seq + 1
	f.logs = append(f.logs, recs...)
	f.seq += uint64(len(recs))
	return &pluginpb.AppendResponse{FirstSeq: first, LastSeq: f.seq}, nil
}

func (f *fakeHost) AppendLogsStream(stream pluginpb.Host_AppendLogsStreamServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		resp, err := f.AppendLogs(stream.Context(), req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}
