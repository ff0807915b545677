// Package cluster is the proxy's cluster view. Proxies that serve the same agents (behind
// a DNS name, a load balancer or the vrrp virtual IP) name each other as peers; each one
// serves its own status, read-only, on a small HTTP endpoint that answers only its peers'
// addresses and allowed prefixes, and polls its peers' endpoints. Any member can then show
// every proxy of the cluster: reachable, online, role, clients, connections, last seen. An
// unreachable peer is shown as such; it never fails the whole view.
package cluster

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"time"
)

// StatusPath is the path of the status endpoint.
const StatusPath = "/v1/proxy/status"

// Defaults for zero Options fields.
const (
	DefaultInterval = 5 * time.Second
	DefaultTimeout  = 2 * time.Second
)

// Options configure the cluster view; the zero value (no Listen, no Peers) is a cluster of
// this proxy alone.
type Options struct {
	// Node names this proxy (default: the host name).
	Node string
	// Listen is the address of the status endpoint ("" serves none).
	Listen string
	// Peers are the other members' status endpoints, host:port.
	Peers []string
	// Allow are source prefixes admitted besides the peers' own addresses.
	Allow []netip.Prefix
	// Token, when set, must be sent by pollers (Authorization: Bearer) and is sent to peers.
	Token string
	// Interval between polls of the peers; Timeout bounds one poll.
	Interval, Timeout time.Duration
}

// Status is what one proxy reports about itself (the endpoint's JSON body).
type Status struct {
	Node string `json:"node"`
	// Online says the proxy's listeners are open (false: stopped, e.g. a backup under
	// active_when: master).
	Online            bool      `json:"online"`
	Role              string    `json:"role,omitempty"`
	ClientsConnected  int       `json:"clients_connected"`
	ActiveConnections int64     `json:"active_connections"`
	AcceptErrors      uint64    `json:"accept_errors"`
	Version           string    `json:"version,omitempty"`
	Time              time.Time `json:"time"`
}

// Member is one row of the cluster view. Fields a peer did not report (it is
// unreachable) are null.
type Member struct {
	Node        string     `json:"node"`
	Address     string     `json:"address"`
	Self        bool       `json:"self"`
	Reachable   bool       `json:"reachable"`
	Online      bool       `json:"online"`
	Role        string     `json:"role"`
	Clients     *int       `json:"clients"`
	Connections *int64     `json:"connections"`
	LastSeen    *time.Time `json:"last_seen"`
	Error       string     `json:"error"`
}

// peer is the last known state of one configured peer.
type peer struct {
	addr     string
	status   *Status // last successful poll, nil if none since configured
	lastSeen time.Time
	err      error // of the last poll; nil when it succeeded
	polled   bool
}

// Cluster serves this proxy's status and polls the peers.
type Cluster struct {
	local func() Status
	log   *slog.Logger

	client *http.Client

	// applyMu serializes Apply and Close; it owns srv and srvDone.
	applyMu sync.Mutex
	srv     *http.Server
	srvDone chan struct{}

	mu      sync.Mutex
	opts    Options
	peers   map[string]*peer
	allowed map[netip.Addr]bool // peers' addresses
	addr    string              // bound address of the endpoint
	cancel  context.CancelFunc  // of the poller
	done    chan struct{}
}

// New returns a cluster view whose own row comes from local.
func New(local func() Status, log *slog.Logger) *Cluster {
	if log == nil {
		log = slog.Default()
	}
	return &Cluster{local: local, log: log, peers: map[string]*peer{}, allowed: map[netip.Addr]bool{},
		client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}}
}

// Apply makes o the desired configuration: the endpoint is (re)opened when its address
// changed, peers are added and removed (known state is kept for the others), and the
// poller runs while there are peers. Calling it again with the same options changes
// nothing.
func (c *Cluster) Apply(o Options) error {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	c.mu.Lock()
	old := c.opts
	pollerChanged := !slices.Equal(o.Peers, old.Peers) || o.Interval != old.Interval || (c.cancel == nil) != (len(o.Peers) == 0)
	c.mu.Unlock()
	// The poller and the endpoint take c.mu: stop them without holding it.
	if pollerChanged {
		c.stopPoller()
	}
	var err error
	if o.Listen != old.Listen || (o.Listen != "" && c.srv == nil) {
		c.closeServer()
		if o.Listen != "" {
			if err = c.openServer(o.Listen); err != nil {
				o.Listen = ""
			}
		}
	}
	c.mu.Lock()
	c.opts = o
	want := map[string]bool{}
	for _, a := range o.Peers {
		want[a] = true
		if c.peers[a] == nil {
			c.peers[a] = &peer{addr: a}
		}
	}
	for a := range c.peers {
		if !want[a] {
			delete(c.peers, a)
		}
	}
	c.resolveLocked()
	if pollerChanged && len(o.Peers) > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		c.cancel, c.done = cancel, make(chan struct{})
		go c.pollLoop(ctx, o.Interval, c.done)
	}
	c.mu.Unlock()
	return err
}

// resolveLocked records the peers' IP literals as allowed sources; names are resolved
// by the poller (resolving may wait).
func (c *Cluster) resolveLocked() {
	for a := range c.allowed {
		delete(c.allowed, a)
	}
	for _, p := range c.opts.Peers {
		host, _, err := net.SplitHostPort(p)
		if err != nil {
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			c.allowed[ip.Unmap()] = true
		}
	}
}

// resolveNames adds the addresses of peers given by name to the allowed sources.
func (c *Cluster) resolveNames(ctx context.Context) {
	c.mu.Lock()
	peers := slices.Clone(c.opts.Peers)
	c.mu.Unlock()
	for _, p := range peers {
		host, _, err := net.SplitHostPort(p)
		if err != nil {
			continue
		}
		if _, err := netip.ParseAddr(host); err == nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ips, err := net.DefaultResolver.LookupNetIP(rctx, "ip", host)
		cancel()
		if err != nil {
			c.log.Debug("cluster peer not resolved", "peer", p, "error", err)
			continue
		}
		c.mu.Lock()
		for _, ip := range ips {
			c.allowed[ip.Unmap()] = true
		}
		c.mu.Unlock()
	}
}

// openServer opens the endpoint; c.applyMu is held.
func (c *Cluster) openServer(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cluster status endpoint on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(c.serveStatus), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 8 << 10,
		ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelDebug)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("cluster status endpoint stopped", "address", addr, "error", err)
		}
	}()
	c.srv, c.srvDone = srv, done
	c.mu.Lock()
	c.addr = ln.Addr().String()
	c.mu.Unlock()
	c.log.Info("cluster status endpoint listening", "address", ln.Addr().String())
	return nil
}

// closeServer closes the endpoint; c.applyMu is held.
func (c *Cluster) closeServer() {
	if c.srv == nil {
		return
	}
	_ = c.srv.Close()
	<-c.srvDone
	c.srv, c.srvDone = nil, nil
	c.mu.Lock()
	c.addr = ""
	c.mu.Unlock()
}

// stopPoller stops the poller and waits for it; c.applyMu is held, c.mu is not.
func (c *Cluster) stopPoller() {
	c.mu.Lock()
	cancel, done := c.cancel, c.done
	c.cancel, c.done = nil, nil
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Close stops the endpoint and the poller.
func (c *Cluster) Close() {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	c.stopPoller()
	c.closeServer()
}

// Addr is the bound address of the status endpoint ("" if none).
func (c *Cluster) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// admitted says whether a request from src with header auth may read the status.
func (c *Cluster) admitted(src netip.Addr, auth string) (bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ok := c.allowed[src]
	for _, p := range c.opts.Allow {
		ok = ok || p.Contains(src)
	}
	if !ok {
		return false, "source not a peer"
	}
	if c.opts.Token != "" && subtle.ConstantTimeCompare([]byte(auth), []byte("Bearer "+c.opts.Token)) != 1 {
		return false, "bad token"
	}
	return true, ""
}

func (c *Cluster) serveStatus(w http.ResponseWriter, r *http.Request) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	src := ap.Addr().Unmap()
	if ok, why := c.admitted(src, r.Header.Get("Authorization")); err != nil || !ok {
		c.log.Debug("cluster status refused", "client", r.RemoteAddr, "reason", why)
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	if r.URL.Path != StatusPath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "read-only", http.StatusMethodNotAllowed)
		return
	}
	st := c.local()
	st.Time = time.Now().UTC()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(st)
}

func (c *Cluster) pollLoop(ctx context.Context, interval time.Duration, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		c.resolveNames(ctx)
		c.Refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Refresh polls every peer now (concurrently, each within the poll timeout) and records
// the answers; it returns when all polls ended or ctx ended.
func (c *Cluster) Refresh(ctx context.Context) {
	c.mu.Lock()
	peers := slices.Clone(c.opts.Peers)
	timeout, token := c.opts.Timeout, c.opts.Token
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, a := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := c.poll(ctx, a, timeout, token)
			if ctx.Err() != nil && err != nil {
				return // cancelled: not the peer's fault
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			p := c.peers[a]
			if p == nil {
				return // removed meanwhile
			}
			p.polled, p.err = true, err
			if err == nil {
				p.status, p.lastSeen = st, time.Now()
			}
		}()
	}
	wg.Wait()
}

func (c *Cluster) poll(ctx context.Context, addr string, timeout time.Duration, token string) (*Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+StatusPath, nil)
	if err != nil {
		return nil, fmt.Errorf("status request to %s: %w", addr, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the row names the peer already
		}
		return nil, fmt.Errorf("poll: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("poll: read: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("poll: %s", resp.Status)
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("poll: bad status: %w", err)
	}
	return &st, nil
}

// Members is the cluster view: this proxy first, then the peers in configured order,
// from the last polls.
func (c *Cluster) Members() []Member {
	self := c.local()
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now().UTC().Truncate(time.Second)
	addr := c.addr
	if addr == "" {
		addr = "-"
	}
	out := []Member{{Node: self.Node, Address: addr, Self: true, Reachable: true, Online: self.Online, Role: self.Role,
		Clients: &self.ClientsConnected, Connections: &self.ActiveConnections, LastSeen: &now}}
	for _, a := range c.opts.Peers {
		p := c.peers[a]
		if p == nil {
			continue
		}
		m := Member{Node: a, Address: a}
		if p.status != nil {
			m.Node = p.status.Node
			ls := p.lastSeen.UTC().Truncate(time.Second)
			m.LastSeen = &ls
		}
		switch {
		case !p.polled:
			m.Error = "not polled yet"
		case p.err != nil:
			m.Error = p.err.Error()
		default:
			st := p.status
			m.Reachable, m.Online, m.Role = true, st.Online, st.Role
			m.Clients, m.Connections = &st.ClientsConnected, &st.ActiveConnections
		}
		out = append(out, m)
	}
	return out
}
