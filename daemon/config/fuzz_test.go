package config

import (
	"errors"
	"os"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error it returns is positioned,
// and that any accepted config round-trips through Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	for _, tc := range badConfigs {
		f.Add([]byte(tc.src))
	}
	for _, s := range []string{fullConfig, errorAtConfig, "", "plugins:\n  a:\n    config: {k: [1, 2.5, true, null, \"s\", {x: y}]}\n"} {
		f.Add([]byte(s))
	}
	if b, err := os.ReadFile("testdata/sitelink.example.yaml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a config and an error")
			}
			var errs *Errors
			if !errors.As(err, &errs) || len(*errs) == 0 {
				t.Fatalf("error %T is not a non-empty *Errors: %v", err, err)
			}
			for _, e := range *errs {
				if e.File != "fuzz.yaml" || e.Line < 1 || e.Col < 1 || e.Msg == "" {
					t.Fatalf("badly positioned error %+v", e)
				}
			}
			return
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("Marshal of an accepted config failed: %v", err)
		}
		back, err := Parse("fuzz.yaml", out)
		if err != nil {
			t.Fatalf("Marshal output does not parse:\n%s\n%v", out, err)
		}
		if d := sameConfig(c, back); d != "" {
			t.Fatalf("round trip changed the config: %s\nmarshalled:\n%s", d, out)
		}
		if _, err := c.Ordered(); err != nil {
			t.Fatalf("Ordered failed on an accepted config: %v", err)
		}
		if ch := Diff(c, back); ch.DaemonChanged || len(ch.Added)+len(ch.Removed)+len(ch.Changed) > 0 {
			t.Fatalf("Diff of a config with its round trip = %+v", ch)
		}
		// ErrorAt takes any path without panicking.
		path := string(data[:min(len(data), 40)])
		for _, p := range c.Plugins {
			if e := c.ErrorAt(p.Name, path, "x"); e.Line < 1 {
				t.Fatalf("ErrorAt(%q, %q) has no position: %+v", p.Name, path, e)
			}
		}
	})
}

// FuzzParseManifest checks that ParseManifest never panics and positions its errors.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte("name: a\npath: /a\nsha256: " + goodSHA + "\napi_version: 1\ncapabilities: [CAP_BPF]\nargs: [x, 1]\n"))
	f.Add([]byte("name: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParseManifest("m.yaml", data)
		var errs *Errors
		if err != nil && !errors.As(err, &errs) {
			t.Fatalf("error %T is not *Errors: %v", err, err)
		}
		if errs != nil {
			for _, e := range *errs {
				if e.Line < 1 || e.Col < 1 {
					t.Fatalf("badly positioned error %+v", e)
				}
			}
		}
	})
}
