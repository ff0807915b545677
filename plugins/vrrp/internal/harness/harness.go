// Package harness runs VRRP routers for the vrrp plugin's end-to-end tests and
// benchmarks inside testenv hosts: the real plugin binary as a child process driven over
// go-plugin exactly as sitelinkd drives it (optionally through sitelinkd's privilege
// dropping launcher, as an unprivileged user with only the declared capabilities), with
// an in-memory event bus as its host; keepalived with generated configurations; and
// packet-level probes of what a client on the LAN sees (who answers ARP for a virtual
// IP, which gratuitous ARPs go by).
package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sitelink/sitelink/daemon/eventbus"
	"github.com/sitelink/sitelink/daemon/proc"
	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/sdk/pluginpb"
	"github.com/sitelink/sitelink/testenv"
)

// Build compiles the vrrp plugin into a new directory readable by every user and
// returns the binary's path. root is the module's root directory. With the environment
// variable VRRP_PLUGIN_RACE set, the plugin is built with the race detector.
func Build(ctx context.Context, root string) (string, error) {
	dir, err := os.MkdirTemp("", "sitelink-vrrp-bin-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "vrrp")
	args := []string{"build", "-o", bin}
	if os.Getenv("VRRP_PLUGIN_RACE") != "" {
		args = append(args, "-race") // races are printed in the plugin's log
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./plugins/vrrp")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./plugins/vrrp: %w\n%s", err, out)
	}
	return bin, nil
}

// ModuleRoot finds the module root from the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// RunLauncher makes the current executable serve as sitelinkd's privilege-dropping
// launcher: call it first in TestMain (or main). It returns only when the process was
// not started as the launcher.
func RunLauncher() {
	if len(os.Args) > 1 && os.Args[1] == proc.LauncherArg {
		err := proc.ExecMain(os.Args[2:])
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// PluginOptions say how to run the plugin.
type PluginOptions struct {
	// Binary is the plugin (from Build).
	Binary string
	// User, when set, runs the plugin as this user with only the plugin's declared
	// capabilities, through the launcher (the current executable, see RunLauncher).
	User string
	// StateDir is the plugin's state directory (kept across restarts of a node);
	// empty makes one in the env's directory.
	StateDir string
	// Log receives the plugin's log lines (default: discarded).
	Log io.Writer
}

// Plugin is a running vrrp plugin process in a host.
type Plugin struct {
	Name   string
	Host   *testenv.Host
	Client *sdk.Client
	Bus    *eventbus.Bus
	PID    int

	pc     *plugin.Client
	host   *hostService
	logger *slog.Logger
	opts   PluginOptions
}

// StartPlugin launches the plugin in host h and calls Init; it is not configured yet.
// The plugin is killed when env closes (and by Kill).
func StartPlugin(ctx context.Context, env *testenv.Env, h *testenv.Host, name string, opts PluginOptions) (*Plugin, error) {
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	logger := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
	if opts.StateDir == "" {
		opts.StateDir = filepath.Join(env.Dir(), "state-"+name)
	}
	runDir := filepath.Join(env.Dir(), "run-"+name)
	for _, d := range []string{opts.StateDir, runDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, err
		}
	}
	var cmd *exec.Cmd
	sock := &plugin.UnixSocketConfig{TempDir: runDir}
	if opts.User != "" {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		uid, gid, err := proc.UserIDs(opts.User)
		if err != nil {
			return nil, err
		}
		// The host's broker socket must be writable by the plugin's group.
		sock.Group = strconv.Itoa(gid)
		for _, d := range []string{opts.StateDir, runDir} {
			if err := os.Chown(d, uid, gid); err != nil {
				return nil, err
			}
		}
		if err := os.Chmod(env.Dir(), 0o755); err != nil {
			return nil, err
		}
		caps, err := proc.ParseCaps([]string{"CAP_NET_ADMIN", "CAP_NET_RAW"})
		if err != nil {
			return nil, err
		}
		lc, err := proc.Launch{Self: self, Binary: opts.Binary, Priv: proc.Privileges{User: opts.User, Caps: caps}}.Command()
		if err != nil {
			return nil, err
		}
		cmd = h.Command(env.Context(), lc.Path, lc.Args[1:]...)
	} else {
		cmd = h.Command(env.Context(), opts.Binary)
	}
	cmd.Dir = opts.StateDir
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.PluginSets(),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           sdk.NewHCLogAdapter(logger, "go-plugin"),
		Stderr:           sdk.NewLogForwarder(logger),
		SyncStdout:       sdk.LineWriter(logger, "stdout"),
		SyncStderr:       sdk.LineWriter(logger, "stderr"),
		StartTimeout:     30 * time.Second,
		UnixSocketConfig: sock,
	})
	p := &Plugin{Name: name, Host: h, pc: pc, logger: logger, Bus: eventbus.New(), opts: opts}
	p.host = &hostService{name: "vrrp", bus: p.Bus, log: logger}
	rpc, err := pc.Client()
	if err != nil {
		pc.Kill()
		return nil, fmt.Errorf("start plugin %s: %w", name, err)
	}
	raw, err := rpc.Dispense(sdk.PluginKey)
	if err != nil {
		pc.Kill()
		return nil, fmt.Errorf("dispense plugin %s: %w", name, err)
	}
	p.Client = raw.(*sdk.Client)
	p.PID = cmd.Process.Pid
	if err := p.Client.Init(ctx, sdk.InitOptions{Name: "vrrp", APIVersion: sdk.APIVersion, StateDir: opts.StateDir,
		RuntimeDir: runDir, HostVersion: "vrrp-harness"}, p.host); err != nil {
		pc.Kill()
		return nil, fmt.Errorf("init plugin %s: %w", name, err)
	}
	go func() {
		<-env.Context().Done()
		pc.Kill()
	}()
	return p, nil
}

// Configure sends a config (any JSON-encodable value or a JSON string).
func (p *Plugin) Configure(ctx context.Context, cfg any) error {
	b, err := configJSON(cfg)
	if err != nil {
		return err
	}
	return p.Client.Configure(ctx, b, false)
}

func configJSON(cfg any) ([]byte, error) {
	switch c := cfg.(type) {
	case string:
		return []byte(c), nil
	case []byte:
		return c, nil
	}
	return json.Marshal(cfg)
}

// Start starts the plugin's work.
func (p *Plugin) Start(ctx context.Context) error { return p.Client.Start(ctx, sdk.RoleUnknown) }

// Stop stops it gracefully (priority 0 from a master).
func (p *Plugin) Stop(ctx context.Context) error { return p.Client.Stop(ctx) }

// Kill sends SIGKILL to the plugin process, like a crash.
func (p *Plugin) Kill() error {
	err := syscall.Kill(p.PID, syscall.SIGKILL)
	p.pc.Kill()
	return err
}

// Terminate sends SIGTERM to the plugin process.
func (p *Plugin) Terminate() error { return syscall.Kill(p.PID, syscall.SIGTERM) }

// Exited reports whether the plugin process has exited.
func (p *Plugin) Exited() bool { return p.pc.Exited() }

// Close ends the plugin (gracefully asks go-plugin to stop it, then kills).
func (p *Plugin) Close() { p.pc.Kill() }

// Status is the plugin's status action result.
type Status struct {
	Running   bool             `json:"running"`
	Role      string           `json:"role"`
	Instances []InstanceStatus `json:"instances"`
}

// InstanceStatus is the part of an instance's status the tests read.
type InstanceStatus struct {
	Name              string            `json:"name"`
	State             string            `json:"state"`
	Master            string            `json:"master"`
	MasterPriority    int               `json:"master_priority"`
	Priority          int               `json:"priority"`
	EffectivePriority int               `json:"effective_priority"`
	Fault             string            `json:"fault"`
	Hold              string            `json:"hold"`
	LastError         string            `json:"last_error"`
	Transitions       []json.RawMessage `json:"transitions"`
	Counters          struct {
		AdvertsSent     uint64            `json:"adverts_sent"`
		AdvertsReceived uint64            `json:"adverts_received"`
		Invalid         map[string]uint64 `json:"invalid"`
		Announcements   uint64            `json:"announcements"`
	} `json:"counters"`
}

// Status runs the status action.
func (p *Plugin) Status(ctx context.Context) (Status, error) {
	b, err := p.Client.InvokeAction(ctx, "status", nil)
	if err != nil {
		return Status{}, err
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return Status{}, fmt.Errorf("decode status: %w", err)
	}
	return s, nil
}

// State returns the state of the first instance ("" when unknown).
func (p *Plugin) State(ctx context.Context) (string, error) {
	s, err := p.Status(ctx)
	if err != nil || len(s.Instances) == 0 {
		return "", err
	}
	return s.Instances[0].State, nil
}

// Action runs an action and returns its JSON result.
func (p *Plugin) Action(ctx context.Context, name string, args map[string]string) ([]byte, error) {
	return p.Client.InvokeAction(ctx, name, args)
}

// Publish injects an event as if another plugin had published it.
func (p *Plugin) Publish(ev sdk.Event) { p.Bus.Publish(ev) }

// Roles returns the role events the plugin published so far, oldest first.
func (p *Plugin) Roles() []sdk.Event { return p.eventsOf(sdk.EventRole) }

func (p *Plugin) eventsOf(typ string) []sdk.Event {
	hs := p.host
	hs.mu.Lock()
	defer hs.mu.Unlock()
	var out []sdk.Event
	for _, ev := range hs.published {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// Role returns the role of the last role event ("" when none yet).
func (p *Plugin) Role() string {
	r := p.Roles()
	if len(r) == 0 {
		return ""
	}
	return r[len(r)-1].Attrs["role"]
}

// hostService is the Host API for the plugin: events go through an in-memory bus.
type hostService struct {
	pluginpb.UnimplementedHostServer
	name string
	bus  *eventbus.Bus
	log  *slog.Logger

	mu        sync.Mutex
	published []sdk.Event
}

func (h *hostService) Publish(_ context.Context, req *pluginpb.PublishRequest) (*pluginpb.PublishResponse, error) {
	if req.GetEvent().GetType() == "" {
		return nil, status.Error(codes.InvalidArgument, "event without a type")
	}
	ev := sdk.EventFromProto(req.GetEvent())
	ev.Source = h.name
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	h.mu.Lock()
	h.published = append(h.published, ev)
	h.mu.Unlock()
	h.log.Info("event: "+ev.Message, "type", ev.Type, "attrs", fmt.Sprint(ev.Attrs))
	h.bus.Publish(ev)
	return &pluginpb.PublishResponse{}, nil
}

func (h *hostService) Subscribe(req *pluginpb.SubscribeRequest, stream pluginpb.Host_SubscribeServer) error {
	events := h.bus.Subscribe(stream.Context(), req.GetTypes()...)
	// Registered: the plugin's Subscribe waits for these headers.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	for ev := range events {
		if err := stream.Send(sdk.EventToProto(ev)); err != nil {
			return err
		}
	}
	return nil
}
