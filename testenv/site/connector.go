package site

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/daemon/ctl"
	"github.com/sitelink/sitelink/plugins/tunnel/tunneltest"
	"github.com/sitelink/sitelink/testenv"
)

// pluginUID is the plugins' user in the site (nobody), which owns their directories.
const pluginUID = 65534

// Connector is one Sitelink appliance of the pair: a namespace with lan0 on the site LAN
// and wan0 on the internet, running bin/sitelinkd with every built-in plugin.
type Connector struct {
	Name     string // c1, c2
	Index    int    // 1, 2
	Priority int    // VRRP priority: c1 200, c2 150
	Host     *testenv.Host
	Dir      string // config, state, runtime, log cache, admin socket
	Iface    string // the tunnel's interface name (unique on the machine)
	Config   string // path of sitelink.yaml
	Socket   string // admin socket
	Client   *ctl.Client

	site *Site
	mu   sync.Mutex
	proc *testenv.Process
	// logs are the outputs of earlier processes (the daemon was restarted).
	logs []string
}

func newKey() (wgtypes.Key, error) {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return k, fmt.Errorf("site: generate a WireGuard key: %w", err)
	}
	return k, nil
}

// newConnector makes connector i's namespace, links, directories, key file and config.
func (s *Site) newConnector(i int) (*Connector, error) {
	name := fmt.Sprintf("c%d", i)
	h, err := s.env.Host(name)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(s.env.Dir(), name)
	c := &Connector{Name: name, Index: i, Priority: 250 - 50*i, Host: h, Dir: dir,
		Iface: tunneltest.UniqueIface(fmt.Sprintf("sl%d", i)), Config: filepath.Join(dir, "sitelink.yaml"),
		Socket: filepath.Join(dir, "admin.sock"), site: s}
	c.Client = ctl.NewClient(c.Socket)
	if err := c.plug(); err != nil {
		return nil, err
	}
	for _, d := range []string{dir, filepath.Join(dir, "plugins.d"), filepath.Join(dir, "state", "plugins", "tunnel"), filepath.Join(dir, "cache")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("site: %w", err)
		}
	}
	// The package makes the log cache's directory for the plugins' user; so does the site.
	// Both connectors get the site's one WireGuard key, as an operator copies it to the
	// second appliance of a pair.
	tunnelState := filepath.Join(dir, "state", "plugins", "tunnel")
	keyFile := filepath.Join(tunnelState, "private.key")
	if err := os.WriteFile(keyFile, []byte(s.key.String()+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("site: write the tunnel key: %w", err)
	}
	for _, p := range []string{filepath.Join(dir, "cache"), tunnelState, keyFile} {
		if err := os.Chown(p, pluginUID, pluginUID); err != nil {
			return nil, fmt.Errorf("site: %w", err)
		}
	}
	if err := c.WriteConfig(Settings{SNAT: s.opts.SNAT, ClientMaxConns: s.opts.ClientMaxConns}); err != nil {
		return nil, err
	}
	return c, nil
}

// plug connects the connector's lan0 and wan0 and gives them their addresses.
func (c *Connector) plug() error {
	s, h := c.site, c.Host
	steps := []func() error{
		func() error { return s.env.Plug(h, "lan0", s.LAN) },
		func() error { return h.AddAddr("lan0", ConnectorLAN(c.Index)+"/24") },
		func() error { return s.env.Plug(h, "wan0", s.Internet) },
		func() error { return h.AddAddr("wan0", ConnectorWAN(c.Index)+"/24") },
	}
	for _, st := range steps {
		if err := st(); err != nil {
			return fmt.Errorf("site: connector %s: %w", c.Name, err)
		}
	}
	return nil
}

// Settings are what a reload may change in the connectors' configs.
type Settings struct {
	SNAT           string // the app's snat mode: masquerade or off
	ClientMaxConns int    // the proxy's per-client connection limit
}

// ConfigYAML is the connector's sitelink.yaml with settings st.
func (c *Connector) ConfigYAML(st Settings) string {
	s := c.site
	bin := s.opts.Bin
	var gws strings.Builder
	for n, g := range s.Gateways {
		fmt.Fprintf(&gws, "        - name: gw%d\n          endpoint: \"%s:%d\"\n          public_key: %s\n"+
			"          allowed_prefixes: [%s]\n          probe: %s\n",
			n+1, GatewayWAN(n+1), gatewayPort, g.Key.PublicKey(), ClientPrefix, GatewayTunnel(n+1))
	}
	return fmt.Sprintf(`# sitelink.yaml of connector %[1]s, written by testenv/site
daemon:
  plugin_dir: %[2]s
  plugins_d: %[3]s/plugins.d
  state_dir: %[3]s/state
  runtime_dir: %[3]s/run
  socket: %[4]s
  plugin_user: nobody
  health_interval: 1s
  health_timeout: 1s
  stop_timeout: 5s
plugins:
  logcache:
    config:
      dir: %[3]s/cache
      max_bytes: 64MiB
      segment_bytes: 4MiB
      sync: interval
  vrrp:
    after: [logcache]
    config:
      instances:
        - name: lan
          interface: lan0
          vrid: 51
          priority: %[5]d
          virtual_ips: [%[6]s/24]
          advert_interval: %[7]d
          # The tunnel runs on the master only (one WireGuard identity for the pair): a
          # backup has no tunnel events, so it counts as up until its own tunnel says
          # otherwise. The master's tunnel down: priority -100, below the backup.
          track_events:
            - type: tunnel
              weight: -100
              initial: up
  tunnel:
    active_when: master
    after: [logcache]
    config:
      interface: %[8]s
      addresses: [%[9]s/32]
      health: {window: 2s, probe_interval: 250ms, hold: 5s}
      gateways:
%[10]s  snat:
    active_when: master
    config:
      client_ranges: [%[11]s]
      client_interfaces: [%[8]s]
      applications:
        - name: app
          networks: [%[12]s]
          interface: lan0
          snat: "%[13]s"
  proxy:
    active_when: master
    after: [logcache]
    config:
      upstreams:
        mc:
          servers: ["%[14]s:%[15]d"]
          health_interval: 1s
          connect_timeout: 2s
      listeners:
        - {name: agents, address: ":%[16]d", mode: tcp, upstream: mc}
        - {name: ingest, address: ":%[17]d", mode: cache}
      limits:
        client_max_conns: %[18]d
`, c.Name, filepath.Join(bin, "plugins"), c.Dir, c.Socket, c.Priority, VIP, s.opts.VRRP.AdvertInterval,
		c.Iface, ConnTunnel, gws.String(), ClientPrefix, LANPrefix, st.SNAT, MCAddr, MCPort, ProxyPort, CachePort,
		st.ClientMaxConns)
}

// WriteConfig writes the connector's sitelink.yaml with settings st.
func (c *Connector) WriteConfig(st Settings) error {
	if err := os.WriteFile(c.Config, []byte(c.ConfigYAML(st)), 0o644); err != nil {
		return fmt.Errorf("site: write %s: %w", c.Config, err)
	}
	return nil
}

// Start starts sitelinkd in the connector's namespace and waits until it answers with
// every plugin running or standing by.
func (c *Connector) Start(ctx context.Context) error {
	cmd := c.Host.Command(context.Background(), filepath.Join(c.site.opts.Bin, "sitelinkd"), "--config", c.Config, "--log-format", "json")
	if c.site.opts.Log != nil {
		cmd.Stdout = prefixWriter(c.site.opts.Log, c.Name+": ")
		cmd.Stderr = cmd.Stdout
	}
	p, err := c.Host.StartCmd(cmd)
	if err != nil {
		return fmt.Errorf("site: start sitelinkd on %s: %w", c.Name, err)
	}
	c.mu.Lock()
	c.proc = p
	c.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err = testenv.WaitFor(wctx, "sitelinkd on "+c.Name+" with every plugin running or standing by", func() (bool, error) {
		if p.Exited() {
			return false, errors.New("sitelinkd exited")
		}
		st, err := c.Client.Status(wctx)
		if err != nil {
			return false, err
		}
		if len(st.Plugins) < 5 {
			return false, fmt.Errorf("%d plugins", len(st.Plugins))
		}
		for _, pl := range st.Plugins {
			if pl.State != api.PluginRunning && pl.State != api.PluginStandby {
				return false, fmt.Errorf("plugin %s %s", pl.Name, pl.State)
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("%w\nsitelinkd %s output (end):\n%s", err, c.Name, tail(p.Output(), 4000))
	}
	return nil
}

// Running reports whether the connector's sitelinkd runs.
func (c *Connector) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proc != nil && !c.proc.Exited()
}

// Kill9 sends SIGKILL to sitelinkd (only the daemon: its plugins die with it, as they
// must) and waits until its plugins are gone.
func (c *Connector) Kill9(ctx context.Context) error {
	c.mu.Lock()
	p := c.proc
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("site: %s: sitelinkd not started", c.Name)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("site: kill -9 sitelinkd on %s: %w", c.Name, err)
	}
	if err := p.Wait(ctx); err != nil && ctx.Err() != nil {
		return err
	}
	c.retire()
	return nil
}

// Stop stops sitelinkd with SIGTERM (plugins stop in reverse order, the master resigns).
func (c *Connector) Stop(ctx context.Context) error {
	c.mu.Lock()
	p := c.proc
	c.mu.Unlock()
	if p == nil || p.Exited() {
		return nil
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	err := p.Wait(ctx)
	c.retire()
	return err
}

// stop is Stop bounded by d, then SIGKILL (for Close).
func (c *Connector) stop(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		c.mu.Lock()
		if c.proc != nil {
			_ = c.proc.Kill()
		}
		c.mu.Unlock()
	}
}

// retire keeps the exited process's output for Log.
func (c *Connector) retire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil {
		c.logs = append(c.logs, c.proc.Output())
	}
}

// Log returns the daemon's log lines (JSON, one event per line) of every process this
// connector ran, oldest first: the journal-equivalent log.
func (c *Connector) Log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := strings.Join(c.logs, "")
	if c.proc != nil && !c.proc.Exited() {
		out += c.proc.Output()
	}
	return out
}

// PowerOff removes the connector's links (as if its power failed, nothing more leaves
// it) and then kills its processes.
func (c *Connector) PowerOff(ctx context.Context) error {
	for _, ifc := range []string{"lan0", "wan0"} {
		if _, err := c.Host.IP(ctx, "link", "del", ifc); err != nil {
			return fmt.Errorf("site: power off %s: %w", c.Name, err)
		}
	}
	return c.Kill9(ctx)
}

// PowerOn plugs the connector's links in again and starts sitelinkd (a boot).
func (c *Connector) PowerOn(ctx context.Context) error {
	if err := c.plug(); err != nil {
		return err
	}
	return c.Start(ctx)
}

// Reload rewrites the config with settings st and reloads it through
// `sitelinkctl reload` (an audited admin action).
func (c *Connector) Reload(ctx context.Context, st Settings) (string, error) {
	if err := c.WriteConfig(st); err != nil {
		return "", err
	}
	return c.Ctl(ctx, "reload")
}

// Ctl runs bin/sitelinkctl against the connector and returns its combined output.
func (c *Connector) Ctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.site.opts.Bin, "sitelinkctl"), append([]string{"--socket", c.Socket}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("site: sitelinkctl %s on %s: %w: %s", strings.Join(args, " "), c.Name, err, out)
	}
	return string(out), nil
}

// CtlJSON runs sitelinkctl with --json and decodes its output into v. A streaming
// action's output (one JSON value per line) is decoded as an array.
func (c *Connector) CtlJSON(ctx context.Context, v any, args ...string) error {
	out, err := c.Ctl(ctx, append(args, "--json")...)
	if err != nil {
		return err
	}
	if t := strings.TrimSpace(out); strings.HasPrefix(t, "{") && strings.Contains(t, "}\n{") {
		out = "[" + strings.ReplaceAll(t, "}\n{", "},{") + "]"
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("site: sitelinkctl %s on %s: decode: %w: %s", strings.Join(args, " "), c.Name, err, tail(out, 500))
	}
	return nil
}

// Role is the node's HA role as sitelinkd reports it ("" if the daemon does not answer).
func (c *Connector) Role(ctx context.Context) (string, error) {
	if !c.Running() {
		return "", errors.New(c.Name + ": sitelinkd not running")
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := c.Client.Status(ctx)
	return st.Role, err
}

// HasVIP reports whether lan0 holds the virtual IP.
func (c *Connector) HasVIP(ctx context.Context) (bool, error) {
	out, err := c.Host.IP(ctx, "-4", "addr", "show", "dev", "lan0")
	return strings.Contains(out, " "+VIP+"/"), err
}

// TunnelState is the tunnel's state from `tunnel show` (Online, Offline, Stopped).
func (c *Connector) TunnelState(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	raw, err := c.Client.Action(ctx, "tunnel", "show", nil, nil)
	if err != nil {
		return "", err
	}
	var m struct {
		State string `json:"state"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", err
	}
	return m.State, nil
}

// Plugin returns one plugin's status.
func (c *Connector) Plugin(ctx context.Context, name string) (api.PluginStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return c.Client.Plugin(ctx, name)
}

// prefixWriter writes each line to w with a prefix.
func prefixWriter(w interface{ Write([]byte) (int, error) }, prefix string) *lineWriter {
	return &lineWriter{w: w, prefix: prefix}
}

type lineWriter struct {
	mu     sync.Mutex
	w      interface{ Write([]byte) (int, error) }
	prefix string
	buf    []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		_, _ = l.w.Write(append([]byte(l.prefix), l.buf[:i+1]...))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
