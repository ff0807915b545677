package tunneltest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sitelink/sitelink/testenv"
)

// The topology's addresses.
const (
	AppAddr       = "10.1.0.10"
	AppPrefix     = "10.1.0.0/24"
	ConnTunnel    = "100.64.0.2"
	ServiceAddr   = "10.200.0.1" // on every gateway's loopback: answers with the gateway's name
	ServicePrefix = "10.200.0.0/16"
	ClientAddr    = "10.9.0.100"
	ClientPrefix  = "10.9.0.0/24"
	ISPAddr       = "192.0.2.1"
	ConnWAN       = "192.0.2.2"
	GatewayPort   = 51820
	EchoPort      = 7777
)

// GatewayWAN is gateway n's (from 1) address on the internet switch.
func GatewayWAN(n int) string { return fmt.Sprintf("192.0.2.%d", 10+n) }

// GatewayTunnel is gateway n's address inside the tunnel (its probe address).
func GatewayTunnel(n int) string { return fmt.Sprintf("100.64.%d.1", n) }

// GatewayName is gateway n's name in the plugin's config.
func GatewayName(n int) string { return fmt.Sprintf("gw%d", n) }

// Topology is `app — connector — internet — gateway(s) — remote client`:
//
//	app 10.1.0.10 ── lan ── conn 10.1.0.1 / 192.0.2.2 ── internet switch ── isp 192.0.2.1 (default route)
//	                                                        ├── gw1 192.0.2.11 (wg 100.64.1.1) ──┐
//	                                                        └── gw2 192.0.2.12 (wg 100.64.2.1) ──┴ platform switch ── client 10.9.0.100
//
// Each gateway runs the pinned stock wireguard-go configured with wg, routes the app's
// LAN and the connector's tunnel address into it, and has 10.200.0.1 on its loopback
// with a UDP echo service that answers with its name. The client routes the app's LAN
// via gw1.
type Topology struct {
	Env                *testenv.Env
	App, Conn, ISP     *testenv.Host
	Client             *testenv.Host
	Internet, Platform *testenv.Switch
	GatewayHosts       []*testenv.Host
	Gateways           []*WGInterface
	echo               []func()
}

// NewTopology builds the topology with n gateways and starts them (without peers: call
// AddConnector once the connector's public key is known).
func NewTopology(ctx context.Context, env *testenv.Env, n int) (*Topology, error) {
	wgGo, err := WireGuardGo(ctx)
	if err != nil {
		return nil, err
	}
	t := &Topology{Env: env}
	hosts := map[string]**testenv.Host{"app": &t.App, "conn": &t.Conn, "isp": &t.ISP, "client": &t.Client}
	for _, name := range []string{"app", "conn", "isp", "client"} {
		if *hosts[name], err = env.Host(name); err != nil {
			return nil, err
		}
	}
	if t.Internet, err = env.Switch("internet"); err != nil {
		return nil, err
	}
	if t.Platform, err = env.Switch("platform"); err != nil {
		return nil, err
	}
	steps := []func() error{
		func() error { return env.Link(t.App, "eth0", t.Conn, "lan0") },
		func() error { return t.App.AddAddr("eth0", AppAddr+"/24") },
		func() error { return t.App.AddRoute("default", "10.1.0.1") },
		func() error { return t.Conn.AddAddr("lan0", "10.1.0.1/24") },
		func() error { return env.Plug(t.Conn, "wan0", t.Internet) },
		func() error { return t.Conn.AddAddr("wan0", ConnWAN+"/24") },
		func() error { return t.Conn.AddRoute("default", ISPAddr) },
		func() error { return t.Conn.SetSysctl("net.ipv4.ip_forward", "1") },
		func() error { return env.Plug(t.ISP, "wan0", t.Internet) },
		func() error { return t.ISP.AddAddr("wan0", ISPAddr+"/24") },
		func() error { return env.Plug(t.Client, "plat0", t.Platform) },
		func() error { return t.Client.AddAddr("plat0", ClientAddr+"/24") },
		func() error { return t.Client.AddRoute(AppPrefix, "10.9.0.1") },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	for i := 1; i <= n; i++ {
		if err := t.addGateway(ctx, i, wgGo); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t *Topology) addGateway(ctx context.Context, n int, wgGo string) error {
	h, err := t.Env.Host(GatewayName(n))
	if err != nil {
		return err
	}
	t.GatewayHosts = append(t.GatewayHosts, h)
	steps := []func() error{
		func() error { return t.Env.Plug(h, "wan0", t.Internet) },
		func() error { return h.AddAddr("wan0", GatewayWAN(n)+"/24") },
		func() error { return h.AddAddr("lo", ServiceAddr+"/32") },
		func() error { return t.Env.Plug(h, "plat0", t.Platform) },
		func() error { return h.AddAddr("plat0", fmt.Sprintf("10.9.0.%d/24", n)) },
		func() error { return h.SetSysctl("net.ipv4.ip_forward", "1") },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return err
	}
	g := &WGInterface{Host: h, Iface: UniqueIface(fmt.Sprintf("slg%d", n)), Key: key, Port: GatewayPort,
		Addr: netip.MustParsePrefix(GatewayTunnel(n) + "/32"), Binary: wgGo,
		Routes: []string{ConnTunnel + "/32", AppPrefix}}
	if err := g.Start(ctx, t.Env.Dir()); err != nil {
		return err
	}
	t.Gateways = append(t.Gateways, g)
	stop, err := EchoServer(h, ServiceAddr, GatewayName(n))
	if err != nil {
		return err
	}
	t.echo = append(t.echo, stop)
	return nil
}

// AddConnector makes every gateway accept the connector's key for its tunnel address
// and the app's LAN.
func (t *Topology) AddConnector(ctx context.Context, pub wgtypes.Key) error {
	for _, g := range t.Gateways {
		if err := g.SetPeer(ctx, WGPeer{PublicKey: pub, AllowedIPs: []string{ConnTunnel + "/32", AppPrefix}}); err != nil {
			return err
		}
	}
	return nil
}

// Close stops the echo servers and removes the gateways' sockets from the shared
// /var/run/wireguard (wireguard-go, killed by the Env, leaves them; it exits when its
// socket goes). The Env removes everything else.
func (t *Topology) Close() {
	for _, stop := range t.echo {
		stop()
	}
	for _, g := range t.Gateways {
		_ = os.Remove("/var/run/wireguard/" + g.Iface + ".sock")
	}
}

// ConnectorConfig is the plugin's config for this topology. health is the JSON of the
// health section ("" for the defaults); probes gives each gateway its probe address.
func (t *Topology) ConnectorConfig(iface string, probes bool, health, extra map[string]any) []byte {
	var gws []map[string]any
	for i := range t.Gateways {
		n := i + 1
		g := map[string]any{"name": GatewayName(n), "endpoint": fmt.Sprintf("%s:%d", GatewayWAN(n), GatewayPort),
			"public_key": t.Gateways[i].Key.PublicKey().String(), "allowed_prefixes": []string{ServicePrefix, ClientPrefix}}
		if probes {
			g["probe"] = GatewayTunnel(n)
		}
		gws = append(gws, g)
	}
	c := map[string]any{"interface": iface, "backend": "auto", "addresses": []string{ConnTunnel + "/32"}, "gateways": gws}
	if health != nil {
		c["health"] = health
	}
	for k, v := range extra {
		c[k] = v
	}
	b, _ := json.Marshal(c)
	return b
}

// EchoServer answers UDP datagrams to addr:EchoPort inside h with reply. It returns a
// function that stops it.
func EchoServer(h *testenv.Host, addr, reply string) (func(), error) {
	var pc net.PacketConn
	if err := h.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", fmt.Sprintf("%s:%d", addr, EchoPort))
		return err
	}); err != nil {
		return nil, err
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte(reply+" "), buf[:n]...), from)
		}
	}()
	return func() { pc.Close() }, nil
}

// Reply is one answer of the echo service.
type Reply struct {
	At   time.Time
	From string
}

// Traffic sends a request to the echo service from a host every interval and records
// who answers.
type Traffic struct {
	conn    net.PacketConn
	stop    chan struct{}
	done    sync.WaitGroup
	mu      sync.Mutex
	replies []Reply
	sent    int
}

// StartTraffic starts sending from h to target:EchoPort.
func StartTraffic(h *testenv.Host, target string, every time.Duration) (*Traffic, error) {
	tr := &Traffic{stop: make(chan struct{})}
	if err := h.Do(func() error {
		var err error
		tr.conn, err = net.ListenPacket("udp4", ":0")
		return err
	}); err != nil {
		return nil, err
	}
	dst := &net.UDPAddr{IP: net.ParseIP(target), Port: EchoPort}
	tr.done.Add(2)
	go func() {
		defer tr.done.Done()
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			name, _, _ := strings.Cut(string(buf[:n]), " ")
			tr.mu.Lock()
			tr.replies = append(tr.replies, Reply{At: time.Now(), From: name})
			tr.mu.Unlock()
		}
	}()
	go func() {
		defer tr.done.Done()
		tk := time.NewTicker(every)
		defer tk.Stop()
		for i := 0; ; i++ {
			tr.conn.WriteTo(fmt.Appendf(nil, "%d", i), dst)
			tr.mu.Lock()
			tr.sent++
			tr.mu.Unlock()
			select {
			case <-tr.stop:
				return
			case <-tk.C:
			}
		}
	}()
	return tr, nil
}

// Replies returns the answers so far.
func (tr *Traffic) Replies() []Reply {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]Reply(nil), tr.replies...)
}

// Stop ends the traffic.
func (tr *Traffic) Stop() {
	close(tr.stop)
	tr.conn.Close()
	tr.done.Wait()
}

// FirstFrom returns the first reply from name at or after since.
func FirstFrom(rs []Reply, name string, since time.Time) (Reply, bool) {
	for _, r := range rs {
		if r.From == name && !r.At.Before(since) {
			return r, true
		}
	}
	return Reply{}, false
}

// LastFrom returns the last reply from name before until.
func LastFrom(rs []Reply, name string, until time.Time) (Reply, bool) {
	var last Reply
	ok := false
	for _, r := range rs {
		if r.From == name && r.At.Before(until) {
			last, ok = r, true
		}
	}
	return last, ok
}

// Ask sends one request from h to target and returns who answered.
func Ask(h *testenv.Host, target string, timeout time.Duration) (string, error) {
	var conn net.PacketConn
	if err := h.Do(func() error {
		var err error
		conn, err = net.ListenPacket("udp4", ":0")
		return err
	}); err != nil {
		return "", err
	}
	defer conn.Close()
	if _, err := conn.WriteTo([]byte("?"), &net.UDPAddr{IP: net.ParseIP(target), Port: EchoPort}); err != nil {
		return "", err
	}
	conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1500)
	n, _, err := conn.ReadFrom(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "", fmt.Errorf("no answer from %s within %s", target, timeout)
		}
		return "", err
	}
	name, _, _ := strings.Cut(string(buf[:n]), " ")
	return name, nil
}
