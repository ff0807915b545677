// Command testplugin is a plugin for the daemon's own tests and benchmarks: its config
// and arguments make it crash, hang, publish events or declare other API versions and
// capabilities, so that every supervisor path can be driven by a real process.
//
// For the tests under real systemd (package systemd) it can also start slowly
// (start_delay) and leave kernel state behind like a crashed network plugin: with
// --kernel-facing and config link: NAME, Start creates a veth pair NAME/NAME-p that Stop
// keeps and Cleanup removes (found by its alias, also after a crash).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sitelink/sitelink/daemon/proc"
	"github.com/sitelink/sitelink/plugins/sdk"
)

// linkAlias marks the veth pairs this plugin creates, so that Cleanup finds them without
// a config (after a crash, from `sitelinkd --cleanup`).
const linkAlias = "sitelink-testplugin"

type config struct {
	// CrashOnStart exits with status 3 in Start (a crash loop).
	CrashOnStart bool `json:"crash_on_start"`
	// HangStatus makes Status block (an unresponsive plugin).
	HangStatus bool `json:"hang_status"`
	// Greeting is returned by the echo action, to see config changes.
	Greeting string `json:"greeting"`
	// PublishOnStart publishes events when started.
	PublishOnStart []event `json:"publish_on_start"`
	// StartDelay makes Start take this long (a Go duration, e.g. "1500ms").
	StartDelay string `json:"start_delay"`
	// Link is a veth pair's name that Start creates (needs --kernel-facing and
	// CAP_NET_ADMIN) and Stop leaves behind; Cleanup removes it.
	Link string `json:"link"`
}

type event struct {
	Type   string            `json:"type"`
	Attrs  map[string]string `json:"attrs"`
	Retain bool              `json:"retain"`
}

type testPlugin struct {
	sdk.Base
	apiVersions  []int
	caps         []string
	kernelFacing bool

	mu      sync.Mutex
	cfg     config
	role    sdk.Role
	starts  int
	stops   int
	configs int
	seen    []sdk.Event
}

const schema = `{
  "type": "object",
  "properties": {
    "crash_on_start": {"type": "boolean"},
    "hang_status": {"type": "boolean"},
    "greeting": {"type": "string", "maxLength": 64},
    "publish_on_start": {"type": "array"},
    "start_delay": {"type": "string"},
    "link": {"type": "string", "pattern": "^[a-z][a-z0-9]{0,12}$"}
  },
  "additionalProperties": false
}`

func (p *testPlugin) Info() sdk.Info {
	return sdk.Info{
		Name: "testplugin", Version: "0.0.1", Description: "drives the supervisor's tests",
		APIVersions: p.apiVersions, Capabilities: p.caps, ConfigSchema: schema, KernelFacing: p.kernelFacing,
		Events: []sdk.EventSpec{{Type: "test", Description: "published on request"}},
		Actions: []sdk.Action{
			{Name: "echo", Description: "returns the greeting and the arguments",
				Args: []sdk.Arg{{Name: "text", Type: sdk.ArgString}, {Name: "n", Type: sdk.ArgInt}},
				Run: func(_ context.Context, a sdk.Args) (any, error) {
					p.mu.Lock()
					defer p.mu.Unlock()
					return map[string]any{"greeting": p.cfg.Greeting, "text": a.String("text"), "n": a.Int("n")}, nil
				}},
			{Name: "state", Description: "what the plugin has seen",
				Run: func(context.Context, sdk.Args) (any, error) {
					p.mu.Lock()
					defer p.mu.Unlock()
					pc, err := proc.ReadProcCaps(os.Getpid())
					if err != nil {
						return nil, err
					}
					return map[string]any{"pid": os.Getpid(), "role": p.role, "starts": p.starts, "stops": p.stops,
						"configs": p.configs, "greeting": p.cfg.Greeting, "events": len(p.seen), "state_dir_writable": p.stateWritable(),
						"uid": pc.UID, "cap_eff": pc.Eff.Names(), "cap_prm": pc.Prm.Names(), "cap_bnd": pc.Bnd.Names()}, nil
				}},
			{Name: "publish", Description: "publishes an event", Mutating: true,
				Args: []sdk.Arg{{Name: "type", Type: sdk.ArgString, Required: true}, {Name: "attrs", Type: sdk.ArgString},
					{Name: "retain", Type: sdk.ArgBool}},
				Run: func(ctx context.Context, a sdk.Args) (any, error) {
					ev := sdk.Event{Type: a.String("type"), Retain: a.Bool("retain"), Attrs: map[string]string{}}
					for _, kv := range strings.Split(a.String("attrs"), ",") {
						if k, v, ok := strings.Cut(kv, "="); ok {
							ev.Attrs[k] = v
						}
					}
					return "ok", p.Host().Publish(ctx, ev)
				}},
			{Name: "count", Description: "streams n numbers", Args: []sdk.Arg{{Name: "n", Type: sdk.ArgInt, Default: "3"},
				{Name: "every", Type: sdk.ArgDuration, Default: "1ms"}},
				Stream: func(ctx context.Context, a sdk.Args, send func(any) error) error {
					for i := int64(1); a.Int("n") <= 0 || i <= a.Int("n"); i++ {
						if err := send(map[string]int64{"i": i}); err != nil {
							return err
						}
						select {
						case <-time.After(a.Duration("every")):
						case <-ctx.Done():
							return ctx.Err()
						}
					}
					return nil
				}},
			{Name: "log", Description: "appends a record to the log cache", Mutating: true,
				Args: []sdk.Arg{{Name: "text", Type: sdk.ArgString, Required: true}},
				Run: func(ctx context.Context, a sdk.Args) (any, error) {
					b, _ := json.Marshal(a.String("text"))
					first, last, err := p.Host().AppendLogs(ctx, []sdk.LogRecord{{Source: "test", Data: b}})
					return map[string]uint64{"first": first, "last": last}, err
				}},
			{Name: "flood", Description: "appends n records of size bytes to the log cache over a log stream, in batches", Mutating: true,
				Args: []sdk.Arg{{Name: "n", Type: sdk.ArgInt, Default: "100000"}, {Name: "size", Type: sdk.ArgInt, Default: "256"},
					{Name: "batch", Type: sdk.ArgInt, Default: "1000"}},
				Run: func(ctx context.Context, a sdk.Args) (any, error) { return flood(ctx, p.Host(), a) }},
			{Name: "crash", Description: "exits at once", Mutating: true,
				Run: func(context.Context, sdk.Args) (any, error) { os.Exit(7); return nil, nil }},
		},
	}
}

func (p *testPlugin) Init(ctx context.Context, h sdk.Host) error {
	if err := p.Base.Init(ctx, h); err != nil {
		return err
	}
	ch, err := h.Subscribe(context.Background())
	if err != nil {
		return err
	}
	go func() {
		for ev := range ch {
			p.mu.Lock()
			p.seen = append(p.seen, ev)
			p.mu.Unlock()
		}
	}()
	h.Logger().Info("testplugin initialised", "state_dir", h.StateDir())
	return nil
}

func (p *testPlugin) Configure(_ context.Context, raw json.RawMessage, validateOnly bool) error {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return err
	}
	if strings.Contains(c.Greeting, "forbidden") {
		return sdk.FieldErrors{{Path: "greeting", Message: "must not say forbidden"}}
	}
	if c.StartDelay != "" {
		if d, err := time.ParseDuration(c.StartDelay); err != nil || d < 0 {
			return sdk.FieldErrors{{Path: "start_delay", Message: fmt.Sprintf("not a duration: %q", c.StartDelay)}}
		}
	}
	if c.Link != "" && !p.kernelFacing {
		return sdk.FieldErrors{{Path: "link", Message: "needs the plugin to run with --kernel-facing"}}
	}
	if validateOnly {
		return nil
	}
	p.mu.Lock()
	p.cfg = c
	p.configs++
	p.mu.Unlock()
	return nil
}

func (p *testPlugin) Start(ctx context.Context, role sdk.Role) error {
	p.mu.Lock()
	cfg := p.cfg
	p.role = role
	p.starts++
	p.mu.Unlock()
	if cfg.CrashOnStart {
		fmt.Fprintln(os.Stderr, "crashing on purpose")
		os.Exit(3)
	}
	if d, _ := time.ParseDuration(cfg.StartDelay); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return fmt.Errorf("start delay: %w", ctx.Err())
		}
	}
	if cfg.Link != "" {
		if err := addVeth(cfg.Link); err != nil {
			return err
		}
	}
	for _, e := range cfg.PublishOnStart {
		if err := p.Host().Publish(ctx, sdk.Event{Type: e.Type, Attrs: e.Attrs, Retain: e.Retain}); err != nil {
			return err
		}
	}
	return nil
}

// stateWritable reports whether the plugin can create a file in its state directory
// (the directories above it must let the plugin's user through).
func (p *testPlugin) stateWritable() bool {
	dir := p.Host().StateDir()
	if dir == "" {
		return false
	}
	f := filepath.Join(dir, ".write-probe")
	if err := os.WriteFile(f, []byte("ok"), 0o600); err != nil {
		return false
	}
	return os.Remove(f) == nil
}

// addVeth creates the veth pair name/name-p marked with linkAlias; an existing one is
// kept (Start after a restart without cleanup).
func addVeth(name string) error {
	if l, err := netlink.LinkByName(name); err == nil && l.Attrs().Alias == linkAlias {
		return nil
	}
	la := netlink.NewLinkAttrs()
	la.Name = name
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: name + "-p"}); err != nil {
		return fmt.Errorf("create veth %s: %w", name, err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find veth %s: %w", name, err)
	}
	if err := netlink.LinkSetAlias(l, linkAlias); err != nil {
		return fmt.Errorf("set alias of %s: %w", name, err)
	}
	return nil
}

// Cleanup removes every veth pair marked with linkAlias (deleting one end removes both).
func (p *testPlugin) Cleanup(context.Context) ([]string, error) {
	if !p.kernelFacing {
		return nil, nil
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var removed []string
	for _, l := range links {
		if l.Attrs().Alias != linkAlias || l.Type() != "veth" {
			continue
		}
		if err := netlink.LinkDel(l); err != nil {
			return removed, fmt.Errorf("delete link %s: %w", l.Attrs().Name, err)
		}
		removed = append(removed, "link "+l.Attrs().Name)
	}
	return removed, nil
}

// Stop leaves the veth pair in place on purpose: Cleanup is what removes it.
func (p *testPlugin) Stop(context.Context) error {
	p.mu.Lock()
	p.stops++
	p.mu.Unlock()
	return nil
}

func (p *testPlugin) Status(ctx context.Context) sdk.Status {
	p.mu.Lock()
	hang := p.cfg.HangStatus
	starts := p.starts
	p.mu.Unlock()
	if hang {
		<-ctx.Done()
	}
	return sdk.Status{Health: sdk.HealthOK, Summary: "test ok", Counters: map[string]uint64{"starts": uint64(starts)}}
}

func main() {
	// Info-level behaviour comes from arguments (set in a manifest or the test's spec);
	// the SDK's own --sitelink-plugin-info argument passes through.
	p := &testPlugin{}
	args := os.Args[1:]
	var rest []string
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--api-version":
			var v int
			fmt.Sscan(args[i+1], &v)
			p.apiVersions = append(p.apiVersions, v)
			i++
		case "--caps":
			p.caps = strings.Split(args[i+1], ",")
			i++
		case "--kernel-facing":
			p.kernelFacing = true
		default:
			rest = append(rest, args[i])
		}
	}
	os.Args = append(os.Args[:1], rest...)
	sdk.Serve(p)
}

// flood appends records as fast as the log cache takes them and reports the rate.
func flood(ctx context.Context, h sdk.Host, a sdk.Args) (any, error) {
	n, size, batch := int(a.Int("n")), int(a.Int("size")), int(a.Int("batch"))
	if n <= 0 || size < 16 || batch <= 0 {
		return nil, &sdk.ArgError{Msg: "n > 0, size >= 16 and batch > 0 please"}
	}
	// A JSON string whose stored line is about size bytes (the store adds ~90 bytes).
	pad := size - 90
	if pad < 1 {
		pad = 1
	}
	data, _ := json.Marshal(strings.Repeat("x", pad))
	recs := make([]sdk.LogRecord, batch)
	for i := range recs {
		recs[i] = sdk.LogRecord{Source: "flood", Data: data}
	}
	stream, err := h.OpenLogStream(ctx)
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	start := time.Now()
	inFlight := 0
	for sent := 0; sent < n; sent += batch {
		if inFlight == sdk.MaxAppendsInFlight {
			if _, _, err := stream.Ack(); err != nil {
				return nil, err
			}
			inFlight--
		}
		if err := stream.Send(recs[:min(batch, n-sent)]); err != nil {
			return nil, err
		}
		inFlight++
	}
	for ; inFlight > 0; inFlight-- {
		if _, _, err := stream.Ack(); err != nil {
			return nil, err
		}
	}
	el := time.Since(start)
	return map[string]any{"records": n, "seconds": el.Seconds(), "records_per_second": float64(n) / el.Seconds()}, nil
}
