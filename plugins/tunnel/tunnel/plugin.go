// Package tunnel is the tunnel plugin as sitelinkd sees it: its Info, config handling,
// lifecycle (an engine per Start), actions (`sitelinkctl tunnel show | switch GATEWAY |
// rotate-key`), status, metrics, events and crash cleanup. The private key lives in the
// plugin's state directory (package identity); the WireGuard work is package engine's.
package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/tunnel/config"
	"github.com/sitelink/sitelink/plugins/tunnel/engine"
	"github.com/sitelink/sitelink/plugins/tunnel/identity"
	"github.com/sitelink/sitelink/plugins/tunnel/wg"
)

// Version is the plugin's version.
const Version = "0.1.0"

// recordFile, in the state directory, remembers the running interface and its socket,
// so that Cleanup (which gets no config) can remove a socket a killed process left.
const recordFile = "interface.json"

type record struct {
	Interface string `json:"interface"`
	Socket    string `json:"socket,omitempty"`
}

// Plugin is the tunnel plugin.
type Plugin struct {
	sdk.Base
	sys engine.System

	// mu serialises the lifecycle; eng is also read without it (Status must not wait
	// for a Configure that rebuilds the tunnel).
	mu      sync.Mutex
	cfg     *config.Config
	eng     atomic.Pointer[engine.Engine]
	metrics *engine.Metrics
	events  chan sdk.Event
	store   *identity.Store
	log     *slog.Logger
}

// New returns the plugin working on the kernel.
func New() *Plugin { return NewWithSystem(engine.Kernel()) }

// NewWithSystem returns the plugin working on sys (tests use a fake).
func NewWithSystem(sys engine.System) *Plugin { return &Plugin{sys: sys} }

// Info describes the plugin.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{
		Name:        "tunnel",
		Version:     Version,
		Description: "Encrypted WireGuard tunnel to the platform's security gateways, with failover and routes that follow it",
		// NET_ADMIN: TUN device, links, addresses, routes, nftables, WireGuard netlink.
		// NET_RAW: ICMP probes from raw sockets bound to the tunnel interface.
		Capabilities: []string{"CAP_NET_ADMIN", "CAP_NET_RAW"},
		ConfigSchema: config.Schema,
		KernelFacing: true,
		Events: []sdk.EventSpec{{Type: sdk.EventTunnel,
			Description: "the tunnel went up or down: attrs state (up|down), gateway (the active one), previous, reason; retained"}},
		Actions: []sdk.Action{
			{Name: "show", Description: "state, public key (to register with the gateways), gateways, routes",
				Run: func(ctx context.Context, _ sdk.Args) (any, error) { return p.show() }},
			{Name: "switch", Description: "make GATEWAY the active gateway and keep it while it is alive (auto: back to preference order)",
				Mutating: true,
				Args: []sdk.Arg{{Name: "gateway", Type: sdk.ArgString, Required: true, Description: "gateway name, or auto"},
					{Name: "force", Type: sdk.ArgBool, Description: "switch even to a gateway that is not alive"}},
				Run: func(ctx context.Context, a sdk.Args) (any, error) {
					return p.switchTo(ctx, a.String("gateway"), a.Bool("force"))
				}},
			{Name: "rotate-key", Description: "replace the private key; register the new public key with the gateways", Mutating: true,
				Run: func(ctx context.Context, _ sdk.Args) (any, error) { return p.rotateKey(ctx) }},
		},
	}
}

// Init keeps the host, registers the metrics and starts the event publisher.
func (p *Plugin) Init(ctx context.Context, h sdk.Host) error {
	if err := p.Base.Init(ctx, h); err != nil {
		return err
	}
	p.log = h.Logger()
	p.store = identity.New(h.StateDir())
	m, err := engine.NewMetrics(h.Metrics(), p.status)
	if err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	p.metrics = m
	p.events = make(chan sdk.Event, 64)
	go p.publishLoop(h)
	return nil
}

// publishLoop sends events to the host in order; it lives as long as the process.
func (p *Plugin) publishLoop(h sdk.Host) {
	for ev := range p.events {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := h.Publish(ctx, ev); err != nil {
			p.log.Warn("cannot publish event", "type", ev.Type, "error", err)
		}
		cancel()
	}
}

func (p *Plugin) publish(ev sdk.Event) {
	select {
	case p.events <- ev:
	default:
		p.log.Warn("event queue full, dropping event", "type", ev.Type, "attrs", ev.Attrs)
	}
}

func (p *Plugin) status() (engine.Status, bool) {
	eng := p.eng.Load()
	if eng == nil {
		return engine.Status{}, false
	}
	return eng.Snapshot(), true
}

// Configure validates the config and, when running, applies it: in place, or by
// rebuilding the interface when its own settings changed.
func (p *Plugin) Configure(ctx context.Context, raw json.RawMessage, validateOnly bool) error {
	c, err := config.Parse(raw)
	if err != nil || validateOnly {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.cfg
	p.cfg = c
	eng := p.eng.Load()
	if eng == nil {
		return nil
	}
	if config.DeviceEqual(old, c) {
		return eng.Update(ctx, c)
	}
	p.log.Info("interface settings changed: rebuilding the tunnel", "interface", c.Interface)
	if err := eng.Stop(ctx); err != nil {
		p.log.Warn("stopping the old tunnel", "error", err)
	}
	p.eng.Store(nil)
	return p.startLocked(ctx)
}

// Start brings the tunnel up.
func (p *Plugin) Start(ctx context.Context, _ sdk.Role) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.eng.Load() != nil {
		return nil
	}
	return p.startLocked(ctx)
}

func (p *Plugin) startLocked(ctx context.Context) error {
	if p.cfg == nil {
		return errors.New("tunnel is not configured: add a gateways list to its config")
	}
	key, res, err := p.store.LoadOrCreate()
	if err != nil {
		return err
	}
	pub := key.PublicKey().String()
	if res.Created {
		p.log.Info("generated the connector's WireGuard key: register its public key with the gateways", "public_key", pub,
			"file", p.store.Path())
	}
	if res.FixedMode {
		p.log.Warn("the private key file was readable by others and is now 0600: the key may have leaked, consider rotate-key",
			"file", p.store.Path())
	}
	h := p.Host()
	eng, err := engine.Start(ctx, engine.Options{Config: p.cfg, Key: key, System: p.sys, Logger: p.log, Metrics: p.metrics,
		Publish: p.publish, SocketDirs: []string{wg.DefaultSocketDir, filepath.Join(h.RuntimeDir(), "wireguard")}})
	if err != nil {
		return err
	}
	p.eng.Store(eng)
	p.saveRecord(record{Interface: eng.Backend().Name(), Socket: eng.Backend().Socket()})
	return nil
}

// Stop takes the tunnel down and removes its interface, routes and MSS clamping.
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	eng := p.eng.Load()
	if eng == nil {
		return nil
	}
	err := eng.Stop(ctx)
	p.eng.Store(nil)
	p.removeRecord()
	// The interface's packet buffers are garbage now: give the memory back at once
	// rather than keeping it for a tunnel that may not come back on this node.
	debug.FreeOSMemory()
	return err
}

// Status reports Online (ok), Online with problems (degraded), Offline (down).
func (p *Plugin) Status(context.Context) sdk.Status {
	s, ok := p.status()
	if !ok {
		return sdk.Status{Health: sdk.HealthOK, Summary: "tunnel stopped"}
	}
	st := sdk.Status{Details: s, Counters: map[string]uint64{"rx_bytes": s.RxBytes, "tx_bytes": s.TxBytes, "switches": s.Switches}}
	switch {
	case s.State != engine.StateOnline:
		st.Health = sdk.HealthDown
		st.Summary = "tunnel Offline"
		if s.ActiveGateway != "" {
			st.Reasons = append(st.Reasons, "no handshake or data from gateway "+s.ActiveGateway+" within the window, nor from any other gateway")
		} else {
			st.Reasons = append(st.Reasons, "no gateway has answered yet")
		}
	case len(s.Problems) > 0:
		st.Health = sdk.HealthDegraded
		st.Summary = "tunnel Online via " + s.ActiveGateway
	default:
		st.Health = sdk.HealthOK
		st.Summary = "tunnel Online via " + s.ActiveGateway
	}
	st.Reasons = append(st.Reasons, s.Problems...)
	return st
}

// Cleanup removes the interface, routes, MSS clamping and configuration socket a
// previous process left (it gets no config: everything is found by its marks).
func (p *Plugin) Cleanup(ctx context.Context) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if eng := p.eng.Load(); eng != nil {
		// Called on a running tunnel: take it down first, so nothing comes back.
		if err := eng.Stop(ctx); err != nil {
			p.log.Warn("stopping the tunnel before cleanup", "error", err)
		}
		p.eng.Store(nil)
	}
	removed, err := p.sys.Cleanup()
	if rec, ok := p.loadRecord(); ok && rec.Socket != "" {
		if c, derr := net.DialTimeout("unix", rec.Socket, time.Second); derr == nil {
			c.Close() // a live process owns it
		} else if rerr := os.Remove(rec.Socket); rerr == nil {
			removed = append(removed, "socket "+rec.Socket)
		}
	}
	p.removeRecord()
	return removed, err
}

// Show is the `show` action's result.
type Show struct {
	engine.Status
	KeyFile string `json:"key_file"`
}

func (p *Plugin) show() (any, error) {
	if s, ok := p.status(); ok {
		return Show{Status: s, KeyFile: p.store.Path()}, nil
	}
	// Stopped: still tell the public key to register.
	key, _, err := p.store.LoadOrCreate()
	if err != nil {
		return nil, err
	}
	return Show{Status: engine.Status{State: engine.StateStopped, PublicKey: key.PublicKey().String()}, KeyFile: p.store.Path()}, nil
}

func (p *Plugin) switchTo(ctx context.Context, name string, force bool) (any, error) {
	eng := p.eng.Load()
	if eng == nil {
		return nil, errors.New("the tunnel is not running")
	}
	sw, err := eng.Switch(ctx, name, force)
	if err != nil {
		return nil, err
	}
	p.log.Info("gateway switched by an operator", "event", "tunnel_switch", "from", sw.From, "to", sw.To)
	return sw, nil
}

func (p *Plugin) rotateKey(ctx context.Context) (any, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var k wgtypes.Key
	var err error
	if k, err = p.store.Rotate(); err != nil {
		return nil, err
	}
	p.metrics.Rotated()
	if eng := p.eng.Load(); eng != nil {
		if err := eng.SetKey(ctx, k); err != nil {
			return nil, fmt.Errorf("the new key is stored but not in use (it will be at the next start): %w", err)
		}
	}
	pub := k.PublicKey().String()
	p.log.Info("private key rotated: register the new public key with the gateways", "event", "tunnel_key_rotated", "public_key", pub)
	return map[string]string{"public_key": pub, "note": "register this public key with every gateway; the tunnel stays down until then"}, nil
}

func (p *Plugin) recordPath() string { return filepath.Join(p.Host().StateDir(), recordFile) }

func (p *Plugin) saveRecord(r record) {
	b, _ := json.Marshal(r)
	if err := os.WriteFile(p.recordPath(), b, 0o600); err != nil {
		p.log.Warn("cannot record the interface for cleanup", "error", err)
	}
}

func (p *Plugin) loadRecord() (record, bool) {
	var r record
	b, err := os.ReadFile(p.recordPath())
	if err != nil || json.Unmarshal(b, &r) != nil {
		return r, false
	}
	return r, true
}

func (p *Plugin) removeRecord() { _ = os.Remove(p.recordPath()) }
