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

// oneShot builds a System with a supervisor but no admin socket, for the commands that
// run and exit (--check-config, --cleanup).
func oneShot(ctx context.Context, opts Options) (*System, *config.Config, []supervisor.Spec, error) {
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return nil, nil, nil, err
	}
	logCtl, err := newLogger(cfg, opts)
	if err != nil {
		return nil, nil, nil, err
	}
	manifests, err := config.LoadManifests(cfg.Daemon.PluginsD)
	if err != nil {
		return nil, nil, nil, err
	}
	want, err := specs(cfg, manifests)
	if err != nil {
		return nil, nil, nil, err
	}
	s := &System{opts: opts, log: logCtl.Logger, logCtl: logCtl, bus: eventbus.New(), schemas: config.NewSchemaCache(), cfg: cfg}
	// A private runtime directory: a one-shot must not disturb a running daemon's pids.
	rt, err := os.MkdirTemp("", "sitelinkd-oneshot-")
	if err != nil {
		return nil, nil, nil, err
	}
	if err := os.Chmod(rt, 0o755); err != nil {
		return nil, nil, nil, err
	}
	s.sup, err = supervisor.New(ctx, supervisor.Options{Self: opts.Self, HostVersion: opts.Version.Version,
		StateDir: cfg.Daemon.StateDir, RuntimeDir: rt, PluginUser: cfg.Daemon.PluginUser, Logger: s.log, Bus: s.bus})
	if err != nil {
		return nil, nil, nil, err
	}
	return s, cfg, want, nil
}

// CheckConfig checks a config file, including each plugin's section against the
// plugin's schema, and prints the result. Errors come as FILE:LINE:COL: reason.
func CheckConfig(ctx context.Context, opts Options, out io.Writer) error {
	s, cfg, want, err := oneShot(ctx, opts)
	if err == nil {
		defer s.sup.Stop(ctx)
		err = s.validate(ctx, cfg, want)
	}
	if err != nil {
		return fmt.Errorf("%s is not valid:\n%s", opts.ConfigPath, strings.Join(errorLines(err), "\n"))
	}
	fmt.Fprintf(out, "%s: OK (%d plugins)\n", opts.ConfigPath, len(want))
	return nil
}

// Cleanup asks every enabled kernel-facing plugin to remove what it left behind.
func Cleanup(ctx context.Context, opts Options, out io.Writer) error {
	s, _, want, err := oneShot(ctx, opts)
	if err != nil {
		return err
	}
	defer s.sup.Stop(ctx)
	var errs []error
	for _, sp := range want {
		if !sp.Enabled {
			continue
		}
		removed, kernel, err := s.sup.Cleanup(ctx, sp)
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
