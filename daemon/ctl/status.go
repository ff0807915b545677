package ctl

import (
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sitelink/sitelink/daemon/api"
)

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's state and its plugins",
		Long: `Show the daemon's state (version, HA role, status line, config file, last reload and
config error) and a table of its plugins.`,
		Example: "  sitelinkctl status\n  sitelinkctl status --json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.requestContext(cmd)
			defer cancel()
			var st api.Status
			raw, err := a.client(cmd).Get(ctx, "/v1/status", &st)
			if err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.io.Out, raw)
			}
			a.writeStatus(a.io.Out, st)
			return nil
		},
	}
}

func (a *app) writeStatus(w io.Writer, st api.Status) {
	head := "● sitelinkd"
	if st.Version != "" {
		head += " " + st.Version
	}
	fmt.Fprintf(w, "%s - %s\n", head, dash(st.State))
	line := func(k, v string) { fmt.Fprintf(w, "%10s: %s\n", k, v) }
	if st.StatusLine != "" {
		line("Status", st.StatusLine)
	}
	line("Role", dash(st.Role))
	if st.PID > 0 {
		pid := fmt.Sprint(st.PID)
		if !st.StartedAt.IsZero() {
			pid += ", up " + shortDuration(a.now().Sub(st.StartedAt)) + " since " + st.StartedAt.Local().Format(timeLayout)
		}
		line("PID", pid)
	}
	line("Config", dash(st.ConfigFile))
	line("Reloaded", a.timeText(st.LastReload))
	if st.ConfigError != "" {
		line("Error", "last reload rejected: "+st.ConfigError)
	}
	fmt.Fprintln(w)
	if len(st.Plugins) == 0 {
		fmt.Fprintln(w, "No plugins.")
		return
	}
	t := newTable(w, "NAME", "STATE", "HEALTH", "PID", "RESTARTS", "SUMMARY")
	for _, p := range st.Plugins {
		t.row(p.Name, p.State, dash(p.Health), pidText(p.PID), fmt.Sprint(p.Restarts), summary(p))
	}
	t.flush()
}

// summary is a plugin's one-line summary, else its health reasons, else why it exited.
func summary(p api.PluginStatus) string {
	switch {
	case p.Summary != "":
		return p.Summary
	case len(p.Reasons) > 0:
		return strings.Join(p.Reasons, "; ")
	case p.LastExit != "" && p.State != api.PluginRunning && p.State != api.PluginStandby:
		return p.LastExit
	}
	return "-"
}

func (a *app) pluginsCommand() *cobra.Command {
	list := func(cmd *cobra.Command, _ []string) error {
		ctx, cancel := a.requestContext(cmd)
		defer cancel()
		var ps []api.PluginStatus
		raw, err := a.client(cmd).Get(ctx, "/v1/plugins", &ps)
		if err != nil {
			return err
		}
		if a.json {
			return writeJSON(a.io.Out, raw)
		}
		if len(ps) == 0 {
			fmt.Fprintln(a.io.Out, "No plugins.")
			return nil
		}
		t := newTable(a.io.Out, "NAME", "VERSION", "STATE", "HEALTH", "PID", "RESTARTS", "ACTIVE", "SUMMARY")
		for _, p := range ps {
			t.row(p.Name, dash(p.Version), p.State, dash(p.Health), pidText(p.PID), fmt.Sprint(p.Restarts), dash(p.ActiveWhen), summary(p))
		}
		t.flush()
		return nil
	}
	cmd := &cobra.Command{
		Use:     "plugins",
		Aliases: []string{"plugin"},
		Short:   "List and control plugins",
		Long:    "List plugins (the default), show one, or restart, enable or disable it.",
		Example: `  sitelinkctl plugins
  sitelinkctl plugins show tunnel
  sitelinkctl plugins restart snat
  sitelinkctl plugins disable proxy`,
		Args: noArgs,
		RunE: list,
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:     "list",
			Aliases: []string{"ls"},
			Short:   "List plugins with their state and health",
			Args:    noArgs,
			RunE:    list,
		},
		&cobra.Command{
			Use:               "show NAME",
			Short:             "Show everything about a plugin, with its actions",
			Args:              argsBetween(1, 1, "a plugin NAME"),
			ValidArgsFunction: a.completePluginNames(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				ctx, cancel := a.requestContext(cmd)
				defer cancel()
				var p api.PluginStatus
				raw, err := a.client(cmd).Get(ctx, "/v1/plugins/"+url.PathEscape(args[0]), &p)
				if err != nil {
					return err
				}
				if a.json {
					return writeJSON(a.io.Out, raw)
				}
				a.writePlugin(a.io.Out, p)
				return nil
			},
		},
		a.pluginOpCommand("restart", "Restart a plugin (also after it failed)", "Restarted"),
		a.pluginOpCommand("enable", "Start a disabled plugin (until the next reload)", "Enabled"),
		a.pluginOpCommand("disable", "Stop a plugin and keep it stopped (until the next reload)", "Disabled"),
	)
	return cmd
}

func (a *app) pluginOpCommand(verb, short, done string) *cobra.Command {
	return &cobra.Command{
		Use:               verb + " NAME...",
		Short:             short,
		Args:              argsBetween(1, -1, "a plugin NAME"),
		ValidArgsFunction: a.completePluginNames(-1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := a.client(cmd)
			for _, name := range args {
				ctx, cancel := a.requestContext(cmd)
				var p api.PluginStatus
				raw, err := c.Post(ctx, "/v1/plugins/"+url.PathEscape(name)+"/"+verb, nil, &p)
				cancel()
				if err != nil {
					return fmt.Errorf("%s %s: %w", verb, name, err)
				}
				switch {
				case a.json:
					if err := writeJSON(a.io.Out, raw); err != nil {
						return err
					}
				case p.Name == "":
					fmt.Fprintf(a.io.Out, "%s %s.\n", done, name)
				default:
					state := p.State
					if p.PID > 0 {
						state += fmt.Sprintf(" (pid %d)", p.PID)
					}
					fmt.Fprintf(a.io.Out, "%s %s: %s\n", done, name, state)
				}
			}
			return nil
		},
	}
}

func (a *app) writePlugin(w io.Writer, p api.PluginStatus) {
	line := func(k, v string) { fmt.Fprintf(w, "%-14s %s\n", k+":", v) }
	line("Name", p.Name)
	line("Version", dash(p.Version))
	if p.Description != "" {
		line("Description", p.Description)
	}
	state := p.State
	if !p.Since.IsZero() {
		state += " since " + a.timeText(p.Since)
	}
	line("State", state)
	line("Health", dash(p.Health))
	for i, r := range p.Reasons {
		k := ""
		if i == 0 {
			k = "Reasons:"
		}
		fmt.Fprintf(w, "%-14s - %s\n", k, r)
	}
	line("Summary", dash(p.Summary))
	line("PID", pidText(p.PID))
	line("Restarts", fmt.Sprint(p.Restarts))
	if p.LastExit != "" {
		line("Last exit", p.LastExit)
	}
	line("Active when", dash(p.ActiveWhen))
	line("Required", yesNo(p.Required))
	line("Binary", dash(p.Binary))
	line("Vendor", yesNo(p.Vendor))
	if p.APIVersion > 0 {
		line("API version", fmt.Sprint(p.APIVersion))
	}
	if len(p.Capabilities) > 0 {
		line("Capabilities", strings.Join(p.Capabilities, " "))
	}
	if len(p.Counters) > 0 {
		fmt.Fprintln(w, "Counters:")
		names := make([]string, 0, len(p.Counters))
		for k := range p.Counters {
			names = append(names, k)
		}
		sort.Strings(names)
		t := newTable(w, "  NAME", "VALUE")
		for _, k := range names {
			t.row("  "+k, fmt.Sprint(p.Counters[k]))
		}
		t.flush()
	}
	if len(p.Details) > 0 && string(p.Details) != "null" {
		fmt.Fprintln(w, "Details:")
		var b strings.Builder
		_ = writeJSON(&b, p.Details)
		for _, l := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
			fmt.Fprintln(w, "  "+l)
		}
	}
	if len(p.Actions) == 0 {
		fmt.Fprintln(w, "Actions:       none")
		return
	}
	fmt.Fprintln(w, "Actions:")
	writeActions(w, p.Name, p.Actions)
}

// writeActions lists actions with their arguments:
//
//	switch PEER [--force]   Switch the active peer  (mutating)
//	    --peer string   peer to switch to (required)
func writeActions(w io.Writer, plugin string, actions []api.ActionSpec) {
	for _, act := range actions {
		var tags []string
		if act.Mutating {
			tags = append(tags, "mutating")
		}
		if act.Streaming {
			tags = append(tags, "streaming")
		}
		head := "  " + act.Name + actionSynopsis(act)
		desc := act.Description
		if len(tags) > 0 {
			desc = strings.TrimSpace(desc + " [" + strings.Join(tags, ", ") + "]")
		}
		if desc != "" {
			head += "  - " + desc
		}
		fmt.Fprintln(w, head)
		for _, arg := range act.Args {
			fmt.Fprintf(w, "      %s\n", argHelp(arg))
		}
	}
}

// actionSynopsis is " PEER [--force] [--source string]".
func actionSynopsis(act api.ActionSpec) string {
	var b strings.Builder
	for _, arg := range act.Args {
		if arg.Required {
			b.WriteString(" " + strings.ToUpper(arg.Name))
		}
	}
	for _, arg := range act.Args {
		if arg.Required {
			continue
		}
		if arg.Type == "bool" {
			b.WriteString(" [--" + arg.Name + "]")
		} else {
			b.WriteString(" [--" + arg.Name + " " + arg.Type + "]")
		}
	}
	return b.String()
}

// argHelp is "--peer string   peer to switch to (required)".
func argHelp(arg api.ArgSpec) string {
	flag := "--" + arg.Name
	if arg.Name == "follow" && arg.Type == "bool" {
		flag = "-f, --follow"
	}
	if arg.Type != "bool" {
		flag += " " + dash(arg.Type)
	}
	var notes []string
	if arg.Required {
		notes = append(notes, "required")
	}
	if arg.Default != "" {
		notes = append(notes, "default "+arg.Default)
	}
	desc := arg.Description
	if len(notes) > 0 {
		desc = strings.TrimSpace(desc + " (" + strings.Join(notes, ", ") + ")")
	}
	return strings.TrimRight(fmt.Sprintf("%-24s %s", flag, desc), " ")
}
