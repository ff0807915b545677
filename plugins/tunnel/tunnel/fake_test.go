package tunnel

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sitelink/sitelink/plugins/tunnel/config"
	"github.com/sitelink/sitelink/plugins/tunnel/engine"
	"github.com/sitelink/sitelink/plugins/tunnel/mss"
	"github.com/sitelink/sitelink/plugins/tunnel/route"
	"github.com/sitelink/sitelink/plugins/tunnel/wg"
)

// fakeSystem stands in for the kernel: it records routes, MSS clamping and interfaces,
// and its backends make "alive" gateways' received-bytes counters grow.
type fakeSystem struct {
	mu       sync.Mutex
	alive    map[wgtypes.Key]bool
	backends []*fakeBackend
	routes   map[int][]route.Route
	mss      *mss.Clamp
	links    map[string]bool
	pings    map[netip.Addr]int
	cleanups int
}

func newFakeSystem() *fakeSystem {
	return &fakeSystem{alive: map[wgtypes.Key]bool{}, routes: map[int][]route.Route{}, links: map[string]bool{}, pings: map[netip.Addr]int{}}
}

func (f *fakeSystem) setAlive(k wgtypes.Key, alive bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.alive[k] = alive
}

func (f *fakeSystem) backend() *fakeBackend {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.backends) == 0 {
		return nil
	}
	return f.backends[len(f.backends)-1]
}

func (f *fakeSystem) routesOf(table int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.routes[table] {
		out = append(out, r.String())
	}
	sort.Strings(out)
	return out
}

func (f *fakeSystem) PrepareLink(string) (bool, error) { return false, nil }

func (f *fakeSystem) OpenBackend(_ context.Context, o wg.Options) (wg.Backend, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.links[o.Name] {
		return nil, errors.New("interface exists")
	}
	f.links[o.Name] = true
	b := &fakeBackend{sys: f, name: o.Name, peers: map[wgtypes.Key]*wgtypes.Peer{}}
	f.backends = append(f.backends, b)
	return b, nil
}

func (f *fakeSystem) ConfigureLink(string, int, []netip.Prefix) error { return nil }

func (f *fakeSystem) ApplyRoutes(table int, _ string, want []route.Route) (route.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[table] = append([]route.Route(nil), want...)
	return route.Result{Added: len(want)}, nil
}

func (f *fakeSystem) CleanupOtherTables(keep int) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for t := range f.routes {
		if t != keep {
			delete(f.routes, t)
		}
	}
	return nil, nil
}

func (f *fakeSystem) ApplyMSS(c mss.Clamp) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mss = &c
	return true, nil
}

func (f *fakeSystem) RemoveMSS() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mss = nil
	return nil, nil
}

func (f *fakeSystem) Cleanup() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups++
	f.routes = map[int][]route.Route{}
	f.mss = nil
	return []string{"route blackhole 10.200.0.0/16 metric 51 table 254"}, nil
}

func (f *fakeSystem) NewPinger(string) engine.Pinger { return fakePinger{f} }

func (f *fakeSystem) Resolve(_ context.Context, host string) (netip.Addr, error) {
	if host == "gw-b.example.net" {
		return netip.MustParseAddr("192.0.2.12"), nil
	}
	return netip.Addr{}, errors.New("no such host")
}

type fakePinger struct{ f *fakeSystem }

func (p fakePinger) Send(dst netip.Addr) error {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	p.f.pings[dst]++
	return nil
}
func (fakePinger) Close() error { return nil }

type fakeBackend struct {
	sys    *fakeSystem
	name   string
	mu     sync.Mutex
	priv   wgtypes.Key
	peers  map[wgtypes.Key]*wgtypes.Peer
	closed bool
	nudges int
}

func (b *fakeBackend) Kind() config.Backend { return config.BackendUserspace }
func (b *fakeBackend) Name() string         { return b.name }
func (b *fakeBackend) Socket() string       { return "" }

func (b *fakeBackend) Configure(c wgtypes.Config) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c.PrivateKey != nil {
		b.priv = *c.PrivateKey
	}
	if c.ReplacePeers {
		b.peers = map[wgtypes.Key]*wgtypes.Peer{}
	}
	for _, pc := range c.Peers {
		if pc.Remove {
			delete(b.peers, pc.PublicKey)
			continue
		}
		p := b.peers[pc.PublicKey]
		if p == nil {
			p = &wgtypes.Peer{PublicKey: pc.PublicKey}
			b.peers[pc.PublicKey] = p
		}
		if pc.Endpoint != nil {
			p.Endpoint = pc.Endpoint
		}
		if pc.ReplaceAllowedIPs {
			p.AllowedIPs = nil
		}
		// WireGuard moves an allowed IP to its new peer.
		for _, n := range pc.AllowedIPs {
			for _, o := range b.peers {
				o.AllowedIPs = without(o.AllowedIPs, n)
			}
			p.AllowedIPs = append(p.AllowedIPs, n)
		}
	}
	return nil
}

func without(l []net.IPNet, n net.IPNet) []net.IPNet {
	var out []net.IPNet
	for _, x := range l {
		if x.String() != n.String() {
			out = append(out, x)
		}
	}
	return out
}

func (b *fakeBackend) Device() (*wgtypes.Device, error) {
	b.sys.mu.Lock()
	alive := map[wgtypes.Key]bool{}
	for k, v := range b.sys.alive {
		alive[k] = v
	}
	b.sys.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	d := &wgtypes.Device{Name: b.name, PrivateKey: b.priv, PublicKey: b.priv.PublicKey()}
	for k, p := range b.peers {
		if alive[k] {
			p.ReceiveBytes += 32
			p.TransmitBytes += 32
			if p.LastHandshakeTime.IsZero() {
				p.LastHandshakeTime = time.Now()
			}
		}
		d.Peers = append(d.Peers, *p)
	}
	return d, nil
}

func (b *fakeBackend) allowed(k wgtypes.Key) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.peers[k]
	if p == nil {
		return nil
	}
	var out []string
	for _, n := range p.AllowedIPs {
		out = append(out, n.String())
	}
	sort.Strings(out)
	return out
}

func (b *fakeBackend) Nudge(wgtypes.Key) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nudges++
	return nil
}

func (b *fakeBackend) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.sys.mu.Lock()
	delete(b.sys.links, b.name)
	b.sys.mu.Unlock()
	return nil
}
