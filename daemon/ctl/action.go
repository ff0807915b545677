package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sitelink/sitelink/daemon/api"
)

// globalFlag describes the global flags as they can appear in a plugin action's command
// line, which cobra does not parse.
var globalValueFlags = map[string]bool{"socket": true, "timeout": true}

// actionLine is a plugin action command line split up: global flags applied to the app,
// the plugin and action names, and the remaining arguments (the action's).
type actionLine struct {
	plugin, action string
	rest           []string
	help           bool
}

// splitActionLine finds PLUGIN and ACTION among args, applying the global flags that come
// before them.
func (a *app) splitActionLine(args []string) (actionLine, error) {
	var l actionLine
	var positional []string
	i := 0
	for i < len(args) && len(positional) < 2 {
		arg := args[i]
		switch {
		case arg == "--":
			positional = append(positional, args[i+1:]...)
			i = len(args)
			continue
		case arg == "-h" || arg == "--help":
			l.help = true
			i++
			continue
		case strings.HasPrefix(arg, "-") && len(arg) > 1:
			n, err := a.applyGlobalFlag(args, i)
			if err != nil {
				return l, err
			}
			i += n
			continue
		}
		positional = append(positional, arg)
		i++
	}
	if len(positional) > 0 {
		l.plugin = positional[0]
	}
	if len(positional) > 1 {
		l.action = positional[1]
	}
	if len(positional) > 2 {
		l.rest = append(l.rest, "--")
		l.rest = append(l.rest, positional[2:]...)
	}
	l.rest = append(args[i:len(args):len(args)], l.rest...)
	return l, nil
}

// applyGlobalFlag applies the global flag at args[i] and returns how many arguments it
// used.
func (a *app) applyGlobalFlag(args []string, i int) (int, error) {
	name, value, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
	used := 1
	if globalValueFlags[name] && !hasValue {
		if i+1 >= len(args) {
			return 0, usagef("flag needs an argument: --%s", name)
		}
		value, used = args[i+1], 2
	}
	switch name {
	case "json":
		b := true
		if hasValue {
			var err error
			if b, err = strconv.ParseBool(value); err != nil {
				return 0, usagef("invalid value %q for --json", value)
			}
		}
		a.json = b
	case "socket":
		a.socket, a.socketSet = value, true
	case "timeout":
		d, err := time.ParseDuration(value)
		if err != nil {
			return 0, usagef("invalid value %q for --timeout: %v", value, err)
		}
		a.timeout = d
	default:
		return 0, usagef("unknown flag %s (flags for a plugin action go after the action's name)", args[i])
	}
	return used, nil
}

// prescanSocket applies --socket from anywhere in a plugin action's command line: it is
// needed before the action's flags can be parsed.
func (a *app) prescanSocket(args []string) {
	for i, arg := range args {
		if arg == "--" {
			return
		}
		if v, ok := strings.CutPrefix(arg, "--socket="); ok {
			a.socket, a.socketSet = v, true
		} else if arg == "--socket" && i+1 < len(args) {
			a.socket, a.socketSet = args[i+1], true
		}
	}
}

// runPluginAction is the root command: "sitelinkctl PLUGIN ACTION [ARGS]".
func (a *app) runPluginAction(cmd *cobra.Command, args []string) error {
	a.prescanSocket(args)
	l, err := a.splitActionLine(args)
	if err != nil {
		return err
	}
	if l.plugin == "" {
		cmd.SetOut(a.io.Out)
		return cmd.Help()
	}

	c := a.client(cmd)
	ctx, cancel := a.requestContext(cmd)
	p, err := c.Plugin(ctx, l.plugin)
	cancel()
	if err != nil {
		return a.unknownCommand(l.plugin, err)
	}
	if l.action == "" {
		if l.help {
			a.writePluginHelp(a.io.Out, p)
			return nil
		}
		a.writePluginHelp(a.io.Err, p)
		return &usageError{msg: "missing ACTION for plugin " + p.Name, hinted: true}
	}
	spec, ok := findAction(p, l.action)
	if !ok {
		names := make([]string, 0, len(p.Actions))
		for _, act := range p.Actions {
			names = append(names, act.Name)
		}
		msg := fmt.Sprintf("plugin %s has no action %q", p.Name, l.action)
		if len(names) > 0 {
			msg += " (actions: " + strings.Join(names, ", ") + ")"
		} else {
			msg += " (it has no actions)"
		}
		return &exitError{code: ExitNotFound, err: errors.New(msg)}
	}

	actionArgs, help, err := a.parseActionArgs(p.Name, spec, l.rest)
	if err != nil {
		return err
	}
	if help || l.help {
		writeActionHelp(a.io.Out, p.Name, spec)
		return nil
	}
	return a.invokeAction(cmd, c, p.Name, spec, actionArgs)
}

// unknownCommand explains why PLUGIN was not run: a mistyped command, an unknown plugin,
// or no daemon to ask.
func (a *app) unknownCommand(name string, err error) error {
	var ae *APIError
	notFound := errors.As(err, &ae) && ae.Code == "not_found"
	var ce *ConnectError
	unreachable := errors.As(err, &ce) && !ce.PermissionDenied()
	if notFound || unreachable {
		if s := a.root.SuggestionsFor(name); len(s) > 0 {
			return usagef("unknown command %q; did you mean %s?", name, strings.Join(s, " or "))
		}
	}
	if notFound {
		return &exitError{code: ExitNotFound, err: fmt.Errorf("unknown command or plugin %q (see 'sitelinkctl --help' and 'sitelinkctl plugins')", name)}
	}
	return err
}

func findAction(p api.PluginStatus, name string) (api.ActionSpec, bool) {
	for _, act := range p.Actions {
		if act.Name == name {
			return act, true
		}
	}
	return api.ActionSpec{}, false
}

// reservedFlags are flag names an action argument cannot take (use --arg NAME=VALUE).
var reservedFlags = map[string]bool{"json": true, "socket": true, "timeout": true, "arg": true, "help": true}

// parseActionArgs parses an action's command line: its declared arguments as flags
// (--peer gw-b, --force, -f for follow), --arg NAME=VALUE, positional values for the
// required arguments in order, and the global flags.
func (a *app) parseActionArgs(plugin string, spec api.ActionSpec, rest []string) (map[string]string, bool, error) {
	fs := pflag.NewFlagSet(plugin+" "+spec.Name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	help := fs.BoolP("help", "h", false, "")
	fs.BoolVar(&a.json, "json", a.json, "")
	fs.StringVar(&a.socket, "socket", a.socket, "")
	fs.DurationVar(&a.timeout, "timeout", a.timeout, "")
	raw := fs.StringArray("arg", nil, "")
	for _, arg := range spec.Args {
		if reservedFlags[arg.Name] || fs.Lookup(arg.Name) != nil {
			continue
		}
		short := ""
		if arg.Name == "follow" && arg.Type == "bool" {
			short = "f"
		}
		if arg.Type == "bool" {
			fs.BoolP(arg.Name, short, false, arg.Description)
		} else {
			fs.StringP(arg.Name, short, "", arg.Description)
		}
	}
	usage := func(format string, v ...any) error {
		return &usageError{msg: fmt.Sprintf("%s %s: %s", plugin, spec.Name, fmt.Sprintf(format, v...)), cmd: "sitelinkctl " + plugin + " " + spec.Name}
	}
	if err := fs.Parse(rest); err != nil {
		return nil, false, usage("%v", err)
	}
	if *help {
		return nil, true, nil
	}

	args := map[string]string{}
	for _, kv := range *raw {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, false, usage("--arg wants NAME=VALUE, got %q", kv)
		}
		args[k] = v
	}
	fs.Visit(func(f *pflag.Flag) {
		if reservedFlags[f.Name] {
			return
		}
		args[f.Name] = f.Value.String()
	})
	positional := fs.Args()
	for _, arg := range spec.Args {
		if !arg.Required {
			continue
		}
		if _, set := args[arg.Name]; set {
			continue
		}
		if len(positional) == 0 {
			return nil, false, usage("missing required argument %s (give it as --%s VALUE or in position)", strings.ToUpper(arg.Name), arg.Name)
		}
		args[arg.Name], positional = positional[0], positional[1:]
	}
	if len(positional) > 0 {
		return nil, false, usage("unexpected argument %q (optional arguments are given as --NAME VALUE)", positional[0])
	}
	return args, false, nil
}

// invokeAction runs the action and prints its result or stream.
func (a *app) invokeAction(cmd *cobra.Command, c *Client, plugin string, spec api.ActionSpec, args map[string]string) error {
	printItem := func(item json.RawMessage) error {
		var err error
		if a.json {
			_, err = fmt.Fprintf(a.io.Out, "%s\n", item)
		} else {
			_, err = fmt.Fprintln(a.io.Out, itemLine(item))
		}
		return err
	}
	if spec.Streaming {
		_, err := c.Action(cmd.Context(), plugin, spec.Name, args, printItem)
		if err = streamEnd(cmd, err); err != nil {
			return fmt.Errorf("%s %s: %w", plugin, spec.Name, err)
		}
		return nil
	}
	ctx, cancel := a.requestContext(cmd)
	defer cancel()
	res, err := c.Action(ctx, plugin, spec.Name, args, printItem)
	if err != nil {
		return fmt.Errorf("%s %s: %w", plugin, spec.Name, err)
	}
	if a.json {
		return writeJSON(a.io.Out, res)
	}
	return writeValue(a.io.Out, res)
}

func (a *app) writePluginHelp(w io.Writer, p api.PluginStatus) {
	fmt.Fprintf(w, "Usage: sitelinkctl %s ACTION [ARG...] [flags]\n\n", p.Name)
	head := p.Name
	if p.Version != "" {
		head += " " + p.Version
	}
	if p.Description != "" {
		head += " - " + p.Description
	}
	fmt.Fprintf(w, "%s (%s)\n\n", head, p.State)
	if len(p.Actions) == 0 {
		fmt.Fprintln(w, "This plugin has no actions.")
		return
	}
	fmt.Fprintln(w, "Actions:")
	writeActions(w, p.Name, p.Actions)
	fmt.Fprintf(w, "\nRun 'sitelinkctl %s ACTION --help' for an action's arguments.\n", p.Name)
}

func writeActionHelp(w io.Writer, plugin string, spec api.ActionSpec) {
	fmt.Fprintf(w, "Usage: sitelinkctl %s %s%s [flags]\n\n", plugin, spec.Name, actionSynopsis(spec))
	if spec.Description != "" {
		fmt.Fprintln(w, spec.Description)
	}
	if spec.Mutating {
		fmt.Fprintln(w, "Changes state: needs root or group sitelink-admin.")
	}
	if spec.Streaming {
		fmt.Fprintln(w, "Streams its output until it ends or is interrupted (Ctrl-C).")
	}
	if len(spec.Args) > 0 {
		fmt.Fprintln(w, "\nArguments:")
		n := 0
		for _, arg := range spec.Args {
			text := argHelp(arg)
			if arg.Required {
				n++
				text += fmt.Sprintf(" [positional %d]", n)
			}
			if reservedFlags[arg.Name] {
				text += " [only as --arg " + arg.Name + "=VALUE]"
			}
			fmt.Fprintf(w, "  %s\n", text)
		}
	}
	fmt.Fprint(w, `
Flags:
  --arg NAME=VALUE    set an argument by name (repeatable)
  --json              print the JSON result (streams: one JSON value per line)
  --socket PATH       admin socket of sitelinkd
  --timeout DURATION  how long to wait for a non-streaming result
`)
}
