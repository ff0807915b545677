// Package site builds a whole Sitelink site in network namespaces, for the end-to-end
// suite, the whole-site benchmark and `make demo`:
//
//	                     site LAN 10.1.0.0/24 (bridge "lan")
//	app 10.1.0.10 ─┬─ router 10.1.0.1 (10.9.0.0/24 via the VIP 10.1.0.50)
//	agent1..N .101─┤
//	               ├─ c1 lan0 10.1.0.2 ── sitelinkd (logcache, vrrp, tunnel, snat, proxy) ── wan0 192.0.2.2 ─┐
//	               └─ c2 lan0 10.1.0.3 ── sitelinkd (the same, lower priority)          ── wan0 192.0.2.3 ─┤
//	                                                        "internet" 192.0.2.0/24 (bridge "internet") ──┤
//	                      management center 192.0.2.100:443 (counts agents' lines) ───────────────────────┤
//	gw1 192.0.2.11 / gw2 192.0.2.12: stock wireguard-go + wg ─────────────────────────────────────────────┘
//	      └── platform 10.9.0.0/24 (bridge "platform") ── remote user 10.9.0.100 (the client virtual IP range)
//
// The two connectors form a VRRP pair with one virtual IP on the LAN. They share one
// WireGuard identity (the same private key, provisioned by the site), so the stock
// gateways know the site as one peer and follow whichever connector talks to them
// (WireGuard endpoint roaming); the tunnel, SNAT and proxy are `active_when: master`.
// The app server answers HTTP, a TCP line echo and a UDP echo, each reporting the
// address it sees the peer as.
//
// A Site removes everything it made on Close: processes, namespaces, files, and the
// gateways' sockets in /var/run/wireguard.
package site

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sitelink/sitelink/plugins/tunnel/tunneltest"
	"github.com/sitelink/sitelink/testenv"
)

// Addresses of the site.
const (
	LANPrefix    = "10.1.0.0/24"
	RouterAddr   = "10.1.0.1"
	AppAddr      = "10.1.0.10"
	VIP          = "10.1.0.50"
	ClientPrefix = "10.9.0.0/24"
	UserAddr     = "10.9.0.100"
	MCAddr       = "192.0.2.100"
	ConnTunnel   = "100.64.0.2"

	HTTPPort  = 80   // app: HTTP, answers "peer=IP"
	EchoPort  = 7000 // app: TCP, echoes each line prefixed with the peer's address
	FlowPort  = 7001 // app: UDP, echoes each datagram prefixed with the peer's address
	MCPort    = 443  // management center: counts lines per agent
	ProxyPort = 8443 // proxy tcp listener (agents), on the VIP
	CachePort = 9000 // proxy cache listener, on the VIP
)

// ConnectorLAN is connector i's (from 1) own LAN address.
func ConnectorLAN(i int) string { return fmt.Sprintf("10.1.0.%d", 1+i) }

// ConnectorWAN is connector i's internet address.
func ConnectorWAN(i int) string { return fmt.Sprintf("192.0.2.%d", 1+i) }

// AgentAddr is agent i's LAN address.
func AgentAddr(i int) string { return fmt.Sprintf("10.1.0.%d", 100+i) }

// VRRP is a VRRP timing profile.
type VRRP struct {
	Name           string
	AdvertInterval int // centiseconds
}

// The VRRP profiles: the plugin's default, the one the tests use (advert 100 ms, robust
// on a loaded 2-core machine) and the low-latency profile of docs/plugins/vrrp.md.
var (
	VRRPDefault    = VRRP{Name: "default", AdvertInterval: 100}
	VRRPFast       = VRRP{Name: "fast", AdvertInterval: 10}
	VRRPLowLatency = VRRP{Name: "low-latency", AdvertInterval: 5}
)

// Options say how to build the site.
type Options struct {
	// Env holds the namespaces. Nil: the site makes one with testenv.NewEnv and closes it.
	Env *testenv.Env
	// Bin is a directory with sitelinkd, sitelinkctl and plugins/ (as `make build` makes
	// bin/). Required: tests build one with Build.
	Bin string
	// Agents is the number of agent hosts (default 3).
	Agents int
	// VRRP is the timing profile (default VRRPFast).
	VRRP VRRP
	// SNAT is the app's snat mode: "masquerade" (default) or "off".
	SNAT string
	// ClientMaxConns is the proxy's per-client connection limit (default 3).
	ClientMaxConns int
	// Log receives the daemons' output as it comes (nil: only kept in memory).
	Log io.Writer
}

// Site is the running site.
type Site struct {
	opts       Options
	env        *testenv.Env
	ownEnv     bool
	key        wgtypes.Key
	LAN        *testenv.Switch
	Internet   *testenv.Switch
	Platform   *testenv.Switch
	App        *testenv.Host
	Router     *testenv.Host
	User       *testenv.Host
	MC         *testenv.Host
	Agents     []*testenv.Host
	Gateways   []*tunneltest.WGInterface
	Connectors []*Connector
	AppServer  *AppServer
	Center     *Center

	mu      sync.Mutex
	closers []func()
	closed  bool
}

// New builds the site and starts both connectors, and returns once one of them is master
// with its tunnel online and the remote user reaches the app. On error everything made
// so far is removed.
func New(ctx context.Context, opts Options) (_ *Site, err error) {
	if opts.Bin == "" {
		return nil, errors.New("site: Options.Bin is required (the directory `make build` or Build makes)")
	}
	if opts.Agents == 0 {
		opts.Agents = 3
	}
	if opts.VRRP.AdvertInterval == 0 {
		opts.VRRP = VRRPFast
	}
	if opts.SNAT == "" {
		opts.SNAT = "masquerade"
	}
	if opts.ClientMaxConns == 0 {
		opts.ClientMaxConns = 3
	}
	s := &Site{opts: opts, env: opts.Env}
	if s.env == nil {
		if s.env, err = testenv.NewEnv("site"); err != nil {
			return nil, err
		}
		s.ownEnv = true
	}
	// Every error return below goes through here (returning nil for the site), so the
	// cleanup holds its own reference.
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := os.Chmod(s.env.Dir(), 0o755); err != nil {
		return nil, fmt.Errorf("site: make %s reachable for the plugins' user: %w", s.env.Dir(), err)
	}
	if s.key, err = wgtypes.GeneratePrivateKey(); err != nil {
		return nil, fmt.Errorf("site: connector key: %w", err)
	}
	if err := s.buildNetwork(ctx); err != nil {
		return nil, err
	}
	if err := s.startServices(); err != nil {
		return nil, err
	}
	for i := 1; i <= 2; i++ {
		c, err := s.newConnector(i)
		if err != nil {
			return nil, err
		}
		s.Connectors = append(s.Connectors, c)
	}
	for _, c := range s.Connectors {
		if err := c.Start(ctx); err != nil {
			return nil, err
		}
	}
	if _, err := s.WaitSteady(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Env is the site's testenv.Env.
func (s *Site) Env() *testenv.Env { return s.env }

// Options are the options the site was built with (defaults filled in).
func (s *Site) Options() Options { return s.opts }

// onClose registers fn to run at Close, before the namespaces go.
func (s *Site) onClose(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closers = append(s.closers, fn)
}

// Close stops the daemons (SIGTERM, then SIGKILL), closes the servers' sockets,
// removes the gateways' sockets from /var/run/wireguard and, if the site made its Env,
// removes every namespace, process and file. It is idempotent.
func (s *Site) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	closers := s.closers
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range s.Connectors {
		wg.Add(1)
		go func() { defer wg.Done(); c.stop(10 * time.Second) }()
	}
	wg.Wait()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	for _, g := range s.Gateways {
		_ = os.Remove(filepath.Join("/var/run/wireguard", g.Iface+".sock"))
	}
	for _, c := range s.Connectors {
		_ = os.Remove(filepath.Join("/var/run/wireguard", c.Iface+".sock"))
	}
	if s.ownEnv {
		return s.env.Close()
	}
	return nil
}

// Reload rewrites both connectors' configs with st and reloads them with
// `sitelinkctl reload`, one after the other.
func (s *Site) Reload(ctx context.Context, st Settings) error {
	for _, c := range s.Connectors {
		if !c.Running() {
			continue
		}
		if _, err := c.Reload(ctx, st); err != nil {
			return err
		}
	}
	return nil
}

// Master returns the connector that is VRRP master now (nil if none or several).
func (s *Site) Master(ctx context.Context) *Connector {
	var m *Connector
	for _, c := range s.Connectors {
		if r, err := c.Role(ctx); err == nil && r == "MASTER" {
			if m != nil {
				return nil
			}
			m = c
		}
	}
	return m
}

// Other returns the connector that is not c.
func (s *Site) Other(c *Connector) *Connector {
	if c == s.Connectors[0] {
		return s.Connectors[1]
	}
	return s.Connectors[0]
}

// WaitSteady waits until exactly one connector is master, holds the VIP, has its tunnel
// Online, and the remote user's UDP request gets an answer from the app; it returns
// that connector.
func (s *Site) WaitSteady(ctx context.Context) (*Connector, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var m *Connector
	err := testenv.WaitFor(ctx, "one master with its tunnel online and the app reachable from the remote user", func() (bool, error) {
		m = s.Master(ctx)
		if m == nil {
			return false, errors.New("no single master")
		}
		if ok, err := m.HasVIP(ctx); !ok || err != nil {
			return false, fmt.Errorf("%s is master without the VIP (%v)", m.Name, err)
		}
		if st, err := m.TunnelState(ctx); st != "Online" {
			return false, fmt.Errorf("%s tunnel %q (%v)", m.Name, st, err)
		}
		if _, err := AskUDP(s.User, AppAddr, FlowPort, time.Second); err != nil {
			return false, err
		}
		return true, nil
	})
	return m, err
}
