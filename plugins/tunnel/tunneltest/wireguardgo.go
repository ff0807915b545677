package tunneltest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// WireGuardGoModule and WireGuardGoVersion pin the stock wireguard-go that plays the
// security gateway in tests and benchmarks (Debian's 0.0.20220316 is much slower). The
// same pin is in testenv/bench/tunnel/install-wireguard-go.sh.
const (
	WireGuardGoModule  = "golang.zx2c4.com/wireguard"
	WireGuardGoVersion = "v0.0.0-20260522210424-ecfc5a8d5446"
)

var wgGo struct {
	once sync.Once
	path string
	err  error
}

// WireGuardGo returns the path of the pinned wireguard-go, installing it into the
// repository's .tools/bin (go install with GOBIN; the binary is called "wireguard")
// when it is missing or another version.
// The first call may download modules: it gets its own 10 minutes, whatever ctx's
// deadline.
func WireGuardGo(ctx context.Context) (string, error) {
	wgGo.once.Do(func() {
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		wgGo.path, wgGo.err = installWireGuardGo(ictx)
	})
	return wgGo.path, wgGo.err
}

func installWireGuardGo(ctx context.Context) (string, error) {
	root, err := RepoRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, ".tools", "bin")
	path := filepath.Join(bin, "wireguard")
	if pinned(ctx, path) {
		return path, nil
	}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", bin, err)
	}
	cmd := exec.CommandContext(ctx, "go", "install", WireGuardGoModule+"@"+WireGuardGoVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", WireGuardGoModule, WireGuardGoVersion, err, out)
	}
	if !pinned(ctx, path) {
		return "", fmt.Errorf("%s is not %s@%s after go install", path, WireGuardGoModule, WireGuardGoVersion)
	}
	// The plugin tests run gateways as root, but the directory must be traversable.
	_ = os.Chmod(bin, 0o755)
	return path, nil
}

// pinned reports whether path is a build of the pinned module version.
func pinned(ctx context.Context, path string) bool {
	out, err := exec.CommandContext(ctx, "go", "version", "-m", path).Output()
	if err != nil {
		return false
	}
	for _, ln := range strings.Split(string(out), "\n") {
		f := strings.Fields(ln)
		if len(f) >= 3 && f[0] == "mod" && f[1] == WireGuardGoModule {
			return f[2] == WireGuardGoVersion
		}
	}
	return false
}

// RepoRoot is the directory of the main module's go.mod.
func RepoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := string(bytes.TrimSpace(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the sitelink module (go env GOMOD is empty)")
	}
	return filepath.Dir(mod), nil
}
