package ctl

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sitelink/sitelink/daemon/api"
)

// completionTimeout bounds the daemon queries of shell completion.
const completionTimeout = 2 * time.Second

// completionPlugins asks the daemon for its plugins; nil when it cannot be reached.
func (a *app) completionPlugins(cmd *cobra.Command) []api.PluginStatus {
	ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
	defer cancel()
	ps, err := a.client(cmd).Plugins(ctx)
	if err != nil {
		return nil
	}
	return ps
}

func described(name, desc string) string {
	if desc == "" {
		return name
	}
	return name + "\t" + desc
}

// completePluginNames completes plugin names for the first max arguments (all when max
// is negative).
func (a *app) completePluginNames(max int) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if max >= 0 && len(args) >= max {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, p := range a.completionPlugins(cmd) {
			if strings.HasPrefix(p.Name, toComplete) {
				out = append(out, described(p.Name, p.State+" "+p.Description))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completePluginAction completes "sitelinkctl PLUGIN ACTION --ARG": plugin names (cobra
// adds the commands), then the plugin's actions, then the action's argument flags.
func (a *app) completePluginAction(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	a.prescanSocket(args)
	var positional []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if strings.HasPrefix(arg, "-") {
			name, _, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
			if (globalValueFlags[name] || name == "arg") && !hasValue {
				i++
			}
			continue
		}
		positional = append(positional, arg)
	}
	var out []cobra.Completion
	switch len(positional) {
	case 0:
		for _, p := range a.completionPlugins(cmd) {
			if strings.HasPrefix(p.Name, toComplete) {
				out = append(out, described(p.Name, "plugin: "+p.Description))
			}
		}
	case 1:
		for _, p := range a.completionPlugins(cmd) {
			if p.Name != positional[0] {
				continue
			}
			for _, act := range p.Actions {
				if strings.HasPrefix(act.Name, toComplete) {
					out = append(out, described(act.Name, act.Description))
				}
			}
		}
	default:
		if !strings.HasPrefix(toComplete, "-") {
			break
		}
		for _, p := range a.completionPlugins(cmd) {
			if p.Name != positional[0] {
				continue
			}
			if spec, ok := findAction(p, positional[1]); ok {
				for _, arg := range spec.Args {
					if flag := "--" + arg.Name; !reservedFlags[arg.Name] && strings.HasPrefix(flag, toComplete) {
						out = append(out, described(flag, arg.Description))
					}
				}
			}
		}
		for _, flag := range []string{"--arg", "--json", "--socket", "--timeout"} {
			if strings.HasPrefix(flag, toComplete) {
				out = append(out, flag)
			}
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
