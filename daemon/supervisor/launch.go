package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/daemon/proc"
	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/sdk/pluginpb"
)

// process is a started, handshaken plugin process.
type process struct {
	pc       *plugin.Client
	client   *sdk.Client
	info     *pluginpb.InfoResponse
	version  int
	caps     proc.CapSet
	user     string
	pid      int
	stateDir string
	runDir   string
}

// spawn checks the binary, learns what it is, and starts it with least privilege up to
// the go-plugin handshake. onStart is told the go-plugin client as soon as it exists, so
// the caller can kill the process even if the handshake fails.
func (s *Supervisor) spawn(ctx context.Context, spec Spec, logger *slog.Logger, onStart func(*plugin.Client)) (*process, error) {
	opts := s.opts
	if err := checkBinary(spec.Binary); err != nil {
		return nil, err
	}
	if spec.SHA256 != "" {
		if err := verifySHA256(spec.Binary, spec.SHA256); err != nil {
			return nil, err
		}
	}
	p := &process{user: spec.User}
	if p.user == "" {
		p.user = opts.PluginUser
	}
	if os.Geteuid() != 0 {
		p.user = "" // cannot switch users: run with the daemon's own privileges
	}
	var err error
	if p.info, err = s.probe.info(ctx, spec.Binary, spec.Args, p.user); err != nil {
		return nil, err
	}
	if p.version, err = negotiate(spec.Name, p.info, spec.APIVersion); err != nil {
		return nil, err
	}
	if p.caps, err = grantedCaps(spec, p.info); err != nil {
		return nil, err
	}
	p.stateDir = filepath.Join(opts.StateDir, "plugins", spec.Name)
	p.runDir = filepath.Join(opts.RuntimeDir, "plugins", spec.Name)
	for _, d := range []string{p.stateDir, p.runDir} {
		if err := ownedDir(d, p.user); err != nil {
			return nil, err
		}
	}
	// go-plugin's unix sockets are created with the creator's umask: the host's broker
	// socket (host services) must be writable by the plugin's group, or a plugin that
	// runs as another user cannot dial back.
	sock := &plugin.UnixSocketConfig{TempDir: p.runDir}
	if p.user != "" {
		_, gid, err := proc.UserIDs(p.user)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRefused, err)
		}
		sock.Group = strconv.Itoa(gid)
	}
	// go-plugin honours UnixSocketConfig.TempDir only with a RunnerFunc: without this
	// variable the plugin's sockets land in /tmp, and every plugin that dies without
	// cleaning up (kill -9, a crash) leaves one there for good. In its own runtime
	// directory they are found and removed at the next launch.
	removeStaleSockets(p.runDir)
	cmd, err := proc.Launch{Self: opts.Self, Binary: spec.Binary, Args: spec.Args, Dir: p.stateDir,
		Env:  []string{plugin.EnvUnixSocketDir + "=" + p.runDir},
		Priv: proc.Privileges{User: p.user, Caps: p.caps}}.Command()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	p.pc = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.PluginSets(),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           sdk.NewHCLogAdapter(logger, "go-plugin"),
		Stderr:           sdk.NewLogForwarder(logger),
		SyncStdout:       sdk.LineWriter(logger, "stdout"),
		SyncStderr:       sdk.LineWriter(logger, "stderr"),
		StartTimeout:     opts.StartTimeout,
		UnixSocketConfig: sock,
	})
	onStart(p.pc)
	rpc, err := p.pc.Client()
	if err != nil {
		return nil, fmt.Errorf("start plugin process %s: %w", spec.Binary, err)
	}
	raw, err := rpc.Dispense(sdk.PluginKey)
	if err != nil {
		return nil, fmt.Errorf("connect to plugin: %w", err)
	}
	cl, ok := raw.(*sdk.Client)
	if !ok {
		return nil, fmt.Errorf("%w: plugin served an unexpected type %T", ErrRefused, raw)
	}
	p.client = cl
	p.pid = cmd.Process.Pid
	return p, nil
}

// init hands the process its identity and host services.
func (s *Supervisor) initProcess(ctx context.Context, spec Spec, p *process) error {
	return p.client.Init(ctx, sdk.InitOptions{Name: spec.Name, APIVersion: p.version, StateDir: p.stateDir,
		RuntimeDir: p.runDir, HostVersion: s.opts.HostVersion}, newHostService(s, spec.Name))
}

// launch starts the plugin process and brings it to running (or standby): checks,
// handshake, Init, Configure, Start when active.
func (in *instance) launch(ctx context.Context, spec Spec) error {
	opts := in.sup.opts
	p, err := in.sup.spawn(ctx, spec, in.log, func(pc *plugin.Client) {
		in.mu.Lock()
		in.pc = pc
		in.mu.Unlock()
	})
	if err != nil {
		return err
	}
	cl, info, version, caps, pid, user := p.client, p.info, p.version, p.caps, p.pid, p.user
	if rec, err := proc.Identify(spec.Name, pid); err == nil {
		if err := rec.Save(in.pidFile()); err != nil {
			in.log.Warn("cannot record plugin pid", "error", err)
		}
	}
	in.mu.Lock()
	in.client = cl
	in.info = info
	in.st.PID = pid
	in.st.Version = info.GetVersion()
	in.st.Description = info.GetDescription()
	in.st.APIVersion = version
	in.st.Capabilities = caps.Names()
	in.st.Actions = actionSpecs(info)
	in.mu.Unlock()

	sctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	if err := in.sup.initProcess(sctx, spec, p); err != nil {
		return err
	}
	if err := cl.Configure(sctx, spec.Config, false); err != nil {
		var fes sdk.FieldErrors
		if errors.As(err, &fes) {
			return fmt.Errorf("%w: config rejected: %v", ErrRefused, fes)
		}
		return err
	}
	_ = in.refresh(ctx)
	if in.shouldBeActive(spec) {
		if err := cl.Start(sctx, in.sup.Role()); err != nil {
			return err
		}
		in.mu.Lock()
		in.active = true
		in.mu.Unlock()
		in.setState(api.PluginRunning, "")
	} else {
		in.setState(api.PluginStandby, "")
	}
	in.log.Info("plugin up", "event", "plugin_up", "pid", pid, "version", info.GetVersion(),
		"api_version", version, "capabilities", caps.String(), "user", user)
	return nil
}

// removeStaleSockets deletes the go-plugin sockets (pluginNNN) a dead process of the
// plugin left in its runtime directory. Only one process of a plugin runs at a time.
func removeStaleSockets(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.Type()&os.ModeSocket != 0 && strings.HasPrefix(e.Name(), "plugin") {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// ownedDir creates a plugin directory owned by the plugin's user, mode 0750.
func ownedDir(dir, user string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if user == "" || os.Geteuid() != 0 {
		return nil
	}
	uid, gid, err := proc.UserIDs(user)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	return nil
}

func actionSpecs(info *pluginpb.InfoResponse) []api.ActionSpec {
	out := make([]api.ActionSpec, 0, len(info.GetActions()))
	for _, a := range info.GetActions() {
		as := api.ActionSpec{Name: a.GetName(), Description: a.GetDescription(), Streaming: a.GetStreaming(), Mutating: a.GetMutating()}
		for _, arg := range a.GetArgs() {
			as.Args = append(as.Args, api.ArgSpec{Name: arg.GetName(), Type: sdk.ArgTypeFromProto(arg.GetType()).String(),
				Required: arg.GetRequired(), Default: arg.GetDefault(), Description: arg.GetDescription()})
		}
		out = append(out, as)
	}
	return out
}

// killGroup kills what is left of a plugin's process group.
func killGroup(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// Info probes a plugin binary (for config validation before anything runs).
func (s *Supervisor) Info(ctx context.Context, spec Spec) (*pluginpb.InfoResponse, error) {
	if err := checkBinary(spec.Binary); err != nil {
		return nil, err
	}
	user := spec.User
	if user == "" {
		user = s.opts.PluginUser
	}
	if os.Geteuid() != 0 {
		user = ""
	}
	return s.probe.info(ctx, spec.Binary, spec.Args, user)
}

// ValidateConfig asks a running plugin to check a config without applying it. It
// returns nil when the plugin is not running (the schema check is all there is then).
func (s *Supervisor) ValidateConfig(ctx context.Context, name string, config []byte) error {
	in, err := s.get(name)
	if err != nil {
		return nil
	}
	cl := in.currentClient()
	if cl == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return cl.Configure(ctx, config, true)
}
