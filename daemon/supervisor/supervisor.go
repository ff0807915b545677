package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/daemon/eventbus"
	"github.com/sitelink/sitelink/daemon/proc"
	"github.com/sitelink/sitelink/plugins/sdk"
)

// Options configure a Supervisor.
type Options struct {
	// Self is the sitelinkd executable, used as the privilege-dropping launcher.
	Self string
	// HostVersion is told to plugins.
	HostVersion string
	// StateDir and RuntimeDir hold plugins/NAME directories; RuntimeDir also pids/.
	StateDir, RuntimeDir string
	// PluginUser runs plugins unless their spec says otherwise ("" = the daemon's user).
	PluginUser string
	// HealthInterval and HealthTimeout govern liveness probes; HealthFailures
	// consecutive failures kill the plugin.
	HealthInterval, HealthTimeout time.Duration
	HealthFailures                int
	// StopTimeout bounds a plugin's graceful Stop.
	StopTimeout time.Duration
	// StartTimeout bounds launch, handshake, Init, Configure and Start.
	StartTimeout time.Duration
	Restart      RestartPolicy
	Logger       *slog.Logger
	Bus          *eventbus.Bus
}

func (o *Options) defaults() {
	if o.HealthInterval <= 0 {
		o.HealthInterval = 5 * time.Second
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = 2 * time.Second
	}
	if o.HealthFailures <= 0 {
		o.HealthFailures = 3
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 10 * time.Second
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 30 * time.Second
	}
	if o.Restart.Max <= 0 {
		o.Restart.Max = 5
	}
	if o.Restart.Window <= 0 {
		o.Restart.Window = time.Minute
	}
	if o.Restart.BackoffMax <= 0 {
		o.Restart.BackoffMax = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Bus == nil {
		o.Bus = eventbus.New()
	}
}

// Supervisor owns the plugin instances.
type Supervisor struct {
	opts   Options
	probe  *prober
	ctx    context.Context
	cancel context.CancelFunc

	mu         sync.Mutex
	instances  map[string]*instance
	order      []string // desired order (dependency order of the last Apply)
	role       sdk.Role
	roleSource string        // the plugin that published the role
	changed    chan struct{} // closed and replaced on every state change
	disabled   map[string]bool
	wg         sync.WaitGroup
}

// New makes a supervisor; it runs nothing until Apply. ctx carries values only: the
// plugins run until Stop.
func New(ctx context.Context, opts Options) (*Supervisor, error) {
	opts.defaults()
	for _, d := range []string{filepath.Join(opts.RuntimeDir, "pids"), filepath.Join(opts.RuntimeDir, "plugins"), filepath.Join(opts.StateDir, "plugins")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := os.Chmod(filepath.Join(opts.RuntimeDir, "pids"), 0o700); err != nil {
		return nil, fmt.Errorf("chmod pid directory: %w", err)
	}
	// The plugins' lives end with Stop (graceful, in reverse order) or Close, not with the
	// caller's context: a daemon stopping on SIGTERM must still ask each plugin to stop.
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Supervisor{opts: opts, ctx: ctx, cancel: cancel, instances: map[string]*instance{},
		role: sdk.RoleUnknown, changed: make(chan struct{}), disabled: map[string]bool{},
		probe: newProber(opts.Self, opts.PluginUser)}
	s.wg.Add(1)
	go s.followRole()
	return s, nil
}

// ReapLeftovers kills plugin processes a crashed daemon left running (checked to be the
// very processes it started, not PIDs reused since).
func ReapLeftovers(runtimeDir string) ([]proc.Record, error) {
	return proc.Reap(filepath.Join(runtimeDir, "pids"))
}

// notify wakes everything waiting for a state change.
func (s *Supervisor) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *Supervisor) changedCh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// followRole gates master-only plugins on role events.
func (s *Supervisor) followRole() {
	defer s.wg.Done()
	for ev := range s.opts.Bus.Subscribe(s.ctx, sdk.EventRole) {
		s.setRole(sdk.ParseRole(ev.Attrs["role"]), ev.Source)
	}
}

// setRole records the role and who said it, and gates the plugins.
func (s *Supervisor) setRole(role sdk.Role, source string) {
	s.mu.Lock()
	old := s.role
	s.role = role
	s.roleSource = source
	insts := s.instancesLocked()
	s.mu.Unlock()
	if old != role {
		s.opts.Logger.Info("HA role changed", "event", "role", "role", string(role), "previous", string(old), "source", source)
		for _, in := range insts {
			in.send(command{kind: cmdRole})
		}
		s.notify()
	}
}

// sourceGone forgets what a plugin that stopped running had said: its retained events,
// and the role when it was the role's source (a dead vrrp plugin must not leave its
// node MASTER: master-only plugins stand by until a role is known again).
func (s *Supervisor) sourceGone(name string) {
	s.opts.Bus.Forget(name)
	s.mu.Lock()
	was := s.roleSource == name && s.role != sdk.RoleUnknown
	s.mu.Unlock()
	if was {
		s.setRole(sdk.RoleUnknown, name)
	}
}

// Role is the connector's current HA role.
func (s *Supervisor) Role() sdk.Role {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.role
}

func (s *Supervisor) instancesLocked() []*instance {
	out := make([]*instance, 0, len(s.instances))
	for _, name := range s.order {
		if in, ok := s.instances[name]; ok {
			out = append(out, in)
		}
	}
	return out
}

// Apply makes the running plugins match specs (in dependency order): new ones start,
// missing ones stop, changed ones are reconfigured live or restarted when the way they
// are launched changed. Calling it again with the same specs changes nothing.
func (s *Supervisor) Apply(ctx context.Context, specs []Spec) error {
	want := make(map[string]Spec, len(specs))
	order := make([]string, 0, len(specs))
	for _, sp := range specs {
		want[sp.Name] = sp
		order = append(order, sp.Name)
	}
	s.mu.Lock()
	var removed []*instance
	for name, in := range s.instances {
		if _, ok := want[name]; !ok {
			removed = append(removed, in)
			delete(s.instances, name)
		}
	}
	oldOrder := s.order
	s.order = order
	var added []*instance
	var updated []*instance
	for _, sp := range specs {
		if in, ok := s.instances[sp.Name]; ok {
			if in.update(sp) {
				updated = append(updated, in)
			}
			continue
		}
		in := newInstance(s, sp)
		s.instances[sp.Name] = in
		added = append(added, in)
	}
	s.mu.Unlock()
	// Stop removed plugins in reverse of their old order.
	slices.SortFunc(removed, func(a, b *instance) int {
		return slices.Index(oldOrder, b.name) - slices.Index(oldOrder, a.name)
	})
	var errs []error
	for _, in := range removed {
		if err := in.stop(ctx); err != nil {
			errs = append(errs, err)
		}
		s.opts.Bus.Forget(in.name)
	}
	for _, in := range updated {
		in.send(command{kind: cmdUpdate})
	}
	for _, in := range added {
		s.wg.Add(1)
		go in.run(s.ctx)
	}
	s.notify()
	return errors.Join(errs...)
}

// Stop stops every plugin in reverse dependency order, each within the stop timeout.
func (s *Supervisor) Stop(ctx context.Context) {
	s.mu.Lock()
	insts := s.instancesLocked()
	s.mu.Unlock()
	slices.Reverse(insts)
	for _, in := range insts {
		_ = in.stop(ctx)
	}
	s.cancel()
	s.wg.Wait()
}

// WaitReady waits until every enabled required plugin runs (or stands by for its role).
func (s *Supervisor) WaitReady(ctx context.Context) error {
	for {
		ch := s.changedCh()
		if s.Ready() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Ready reports whether every enabled required plugin runs.
func (s *Supervisor) Ready() bool {
	for _, st := range s.Snapshot() {
		if st.Required && st.State != api.PluginDisabled && st.State != api.PluginRunning && st.State != api.PluginStandby {
			return false
		}
	}
	return true
}

// Snapshot returns every plugin's status as last observed (no plugin calls).
func (s *Supervisor) Snapshot() []api.PluginStatus {
	s.mu.Lock()
	insts := s.instancesLocked()
	s.mu.Unlock()
	out := make([]api.PluginStatus, 0, len(insts))
	for _, in := range insts {
		out = append(out, in.snapshot())
	}
	return out
}

// Status asks every plugin for a fresh status (in parallel, bounded by the health
// timeout) and falls back to the last observed one.
func (s *Supervisor) Status(ctx context.Context) []api.PluginStatus {
	s.mu.Lock()
	insts := s.instancesLocked()
	s.mu.Unlock()
	out := make([]api.PluginStatus, len(insts))
	var wg sync.WaitGroup
	for i, in := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.refresh(ctx)
			out[i] = in.snapshot()
		}()
	}
	wg.Wait()
	return out
}

func (s *Supervisor) get(name string) (*instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[name]
	if !ok {
		return nil, fmt.Errorf("%w: no plugin %q", ErrNotFound, name)
	}
	return in, nil
}

// ErrNotFound is returned for a plugin or action that does not exist.
var ErrNotFound = errors.New("not found")

// ErrNotRunning is returned for calls to a plugin that does not run.
var ErrNotRunning = errors.New("plugin not running")

// PluginStatus returns one plugin's fresh status.
func (s *Supervisor) PluginStatus(ctx context.Context, name string) (api.PluginStatus, error) {
	in, err := s.get(name)
	if err != nil {
		return api.PluginStatus{}, err
	}
	in.refresh(ctx)
	return in.snapshot(), nil
}

// Restart restarts a plugin now, also one in state failed (clearing it).
func (s *Supervisor) Restart(name string) error {
	in, err := s.get(name)
	if err != nil {
		return err
	}
	in.send(command{kind: cmdRestart})
	return nil
}

// SetDisabled disables or enables a plugin at run time (on top of the config).
// Before Apply it only records the wish (for the disabled set kept across restarts).
func (s *Supervisor) SetDisabled(name string, disabled bool) error {
	s.mu.Lock()
	s.disabled[name] = disabled
	in, ok := s.instances[name]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: no plugin %q", ErrNotFound, name)
	}
	in.send(command{kind: cmdUpdate})
	return nil
}

// Disabled reports the run-time disabled set.
func (s *Supervisor) isDisabled(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.disabled[name]
}

// Client returns the handle of a running plugin.
func (s *Supervisor) Client(name string) (*sdk.Client, error) {
	in, err := s.get(name)
	if err != nil {
		return nil, err
	}
	c := in.currentClient()
	if c == nil {
		return nil, fmt.Errorf("%w: %s is %s", ErrNotRunning, name, in.snapshot().State)
	}
	return c, nil
}

// Action finds an action's spec.
func (s *Supervisor) Action(name, action string) (api.ActionSpec, error) {
	in, err := s.get(name)
	if err != nil {
		return api.ActionSpec{}, err
	}
	for _, a := range in.snapshot().Actions {
		if a.Name == action {
			return a, nil
		}
	}
	if in.currentClient() == nil {
		return api.ActionSpec{}, fmt.Errorf("%w: %s is %s", ErrNotRunning, name, in.snapshot().State)
	}
	return api.ActionSpec{}, fmt.Errorf("%w: plugin %q has no action %q", ErrNotFound, name, action)
}

// LogSink returns a running plugin that provides "logsink".
func (s *Supervisor) LogSink() *sdk.Client {
	s.mu.Lock()
	insts := s.instancesLocked()
	s.mu.Unlock()
	for _, in := range insts {
		if c := in.sinkClient(); c != nil {
			return c
		}
	}
	return nil
}

// Bus is the supervisor's event bus.
func (s *Supervisor) Bus() *eventbus.Bus { return s.opts.Bus }

// WaitFor waits until the plugin's status satisfies cond (checked at every state change).
func (s *Supervisor) WaitFor(ctx context.Context, name string, cond func(api.PluginStatus) bool) error {
	in, err := s.get(name)
	if err != nil {
		return err
	}
	for {
		ch := s.changedCh()
		if cond(in.snapshot()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("plugin %s: %w", name, ctx.Err())
		}
	}
}
