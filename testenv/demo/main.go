// Command demo runs sitelinkd in a sandbox — its own network namespace and temporary
// directories — with every built-in plugin that has a demo config and the example vendor
// plugin, shows what it is doing through sitelinkctl, and removes everything it made on
// Ctrl-C or after DEMO_FOR (e.g. DEMO_FOR=30s). `make demo` runs it.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/testenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// demoConfigs are the config sections the demo gives each built-in plugin it knows.
// DIR is replaced by the demo's temporary directory.
var demoConfigs = map[string]string{
	"logcache": "      dir: DIR/cache\n      max_bytes: 64MiB\n      segment_bytes: 4MiB\n",
}

func run() error {
	bin := flag.String("bin", "bin", "directory with sitelinkd, sitelinkctl and plugins/")
	flag.Parse()
	var stopAfter time.Duration
	if v := os.Getenv("DEMO_FOR"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("DEMO_FOR=%q: %w", v, err)
		}
		stopAfter = d
	}
	binDir, err := filepath.Abs(*bin)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if stopAfter > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, stopAfter)
		defer cancel()
	}

	step("creating a sandbox: a network namespace and a temporary directory")
	env, err := testenv.NewEnv("demo")
	if err != nil {
		return err
	}
	defer func() {
		step("removing everything the demo made")
		if err := env.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: cleanup:", err)
		}
		fmt.Println("done.")
	}()
	host, err := env.Host("connector")
	if err != nil {
		return err
	}
	dir := filepath.Join(env.Dir(), "sitelink")
	for _, d := range []string{dir, filepath.Join(dir, "plugins.d"), filepath.Join(dir, "vendor"), filepath.Join(dir, "cache")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// The package makes the log cache's directory for the plugins' user; so does the demo.
	if err := os.Chown(filepath.Join(dir, "cache"), 65534, 65534); err != nil {
		return err
	}
	if err := os.Chmod(env.Dir(), 0o755); err != nil {
		return err
	}

	step("installing the example vendor plugin (plugins/examples/hello, its own Go module) with a manifest")
	if err := installHello(ctx, dir); err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "sitelink.yaml")
	plugins, err := writeConfig(cfgPath, dir, binDir)
	if err != nil {
		return err
	}
	fmt.Printf("   config %s with plugins: %s\n", cfgPath, strings.Join(plugins, ", "))

	socket := filepath.Join(dir, "admin.sock")
	step("starting sitelinkd in namespace " + host.NSName())
	daemon, err := host.Start(filepath.Join(binDir, "sitelinkd"), "--config", cfgPath, "--log-format", "text")
	if err != nil {
		return err
	}
	ctl := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, filepath.Join(binDir, "sitelinkctl"), append([]string{"--socket", socket}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = testenv.WaitFor(wctx, "sitelinkd ready", func() (bool, error) {
		var st api.Status
		return ctlJSON(ctl, &st, "status") == nil && (st.State == api.DaemonRunning || st.State == api.DaemonDegraded), nil
	})
	cancel()
	if err != nil {
		fmt.Println(indent(daemon.Output()))
		return err
	}
	step("sitelinkctl status")
	show(ctl("status"))
	step("sitelinkctl hello greet --name demo   (a vendor plugin's action, no daemon change)")
	show(ctl("hello", "greet", "--name", "demo"))
	step("sitelinkctl plugins show hello")
	show(ctl("plugins", "show", "hello"))
	step("sitelinkctl logcache tail --source audit   (the audit trail the log cache keeps)")
	show(ctl("logcache", "tail", "--source", "audit", "--lines", "5"))
	step("kill -9 of the hello plugin: the supervisor restarts it")
	if err := killPlugin(ctl); err != nil {
		fmt.Println("   ", err)
	}
	wctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	_ = testenv.WaitFor(wctx, "hello running again", func() (bool, error) {
		var ps api.PluginStatus
		return ctlJSON(ctl, &ps, "plugins", "show", "hello") == nil && ps.Restarts >= 1 && ps.State == api.PluginRunning, nil
	})
	cancel()
	show(ctl("plugins"))
	step("the daemon's log so far")
	fmt.Println(indent(lastLines(daemon.Output(), 12)))

	if stopAfter > 0 {
		step(fmt.Sprintf("running for %s (DEMO_FOR); Ctrl-C stops earlier", stopAfter))
	} else {
		step("running until Ctrl-C; try, in another shell:  bin/sitelinkctl --socket " + socket + " status")
	}
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			step("stopping sitelinkd (SIGTERM): plugins stop in reverse order")
			_ = daemon.Signal(syscall.SIGTERM)
			wctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			_ = daemon.Wait(wctx)
			cancel()
			return nil
		case <-tick.C:
			show(ctl("status"))
		}
	}
}

func step(s string) { fmt.Printf("\n\033[1m==> %s\033[0m\n", s) }

func show(out string, err error) {
	fmt.Println(indent(out))
	if err != nil {
		fmt.Println("   (", err, ")")
	}
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "   " + l
	}
	return strings.Join(lines, "\n")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// installHello builds the example vendor plugin from its own module and writes its
// manifest, as a vendor's package would.
func installHello(ctx context.Context, dir string) error {
	bin := filepath.Join(dir, "vendor", "hello")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = "plugins/examples/hello"
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the example plugin: %w\n%s", err, out)
	}
	f, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	manifest := fmt.Sprintf("name: hello\npath: %s\nsha256: %s\napi_version: 1\ncapabilities: []\n", bin, hex.EncodeToString(h.Sum(nil)))
	return os.WriteFile(filepath.Join(dir, "plugins.d", "hello.yaml"), []byte(manifest), 0o644)
}

// writeConfig writes the demo's sitelink.yaml: every built plugin that has a demo config,
// and the vendor plugin.
func writeConfig(path, dir, binDir string) ([]string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# sitelink.yaml written by make demo\ndaemon:\n")
	fmt.Fprintf(&b, "  plugin_dir: %s\n  plugins_d: %s\n  state_dir: %s\n  runtime_dir: %s\n  socket: %s\n",
		filepath.Join(binDir, "plugins"), filepath.Join(dir, "plugins.d"), filepath.Join(dir, "state"),
		filepath.Join(dir, "run"), filepath.Join(dir, "admin.sock"))
	fmt.Fprintf(&b, "  plugin_user: nobody\n  health_interval: 2s\nplugins:\n")
	var names []string
	entries, _ := os.ReadDir(filepath.Join(binDir, "plugins"))
	for _, e := range entries {
		section, ok := demoConfigs[e.Name()]
		if !ok {
			fmt.Printf("   (built-in plugin %s has no demo config yet: not started)\n", e.Name())
			continue
		}
		names = append(names, e.Name())
		fmt.Fprintf(&b, "  %s:\n    config:\n%s", e.Name(), strings.ReplaceAll(section, "DIR", dir))
	}
	sort.Strings(names)
	names = append(names, "hello (vendor)")
	b.WriteString("  hello:\n    config:\n      greeting: Hello\n      target: Sitelink\n")
	return names, os.WriteFile(path, []byte(b.String()), 0o644)
}

// ctlJSON runs a sitelinkctl command with --json and decodes its output.
func ctlJSON(ctl func(...string) (string, error), v any, args ...string) error {
	out, err := ctl(append(args, "--json")...)
	if err != nil {
		return fmt.Errorf("sitelinkctl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return json.Unmarshal([]byte(out), v)
}

// killPlugin kills the hello plugin's process the hard way.
func killPlugin(ctl func(...string) (string, error)) error {
	var ps api.PluginStatus
	if err := ctlJSON(ctl, &ps, "plugins", "show", "hello"); err != nil {
		return err
	}
	if ps.PID == 0 {
		return errors.New("hello has no pid")
	}
	fmt.Printf("   kill -9 %d\n", ps.PID)
	return syscall.Kill(ps.PID, syscall.SIGKILL)
}
