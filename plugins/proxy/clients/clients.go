// Package clients is the proxy's live registry of client addresses: when each was first
// and last seen, its active and total connections, bytes each way and refusals by
// reason, plus the per-client limiters (bandwidth, new-connection rate, connections).
package clients

import (
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sitelink/sitelink/plugins/proxy/limit"
)

// Limits are the per-client limits; zero means unlimited.
type Limits struct {
	// Bandwidth in bytes per second, both directions together.
	Bandwidth float64
	// ConnRate is new connections per second.
	ConnRate float64
	// MaxConns is the most simultaneous connections.
	MaxConns int64
}

// Client is one source address.
type Client struct {
	Addr netip.Addr

	firstSeen time.Time
	lastSeen  atomic.Int64 // unix nanoseconds
	active    atomic.Int64
	total     atomic.Uint64
	bytesIn   atomic.Uint64 // from the client
	bytesOut  atomic.Uint64 // to the client

	// Bandwidth limits this client's bytes, both directions.
	Bandwidth *limit.Bucket
	connRate  *limit.Bucket

	mu       sync.Mutex
	refusals map[string]uint64
}

// AddIn counts bytes received from the client.
func (c *Client) AddIn(n int) { c.bytesIn.Add(uint64(n)); c.touch() }

// AddOut counts bytes sent to the client.
func (c *Client) AddOut(n int) { c.bytesOut.Add(uint64(n)); c.touch() }

func (c *Client) touch() { c.lastSeen.Store(time.Now().UnixNano()) }

// Info is a snapshot of a client.
type Info struct {
	Addr      string            `json:"addr"`
	FirstSeen time.Time         `json:"first_seen"`
	LastSeen  time.Time         `json:"last_seen"`
	Active    int64             `json:"active"`
	Total     uint64            `json:"total"`
	BytesIn   uint64            `json:"bytes_in"`
	BytesOut  uint64            `json:"bytes_out"`
	Refusals  map[string]uint64 `json:"refusals,omitempty"`
}

// Registry holds every client seen recently.
type Registry struct {
	mu      sync.Mutex
	clients map[netip.Addr]*Client
	limits  Limits
	active  atomic.Int64
	now     func() time.Time
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{clients: make(map[netip.Addr]*Client), now: time.Now}
}

// SetLimits changes the per-client limits, for live clients too.
func (r *Registry) SetLimits(l Limits) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.limits = l
	for _, c := range r.clients {
		c.Bandwidth.Set(l.Bandwidth, 0)
		c.connRate.Set(l.ConnRate, 0)
	}
}

func (r *Registry) get(a netip.Addr) *Client {
	c := r.clients[a]
	if c == nil {
		now := r.now()
		c = &Client{Addr: a, firstSeen: now, refusals: map[string]uint64{},
			Bandwidth: limit.NewBucket(r.limits.Bandwidth, 0),
			connRate:  limit.NewBucket(r.limits.ConnRate, 0)}
		c.lastSeen.Store(now.UnixNano())
		r.clients[a] = c
	}
	return c
}

// Refusal reasons decided by the registry.
const (
	ReasonClientRate  = "client_rate"
	ReasonClientConns = "client_conns"
)

// Admit registers a new connection from a, or says why the client's limits refuse it
// (then the refusal is already counted).
func (r *Registry) Admit(a netip.Addr) (*Client, string) {
	a = a.Unmap()
	r.mu.Lock()
	c := r.get(a)
	max := r.limits.MaxConns
	r.mu.Unlock()
	c.touch()
	if !c.connRate.Allow() {
		c.refuse(ReasonClientRate)
		return nil, ReasonClientRate
	}
	if n := c.active.Add(1); max > 0 && n > max {
		c.active.Add(-1)
		c.refuse(ReasonClientConns)
		return nil, ReasonClientConns
	}
	c.total.Add(1)
	r.active.Add(1)
	return c, ""
}

// Done ends a connection admitted by Admit.
func (r *Registry) Done(c *Client) {
	c.active.Add(-1)
	r.active.Add(-1)
	c.touch()
}

// Refuse counts a refusal of a for reason.
func (r *Registry) Refuse(a netip.Addr, reason string) {
	r.mu.Lock()
	c := r.get(a.Unmap())
	r.mu.Unlock()
	c.touch()
	c.refuse(reason)
}

func (c *Client) refuse(reason string) {
	c.mu.Lock()
	c.refusals[reason]++
	c.mu.Unlock()
}

// Connected is the number of clients with at least one active connection.
func (r *Registry) Connected() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.clients {
		if c.active.Load() > 0 {
			n++
		}
	}
	return n
}

// ActiveConns is the number of active connections of all clients.
func (r *Registry) ActiveConns() int64 { return r.active.Load() }

// Prune forgets clients without connections not seen for longer than idle, and returns
// how many it forgot.
func (r *Registry) Prune(idle time.Duration) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	cut := r.now().Add(-idle).UnixNano()
	n := 0
	for a, c := range r.clients {
		if c.active.Load() == 0 && c.lastSeen.Load() < cut {
			delete(r.clients, a)
			n++
		}
	}
	return n
}

// Sort keys for List.
var SortKeys = []string{"addr", "active", "total", "bytes_in", "bytes_out", "first_seen", "last_seen", "refusals"}

// List returns a snapshot of every client, sorted by key (descending for counts and
// times, ascending for addr); limit > 0 keeps the first limit.
func (r *Registry) List(key string, limit int) []Info {
	r.mu.Lock()
	out := make([]Info, 0, len(r.clients))
	for _, c := range r.clients {
		c.mu.Lock()
		ref := make(map[string]uint64, len(c.refusals))
		for k, v := range c.refusals {
			ref[k] = v
		}
		c.mu.Unlock()
		out = append(out, Info{Addr: c.Addr.String(), FirstSeen: c.firstSeen,
			LastSeen: time.Unix(0, c.lastSeen.Load()), Active: c.active.Load(), Total: c.total.Load(),
			BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load(), Refusals: ref})
	}
	r.mu.Unlock()
	less := func(i, j int) bool {
		a, b := out[i], out[j]
		switch key {
		case "active":
			return a.Active > b.Active
		case "total":
			return a.Total > b.Total
		case "bytes_in":
			return a.BytesIn > b.BytesIn
		case "bytes_out":
			return a.BytesOut > b.BytesOut
		case "first_seen":
			return a.FirstSeen.After(b.FirstSeen)
		case "last_seen":
			return a.LastSeen.After(b.LastSeen)
		case "refusals":
			return sum(a.Refusals) > sum(b.Refusals)
		}
		pa, _ := netip.ParseAddr(a.Addr)
		pb, _ := netip.ParseAddr(b.Addr)
		return pa.Less(pb)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if less(i, j) != less(j, i) {
			return less(i, j)
		}
		pa, _ := netip.ParseAddr(out[i].Addr)
		pb, _ := netip.ParseAddr(out[j].Addr)
		return pa.Less(pb)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
