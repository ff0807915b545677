package relay

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// server is one upstream endpoint.
type server struct {
	addr    string
	backup  bool
	healthy atomic.Bool
	active  atomic.Int64
	fails   atomic.Uint64
}

// group is a set of upstream endpoints with health checks, least-connections balancing
// and failover to the backups.
type group struct {
	name      string
	servers   []*server
	proxyV2   bool
	interval  time.Duration
	dialTO    time.Duration
	log       *slog.Logger
	onHealthy func(group, addr string, up bool)

	cancel context.CancelFunc
	done   chan struct{}
}

func newGroup(name string, c UpstreamConfig, log *slog.Logger, onHealthy func(string, string, bool)) *group {
	g := &group{name: name, proxyV2: c.ProxyProtocol == "v2", interval: 5 * time.Second, dialTO: 3 * time.Second,
		log: log, onHealthy: onHealthy}
	if c.HealthInterval > 0 {
		g.interval = time.Duration(c.HealthInterval)
	}
	if c.ConnectTimeout > 0 {
		g.dialTO = time.Duration(c.ConnectTimeout)
	}
	for _, a := range c.Servers {
		g.servers = append(g.servers, newServer(a, false))
	}
	for _, a := range c.Backup {
		g.servers = append(g.servers, newServer(a, true))
	}
	return g
}

func newServer(addr string, backup bool) *server {
	s := &server{addr: addr, backup: backup}
	s.healthy.Store(true) // optimistic until the first check
	return s
}

// sameAs says whether g was built from the same config (then it is kept across a reload).
func (g *group) sameAs(c UpstreamConfig) bool {
	n := newGroup(g.name, c, nil, nil)
	if len(n.servers) != len(g.servers) || n.proxyV2 != g.proxyV2 || n.interval != g.interval || n.dialTO != g.dialTO {
		return false
	}
	for i := range n.servers {
		if n.servers[i].addr != g.servers[i].addr || n.servers[i].backup != g.servers[i].backup {
			return false
		}
	}
	return true
}

// start runs the health checks until stop.
func (g *group) start() {
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel, g.done = cancel, make(chan struct{})
	go func() {
		defer close(g.done)
		t := time.NewTicker(g.interval)
		defer t.Stop()
		for {
			g.checkAll(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func (g *group) stop() {
	if g.cancel != nil {
		g.cancel()
		<-g.done
	}
}

func (g *group) checkAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range g.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, g.dialTO)
			defer cancel()
			c, err := (&net.Dialer{}).DialContext(cctx, "tcp", s.addr)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				c.Close()
			}
			g.setHealth(s, err == nil, err)
		}()
	}
	wg.Wait()
}

func (g *group) setHealth(s *server, up bool, err error) {
	if s.healthy.Swap(up) != up {
		if up {
			g.log.Info("upstream up", "group", g.name, "server", s.addr)
		} else {
			g.log.Warn("upstream down", "group", g.name, "server", s.addr, "error", err)
		}
	}
	if g.onHealthy != nil {
		g.onHealthy(g.name, s.addr, up)
	}
}

// candidates orders the servers to try: healthy primaries by fewest active connections,
// then healthy backups, then the unhealthy ones (a last resort, in case the checks lag).
func (g *group) candidates() []*server {
	if len(g.servers) == 1 {
		return g.servers // nothing to order (and no allocation per connection)
	}
	out := make([]*server, len(g.servers))
	copy(out, g.servers)
	rank := func(s *server) int {
		switch {
		case s.healthy.Load() && !s.backup:
			return 0
		case s.healthy.Load():
			return 1
		case !s.backup:
			return 2
		}
		return 3
	}
	sort.SliceStable(out, func(i, j int) bool {
		ri, rj := rank(out[i]), rank(out[j])
		if ri != rj {
			return ri < rj
		}
		return out[i].active.Load() < out[j].active.Load()
	})
	return out
}

// dial connects to the best server, failing over to the next ones.
func (g *group) dial(ctx context.Context) (*net.TCPConn, *server, error) {
	var errs []error
	for _, s := range g.candidates() {
		c, err := s.dial(ctx, g.dialTO)
		if err == nil {
			s.active.Add(1)
			return c, s, nil
		}
		s.fails.Add(1)
		g.setHealth(s, false, err)
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, nil, fmt.Errorf("upstream group %s: no server reachable: %v", g.name, errs)
}

// dial connects to s within timeout. (Not Dialer.DialTCP: its netip local address cannot
// be left out, so every dial would bind(2) to port 0 first, which is much slower than
// connect's own choice of port.)
func (s *server) dial(ctx context.Context, timeout time.Duration) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// UpstreamStatus is one server's state.
type UpstreamStatus struct {
	Group   string `json:"group"`
	Server  string `json:"server"`
	Backup  bool   `json:"backup,omitempty"`
	Healthy bool   `json:"healthy"`
	Active  int64  `json:"active"`
	Fails   uint64 `json:"fails"`
}

func (g *group) status() []UpstreamStatus {
	out := make([]UpstreamStatus, 0, len(g.servers))
	for _, s := range g.servers {
		out = append(out, UpstreamStatus{Group: g.name, Server: s.addr, Backup: s.backup, Healthy: s.healthy.Load(),
			Active: s.active.Load(), Fails: s.fails.Load()})
	}
	return out
}
