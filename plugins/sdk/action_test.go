package sdk

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var testArgSpecs = []Arg{
	{Name: "s", Type: ArgString},
	{Name: "i", Type: ArgInt},
	{Name: "b", Type: ArgBool},
	{Name: "d", Type: ArgDuration},
	{Name: "t", Type: ArgTime},
}

func TestParseArgsTypes(t *testing.T) {
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	a, err := ParseArgs(testArgSpecs, map[string]string{
		"s": "hello world", "i": "-42", "b": "false", "d": "1m30s", "t": "2024-01-02T03:04:05.5Z",
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	if a.String("s") != "hello world" || a.Int("i") != -42 || a.Bool("b") || a.Duration("d") != 90*time.Second ||
		!a.Time("t").Equal(time.Date(2024, 1, 2, 3, 4, 5, 5e8, time.UTC)) {
		t.Fatalf("args = %+v", a.values)
	}
	for _, n := range []string{"s", "i", "b", "d", "t"} {
		if !a.Has(n) {
			t.Errorf("Has(%q) = false", n)
		}
	}
	// A bare bool flag means true; a time may be a duration ago.
	a, err = ParseArgs(testArgSpecs, map[string]string{"b": "", "t": "10m"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Bool("b") || !a.Time("t").Equal(now.Add(-10*time.Minute)) {
		t.Fatalf("b = %v, t = %v", a.Bool("b"), a.Time("t"))
	}
	// Absent arguments without defaults read as zero values and are not Has.
	if a.Has("s") || a.String("s") != "" || a.Int("i") != 0 || a.Duration("d") != 0 {
		t.Fatalf("absent arguments: %+v", a.values)
	}
	// Getters of the wrong type read zero rather than panic.
	if a.Int("b") != 0 || a.String("b") != "" || !a.Time("b").IsZero() {
		t.Fatal("a getter of the wrong type returned a value")
	}
	var zero Args
	if zero.Has("x") || zero.String("x") != "" {
		t.Fatal("zero Args has values")
	}
}

func TestParseArgsBadValues(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		arg, value, want string
	}{
		{"i", "4x", `argument "i": expected an integer, got "4x"`},
		{"i", "99999999999999999999", "expected an integer"},
		{"b", "yes please", "expected true or false"},
		{"d", "5", "expected a duration like 30s"},
		{"t", "yesterday", "expected an RFC 3339 time or a duration ago"},
	} {
		_, err := ParseArgs(testArgSpecs, map[string]string{tc.arg: tc.value}, now)
		var ae *ArgError
		if !errors.As(err, &ae) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: err = %v, want an ArgError containing %q", tc.arg, tc.value, err, tc.want)
		}
	}
}

func TestParseArgsUnknownAndMissing(t *testing.T) {
	now := time.Now()
	_, err := ParseArgs(testArgSpecs, map[string]string{"x": "1"}, now)
	var ae *ArgError
	if !errors.As(err, &ae) || err.Error() != `unknown argument "x" (known: b, d, i, s, t)` {
		t.Fatalf("unknown argument: %v", err)
	}
	_, err = ParseArgs(nil, map[string]string{"x": "1"}, now)
	if err == nil || err.Error() != `unknown argument "x": this action takes no arguments` {
		t.Fatalf("argument to an action without any: %v", err)
	}
	specs := []Arg{{Name: "target", Type: ArgString, Required: true}, {Name: "n", Type: ArgInt}}
	_, err = ParseArgs(specs, map[string]string{"n": "1"}, now)
	if !errors.As(err, &ae) || err.Error() != `missing required argument "target" (string)` {
		t.Fatalf("missing argument: %v", err)
	}
	// An empty value still counts as given.
	a, err := ParseArgs(specs, map[string]string{"target": ""}, now)
	if err != nil || !a.Has("target") {
		t.Fatalf("empty required value: %v, has %v", err, a.Has("target"))
	}
	if a, err := ParseArgs(nil, nil, now); err != nil || a.Has("x") {
		t.Fatalf("no arguments: %v", err)
	}
}

func TestParseArgsDefaults(t *testing.T) {
	specs := []Arg{{Name: "n", Type: ArgInt, Default: "3"}, {Name: "every", Type: ArgDuration, Default: "1ms"},
		{Name: "bad", Type: ArgInt, Default: "three"}}
	_, err := ParseArgs(specs, nil, time.Now())
	if err == nil || !strings.Contains(err.Error(), `argument "bad"`) {
		t.Fatalf("bad default: %v", err)
	}
	specs = specs[:2]
	a, err := ParseArgs(specs, map[string]string{"n": "7"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if a.Int("n") != 7 || a.Duration("every") != time.Millisecond || !a.Has("every") {
		t.Fatalf("n = %d, every = %v", a.Int("n"), a.Duration("every"))
	}
}

func TestParseArgsUndeclaredType(t *testing.T) {
	_, err := ParseArgs([]Arg{{Name: "x", Type: ArgType(99)}}, map[string]string{"x": "1"}, time.Now())
	if err == nil || !strings.Contains(err.Error(), "undeclared type 99") {
		t.Fatalf("err = %v", err)
	}
	_, err = ParseArgs([]Arg{{Name: "x"}}, map[string]string{"x": "1"}, time.Now())
	if err == nil {
		t.Fatal("an argument without a type was accepted")
	}
}

func TestArgTypeString(t *testing.T) {
	for typ, want := range map[ArgType]string{ArgString: "string", ArgInt: "int", ArgBool: "bool",
		ArgDuration: "duration", ArgTime: "time", 0: "unknown", 42: "unknown"} {
		if typ.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(typ), typ.String(), want)
		}
		if typ >= ArgString && typ <= ArgTime && ArgTypeFromProto(argTypeToProto(typ)) != typ {
			t.Errorf("%s does not survive the wire", typ)
		}
	}
}
