package sdk

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Action is a named operation of a plugin, run by `sitelinkctl PLUGIN ACTION` or over
// D-Bus. Set Run for a one-shot action or Stream for one that produces output until it
// ends or is cancelled (follow mode).
type Action struct {
	Name        string
	Description string
	Args        []Arg
	// Mutating actions change state; only admins may run them.
	Mutating bool
	// Run returns a JSON-encodable result.
	Run func(ctx context.Context, args Args) (any, error)
	// Stream sends JSON-encodable items until it returns or ctx ends.
	Stream func(ctx context.Context, args Args, send func(item any) error) error
}

// ArgType is the type of an action argument.
type ArgType int

// The argument types.
const (
	ArgString ArgType = iota + 1
	ArgInt
	ArgBool
	// ArgDuration is a Go duration, "5s".
	ArgDuration
	// ArgTime is RFC 3339 or a duration meaning "that long ago" ("10m").
	ArgTime
)

func (t ArgType) String() string {
	switch t {
	case ArgString:
		return "string"
	case ArgInt:
		return "int"
	case ArgBool:
		return "bool"
	case ArgDuration:
		return "duration"
	case ArgTime:
		return "time"
	}
	return "unknown"
}

// Arg declares an action argument.
type Arg struct {
	Name        string
	Type        ArgType
	Required    bool
	Default     string
	Description string
}

// Args are an action's arguments, already checked against the declaration.
type Args struct {
	values map[string]any
}

// Has reports whether the argument was given or has a default.
func (a Args) Has(name string) bool { _, ok := a.values[name]; return ok }

// String returns a string argument ("" when absent).
func (a Args) String(name string) string { s, _ := a.values[name].(string); return s }

// Int returns an int argument (0 when absent).
func (a Args) Int(name string) int64 { v, _ := a.values[name].(int64); return v }

// Bool returns a bool argument (false when absent).
func (a Args) Bool(name string) bool { v, _ := a.values[name].(bool); return v }

// Duration returns a duration argument (0 when absent).
func (a Args) Duration(name string) time.Duration { v, _ := a.values[name].(time.Duration); return v }

// Time returns a time argument (zero when absent).
func (a Args) Time(name string) time.Time { v, _ := a.values[name].(time.Time); return v }

// ArgError is returned when action arguments do not match the declaration.
type ArgError struct{ Msg string }

func (e *ArgError) Error() string { return e.Msg }

// ParseArgs checks raw text arguments against the declared ones: unknown names, missing
// required ones and values of the wrong type are errors. now is used for relative times.
func ParseArgs(specs []Arg, raw map[string]string, now time.Time) (Args, error) {
	known := make(map[string]Arg, len(specs))
	for _, s := range specs {
		known[s.Name] = s
	}
	for name := range raw {
		if _, ok := known[name]; !ok {
			names := make([]string, 0, len(specs))
			for _, s := range specs {
				names = append(names, s.Name)
			}
			sort.Strings(names)
			if len(names) == 0 {
				return Args{}, &ArgError{fmt.Sprintf("unknown argument %q: this action takes no arguments", name)}
			}
			return Args{}, &ArgError{fmt.Sprintf("unknown argument %q (known: %s)", name, strings.Join(names, ", "))}
		}
	}
	out := Args{values: make(map[string]any, len(specs))}
	for _, s := range specs {
		text, given := raw[s.Name]
		if !given {
			if s.Required {
				return Args{}, &ArgError{fmt.Sprintf("missing required argument %q (%s)", s.Name, s.Type)}
			}
			if s.Default == "" {
				continue
			}
			text = s.Default
		}
		v, err := parseArg(s.Type, text, now)
		if err != nil {
			return Args{}, &ArgError{fmt.Sprintf("argument %q: %v", s.Name, err)}
		}
		out.values[s.Name] = v
	}
	return out, nil
}

func parseArg(t ArgType, text string, now time.Time) (any, error) {
	switch t {
	case ArgString:
		return text, nil
	case ArgInt:
		v, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("expected an integer, got %q", text)
		}
		return v, nil
	case ArgBool:
		if text == "" {
			return true, nil
		}
		v, err := strconv.ParseBool(text)
		if err != nil {
			return nil, fmt.Errorf("expected true or false, got %q", text)
		}
		return v, nil
	case ArgDuration:
		v, err := time.ParseDuration(text)
		if err != nil {
			return nil, fmt.Errorf("expected a duration like 30s, got %q", text)
		}
		return v, nil
	case ArgTime:
		if v, err := time.Parse(time.RFC3339Nano, text); err == nil {
			return v, nil
		}
		if d, err := time.ParseDuration(text); err == nil {
			return now.Add(-d), nil
		}
		return nil, fmt.Errorf("expected an RFC 3339 time or a duration ago like 10m, got %q", text)
	}
	return nil, fmt.Errorf("undeclared type %d", t)
}
