package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/sdk/pluginpb"
)

type cmdKind int

const (
	cmdUpdate  cmdKind = iota + 1 // the spec or the disabled flag changed
	cmdRestart                    // operator asked for a restart
	cmdRole                       // the HA role changed
	cmdStop                       // stop for good
)

type command struct {
	kind cmdKind
	done chan struct{}
}

// instance runs one plugin: one goroutine (run) owns the process; the rest of the
// supervisor reads its status through the mutex and talks to it through cmds.
type instance struct {
	sup  *Supervisor
	name string
	log  *slog.Logger
	cmds chan command

	mu       sync.Mutex
	spec     Spec
	st       api.PluginStatus
	client   *sdk.Client
	pc       *plugin.Client
	info     *pluginpb.InfoResponse
	active   bool
	restarts []time.Time
	stopped  chan struct{}
}

func newInstance(s *Supervisor, spec Spec) *instance {
	in := &instance{sup: s, name: spec.Name, spec: spec, cmds: make(chan command, 16),
		log: s.opts.Logger.With("plugin", spec.Name), stopped: make(chan struct{})}
	in.st = api.PluginStatus{Name: spec.Name, State: api.PluginStarting, Health: string(sdk.HealthUnknown), Since: time.Now()}
	in.fillSpec(spec)
	return in
}

func (in *instance) fillSpec(spec Spec) {
	in.st.ActiveWhen = spec.ActiveWhen
	if in.st.ActiveWhen == "" {
		in.st.ActiveWhen = "always"
	}
	in.st.Required = spec.Required
	in.st.Binary = spec.Binary
	in.st.Vendor = spec.Vendor
}

// update records a new spec; it reports whether the running process must hear of it.
func (in *instance) update(spec Spec) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	old := in.spec
	in.spec = spec
	in.fillSpec(spec)
	return !launchEqual(old, spec) || !configEqual(old.Config, spec.Config) ||
		old.ActiveWhen != spec.ActiveWhen || old.Required != spec.Required
}

func (in *instance) send(c command) {
	select {
	case in.cmds <- c:
	case <-in.stopped:
	}
}

// stop ends the plugin for good and waits for it.
func (in *instance) stop(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case in.cmds <- command{kind: cmdStop, done: done}:
	case <-in.stopped:
		return nil
	}
	select {
	case <-done:
		return nil
	case <-in.stopped: // it had ended already: the command went into the buffer unread
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop plugin %s: %w", in.name, ctx.Err())
	}
}

func (in *instance) snapshot() api.PluginStatus {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.st
}

func (in *instance) currentClient() *sdk.Client {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.client
}

func (in *instance) sinkClient() *sdk.Client {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.client == nil || in.info == nil || in.st.State != api.PluginRunning {
		return nil
	}
	for _, p := range in.info.GetProvides() {
		if p == "logsink" {
			return in.client
		}
	}
	return nil
}

func (in *instance) setState(state, lastExit string) {
	in.mu.Lock()
	old := in.st.State
	changed := old != state
	if changed {
		in.st.State = state
		in.st.Since = time.Now()
	}
	if lastExit != "" {
		in.st.LastExit = lastExit
	}
	if state != api.PluginRunning && state != api.PluginStandby {
		in.st.PID = 0
		if state != api.PluginStarting {
			in.st.Health = string(sdk.HealthUnknown)
		}
	}
	in.mu.Unlock()
	if changed && (old == api.PluginRunning || old == api.PluginStandby) &&
		(state == api.PluginBackoff || state == api.PluginFailed || state == api.PluginStopped || state == api.PluginDisabled) {
		in.sup.sourceGone(in.name)
	}
	if changed {
		attrs := []any{"event", "plugin_state", "state", state, "previous", old}
		if lastExit != "" {
			attrs = append(attrs, "reason", lastExit)
		}
		level := slog.LevelInfo
		if state == api.PluginFailed || state == api.PluginBackoff {
			level = slog.LevelWarn
		}
		in.log.Log(context.Background(), level, "plugin "+state, attrs...)
		in.sup.opts.Bus.Publish(sdk.Event{Type: sdk.EventPlugin, Source: "sitelinkd",
			Attrs:   map[string]string{"plugin": in.name, "state": state, "previous": old},
			Message: fmt.Sprintf("plugin %s %s (was %s)%s", in.name, state, old, suffix(lastExit))})
		in.sup.notify()
	}
}

func suffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

// shouldBeActive says whether the plugin should do its work in the current role.
func (in *instance) shouldBeActive(spec Spec) bool {
	return spec.ActiveWhen != "master" || in.sup.Role() == sdk.RoleMaster
}

// run is the instance's life: launch, watch, restart; until stopped.
func (in *instance) run(ctx context.Context) {
	defer in.sup.wg.Done()
	defer close(in.stopped)
	operatorRestart := false
	for {
		if ctx.Err() != nil {
			in.setState(api.PluginStopped, "")
			return
		}
		in.mu.Lock()
		spec := in.spec
		in.mu.Unlock()
		if !spec.Enabled || in.sup.isDisabled(spec.Name) {
			in.setState(api.PluginDisabled, "")
			if c, ok := in.waitCommand(ctx, nil); !ok || c.kind == cmdStop {
				in.finish(c)
				return
			}
			continue
		}
		// Take the change channel before looking, so that a dependency that comes up
		// in between still wakes us.
		changed := in.sup.changedCh()
		if waiting := in.waitingFor(spec); waiting != "" {
			in.mu.Lock()
			in.st.Reasons = []string{"waiting for " + waiting}
			in.mu.Unlock()
			in.setState(api.PluginStarting, "")
			c, ok := in.waitCommand(ctx, changed)
			if !ok || c.kind == cmdStop {
				in.finish(c)
				return
			}
			continue
		}
		in.mu.Lock()
		in.st.Reasons = nil
		in.mu.Unlock()
		if operatorRestart {
			in.mu.Lock()
			in.restarts = nil
			in.mu.Unlock()
			operatorRestart = false
		}
		in.setState(api.PluginStarting, "")
		c, reason := in.launchAndWatch(ctx, spec)
		in.kill()
		switch {
		case c.kind == cmdStop || ctx.Err() != nil:
			in.setState(api.PluginStopped, "")
			in.finish(c)
			return
		case c.kind == cmdRestart:
			operatorRestart = true
			in.log.Info("restart requested", "event", "plugin_restart")
			continue
		case c.kind == cmdUpdate:
			continue // relaunch with the new spec
		}
		// The plugin died or was refused.
		if errors.Is(reason, ErrRefused) {
			in.setState(api.PluginFailed, reason.Error())
			if !in.waitOperator(ctx, &operatorRestart) {
				return
			}
			continue
		}
		n := in.recordRestart()
		if n > in.sup.opts.Restart.Max {
			in.setState(api.PluginFailed, fmt.Sprintf("%v; restarted %d times within %s", reason, n-1, in.sup.opts.Restart.Window))
			if !in.waitOperator(ctx, &operatorRestart) {
				return
			}
			continue
		}
		delay := in.sup.opts.Restart.delay(n)
		in.setState(api.PluginBackoff, reason.Error())
		in.mu.Lock()
		in.st.Restarts++
		in.mu.Unlock()
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case c := <-in.cmds:
				t.Stop()
				if c.kind == cmdStop {
					in.setState(api.PluginStopped, "")
					in.finish(c)
					return
				}
				if c.kind == cmdRestart {
					operatorRestart = true
				}
			case <-ctx.Done():
				t.Stop()
			}
		}
	}
}

// waitOperator waits in state failed for an operator's restart or a new spec.
func (in *instance) waitOperator(ctx context.Context, operatorRestart *bool) bool {
	for {
		c, ok := in.waitCommand(ctx, nil)
		if !ok || c.kind == cmdStop {
			in.setState(api.PluginStopped, "")
			in.finish(c)
			return false
		}
		if c.kind == cmdRestart || c.kind == cmdUpdate {
			*operatorRestart = true
			return true
		}
	}
}

func (in *instance) finish(c command) {
	if c.done != nil {
		close(c.done)
	}
}

// waitCommand waits for a command, or for wake to close (then a zero command, true).
func (in *instance) waitCommand(ctx context.Context, wake <-chan struct{}) (command, bool) {
	select {
	case c := <-in.cmds:
		return c, true
	case <-wake:
		return command{}, true
	case <-ctx.Done():
		return command{}, false
	}
}

// recordRestart notes a restart and returns how many happened within the window.
func (in *instance) recordRestart() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	now := time.Now()
	cut := now.Add(-in.sup.opts.Restart.Window)
	kept := in.restarts[:0]
	for _, t := range in.restarts {
		if t.After(cut) {
			kept = append(kept, t)
		}
	}
	in.restarts = append(kept, now)
	return len(in.restarts)
}

// waitingFor names the dependencies that do not run yet.
func (in *instance) waitingFor(spec Spec) string {
	var missing []string
	for _, dep := range spec.After {
		d, err := in.sup.get(dep)
		if err != nil {
			missing = append(missing, dep+" (not configured)")
			continue
		}
		st := d.snapshot().State
		if st != api.PluginRunning && st != api.PluginStandby {
			missing = append(missing, fmt.Sprintf("%s (%s)", dep, st))
		}
	}
	return strings.Join(missing, ", ")
}

// launchAndWatch starts the process and watches it until it dies (reason) or a command
// ends its life (c).
func (in *instance) launchAndWatch(ctx context.Context, spec Spec) (c command, reason error) {
	if err := in.launch(ctx, spec); err != nil {
		return command{}, err
	}
	opts := in.sup.opts
	health := time.NewTicker(opts.HealthInterval)
	defer health.Stop()
	exitPoll := time.NewTicker(20 * time.Millisecond)
	defer exitPoll.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return command{}, ctx.Err()
		case <-exitPoll.C:
			if in.exited() {
				return command{}, errors.New("plugin process exited")
			}
		case <-health.C:
			if err := in.refresh(ctx); err != nil {
				if errors.Is(err, sdk.ErrPluginGone) {
					return command{}, errors.New("plugin process exited")
				}
				failures++
				in.log.Warn("health check failed", "event", "health", "error", err, "failures", failures)
				if failures >= opts.HealthFailures {
					return command{}, fmt.Errorf("plugin did not answer %d health checks in a row: %w", failures, err)
				}
			} else {
				failures = 0
			}
		case c := <-in.cmds:
			switch c.kind {
			case cmdStop, cmdRestart:
				in.gracefulStop()
				return c, nil
			case cmdRole:
				if err := in.gate(ctx, spec); err != nil {
					return command{}, err
				}
			case cmdUpdate:
				in.mu.Lock()
				next := in.spec
				in.mu.Unlock()
				if !launchEqual(spec, next) || in.sup.isDisabled(spec.Name) {
					in.log.Info("plugin launch settings changed: restarting", "event", "plugin_update")
					in.gracefulStop()
					return c, nil
				}
				if !configEqual(spec.Config, next.Config) {
					cctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
					err := in.currentClient().Configure(cctx, next.Config, false)
					cancel()
					if err != nil {
						// Validated before Apply, so this is the plugin failing.
						in.log.Error("reconfigure failed", "event", "configure", "error", err)
						return command{}, fmt.Errorf("reconfigure: %w", err)
					}
					in.log.Info("plugin reconfigured", "event", "configure")
				}
				spec = next
				if err := in.gate(ctx, spec); err != nil {
					return command{}, err
				}
			}
		}
	}
}

// gate starts or stops the plugin's work to match the role.
func (in *instance) gate(ctx context.Context, spec Spec) error {
	want := in.shouldBeActive(spec)
	in.mu.Lock()
	active := in.active
	in.mu.Unlock()
	if want == active {
		return nil
	}
	cl := in.currentClient()
	if want {
		sctx, cancel := context.WithTimeout(ctx, in.sup.opts.StartTimeout)
		defer cancel()
		if err := cl.Start(sctx, in.sup.Role()); err != nil {
			return fmt.Errorf("start for role %s: %w", in.sup.Role(), err)
		}
	} else {
		sctx, cancel := context.WithTimeout(ctx, in.sup.opts.StopTimeout)
		defer cancel()
		if err := cl.Stop(sctx); err != nil {
			return fmt.Errorf("stop for role %s: %w", in.sup.Role(), err)
		}
	}
	in.mu.Lock()
	in.active = want
	in.mu.Unlock()
	if want {
		in.setState(api.PluginRunning, "")
	} else {
		in.setState(api.PluginStandby, "")
	}
	return nil
}

func (in *instance) exited() bool {
	in.mu.Lock()
	pc := in.pc
	in.mu.Unlock()
	return pc == nil || pc.Exited()
}

// gracefulStop asks the plugin to stop its work before the stop timeout.
func (in *instance) gracefulStop() {
	cl := in.currentClient()
	if cl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), in.sup.opts.StopTimeout)
	defer cancel()
	if err := cl.Stop(ctx); err != nil && !errors.Is(err, sdk.ErrPluginGone) {
		in.log.Warn("graceful stop failed", "event", "stop", "error", err)
	}
}

// kill ends the process (and its process group) and forgets it.
func (in *instance) kill() {
	in.mu.Lock()
	pc, cl := in.pc, in.client
	pid := in.st.PID
	in.pc, in.client, in.active = nil, nil, false
	in.mu.Unlock()
	if cl != nil {
		cl.Close()
	}
	if pc != nil {
		pc.Kill()
	}
	if pid > 0 {
		killGroup(pid)
	}
	_ = os.Remove(in.pidFile())
}

func (in *instance) pidFile() string {
	return filepath.Join(in.sup.opts.RuntimeDir, "pids", in.name+".pid")
}

// refresh asks the plugin for its status and stores it.
func (in *instance) refresh(ctx context.Context) error {
	cl := in.currentClient()
	if cl == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, in.sup.opts.HealthTimeout)
	defer cancel()
	r, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	in.mu.Lock()
	in.st.Health = string(sdk.HealthFromProto(r.GetHealth()))
	in.st.Reasons = r.GetReasons()
	in.st.Summary = r.GetSummary()
	in.st.Counters = r.GetCounters()
	if len(r.GetDetailsJson()) > 0 {
		in.st.Details = json.RawMessage(r.GetDetailsJson())
	} else {
		in.st.Details = nil
	}
	in.mu.Unlock()
	return nil
}
