package api

import (
	"fmt"
	"sort"
	"strings"
)

// DescribeAction is an action's audit text: "action tunnel switch peer=gw-b".
func DescribeAction(plugin, action string, args map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "action %s %s", plugin, action)
	names := make([]string, 0, len(args))
	for k := range args {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(&b, " %s=%q", k, args[k])
	}
	return b.String()
}

// CheckArgs checks argument names against the action's declaration: no unknown ones, all
// required ones present. The plugin checks the values.
func CheckArgs(spec ActionSpec, args map[string]string) error {
	known := make(map[string]bool, len(spec.Args))
	names := make([]string, 0, len(spec.Args))
	for _, a := range spec.Args {
		known[a.Name] = true
		names = append(names, a.Name)
	}
	sort.Strings(names)
	given := make([]string, 0, len(args))
	for k := range args {
		given = append(given, k)
	}
	sort.Strings(given)
	for _, k := range given {
		if !known[k] {
			if len(names) == 0 {
				return fmt.Errorf("unknown argument %q: this action takes no arguments", k)
			}
			return fmt.Errorf("unknown argument %q (known: %s)", k, strings.Join(names, ", "))
		}
	}
	for _, a := range spec.Args {
		if _, ok := args[a.Name]; a.Required && !ok {
			return fmt.Errorf("missing required argument %q (%s)", a.Name, a.Type)
		}
	}
	return nil
}
