// Package relay is the proxy's data path: listeners that relay agents' connections to
// health-checked upstream groups (TCP, TLS passthrough routed by SNI, plain HTTP and
// CONNECT), with access control, per-client and total limits, PROXY v2 toward
// upstreams, splice-based copying that holds no pipe or buffer while a connection is
// idle, and a cache mode that appends agents' records to the log cache.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sitelink/sitelink/plugins/proxy/access"
	"github.com/sitelink/sitelink/plugins/proxy/clients"
	"github.com/sitelink/sitelink/plugins/proxy/limit"
	"github.com/sitelink/sitelink/plugins/sdk"
)

// Hooks are what the relay needs from its plugin.
type Hooks struct {
	Log     *slog.Logger
	Metrics *Metrics
	// Append stores cache-mode records and returns once they are acknowledged durable.
	Append func(ctx context.Context, records []sdk.LogRecord) (first, last uint64, err error)
	// Refused is told of every refusal (the plugin writes the audit log, rate-limited).
	Refused func(listener string, client netip.Addr, reason, detail string)
}

// Server owns the listeners, upstream groups, limits and the clients registry.
type Server struct {
	hooks   Hooks
	Clients *clients.Registry

	totalBW   *limit.Bucket
	totalRate *limit.Bucket
	maxConns  atomic.Int64
	active    atomic.Int64

	mu        sync.Mutex
	cfg       *Config
	geo       *access.GeoIP
	geoPath   string
	groups    map[string]*group
	listeners map[string]*listener
	running   bool
	conns     map[*net.TCPConn]struct{}
	wg        sync.WaitGroup
	acceptErr atomic.Uint64
	// acceptTry counts accept calls, failed or not (the back-off keeps it small while
	// accepts fail).
	acceptTry atomic.Uint64
}

// listener is one listening socket; its settings can be swapped without closing it.
type listener struct {
	name string
	addr string
	ln   *net.TCPListener
	cfg  atomic.Pointer[compiled]
	// closing ends an accept back-off early; done is closed when the accept loop ended.
	closing chan struct{}
	done    chan struct{}
}

// New returns a stopped server.
func New(h Hooks) *Server {
	if h.Log == nil {
		h.Log = slog.Default()
	}
	if h.Metrics == nil {
		h.Metrics = NewMetrics(nil)
	}
	return &Server{hooks: h, Clients: clients.New(), totalBW: limit.NewBucket(0, 0), totalRate: limit.NewBucket(0, 0),
		groups: map[string]*group{}, listeners: map[string]*listener{}, conns: map[*net.TCPConn]struct{}{}}
}

// Apply makes cfg the desired config. Limits apply to live connections at once; when the
// server runs, listeners are added, changed in place or removed without touching
// established connections.
func (s *Server) Apply(cfg *Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cfg.GeoIP != nil && cfg.GeoIP.Database != "" && cfg.GeoIP.Database != s.geoPath {
		g, err := access.OpenGeoIP(cfg.GeoIP.Database)
		if err != nil {
			return err
		}
		s.geo, s.geoPath = g, cfg.GeoIP.Database // the old reader stays for live lookups; GC closes it
	}
	l := cfg.Limits
	s.totalBW.Set(float64(l.TotalBandwidth), 0)
	s.totalRate.Set(float64(l.TotalConnRate), 0)
	s.maxConns.Store(int64(l.MaxConns))
	s.Clients.SetLimits(clients.Limits{Bandwidth: float64(l.ClientBandwidth), ConnRate: float64(l.ClientConnRate),
		MaxConns: int64(l.ClientMaxConns)})
	s.cfg = cfg
	if s.running {
		return s.reconcile()
	}
	return nil
}

// Start opens the listeners and starts the health checks.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil
	}
	if s.cfg == nil {
		return errors.New("relay: start before a config was applied")
	}
	s.running = true
	if err := s.reconcile(); err != nil {
		s.closeListeners()
		s.running = false
		return err
	}
	return nil
}

// reconcile brings groups and listeners to s.cfg; s.mu is held.
func (s *Server) reconcile() error {
	for name, uc := range s.cfg.Upstreams {
		if g, ok := s.groups[name]; ok && g.sameAs(uc) {
			continue
		}
		if old, ok := s.groups[name]; ok {
			old.stop()
		}
		g := newGroup(name, uc, s.hooks.Log, func(group, addr string, up bool) {
			v := 0.0
			if up {
				v = 1
			}
			s.hooks.Metrics.UpstreamUp.WithLabelValues(group, addr).Set(v)
		})
		g.start()
		s.groups[name] = g
	}
	for name, g := range s.groups {
		if _, ok := s.cfg.Upstreams[name]; !ok {
			g.stop()
			delete(s.groups, name)
		}
	}
	want := map[string]bool{}
	var errs []error
	for _, lc := range s.cfg.Listeners {
		want[lc.Name] = true
		c := compile(lc, s.geo)
		c.connections = s.hooks.Metrics.Connections.WithLabelValues(lc.Name)
		if l, ok := s.listeners[lc.Name]; ok && l.addr == lc.Address {
			l.cfg.Store(c)
			continue
		} else if ok {
			s.closeListener(l)
		}
		ln, err := listenTCP(lc.Address)
		if err != nil {
			errs = append(errs, fmt.Errorf("listener %s on %s: %w", lc.Name, lc.Address, err))
			continue
		}
		l := &listener{name: lc.Name, addr: lc.Address, ln: ln, closing: make(chan struct{}), done: make(chan struct{})}
		l.cfg.Store(c)
		s.listeners[lc.Name] = l
		go s.acceptLoop(l)
		s.hooks.Log.Info("listening", "listener", lc.Name, "address", ln.Addr().String(), "mode", lc.Mode)
	}
	for name, l := range s.listeners {
		if !want[name] {
			s.closeListener(l)
		}
	}
	return errors.Join(errs...)
}

func (s *Server) closeListener(l *listener) {
	close(l.closing)
	_ = l.ln.Close()
	<-l.done
	delete(s.listeners, l.name)
	s.hooks.Log.Info("listener closed", "listener", l.name)
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		s.closeListener(l)
	}
	for name, g := range s.groups {
		g.stop()
		delete(s.groups, name)
	}
}

// Stop closes the listeners, lets established connections finish until ctx ends (or
// the drain timeout), then closes what is left.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.running {
		s.mu.Unlock()
		return nil
	}
	s.running = false
	s.closeListeners()
	drain := 30 * time.Second
	if s.cfg != nil && s.cfg.DrainTimeout > 0 {
		drain = time.Duration(s.cfg.DrainTimeout)
	}
	s.mu.Unlock()
	// Keep a margin before the caller's deadline to close what is left.
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		drain = min(drain, left-max(left/10, 200*time.Millisecond))
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	n := len(s.conns)
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	<-done
	s.hooks.Log.Warn("drain deadline passed; connections closed", "connections", n)
	return nil
}

// Addr is the bound address of a listener ("" if it is not open).
func (s *Server) Addr(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.listeners[name]; ok {
		return l.ln.Addr().String()
	}
	return ""
}

// Upstreams reports every upstream server.
func (s *Server) Upstreams() []UpstreamStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []UpstreamStatus
	for _, g := range s.groups {
		out = append(out, g.status()...)
	}
	return out
}

// Running says whether the listeners are open.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

// AcceptErrors counts failed accepts.
func (s *Server) AcceptErrors() uint64 { return s.acceptErr.Load() }

// AcceptAttempts counts accept calls, failed or not.
func (s *Server) AcceptAttempts() uint64 { return s.acceptTry.Load() }

// ActiveConns is the number of connections being handled.
func (s *Server) ActiveConns() int64 { return s.active.Load() }

func (s *Server) group(name string) *group {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.groups[name]
}

func (s *Server) acceptLoop(l *listener) {
	defer close(l.done)
	var backoff time.Duration
	for {
		s.acceptTry.Add(1)
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or memory: back off instead of spinning.
			s.acceptErr.Add(1)
			s.hooks.Metrics.AcceptErrors.Inc()
			backoff = min(max(backoff*2, 5*time.Millisecond), time.Second)
			if backoff == 5*time.Millisecond || backoff == time.Second {
				s.hooks.Log.Error("accept failed; backing off", "listener", l.name, "error", err,
					"fd_exhausted", errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE), "backoff", backoff)
			}
			t := time.NewTimer(backoff)
			select {
			case <-l.closing:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		backoff = 0
		s.wg.Add(1)
		go s.handle(l.cfg.Load(), c)
	}
}

func (s *Server) track(c *net.TCPConn, on bool) {
	s.mu.Lock()
	if on {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	s.mu.Unlock()
}

// Refusal reasons decided by the server (others come from access and clients).
const (
	ReasonTotalRate   = "total_rate"
	ReasonTotalConns  = "total_conns"
	ReasonTLSVersion  = "tls_version"
	ReasonAgentsOnly  = "agents_only"
	ReasonConnect     = "connect_target"
	ReasonBadRequest  = "bad_request"
	ReasonNoUpstream  = "no_upstream"
	ReasonUnknownSNI  = "unknown_server_name"
	ReasonCacheFailed = "cache_failed"
)

func (s *Server) refuse(l *compiled, a netip.Addr, reason, detail string, counted bool) {
	if !counted {
		s.Clients.Refuse(a, reason)
	}
	s.hooks.Metrics.Refusals.WithLabelValues(reason, l.Name).Inc()
	if s.hooks.Refused != nil {
		s.hooks.Refused(l.Name, a, reason, detail)
	}
}

func (s *Server) handle(l *compiled, c *net.TCPConn) {
	defer s.wg.Done()
	defer c.Close()
	var a netip.Addr
	if ra, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a = ra.AddrPort().Addr().Unmap()
	}
	if reason, detail := l.policy.Check(a); reason != "" {
		s.refuse(l, a, reason, detail, false)
		return
	}
	if !s.totalRate.Allow() {
		s.refuse(l, a, ReasonTotalRate, "total new-connection rate exceeded", false)
		return
	}
	n := s.active.Add(1)
	defer s.active.Add(-1)
	if max := s.maxConns.Load(); max > 0 && n > max {
		s.refuse(l, a, ReasonTotalConns, "total connection limit reached", false)
		return
	}
	cl, why := s.Clients.Admit(a)
	if cl == nil {
		s.refuse(l, a, why, "client limit", true)
		return
	}
	defer s.Clients.Done(cl)
	s.track(c, true)
	defer s.track(c, false)
	l.connections.Inc()
	s.hooks.Metrics.Active.Inc()
	defer s.hooks.Metrics.Active.Dec()

	ctx := context.Background()
	cn := &clientConn{s: s, l: l, c: c, addr: a, client: cl}
	var err error
	switch l.Mode {
	case ModeTCP:
		err = cn.relayTo(ctx, s.group(l.Upstream), nil)
	case ModeTLS:
		err = cn.serveTLS(ctx)
	case ModeHTTP:
		err = cn.serveHTTP(ctx)
	case ModeCache:
		err = cn.serveCache(ctx)
	}
	if err != nil && !isNormalEnd(err) {
		s.hooks.Log.Debug("connection ended", "listener", l.Name, "client", a.String(), "error", err)
	}
}
