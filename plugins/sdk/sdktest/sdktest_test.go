package sdktest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/sdk/metrics"
	"github.com/sitelink/sitelink/plugins/sdk/pluginpb"
	"github.com/sitelink/sitelink/plugins/sdk/sdktest"
)

// greeter is a small plugin of the kind a vendor writes.
type greeter struct {
	sdk.Base

	mu       sync.Mutex
	greeting string
	role     sdk.Role
	starts   int
	seen     []sdk.Event
	hits     *metrics.Counter
	initName string
}

type greeterConfig struct {
	Greeting string `json:"greeting"`
	Port     int    `json:"port"`
}

func (g *greeter) Info() sdk.Info {
	return sdk.Info{
		Name: "greeter", Version: "1.0.0", Capabilities: []string{"CAP_NET_BIND_SERVICE"},
		Events: []sdk.EventSpec{{Type: "greeted"}},
		Actions: []sdk.Action{
			{Name: "greet", Args: []sdk.Arg{{Name: "who", Type: sdk.ArgString, Required: true}, {Name: "times", Type: sdk.ArgInt, Default: "1"}},
				Run: func(ctx context.Context, a sdk.Args) (any, error) {
					g.hits.Inc()
					g.mu.Lock()
					msg := strings.Repeat(g.greeting+" "+a.String("who")+"! ", int(a.Int("times")))
					g.mu.Unlock()
					if err := g.Host().Publish(ctx, sdk.Event{Type: "greeted", Attrs: map[string]string{"who": a.String("who")}}); err != nil {
						return nil, err
					}
					return map[string]string{"message": strings.TrimSpace(msg)}, nil
				}},
			{Name: "seen", Run: func(context.Context, sdk.Args) (any, error) {
				g.mu.Lock()
				defer g.mu.Unlock()
				var types []string
				for _, ev := range g.seen {
					types = append(types, ev.Source+"/"+ev.Type+"/"+ev.Attrs["role"])
				}
				return types, nil
			}},
			{Name: "fail", Run: func(context.Context, sdk.Args) (any, error) { return nil, errors.New("it broke") }},
			{Name: "remember", Mutating: true, Run: func(ctx context.Context, a sdk.Args) (any, error) {
				first, last, err := g.Host().AppendLogs(ctx, []sdk.LogRecord{{Source: "greeter", Data: json.RawMessage(`"one"`)},
					{Source: "greeter", Data: json.RawMessage(`{"two":2}`)}})
				return []uint64{first, last}, err
			}},
			{Name: "ticks", Args: []sdk.Arg{{Name: "n", Type: sdk.ArgInt}},
				Stream: func(ctx context.Context, a sdk.Args, send func(any) error) error {
					for i := int64(1); a.Int("n") == 0 || i <= a.Int("n"); i++ {
						if err := send(i); err != nil {
							return err
						}
						if ctx.Err() != nil {
							return ctx.Err()
						}
					}
					return nil
				}},
		},
	}
}

func (g *greeter) Init(ctx context.Context, h sdk.Host) error {
	if err := g.Base.Init(ctx, h); err != nil {
		return err
	}
	g.initName = h.Name()
	g.hits = metrics.NewCounter("greeter_greetings_total", "greetings")
	h.Metrics().MustRegister(g.hits)
	if err := os.WriteFile(filepath.Join(h.StateDir(), "state"), []byte("x"), 0o600); err != nil {
		return err
	}
	ch, err := h.Subscribe(context.Background(), sdk.EventRole)
	if err != nil {
		return err
	}
	go func() {
		for ev := range ch {
			g.mu.Lock()
			g.seen = append(g.seen, ev)
			g.mu.Unlock()
		}
	}()
	return nil
}

func (g *greeter) Configure(_ context.Context, raw json.RawMessage, validateOnly bool) error {
	c := greeterConfig{Greeting: "hello", Port: 80}
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return err
	}
	var fes sdk.FieldErrors
	if c.Port <= 0 || c.Port > 65535 {
		fes.Add("port", "must be 1-65535, got %d", c.Port)
	}
	if err := fes.Err(); err != nil || validateOnly {
		return err
	}
	g.mu.Lock()
	g.greeting = c.Greeting
	g.mu.Unlock()
	return nil
}

func (g *greeter) Start(_ context.Context, role sdk.Role) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.role = role
	g.starts++
	return nil
}

func (g *greeter) Status(context.Context) sdk.Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	return sdk.Status{Health: sdk.HealthDegraded, Reasons: []string{"only a test"}, Summary: "greeting " + g.greeting,
		Details: map[string]any{"role": g.role}, Counters: map[string]uint64{"starts": uint64(g.starts)}}
}

func (g *greeter) Cleanup(context.Context) ([]string, error) { return []string{"nothing really"}, nil }

func TestInfoAndInit(t *testing.T) {
	g := &greeter{}
	h := sdktest.NewWithOptions(t, g, sdktest.Options{Name: "hello-1"})
	info := h.Info()
	if info.GetName() != "greeter" || info.GetVersion() != "1.0.0" || len(info.GetApiVersions()) != 1 ||
		info.GetApiVersions()[0] != sdk.APIVersion || info.GetCapabilities()[0] != "CAP_NET_BIND_SERVICE" {
		t.Fatalf("info = %v", info)
	}
	var streaming []string
	for _, a := range info.GetActions() {
		if a.GetStreaming() {
			streaming = append(streaming, a.GetName())
		}
	}
	if strings.Join(streaming, ",") != "ticks" {
		t.Fatalf("streaming actions = %v", streaming)
	}
	if g.initName != "hello-1" {
		t.Fatalf("plugin was told its name is %q", g.initName)
	}
	if _, err := os.Stat(filepath.Join(h.StateDir, "state")); err != nil {
		t.Fatalf("state dir: %v", err)
	}
	// Init happens once.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h.Client.Init(ctx, sdk.InitOptions{Name: "again"}, nil)
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("second Init = %v, want FailedPrecondition", err)
	}
}

func TestConfigure(t *testing.T) {
	h := sdktest.New(t, &greeter{})
	if err := h.Configure(`{"greeting":"hi","port":8080}`); err != nil {
		t.Fatal(err)
	}
	err := h.Configure(`{"port":70000,"colour":"red"}`)
	var fes sdk.FieldErrors
	if !errors.As(err, &fes) || len(fes) != 1 || fes[0].Path != "colour" || fes[0].Message != "unknown field" {
		t.Fatalf("bad config = %#v", err)
	}
	err = h.Configure(`{"port":70000}`)
	if !errors.As(err, &fes) || fes[0].Path != "port" || !strings.Contains(fes[0].Message, "70000") {
		t.Fatalf("bad port = %#v", err)
	}
	if err := h.Validate(`{"greeting":"not applied"}`); err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(`{"port":-1}`); !errors.As(err, &fes) {
		t.Fatalf("Validate of a bad config = %v", err)
	}
	if st := h.Status(); st.GetSummary() != "greeting hi" {
		t.Fatalf("a rejected or validate-only config was applied: %q", st.GetSummary())
	}
}

func TestLifecycleAndStatus(t *testing.T) {
	g := &greeter{}
	h := sdktest.New(t, g)
	if st := h.Status(); st.GetState() != pluginpb.State_STATE_UNKNOWN {
		t.Fatalf("state before Configure = %v", st.GetState())
	}
	if err := h.Configure(`{}`); err != nil {
		t.Fatal(err)
	}
	if st := h.Status(); st.GetState() != pluginpb.State_STATE_CONFIGURED {
		t.Fatalf("state after Configure = %v", st.GetState())
	}
	if err := h.Start(sdk.RoleMaster); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(sdk.RoleBackup); err != nil { // already running: no second Start
		t.Fatal(err)
	}
	st := h.Status()
	if st.GetState() != pluginpb.State_STATE_RUNNING || st.GetHealth() != pluginpb.Health_HEALTH_DEGRADED ||
		st.GetReasons()[0] != "only a test" || st.GetCounters()["starts"] != 1 || string(st.GetDetailsJson()) != `{"role":"MASTER"}` {
		t.Fatalf("status = %v", st)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if st := h.Status(); st.GetState() != pluginpb.State_STATE_STOPPED {
		t.Fatalf("state after Stop = %v", st.GetState())
	}
	if err := h.Start(sdk.RoleBackup); err != nil {
		t.Fatal(err)
	}
	if g.starts != 2 || g.role != sdk.RoleBackup {
		t.Fatalf("starts = %d, role = %s", g.starts, g.role)
	}
	removed, err := h.Cleanup()
	if err != nil || len(removed) != 1 || removed[0] != "nothing really" {
		t.Fatalf("Cleanup = %v, %v", removed, err)
	}
}

func TestActions(t *testing.T) {
	h := sdktest.New(t, &greeter{})
	if err := h.Configure(`{"greeting":"hi"}`); err != nil {
		t.Fatal(err)
	}
	var out map[string]string
	if err := h.Action("greet", map[string]string{"who": "bob", "times": "2"}, &out); err != nil {
		t.Fatal(err)
	}
	if out["message"] != "hi bob! hi bob!" {
		t.Fatalf("greet = %v", out)
	}
	ev, ok := h.WaitEvent(5*time.Second, func(ev sdk.Event) bool { return ev.Type == "greeted" })
	// (Events() returns the events as published: the harness sets no Time on them.)
	if !ok || ev.Source != "test" || ev.Attrs["who"] != "bob" {
		t.Fatalf("published event = %+v (%v)", ev, ok)
	}
	if !strings.Contains(h.Metrics(), "greeter_greetings_total 1") {
		t.Fatalf("metrics lack the plugin's counter:\n%s", h.Metrics())
	}
	for _, tc := range []struct {
		name string
		args map[string]string
		code codes.Code
		msg  string
	}{
		{"greet", nil, codes.InvalidArgument, `missing required argument "who"`},
		{"greet", map[string]string{"who": "x", "times": "many"}, codes.InvalidArgument, "expected an integer"},
		{"greet", map[string]string{"who": "x", "colour": "red"}, codes.InvalidArgument, `unknown argument "colour"`},
		{"nope", nil, codes.NotFound, `no action "nope"`},
		{"ticks", nil, codes.InvalidArgument, "streams: use StreamAction"},
		{"fail", nil, codes.Unknown, "it broke"},
	} {
		err := h.Action(tc.name, tc.args, nil)
		var ce *sdk.CallError
		if !errors.As(err, &ce) || ce.Code != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s %v: err = %v, want %s %q", tc.name, tc.args, err, tc.code, tc.msg)
		}
	}
}

func TestStreamAction(t *testing.T) {
	h := sdktest.New(t, &greeter{})
	items, err := h.StreamAction("ticks", map[string]string{"n": "4"}, 0)
	if err != nil || len(items) != 4 || string(items[3]) != "4" {
		t.Fatalf("ticks n=4: %q, %v", items, err)
	}
	// An endless stream, cut after 10 items.
	items, err = h.StreamAction("ticks", nil, 10)
	if err != nil || len(items) != 10 || string(items[9]) != "10" {
		t.Fatalf("endless ticks: %d items, %v", len(items), err)
	}
	if _, err := h.StreamAction("greet", map[string]string{"who": "x"}, 0); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("streaming a unary action: %v", err)
	}
	if _, err := h.StreamAction("ticks", map[string]string{"n": "x"}, 0); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad argument: %v", err)
	}
}

func TestSubscribeAndRetained(t *testing.T) {
	h := sdktest.New(t, &greeter{})
	// The plugin subscribed at Init, so this reaches it; other types do not.
	h.Publish(sdk.Event{Type: sdk.EventRole, Source: "vrrp", Retain: true, Attrs: map[string]string{"role": "MASTER"}})
	h.Publish(sdk.Event{Type: "tunnel", Source: "tunnel"})
	var seen []string
	deadline := time.Now().Add(5 * time.Second)
	for len(seen) == 0 {
		if err := h.Action("seen", nil, &seen); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the plugin did not receive the role event")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if strings.Join(seen, ",") != "vrrp/role/MASTER" {
		t.Fatalf("seen = %v", seen)
	}
}

func TestLogs(t *testing.T) {
	h := sdktest.New(t, &greeter{})
	var seqs []uint64
	if err := h.Action("remember", nil, &seqs); err != nil {
		t.Fatal(err)
	}
	if err := h.Action("remember", nil, &seqs); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs) != "[3 4]" {
		t.Fatalf("sequence numbers of the second batch = %v", seqs)
	}
	logs := h.Logs()
	if len(logs) != 4 || string(logs[1].Data) != `{"two":2}` || logs[0].Source != "greeter" {
		t.Fatalf("logs = %+v", logs)
	}
	// With a LogSink option the harness forwards to it, errors included.
	var got []sdk.LogRecord
	h2 := sdktest.NewWithOptions(t, &greeter{}, sdktest.Options{LogSink: func(_ context.Context, recs []sdk.LogRecord) (uint64, uint64, error) {
		got = append(got, recs...)
		if len(got) > 2 {
			return 0, 0, errors.New("disk full")
		}
		return 100, 101, nil
	}})
	if err := h2.Action("remember", nil, &seqs); err != nil || fmt.Sprint(seqs) != "[100 101]" {
		t.Fatalf("remember = %v, %v", seqs, err)
	}
	err := h2.Action("remember", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("remember with a failing sink = %v", err)
	}
}

// sink is a plugin that stores logs (as the logcache plugin does).
type sink struct {
	sdk.Base
	mu   sync.Mutex
	recs []sdk.LogRecord
}

func (s *sink) Info() sdk.Info { return sdk.Info{Name: "sink", Version: "1"} }

func (s *sink) AppendLogs(_ context.Context, recs []sdk.LogRecord) (uint64, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		if len(r.Data) == 0 {
			return 0, 0, &sdk.ArgError{Msg: "empty record"}
		}
	}
	first := uint64(len(s.recs)) + 1
	s.recs = append(s.recs, recs...)
	return first, uint64(len(s.recs)), nil
}

func TestLogSinkPlugin(t *testing.T) {
	s := &sink{}
	h := sdktest.New(t, s)
	if p := h.Info().GetProvides(); len(p) != 1 || p[0] != "logsink" {
		t.Fatalf("provides = %v", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := h.Client.AppendLogs(ctx, &pluginpb.AppendRequest{Records: sdk.LogRecordsToProto([]sdk.LogRecord{
		{Source: "a", Data: json.RawMessage(`"x"`)}, {Source: "b", Data: json.RawMessage(`"y"`)}})})
	if err != nil || resp.GetFirstSeq() != 1 || resp.GetLastSeq() != 2 {
		t.Fatalf("Append = %v, %v", resp, err)
	}
	_, err = h.Client.AppendLogs(ctx, &pluginpb.AppendRequest{Records: sdk.LogRecordsToProto([]sdk.LogRecord{{Source: "a"}})})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Append of an empty record = %v", err)
	}
	stream, err := h.Client.OpenLogSinkStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := stream.Send(&pluginpb.AppendRequest{Records: sdk.LogRecordsToProto([]sdk.LogRecord{{Source: "s", Data: json.RawMessage(`1`)}})}); err != nil {
			t.Fatal(err)
		}
		r, err := stream.Recv()
		if err != nil || r.GetFirstSeq() != uint64(3+i) {
			t.Fatalf("stream batch %d = %v, %v", i, r, err)
		}
	}
	_ = stream.CloseSend()
	// A plugin that is no log sink does not serve the service.
	h2 := sdktest.New(t, &greeter{})
	if _, err := h2.Client.AppendLogs(ctx, &pluginpb.AppendRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("Append to a plugin without a sink = %v", err)
	}
}
