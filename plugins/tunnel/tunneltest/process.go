package tunneltest

import (
	"context"
	"encoding/json"
	"fmt"
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
	"google.golang.org/grpc/status"

	"github.com/sitelink/sitelink/daemon/proc"
	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/sdk/pluginpb"
	"github.com/sitelink/sitelink/testenv"
)

// BuildPlugin builds the tunnel plugin into dir (which must be traversable by the
// plugin's user) and returns the binary's path.
func BuildPlugin(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "tunnel")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/sitelink/sitelink/plugins/tunnel")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build the tunnel plugin: %w\n%s", err, b)
	}
	return out, nil
}

// PluginOptions start the plugin process the way sitelinkd does.
type PluginOptions struct {
	// Binary is the plugin (see BuildPlugin).
	Binary string
	// Launcher is an executable that runs proc.ExecMain when its first argument is
	// proc.LauncherArg (sitelinkd, or a test binary whose TestMain does so). With User it
	// drops to that user keeping only Caps (ambient); empty runs the plugin as root.
	Launcher string
	User     string
	Caps     []string
	// Host is the network namespace to run in.
	Host *testenv.Host
	// StateDir and RuntimeDir are given to the plugin (created, owned by User).
	StateDir, RuntimeDir string
	Logger               *slog.Logger
}

// Plugin is a running plugin process.
type Plugin struct {
	pc     *plugin.Client
	Client *sdk.Client
	PID    int
	Host   *RecordingHost
}

// StartPlugin launches the plugin inside opts.Host (through `ip netns exec`, which
// execs in place, then the launcher, which execs the plugin: the PID stays the
// plugin's), completes the go-plugin handshake and calls Init.
func StartPlugin(ctx context.Context, o PluginOptions) (*Plugin, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	caps, err := proc.ParseCaps(o.Caps)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{o.StateDir, o.RuntimeDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, err
		}
		if o.User != "" {
			uid, gid, err := proc.UserIDs(o.User)
			if err != nil {
				return nil, err
			}
			if err := os.Chown(d, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	var cmd *exec.Cmd
	sock := &plugin.UnixSocketConfig{TempDir: o.RuntimeDir}
	if o.Launcher != "" {
		cmd, err = proc.Launch{Self: o.Launcher, Binary: o.Binary, Dir: o.StateDir, Priv: proc.Privileges{User: o.User, Caps: caps}}.Command()
		if err != nil {
			return nil, err
		}
		if o.User != "" {
			_, gid, _ := proc.UserIDs(o.User)
			sock.Group = strconv.Itoa(gid)
		}
	} else {
		cmd = exec.Command(o.Binary)
		cmd.Dir = o.StateDir
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		return nil, err
	}
	cmd.Args = append([]string{"ip", "netns", "exec", o.Host.NSName(), cmd.Path}, cmd.Args[1:]...)
	cmd.Path = ipPath
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.PluginSets(),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           sdk.NewHCLogAdapter(o.Logger, "go-plugin"),
		Stderr:           sdk.NewLogForwarder(o.Logger),
		SyncStdout:       sdk.LineWriter(o.Logger, "stdout"),
		SyncStderr:       sdk.LineWriter(o.Logger, "stderr"),
		StartTimeout:     30 * time.Second,
		UnixSocketConfig: sock,
	})
	rpc, err := pc.Client()
	if err != nil {
		pc.Kill()
		return nil, fmt.Errorf("start plugin: %w", err)
	}
	raw, err := rpc.Dispense(sdk.PluginKey)
	if err != nil {
		pc.Kill()
		return nil, fmt.Errorf("dispense plugin: %w", err)
	}
	p := &Plugin{pc: pc, Client: raw.(*sdk.Client), PID: cmd.Process.Pid, Host: NewRecordingHost()}
	ictx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := p.Client.Init(ictx, sdk.InitOptions{Name: "tunnel", APIVersion: sdk.APIVersion, StateDir: o.StateDir,
		RuntimeDir: o.RuntimeDir, HostVersion: "tunneltest"}, p.Host); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Kill9 kills the process with SIGKILL, as a crash would, and waits for it to be gone.
func (p *Plugin) Kill9() error {
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill -9 %d: %w", p.PID, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !p.pc.Exited() {
		if time.Now().After(deadline) {
			return fmt.Errorf("plugin %d still running 10 s after SIGKILL", p.PID)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.Client.Close()
	return nil
}

// Close ends the process (gracefully, then by force).
func (p *Plugin) Close() {
	p.Client.Close()
	p.pc.Kill()
}

// Show runs the show action and decodes it.
func (p *Plugin) Show(ctx context.Context) (map[string]any, error) {
	b, err := p.Client.InvokeAction(ctx, "show", nil)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

// RecordingHost serves the host API to a plugin and records what it publishes.
type RecordingHost struct {
	pluginpb.UnimplementedHostServer
	mu      sync.Mutex
	events  []sdk.Event
	changed chan struct{}
}

// NewRecordingHost returns an empty recorder.
func NewRecordingHost() *RecordingHost { return &RecordingHost{changed: make(chan struct{})} }

// Publish records an event.
func (h *RecordingHost) Publish(_ context.Context, req *pluginpb.PublishRequest) (*pluginpb.PublishResponse, error) {
	ev := sdk.EventFromProto(req.GetEvent())
	ev.Source = "tunnel"
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	h.mu.Lock()
	h.events = append(h.events, ev)
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
	return &pluginpb.PublishResponse{}, nil
}

// Subscribe delivers nothing until the plugin goes away.
func (h *RecordingHost) Subscribe(_ *pluginpb.SubscribeRequest, stream pluginpb.Host_SubscribeServer) error {
	<-stream.Context().Done()
	return nil
}

// AppendLogs is not offered.
func (h *RecordingHost) AppendLogs(context.Context, *pluginpb.AppendRequest) (*pluginpb.AppendResponse, error) {
	return nil, status.Error(codes.Unavailable, "no log cache in tests")
}

// Events returns what was published so far.
func (h *RecordingHost) Events() []sdk.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]sdk.Event(nil), h.events...)
}

// WaitEvent waits for an event after the first `after` ones for which match is true.
func (h *RecordingHost) WaitEvent(ctx context.Context, after int, match func(sdk.Event) bool) (sdk.Event, error) {
	for {
		h.mu.Lock()
		evs, ch := h.events, h.changed
		h.mu.Unlock()
		for _, ev := range evs[min(after, len(evs)):] {
			if match(ev) {
				return ev, nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return sdk.Event{}, fmt.Errorf("no matching event after #%d (%d events: %+v): %w", after, len(evs), evs, ctx.Err())
		}
	}
}

// TunnelEvent matches a tunnel event with the given state and gateway ("" matches any).
func TunnelEvent(state, gateway string) func(sdk.Event) bool {
	return func(ev sdk.Event) bool {
		return ev.Type == sdk.EventTunnel && ev.Attrs["state"] == state && (gateway == "" || ev.Attrs["gateway"] == gateway)
	}
}
