package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sitelink/sitelink/daemon/proc"
	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/tunnel/tunneltest"
	"github.com/sitelink/sitelink/testenv"
)

// The test binary doubles as sitelinkd's privilege-dropping launcher.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == proc.LauncherArg {
		if err := proc.ExecMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(127)
		}
		os.Exit(0)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// pluginBinary builds the plugin once into a directory user nobody can reach.
func pluginBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "sltun-e2e-bin-")
		if binErr != nil {
			return
		}
		if binErr = os.Chmod(binDir, 0o755); binErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		binPath, binErr = tunneltest.BuildPlugin(ctx, binDir)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// fixture is a topology with the plugin running in the connector.
type fixture struct {
	t        *testing.T
	ctx      context.Context
	topo     *tunneltest.Topology
	iface    string
	config   []byte
	stateDir string
	runDir   string
	plugin   *tunneltest.Plugin
	pub      wgtypes.Key
}

const pluginUser = "nobody"

var pluginCaps = []string{"CAP_NET_ADMIN", "CAP_NET_RAW"}

func newFixture(t *testing.T, gateways int, probes bool, health map[string]any, extra map[string]any) *fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	testenv.Require(t, "ip", "wg", "nft", "tcpdump", "ping", "go")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	env := testenv.New(t)
	topo, err := tunneltest.NewTopology(ctx, env, gateways)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(topo.Close)
	base, err := os.MkdirTemp("", "sltun-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	f := &fixture{t: t, ctx: ctx, topo: topo, iface: tunneltest.UniqueIface("slt"),
		stateDir: filepath.Join(base, "state"), runDir: filepath.Join(base, "run")}
	f.config = topo.ConnectorConfig(f.iface, probes, health, extra)
	// Like an operator: learn the public key (show works before Start), register it with
	// the gateways, then start the tunnel.
	f.start(false)
	show, err := f.plugin.Show(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f.pub, err = wgtypes.ParseKey(show["public_key"].(string)); err != nil {
		t.Fatalf("show: public key: %v", err)
	}
	if err := topo.AddConnector(ctx, f.pub); err != nil {
		t.Fatal(err)
	}
	if err := f.plugin.Client.Configure(ctx, f.config, false); err != nil {
		t.Fatal(err)
	}
	if err := f.plugin.Client.Start(ctx, sdk.RoleMaster); err != nil {
		t.Fatal(err)
	}
	return f
}

// start launches a plugin process, configures and (if run) starts it.
func (f *fixture) start(run bool) {
	f.t.Helper()
	p, err := tunneltest.StartPlugin(f.ctx, tunneltest.PluginOptions{Binary: pluginBinary(f.t), Launcher: os.Args[0],
		User: pluginUser, Caps: pluginCaps, Host: f.topo.Conn, StateDir: f.stateDir, RuntimeDir: f.runDir,
		Logger: slog.New(slog.NewTextHandler(f.t.Output(), nil)).With("plugin", "tunnel")})
	if err != nil {
		f.t.Fatal(err)
	}
	f.plugin = p
	f.t.Cleanup(p.Close)
	if !run {
		return
	}
	if err := p.Client.Configure(f.ctx, f.config, false); err != nil {
		f.t.Fatal(err)
	}
	if err := p.Client.Start(f.ctx, sdk.RoleMaster); err != nil {
		f.t.Fatal(err)
	}
}

// waitEvent waits for a tunnel event after the first `after` ones.
func (f *fixture) waitEvent(after int, state, gateway string, timeout time.Duration) sdk.Event {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, timeout)
	defer cancel()
	ev, err := f.plugin.Host.WaitEvent(ctx, after, tunneltest.TunnelEvent(state, gateway))
	if err != nil {
		f.t.Fatal(err)
	}
	return ev
}

func (f *fixture) events() int { return len(f.plugin.Host.Events()) }

func (f *fixture) run(h *testenv.Host, name string, args ...string) string {
	f.t.Helper()
	out, err := h.Run(f.ctx, name, args...)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// ask expects the echo service to answer from gateway.
func (f *fixture) ask(gateway string) {
	f.t.Helper()
	testenv.Eventually(f.t, 10*time.Second, "the service to answer from "+gateway, func() (bool, error) {
		from, err := tunneltest.Ask(f.topo.App, tunneltest.ServiceAddr, 500*time.Millisecond)
		return err == nil && from == gateway, nil
	})
}

// capture runs tcpdump inside h; the returned function stops it and returns the
// packets it printed.
func capture(t *testing.T, h *testenv.Host, iface string, args ...string) func() []string {
	t.Helper()
	p, err := h.Start("tcpdump", append([]string{"-n", "-l", "-i", iface}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitOutput(ctx, "listening on"); err != nil {
		t.Fatal(err)
	}
	return func() []string {
		time.Sleep(300 * time.Millisecond) // let the last packets reach tcpdump
		p.Signal(syscall.SIGINT)
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Wait(wctx)
		var pkts []string
		for _, ln := range strings.Split(p.Output(), "\n") {
			if strings.Contains(ln, " IP ") || strings.Contains(ln, " IP6 ") {
				pkts = append(pkts, ln)
			}
		}
		return pkts
	}
}
