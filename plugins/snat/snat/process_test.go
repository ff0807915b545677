package snat_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/sdk/pluginpb"
	"github.com/sitelink/sitelink/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// pluginBinary builds the snat plugin once per test binary.
func pluginBinary(t *testing.T) string {
	t.Helper()
	testenv.RequireTools(t, "go")
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "snat-plugin-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "snat")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/sitelink/sitelink/plugins/snat").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	// Readable and executable by the unprivileged user the plugin runs as.
	if err := os.Chmod(filepath.Dir(binPath), 0o755); err != nil {
		t.Fatal(err)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// nullHost is a host that offers no services (the plugin only logs failed publishes).
type nullHost struct {
	pluginpb.UnimplementedHostServer
}

// realPlugin is the plugin binary running as its own process inside a namespace, as
// the unprivileged user nobody with only CAP_NET_ADMIN, driven over go-plugin like
// sitelinkd does.
type realPlugin struct {
	pc     *plugin.Client
	client *sdk.Client
	pid    int
}

func launchPlugin(t *testing.T, h *testenv.Host, bin string) *realPlugin {
	t.Helper()
	cmd := h.Command(context.Background(), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all,+net_admin", "--ambient-caps=-all,+net_admin", "--bounding-set=-all,+net_admin", bin)
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.PluginSets(),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           hclog.NewNullLogger(),
		StartTimeout:     30 * time.Second,
	})
	t.Cleanup(pc.Kill)
	rpc, err := pc.Client()
	if err != nil {
		t.Fatalf("start plugin process: %v", err)
	}
	raw, err := rpc.Dispense(sdk.PluginKey)
	if err != nil {
		t.Fatal(err)
	}
	rp := &realPlugin{pc: pc, client: raw.(*sdk.Client), pid: cmd.Process.Pid}
	if err := rp.client.Init(testCtx(t), sdk.InitOptions{Name: "snat", APIVersion: sdk.APIVersion,
		StateDir: t.TempDir(), RuntimeDir: t.TempDir(), HostVersion: "test"}, &nullHost{}); err != nil {
		t.Fatalf("init: %v", err)
	}
	return rp
}

func TestCleanupAfterKill9(t *testing.T) {
	testenv.Require(t, "ip", "nft", "setpriv")
	bin := pluginBinary(t)
	env := testenv.New(t)
	h, err := env.Host("conn")
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	for _, args := range [][]string{
		{"ip", "link", "add", "cl0", "type", "veth", "peer", "name", "cl0p"},
		{"ip", "link", "add", "ap1", "type", "veth", "peer", "name", "ap1p"},
		{"nft", "add", "table", "ip", "foreign"},
		{"nft", "add", "chain", "ip", "foreign", "post", "{ type nat hook postrouting priority srcnat; }"},
		{"nft", "add", "rule", "ip", "foreign", "post", "oifname", "eth9", "counter", "masquerade"},
	} {
		if _, err := h.Run(ctx, args[0], args[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	foreign, _ := h.Run(ctx, "nft", "list", "table", "ip", "foreign")
	cfg := `{"client_ranges": ["100.64.0.0/16", "fd7a:115c:a1e0::/48"], "client_interfaces": ["cl0"],
	  "applications": [{"name": "app1", "networks": ["10.1.0.0/24", "fd00:1::/64"], "interface": "ap1", "snat": "masquerade"}]}`

	p1 := launchPlugin(t, h, bin)
	if err := p1.client.Configure(ctx, []byte(cfg), false); err != nil {
		t.Fatal(err)
	}
	if err := p1.client.Start(ctx, sdk.RoleMaster); err != nil {
		t.Fatalf("start as nobody with CAP_NET_ADMIN: %v", err)
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p1.pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(st), "Uid:\t65534") || !strings.Contains(string(st), "CapEff:\t0000000000001000") {
		t.Fatalf("plugin does not run as nobody with only CAP_NET_ADMIN:\n%s", st)
	}
	// Forwarding was enabled by the unprivileged process (CAP_NET_ADMIN suffices for net sysctls).
	if v, err := h.Sysctl("net.ipv4.conf.cl0.forwarding"); err != nil || strings.TrimSpace(v) != "1" {
		t.Fatalf("cl0 forwarding %q %v", v, err)
	}
	if out, _ := h.Run(ctx, "nft", "list", "tables"); !strings.Contains(out, "table ip sitelink") || !strings.Contains(out, "table ip6 sitelink") {
		t.Fatalf("tables after start:\n%s", out)
	}

	if err := syscall.Kill(p1.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "plugin process gone", func() (bool, error) { return p1.pc.Exited(), nil })
	if out, _ := h.Run(ctx, "nft", "list", "tables"); !strings.Contains(out, "table ip sitelink") {
		t.Fatalf("after kill -9 the rules are expected to stay until cleanup; tables:\n%s", out)
	}

	// `sitelinkd --cleanup`: a fresh process, never configured, only Cleanup.
	p2 := launchPlugin(t, h, bin)
	removed, err := p2.client.Cleanup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(removed, ",") != "nftables table ip sitelink,nftables table ip6 sitelink" {
		t.Fatalf("cleanup removed %q", removed)
	}
	out, err := h.Run(ctx, "nft", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	if out != foreign {
		t.Fatalf("after cleanup the ruleset is\n%s\nwant only the foreign table\n%s", out, foreign)
	}
	if removed, err := p2.client.Cleanup(ctx); err != nil || len(removed) != 0 {
		t.Fatalf("second cleanup: %v %v", removed, err)
	}
}
