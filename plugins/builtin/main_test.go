package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestEveryPluginIsBuiltIn: each plugins/NAME with a main.go (a built-in plugin's
// command) is in the table, so `make build` cannot hard-link a name that the binary
// does not serve.
func TestEveryPluginIsBuiltIn(t *testing.T) {
	mains, err := filepath.Glob("../*/main.go")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, m := range mains {
		if name := filepath.Base(filepath.Dir(m)); name != "builtin" {
			want = append(want, name)
		}
	}
	slices.Sort(want)
	if got := names(); !slices.Equal(got, want) {
		t.Fatalf("built-in table %v, plugins with a command %v", got, want)
	}
}

// TestDispatchByName runs the binary under each name and under a wrong one.
func TestDispatchByName(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "builtin")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, name := range names() {
		link := filepath.Join(dir, name)
		if err := os.Link(bin, link); err != nil {
			t.Fatal(err)
		}
		// The SDK's probe flag: the plugin describes itself, by its own name.
		out, err := exec.Command(link, "--sitelink-plugin-info").Output()
		if err != nil {
			t.Fatalf("%s --sitelink-plugin-info: %v", name, err)
		}
		if !strings.Contains(string(out), `"name":"`+name+`"`) {
			t.Errorf("%s describes itself as %s", name, out)
		}
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not a built-in plugin's name") {
		t.Errorf("run under its own name: err %v, output %s", err, out)
	}
	out, err = exec.Command(bin, "--list").Output()
	if err != nil || strings.Fields(string(out))[0] != names()[0] {
		t.Errorf("--list: %v %s", err, out)
	}
}
