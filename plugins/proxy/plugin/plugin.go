// Package plugin is the proxy's sdk.Plugin: config, actions (clients, upstreams, plan),
// status, metrics, the "proxy" event and the rate-limited audit trail of refusals; the
// data path lives in package relay.
package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/sitelink/sitelink/plugins/proxy/access"
	"github.com/sitelink/sitelink/plugins/proxy/clients"
	"github.com/sitelink/sitelink/plugins/proxy/cluster"
	"github.com/sitelink/sitelink/plugins/proxy/limit"
	"github.com/sitelink/sitelink/plugins/proxy/relay"
	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/sdk/metrics"
)

// EventProxy is published (retained) when the proxy goes online or offline and when its
// number of connected clients changes: attrs state (online|offline), clients, node.
const EventProxy = "proxy"

// AuditSource is the log-cache source of refusal records.
const AuditSource = "audit/proxy"

// Plugin is the proxy plugin.
type Plugin struct {
	sdk.Base

	mu      sync.Mutex
	cfg     *relay.Config
	srv     *relay.Server
	cl      *cluster.Cluster
	node    string   // this proxy's name in the cluster view
	role    sdk.Role // the HA role, from Start and the role events
	audit   *limit.Bucket
	auditCh chan sdk.LogRecord
	cancel  context.CancelFunc
	done    chan struct{}
	// suppressed counts refusals not written to the audit log because of its rate.
	suppressed uint64
}

// version is the plugin's version, reported to cluster peers too.
const version = "0.1.0"

// New returns the plugin.
func New() *Plugin { return &Plugin{audit: limit.NewBucket(10, 10)} }

// Info implements sdk.Plugin.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{
		Name: "proxy", Version: version,
		Description:  "relays security agents to the management center, or caches their data in the log cache",
		Capabilities: []string{"CAP_NET_BIND_SERVICE"},
		ConfigSchema: schema,
		Actions: []sdk.Action{
			{Name: "clients", Description: "connected clients: first/last seen, connections, bytes, refusals",
				Args: []sdk.Arg{
					{Name: "sort", Type: sdk.ArgString, Default: "active", Description: "addr, active, total, bytes_in, bytes_out, first_seen, last_seen or refusals"},
					{Name: "limit", Type: sdk.ArgInt, Description: "show at most this many"},
				}, Run: p.clients},
			{Name: "upstreams", Description: "upstream servers with health and active connections", Run: p.upstreams},
			{Name: "cluster", Description: "every proxy of the cluster (this one and its configured peers): reachable, online, role, clients, connections, last seen", Run: p.cluster},
			{Name: "plan", Description: "bandwidth and limits for N agents at 10 Kbit/s each, keeping under 60% of resources",
				Args: []sdk.Arg{{Name: "hosts", Type: sdk.ArgInt, Required: true, Description: "number of agents"}},
				Run:  p.plan},
		},
		Events: []sdk.EventSpec{{Type: EventProxy, Description: "proxy online/offline and its number of clients (retained)"}},
	}
}

// Init implements sdk.Plugin.
func (p *Plugin) Init(ctx context.Context, h sdk.Host) error {
	if err := p.Base.Init(ctx, h); err != nil {
		return err
	}
	m := relay.NewMetrics(h.Metrics())
	p.srv = relay.New(relay.Hooks{Log: h.Logger(), Metrics: m, Append: h.AppendLogs, Refused: p.refused})
	p.cl = cluster.New(p.localStatus, h.Logger())
	p.auditCh = make(chan sdk.LogRecord, 256)
	go p.auditWriter(h)
	h.Metrics().MustRegister(metrics.NewGaugeFunc("sitelink_proxy_clients_connected",
		"Client addresses with at least one open connection.", func() float64 { return float64(p.srv.Clients.Connected()) }))
	return nil
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(ctx context.Context, raw json.RawMessage, validateOnly bool) error {
	cfg, err := relay.ParseConfig(raw)
	if err != nil {
		return err
	}
	if validateOnly {
		return nil
	}
	rate := 10.0
	if cfg.AuditRate != nil {
		rate = float64(*cfg.AuditRate)
	}
	p.audit.Set(rate, max(rate, 1))
	if err := p.srv.Apply(cfg); err != nil {
		return fmt.Errorf("apply proxy config: %w", err)
	}
	opts := clusterOptions(cfg.Cluster)
	p.mu.Lock()
	p.cfg = cfg
	p.node = opts.Node
	p.mu.Unlock()
	// The status endpoint serves while the proxy is stopped too (a backup under
	// active_when: master shows as reachable, not online).
	if err := p.cl.Apply(opts); err != nil {
		return fmt.Errorf("apply cluster config: %w", err)
	}
	return nil
}

// clusterOptions turns the validated cluster section into cluster.Options.
func clusterOptions(c *relay.ClusterConfig) cluster.Options {
	host, _ := os.Hostname()
	if c == nil {
		return cluster.Options{Node: host}
	}
	allow, _ := access.ParsePrefixes(c.Allow) // validated by relay.ParseConfig
	o := cluster.Options{Node: c.Node, Listen: c.Listen, Peers: c.Peers, Allow: allow, Token: c.Token,
		Interval: time.Duration(c.Interval), Timeout: time.Duration(c.Timeout)}
	if o.Node == "" {
		o.Node = host
	}
	return o
}

// localStatus is this proxy's row in the cluster view and its status endpoint's answer.
func (p *Plugin) localStatus() cluster.Status {
	p.mu.Lock()
	node, role := p.node, p.role
	p.mu.Unlock()
	return cluster.Status{Node: node, Online: p.srv.Running(), Role: string(role), ClientsConnected: p.srv.Clients.Connected(),
		ActiveConnections: max(p.srv.ActiveConns(), 0), AcceptErrors: p.srv.AcceptErrors(), Version: version}
}

// Start implements sdk.Plugin: opens the listeners.
func (p *Plugin) Start(ctx context.Context, role sdk.Role) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		cfg, err := relay.ParseConfig(nil)
		if err != nil {
			return fmt.Errorf("proxy not configured: %w", err)
		}
		if err := p.srv.Apply(cfg); err != nil {
			return err
		}
		p.cfg = cfg
		p.node = clusterOptions(nil).Node
	}
	p.role = role
	if err := p.srv.Start(); err != nil {
		return fmt.Errorf("start proxy: %w", err)
	}
	if p.cancel == nil {
		bg, cancel := context.WithCancel(context.Background())
		p.cancel, p.done = cancel, make(chan struct{})
		go p.housekeeping(bg)
	}
	return nil
}

// Stop implements sdk.Plugin: closes the listeners and drains connections.
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.cancel = nil
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return p.srv.Stop(ctx)
}

// housekeeping prunes old clients and publishes the proxy event when the count changes.
func (p *Plugin) housekeeping(ctx context.Context) {
	defer close(p.done)
	host, _ := os.Hostname()
	last := -1
	publish := func(state string, n int) {
		pctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Host().Publish(pctx, sdk.Event{Type: EventProxy, Retain: true,
			Attrs:   map[string]string{"state": state, "clients": fmt.Sprint(n), "node": host},
			Message: fmt.Sprintf("proxy %s on %s with %d clients", state, host, n)})
	}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	// The role is shown in the cluster view; without events it stays as Start gave it.
	roles, err := p.Host().Subscribe(ctx, sdk.EventRole)
	if err != nil {
		p.Host().Logger().Debug("no role events", "error", err)
	}
	for {
		if n := p.srv.Clients.Connected(); n != last {
			publish("online", n)
			last = n
		}
		select {
		case <-ctx.Done():
			publish("offline", 0)
			return
		case ev, ok := <-roles:
			if !ok {
				roles = nil
				continue
			}
			if r := ev.Attrs["role"]; r != "" {
				p.mu.Lock()
				p.role = sdk.Role(r)
				p.mu.Unlock()
			}
		case <-t.C:
			p.srv.Clients.Prune(time.Hour)
		}
	}
}

func (p *Plugin) refused(listener string, a netip.Addr, reason, detail string) {
	if !p.audit.Allow() {
		p.mu.Lock()
		p.suppressed++
		p.mu.Unlock()
		return
	}
	p.mu.Lock()
	sup := p.suppressed
	p.suppressed = 0
	p.mu.Unlock()
	data, _ := json.Marshal(map[string]any{"event": "refused", "listener": listener, "client": a.String(),
		"reason": reason, "detail": detail, "suppressed_before": sup})
	select {
	case p.auditCh <- sdk.LogRecord{Time: time.Now(), Source: AuditSource, Data: data}:
	default:
	}
}

// auditWriter appends refusal records to the log cache in the background.
func (p *Plugin) auditWriter(h sdk.Host) {
	for rec := range p.auditCh {
		batch := []sdk.LogRecord{rec}
		for len(batch) < 64 {
			select {
			case r := <-p.auditCh:
				batch = append(batch, r)
				continue
			default:
			}
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, _, err := h.AppendLogs(ctx, batch); err != nil {
			h.Logger().Debug("audit records not stored", "records", len(batch), "error", err)
		}
		cancel()
	}
}

// Status implements sdk.Plugin.
func (p *Plugin) Status(ctx context.Context) sdk.Status {
	st := sdk.Status{Health: sdk.HealthOK, Counters: map[string]uint64{
		"clients_connected":  uint64(p.srv.Clients.Connected()),
		"active_connections": uint64(max(p.srv.ActiveConns(), 0)),
		"accept_errors":      p.srv.AcceptErrors(),
	}}
	if !p.srv.Running() {
		st.Summary = "proxy stopped"
		return st
	}
	up := map[string]bool{}
	for _, u := range p.srv.Upstreams() {
		up[u.Group] = up[u.Group] || u.Healthy
	}
	for g, ok := range up {
		if !ok {
			st.Health = sdk.HealthDegraded
			st.Reasons = append(st.Reasons, fmt.Sprintf("upstream group %s: no healthy server", g))
		}
	}
	st.Summary = fmt.Sprintf("proxy: %d clients, %d connections", st.Counters["clients_connected"], st.Counters["active_connections"])
	return st
}

func (p *Plugin) clients(_ context.Context, args sdk.Args) (any, error) {
	key := args.String("sort")
	ok := false
	for _, k := range clients.SortKeys {
		ok = ok || k == key
	}
	if !ok {
		return nil, &sdk.ArgError{Msg: fmt.Sprintf("sort by %q: use one of %v", key, clients.SortKeys)}
	}
	return p.srv.Clients.List(key, int(args.Int("limit"))), nil
}

func (p *Plugin) upstreams(context.Context, sdk.Args) (any, error) { return p.srv.Upstreams(), nil }

// cluster polls the peers now (each within its poll timeout) and returns every member;
// an unreachable peer is a row with reachable=false and the error, never a failure.
func (p *Plugin) cluster(ctx context.Context, _ sdk.Args) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p.cl.Refresh(ctx)
	return p.cl.Members(), nil
}

func (p *Plugin) plan(_ context.Context, args sdk.Args) (any, error) {
	n := args.Int("hosts")
	if n <= 0 {
		return nil, &sdk.ArgError{Msg: "hosts must be positive"}
	}
	p.mu.Lock()
	cfg := p.cfg
	p.mu.Unlock()
	return Plan(int(n), ReadResources(), cfg), nil
}

// Cleanup implements sdk.Plugin; the proxy leaves nothing in the kernel.
func (p *Plugin) Cleanup(context.Context) ([]string, error) { return nil, nil }

const schema = `{
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "listeners": {"type": "array", "items": {"type": "object", "required": ["name", "address", "mode"],
      "properties": {
        "name": {"type": "string"}, "address": {"type": "string"},
        "mode": {"enum": ["tcp", "tls", "http", "cache"]},
        "upstream": {"type": "string"},
        "sni_routes": {"type": "array", "items": {"type": "object", "required": ["server_name", "upstream"],
          "properties": {"server_name": {"type": "string"}, "upstream": {"type": "string"}}, "additionalProperties": false}},
        "min_tls": {"enum": ["1.0", "1.1", "1.2", "1.3"]},
        "legacy_allow": {"type": "array", "items": {"type": "string"}},
        "allow": {"type": "array", "items": {"type": "string"}},
        "countries": {"type": "array", "items": {"type": "string", "minLength": 2, "maxLength": 2}},
        "allow_unknown_country": {"type": "boolean"},
        "agents_only": {"type": "object", "additionalProperties": false, "properties": {
          "server_names": {"type": "array", "items": {"type": "string"}},
          "paths": {"type": "array", "items": {"type": "string"}},
          "ports": {"type": "array", "items": {"type": "integer"}},
          "trusted": {"type": "array", "items": {"type": "string"}}}},
        "connect": {"type": "array", "items": {"type": "string"}},
        "idle_timeout": {"type": "string"}, "sniff_timeout": {"type": "string"},
        "max_record_bytes": {"type": "integer", "minimum": 1}
      }, "additionalProperties": false}},
    "upstreams": {"type": "object", "additionalProperties": {"type": "object", "required": ["servers"],
      "properties": {
        "servers": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "backup": {"type": "array", "items": {"type": "string"}},
        "proxy_protocol": {"enum": ["", "v2"]},
        "health_interval": {"type": "string"}, "connect_timeout": {"type": "string"}
      }, "additionalProperties": false}},
    "limits": {"type": "object", "additionalProperties": false, "properties": {
      "total_bandwidth": {"type": ["string", "number"]}, "client_bandwidth": {"type": ["string", "number"]},
      "total_conn_rate": {"type": ["string", "number"]}, "client_conn_rate": {"type": ["string", "number"]},
      "max_conns": {"type": ["string", "number"]}, "client_max_conns": {"type": ["string", "number"]}}},
    "geoip": {"type": "object", "required": ["database"], "properties": {"database": {"type": "string"}}, "additionalProperties": false},
    "drain_timeout": {"type": "string"},
    "audit_rate": {"type": "integer", "minimum": 0},
    "cluster": {"type": "object", "additionalProperties": false, "properties": {
      "node": {"type": "string"}, "listen": {"type": "string"},
      "peers": {"type": "array", "items": {"type": "string"}},
      "allow": {"type": "array", "items": {"type": "string"}},
      "token": {"type": "string"}, "interval": {"type": "string"}, "timeout": {"type": "string"}}}
  }
}`
