package site

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Plugins are the built-in plugins every connector runs.
var Plugins = []string{"logcache", "vrrp", "tunnel", "snat", "proxy"}

// Build compiles sitelinkd, sitelinkctl and the built-in plugins into dir, laid out as
// `make build` lays out bin/ (dir/plugins/NAME), readable by the plugins' user. It must
// run inside the sitelink module.
func Build(ctx context.Context, dir string) error {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("site: go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	if err := os.MkdirAll(filepath.Join(dir, "plugins"), 0o755); err != nil {
		return fmt.Errorf("site: %w", err)
	}
	// The built-in plugins are one binary hard-linked under each name, as in bin/.
	builtin := filepath.Join("plugins", ".builtin")
	targets := map[string]string{"sitelinkd": "./daemon/cmd/sitelinkd", "sitelinkctl": "./daemon/cmd/sitelinkctl",
		builtin: "./plugins/builtin"}
	for name, pkg := range targets {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("site: go build %s: %w\n%s", pkg, err, b)
		}
	}
	for _, p := range Plugins {
		link := filepath.Join(dir, "plugins", p)
		_ = os.Remove(link)
		if err := os.Link(filepath.Join(dir, builtin), link); err != nil {
			return fmt.Errorf("site: %w", err)
		}
	}
	if err := os.Remove(filepath.Join(dir, builtin)); err != nil {
		return fmt.Errorf("site: %w", err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "plugins")} {
		if err := os.Chmod(d, 0o755); err != nil {
			return fmt.Errorf("site: %w", err)
		}
	}
	return nil
}
