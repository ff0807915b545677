package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sitelink/sitelink/daemon/api"
)

func (a *app) reloadCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Re-read the config file and apply it",
		Long: `Make sitelinkd re-read its config file and apply the difference: plugins are added,
removed or reconfigured. A config with errors is rejected as a whole (exit status 6) and
the daemon keeps running with the previous one.`,
		Example: "  sitelinkctl reload",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.requestContext(cmd)
			defer cancel()
			var res api.ReloadResult
			raw, err := a.client(cmd).Post(ctx, "/v1/reload", nil, &res)
			if err != nil {
				var ae *APIError
				if errors.As(err, &ae) && ae.Code == "invalid_config" {
					return fmt.Errorf("reload rejected, sitelinkd keeps the previous config: %w", err)
				}
				return err
			}
			if a.json {
				return writeJSON(a.io.Out, raw)
			}
			w := a.io.Out
			if len(res.Added)+len(res.Removed)+len(res.Changed) == 0 {
				fmt.Fprintln(w, "Reloaded: no plugin changed.")
			} else {
				fmt.Fprintln(w, "Reloaded.")
			}
			for _, l := range []struct {
				k string
				v []string
			}{{"added", res.Added}, {"removed", res.Removed}, {"changed", res.Changed}, {"unchanged", res.Unchanged}} {
				if len(l.v) > 0 {
					fmt.Fprintf(w, "  %-10s %s\n", l.k+":", strings.Join(l.v, ", "))
				}
			}
			if len(res.DaemonChanged) > 0 {
				fmt.Fprintf(w, "Restart sitelinkd to apply these changed daemon settings: %s\n", strings.Join(res.DaemonChanged, ", "))
			}
			return nil
		},
	}
}

func (a *app) configCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show or check the configuration",
		Example: `  sitelinkctl config show
  sitelinkctl config check
  sitelinkctl config check /tmp/new-sitelink.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "show",
			Short: "Print the effective configuration (defaults filled in)",
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				ctx, cancel := a.requestContext(cmd)
				defer cancel()
				var cv api.ConfigView
				raw, err := a.client(cmd).Get(ctx, "/v1/config", &cv)
				if err != nil {
					return err
				}
				if a.json {
					return writeJSON(a.io.Out, raw)
				}
				fmt.Fprintf(a.io.Out, "# %s (effective configuration, defaults filled in)\n", dash(cv.File))
				fmt.Fprint(a.io.Out, cv.YAML)
				if cv.YAML != "" && !strings.HasSuffix(cv.YAML, "\n") {
					fmt.Fprintln(a.io.Out)
				}
				return nil
			},
		},
		&cobra.Command{
			Use:   "check [FILE]",
			Short: "Check a configuration without applying it",
			Long: `Check a configuration file without applying it: by default the daemon's own config file
as it is on disk now (as "reload" would read it), or FILE ("-" for standard input), whose
content is sent to the daemon. Exit status 6 when it is invalid.`,
			Args: argsBetween(0, 1, "at most one FILE"),
			RunE: func(cmd *cobra.Command, args []string) error {
				var body []byte
				name := "the daemon's config file"
				if len(args) == 1 {
					var err error
					name = args[0]
					if name == "-" {
						name = "standard input"
						body, err = io.ReadAll(a.io.In)
					} else {
						body, err = os.ReadFile(name)
					}
					if err != nil {
						return fmt.Errorf("config check: %w", err)
					}
					if len(strings.TrimSpace(string(body))) == 0 {
						return &exitError{code: ExitInvalidConfig, err: fmt.Errorf("%s is empty", name)}
					}
				}
				ctx, cancel := a.requestContext(cmd)
				defer cancel()
				var res api.ConfigCheck
				raw, err := a.client(cmd).Post(ctx, "/v1/config/check", body, &res)
				if err != nil {
					return err
				}
				if a.json {
					if err := writeJSON(a.io.Out, raw); err != nil {
						return err
					}
				} else if res.OK {
					fmt.Fprintf(a.io.Out, "%s: configuration OK\n", name)
				} else {
					for _, e := range res.Errors {
						fmt.Fprintln(a.io.Out, e)
					}
				}
				if !res.OK {
					return &exitError{code: ExitInvalidConfig, err: fmt.Errorf("%s is invalid (%d errors)", name, len(res.Errors))}
				}
				return nil
			},
		},
	)
	return cmd
}

// versionJSON is what "version --json" prints.
type versionJSON struct {
	Client api.VersionInfo  `json:"client"`
	Daemon *api.VersionInfo `json:"daemon,omitempty"`
}

func (a *app) versionCommand() *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Show the versions of sitelinkctl and sitelinkd",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client := api.VersionInfo{
				Version: a.build.Version, Commit: a.build.Commit, BuildDate: a.build.Date,
				GoVersion: runtime.Version(), APIVersion: api.Version,
			}
			var daemon *api.VersionInfo
			var daemonErr error
			if !clientOnly {
				ctx, cancel := a.requestContext(cmd)
				defer cancel()
				var v api.VersionInfo
				if _, daemonErr = a.client(cmd).Get(ctx, "/v1/version", &v); daemonErr == nil {
					daemon = &v
				}
			}
			if a.json {
				data, err := json.Marshal(versionJSON{Client: client, Daemon: daemon})
				if err != nil {
					return err
				}
				if err := writeJSON(a.io.Out, data); err != nil {
					return err
				}
				return daemonErr
			}
			fmt.Fprintf(a.io.Out, "Client: sitelinkctl %s\n", versionText(client))
			if daemon != nil {
				fmt.Fprintf(a.io.Out, "Daemon: sitelinkd %s\n", versionText(*daemon))
				var pv []string
				for _, v := range daemon.PluginAPIVersions {
					pv = append(pv, fmt.Sprint(v))
				}
				fmt.Fprintf(a.io.Out, "        admin API %s, plugin API %s\n", dash(daemon.APIVersion), dash(strings.Join(pv, ", ")))
			}
			return daemonErr
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "only show sitelinkctl's version")
	return cmd
}

func versionText(v api.VersionInfo) string {
	var extra []string
	if v.Commit != "" {
		extra = append(extra, "commit "+v.Commit)
	}
	if v.BuildDate != "" {
		extra = append(extra, "built "+v.BuildDate)
	}
	if v.GoVersion != "" {
		extra = append(extra, v.GoVersion)
	}
	if len(extra) == 0 {
		return v.Version
	}
	return v.Version + " (" + strings.Join(extra, ", ") + ")"
}

func (a *app) eventsCommand() *cobra.Command {
	var types []string
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Follow the daemon's events (role changes, plugin states, …)",
		Long: `Print the daemon's events as they happen, one per line, until interrupted. The latest
retained event of each type and source (the current HA role, the tunnel state) comes first.`,
		Example: `  sitelinkctl events
  sitelinkctl events --type ha.role --type plugin.state
  sitelinkctl events --json | jq -c 'select(.source == "tunnel")'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := a.client(cmd).Events(cmd.Context(), types, func(raw json.RawMessage) error {
				if a.json {
					_, err := fmt.Fprintf(a.io.Out, "%s\n", raw)
					return err
				}
				var ev api.Event
				if err := json.Unmarshal(raw, &ev); err != nil {
					_, err := fmt.Fprintf(a.io.Out, "%s\n", raw)
					return err
				}
				_, err := fmt.Fprintln(a.io.Out, eventLine(ev))
				return err
			})
			return streamEnd(cmd, err)
		},
	}
	cmd.Flags().StringSliceVar(&types, "type", nil, "only events of this type (repeatable, or comma-separated)")
	return cmd
}

// eventLine is "2026-05-01 10:00:00.000 vrrp ha.role MASTER role=MASTER".
func eventLine(ev api.Event) string {
	parts := []string{ev.Time.Local().Format("2006-01-02 15:04:05.000"), dash(ev.Source), dash(ev.Type)}
	if ev.Message != "" {
		parts = append(parts, ev.Message)
	}
	if len(ev.Attrs) > 0 {
		attrs, _ := json.Marshal(ev.Attrs)
		parts = append(parts, itemLine(attrs))
	}
	if len(ev.Data) > 0 && string(ev.Data) != "null" {
		parts = append(parts, string(ev.Data))
	}
	return strings.Join(parts, " ")
}

// streamEnd turns the end of a followed stream into the command's result: interrupted
// by the user (Ctrl-C) is success.
func streamEnd(cmd *cobra.Command, err error) error {
	if err != nil && cmd.Context() != nil && cmd.Context().Err() != nil {
		return nil
	}
	return err
}
