package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/daemon/ctl"
	"github.com/sitelink/sitelink/plugins/tunnel/tunneltest"
	"github.com/sitelink/sitelink/testenv"
)

// TestUnderSitelinkd runs the real sitelinkd in the connector namespace with the tunnel
// plugin enabled: the daemon validates the config against the plugin's schema, starts
// it as nobody, and restarts it after kill -9, and the tunnel comes back with the same
// key; after the daemon stops, `sitelinkd --cleanup` leaves nothing of the tunnel.
func TestUnderSitelinkd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	testenv.Require(t, "ip", "wg", "nft", "go")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := testenv.New(t)
	topo, err := tunneltest.NewTopology(ctx, env, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer topo.Close()
	dir, err := os.MkdirTemp("", "sltun-daemon-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	pluginDir := filepath.Join(dir, "plugins")
	os.MkdirAll(pluginDir, 0o755)
	os.MkdirAll(filepath.Join(dir, "plugins.d"), 0o755)
	root, err := tunneltest.RepoRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sitelinkd := filepath.Join(dir, "sitelinkd")
	for out, pkg := range map[string]string{sitelinkd: "./daemon/cmd/sitelinkd", filepath.Join(pluginDir, "tunnel"): "./plugins/tunnel"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	iface := tunneltest.UniqueIface("sld")
	cfg := topo.ConnectorConfig(iface, true, fast, nil)
	socket := filepath.Join(dir, "admin.sock")
	yaml := fmt.Sprintf(`daemon:
  plugin_dir: %s
  plugins_d: %s
  state_dir: %s
  runtime_dir: %s
  socket: %s
  plugin_user: nobody
  health_interval: 1s
  health_timeout: 1s
  stop_timeout: 5s
plugins:
  tunnel:
    enabled: true
    config: %s
`, pluginDir, filepath.Join(dir, "plugins.d"), filepath.Join(dir, "state"), filepath.Join(dir, "run"), socket, cfg)
	conf := filepath.Join(dir, "sitelink.yaml")
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	daemon, err := topo.Conn.Start(sitelinkd, "--config", conf, "--log-format", "json")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("sitelinkd output (%d bytes):\n%s", len(daemon.Output()), daemon.Output())
		}
	}()
	client := ctl.NewClient(socket)
	show := func() map[string]any {
		raw, err := client.Action(ctx, "tunnel", "show", nil, nil)
		if err != nil {
			return nil
		}
		var m map[string]any
		json.Unmarshal(raw, &m)
		return m
	}
	var pub string
	testenv.Eventually(t, 60*time.Second, "the tunnel plugin to run under sitelinkd", func() (bool, error) {
		m := show()
		pub, _ = m["public_key"].(string)
		return pub != "", nil
	})
	key, err := parseKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.AddConnector(ctx, key); err != nil {
		t.Fatal(err)
	}
	online := func(what string) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, what, func() (bool, error) {
			m := show()
			return m["state"] == "Online" && m["active_gateway"] == "gw1", nil
		})
		testenv.Eventually(t, 10*time.Second, "the service through the tunnel", func() (bool, error) {
			from, err := tunneltest.Ask(topo.App, tunneltest.ServiceAddr, 500*time.Millisecond)
			return err == nil && from == "gw1", nil
		})
	}
	online("the tunnel to come up under sitelinkd")
	ps, err := client.Plugin(ctx, "tunnel")
	if err != nil {
		t.Fatal(err)
	}
	if ps.Summary != "tunnel Online via gw1" || ps.Health != "ok" || strings.Join(ps.Capabilities, ",") != "CAP_NET_ADMIN,CAP_NET_RAW" {
		t.Fatalf("plugin status: %+v", ps)
	}

	// kill -9: the daemon restarts the plugin, which brings the tunnel back, same key.
	if err := syscall.Kill(ps.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "sitelinkd to restart the plugin", func() (bool, error) {
		p, err := client.Plugin(ctx, "tunnel")
		return err == nil && p.PID != 0 && p.PID != ps.PID && p.State == api.PluginRunning, nil
	})
	online("the tunnel to come back after kill -9")
	if m := show(); m["public_key"] != pub {
		t.Fatalf("public key changed across the restart: %s -> %v", pub, m["public_key"])
	}

	// Stop the daemon, then run `sitelinkd --cleanup` as the unit's ExecStopPost does:
	// no route, nftables table or interface of the tunnel is left.
	if err := daemon.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	daemon.Wait(wctx)
	out, err := topo.Conn.Run(ctx, sitelinkd, "--config", conf, "--cleanup")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sitelinkd --cleanup: %q", out)
	if out, _ := topo.Conn.IP(ctx, "route", "show", "proto", "83"); strings.TrimSpace(out) != "" {
		t.Errorf("routes left after stop and cleanup: %q", out)
	}
	if _, err := topo.Conn.IP(ctx, "link", "show", iface); err == nil {
		t.Error("interface left after stop and cleanup")
	}
	if out, _ := topo.Conn.Run(ctx, "nft", "list", "tables"); strings.Contains(out, "sitelink-tunnel") {
		t.Errorf("nftables table left after stop and cleanup: %s", out)
	}
}

func parseKey(s string) (wgtypes.Key, error) { return wgtypes.ParseKey(s) }
