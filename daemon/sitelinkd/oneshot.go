package sitelinkd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sitelink/sitelink/daemon/config"
	"github.com/sitelink/sitelink/daemon/eventbus"
	"github.com/sitelink/sitelink/daemon/supervisor"
)

// oneShot is a System with a supervisor but no admin socket, for the commands that run
// and exit (--check-config, --cleanup). close stops it and removes its runtime directory.
type oneShot struct {
	*System
	want  []supervisor.Spec
	close func()
}

// newOneShot loads the config and its manifests.
func newOneShot(ctx context.Context, opts Options) (*oneShot, error) {
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	manifests, err := config.LoadManifests(cfg.Daemon.PluginsD)
	if err != nil {
		return nil, err
	}
	return oneShotFor(ctx, opts, cfg, manifests)
}

func oneShotFor(ctx context.Context, opts Options, cfg *config.Config, manifests []config.Manifest) (*oneShot, error) {
	want, err := specs(cfg, manifests)
	if err != nil {
		return nil, err
	}
	logCtl, err := newLogger(cfg, opts)
	if err != nil {
		return nil, err
	}
	s := &System{opts: opts, log: logCtl.Logger, logCtl: logCtl, bus: eventbus.New(), schemas: config.NewSchemaCache(), cfg: cfg}
	// A private runtime directory: a one-shot must not disturb a running daemon's pids.
	rt, err := os.MkdirTemp("", "sitelinkd-oneshot-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(rt, 0o755); err != nil {
		os.RemoveAll(rt)
		return nil, err
	}
	s.sup, err = supervisor.New(ctx, supervisor.Options{Self: opts.Self, HostVersion: opts.Version.Version,
		StateDir: cfg.Daemon.StateDir, RuntimeDir: rt, PluginUser: cfg.Daemon.PluginUser, Logger: s.log, Bus: s.bus})
	if err != nil {
		os.RemoveAll(rt)
		return nil, err
	}
	return &oneShot{System: s, want: want, close: func() { s.sup.Stop(ctx); os.RemoveAll(rt) }}, nil
}

// installedPlugins is a one-shot over the default config with every built-in plugin
// binary and every manifest enabled: what --cleanup falls back to when the config is bad.
func installedPlugins(ctx context.Context, opts Options) (*oneShot, error) {
	def := config.Default()
	entries, _ := os.ReadDir(def.Daemon.PluginDir)
	var lines []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			lines = append(lines, fmt.Sprintf("  %s: {}", e.Name()))
		}
	}
	manifests, _ := config.LoadManifests(def.Daemon.PluginsD)
	for _, m := range manifests {
		lines = append(lines, fmt.Sprintf("  %s: {}", m.Name))
	}
	text := "plugins: {}\n"
	if len(lines) > 0 {
		text = "plugins:\n" + strings.Join(lines, "\n") + "\n"
	}
	cfg, err := config.Parse(opts.ConfigPath+" (fallback: every installed plugin)", []byte(text))
	if err != nil {
		return nil, err
	}
	return oneShotFor(ctx, opts, cfg, manifests)
}

// CheckConfig checks a config file, including each plugin's section against the
// plugin's schema, and prints the result. Errors come as FILE:LINE:COL: reason.
func CheckConfig(ctx context.Context, opts Options, out io.Writer) error {
	o, err := newOneShot(ctx, opts)
	if err == nil {
		defer o.close()
		err = o.validate(ctx, o.cfg, o.want)
	}
	if err != nil {
		return fmt.Errorf("%s is not valid:\n%s", opts.ConfigPath, strings.Join(errorLines(err), "\n"))
	}
	fmt.Fprintf(out, "%s: OK (%d plugins)\n", opts.ConfigPath, len(o.want))
	return nil
}

// Cleanup asks every enabled kernel-facing plugin to remove what it left behind. When
// the config cannot be read (an operator broke it before the daemon stopped), it cleans
// up after every installed plugin instead: a bad config must not leave kernel state.
func Cleanup(ctx context.Context, opts Options, out io.Writer) error {
	o, err := newOneShot(ctx, opts)
	if err != nil {
		fmt.Fprintf(out, "config unusable (%s); cleaning up after every installed plugin\n", firstLine(err.Error()))
		if o, err = installedPlugins(ctx, opts); err != nil {
			return err
		}
	}
	defer o.close()
	var errs []error
	for _, sp := range o.want {
		if !sp.Enabled {
			continue
		}
		removed, kernel, err := o.sup.Cleanup(ctx, sp)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", sp.Name, err))
		case kernel:
			fmt.Fprintf(out, "%s: removed %d item(s)%s\n", sp.Name, len(removed), list(removed))
		}
	}
	return errors.Join(errs...)
}

func list(items []string) string {
	if len(items) == 0 {
		return ""
	}
	return ": " + strings.Join(items, ", ")
}
