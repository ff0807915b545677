// Package agent is the vrrp plugin as sitelinkd sees it: it implements sdk.Plugin on top
// of package node (Info, Configure, Start/Stop, Status, Cleanup), serves the status,
// handover and resume actions, publishes the node's HA role as `role` events (and each
// instance's transitions as `vrrp` events) and registers the Prometheus metrics.
package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/vrrp/config"
	"github.com/sitelink/sitelink/plugins/vrrp/node"
	"github.com/sitelink/sitelink/plugins/vrrp/vip"
)

// Version is the plugin's version.
const Version = "0.1.0"

// EventVRRP is the event type of one instance's state change (attrs instance, state,
// previous, reason).
const EventVRRP = "vrrp"

// publishTimeout bounds one event publication.
const publishTimeout = 5 * time.Second

// Plugin is the vrrp plugin.
type Plugin struct {
	sdk.Base

	mu      sync.Mutex
	cfgs    []config.Resolved
	log     *slog.Logger
	metrics *node.Metrics
	vips    *vip.Manager
	node    *node.Node
	running bool
	events  chan queued
}

// queued is an event to publish, or (done set) a marker that closes done once every
// event queued before it is published.
type queued struct {
	ev   sdk.Event
	done chan struct{}
}

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

// Info describes the plugin.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{
		Name:         "vrrp",
		Version:      Version,
		Description:  "VRRPv3 master/backup redundancy with virtual IPs, interoperable with keepalived",
		Capabilities: []string{"CAP_NET_ADMIN", "CAP_NET_RAW"},
		ConfigSchema: config.Schema,
		KernelFacing: true,
		Events: []sdk.EventSpec{
			{Type: sdk.EventRole, Description: "the node's HA role (attrs role, previous, instance), retained"},
			{Type: EventVRRP, Description: "an instance's state change (attrs instance, state, previous, reason)"},
		},
		Actions: []sdk.Action{
			{Name: "status", Description: "role, state, master, priorities, transitions and counters of every instance",
				Run: func(context.Context, sdk.Args) (any, error) { return p.statusDetails(), nil }},
			{Name: "handover", Mutating: true,
				Description: "give up mastership on purpose (maintenance) and hold off preemption",
				Args: []sdk.Arg{
					{Name: "instance", Type: sdk.ArgString, Description: "instance name (default: all)"},
					{Name: "for", Type: sdk.ArgDuration, Description: "how long to hold off preemption (default: until resume)"},
				},
				Run: p.handover},
			{Name: "resume", Mutating: true, Description: "end a hand-over hold: preempt again as configured",
				Args: []sdk.Arg{{Name: "instance", Type: sdk.ArgString, Description: "instance name (default: all)"}},
				Run:  p.resume},
		},
	}
}

// Init keeps the host, creates the metrics and starts the event publisher.
func (p *Plugin) Init(ctx context.Context, h sdk.Host) error {
	if err := p.Base.Init(ctx, h); err != nil {
		return err
	}
	p.log = h.Logger()
	p.metrics = node.NewMetrics(h.Metrics())
	p.events = make(chan queued, 1024)
	go p.publish(h)
	return nil
}

// publish sends queued events in order for the life of the process.
func (p *Plugin) publish(h sdk.Host) {
	for q := range p.events {
		if q.done != nil {
			close(q.done)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		if err := h.Publish(ctx, q.ev); err != nil {
			p.log.Warn("cannot publish event", "type", q.ev.Type, "error", err)
		}
		cancel()
	}
}

func (p *Plugin) enqueue(ev sdk.Event) {
	select {
	case p.events <- queued{ev: ev}:
	default:
		p.log.Error("event queue full, event dropped", "type", ev.Type, "attrs", ev.Attrs)
	}
}

// flush waits until the events queued so far are published (or ctx ends), so that the
// last role event reaches the daemon before a stopping process exits.
func (p *Plugin) flush(ctx context.Context) {
	if p.events == nil {
		return
	}
	done := make(chan struct{})
	select {
	case p.events <- queued{done: done}:
	case <-ctx.Done():
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Configure checks the section and, when running, applies it.
func (p *Plugin) Configure(ctx context.Context, raw json.RawMessage, validateOnly bool) error {
	cfgs, err := config.Parse(raw)
	if err != nil || validateOnly {
		return err
	}
	p.mu.Lock()
	p.cfgs = cfgs
	n, running := p.node, p.running
	p.mu.Unlock()
	if running {
		return n.Apply(ctx, cfgs)
	}
	return nil
}

func (p *Plugin) openVIPs() (*vip.Manager, error) {
	if p.vips != nil {
		return p.vips, nil
	}
	m, err := vip.Open(p.Host().StateDir(), p.log)
	if err != nil {
		return nil, err
	}
	p.vips = m
	return m, nil
}

// Start removes leftovers and starts the instances. role is ignored: this plugin is
// where the role comes from.
func (p *Plugin) Start(ctx context.Context, _ sdk.Role) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		return nil
	}
	vips, err := p.openVIPs()
	if err != nil {
		return err
	}
	h := p.Host()
	n := node.New(node.Options{Logger: p.log, VIPs: vips, Metrics: p.metrics, Subscribe: h.Subscribe,
		OnTransition: func(t node.Transition) {
			p.enqueue(sdk.Event{Type: EventVRRP, Attrs: map[string]string{"instance": t.Instance, "state": t.To,
				"previous": t.From, "reason": t.Reason}, Message: fmt.Sprintf("vrrp instance %s %s -> %s: %s", t.Instance, t.From, t.To, t.Reason)})
		},
		OnRole: func(rc node.RoleChange) {
			msg := fmt.Sprintf("HA role %s (was %s)", rc.Role, rc.Previous)
			if rc.Instance != "" {
				msg += fmt.Sprintf(": instance %s, %s", rc.Instance, rc.Reason)
			}
			p.enqueue(sdk.Event{Type: sdk.EventRole, Retain: true, Message: msg,
				Attrs: map[string]string{"role": string(rc.Role), "previous": string(rc.Previous), "instance": rc.Instance}})
		}})
	if err := n.Start(ctx, p.cfgs); err != nil {
		_ = n.Stop(ctx)
		return err
	}
	p.node, p.running = n, true
	return nil
}

// Stop resigns every instance (priority 0), removes the virtual IPs and publishes the
// role BACKUP.
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	n, running := p.node, p.running
	p.running = false
	p.mu.Unlock()
	if !running {
		return nil
	}
	err := n.Stop(ctx)
	p.flush(ctx)
	return err
}

func (p *Plugin) statusDetails() map[string]any {
	p.mu.Lock()
	n, running := p.node, p.running
	p.mu.Unlock()
	out := map[string]any{"running": running, "role": string(sdk.RoleUnknown), "instances": []node.InstanceStatus{}}
	if running {
		out["role"] = string(n.Role())
		out["instances"] = n.Status()
	}
	return out
}

// Status summarises the role and the instances.
func (p *Plugin) Status(context.Context) sdk.Status {
	p.mu.Lock()
	n, running, ncfg := p.node, p.running, len(p.cfgs)
	p.mu.Unlock()
	if !running {
		return sdk.Status{Health: sdk.HealthOK, Summary: fmt.Sprintf("stopped (%d instances configured)", ncfg)}
	}
	insts := n.Status()
	st := sdk.Status{Health: sdk.HealthOK, Details: p.statusDetails(), Counters: map[string]uint64{}}
	var parts []string
	for _, s := range insts {
		part := fmt.Sprintf("%s %s", s.Name, s.State)
		if s.State == "BACKUP" && s.Master != "" {
			part += " (master " + s.Master + ")"
		}
		parts = append(parts, part)
		if s.State == "FAULT" {
			st.Health = sdk.HealthDegraded
			st.Reasons = append(st.Reasons, fmt.Sprintf("instance %s in FAULT: %s", s.Name, s.Fault))
		}
		c := s.Counters
		for k, v := range map[string]uint64{"adverts_sent": c.AdvertsSent, "adverts_received": c.AdvertsReceived,
			"send_errors": c.SendErrors, "announcements": c.Announcements, "transitions": c.Transitions} {
			st.Counters[s.Name+"."+k] = v
		}
		for r, v := range c.Invalid {
			st.Counters[s.Name+".invalid_"+r] = v
		}
	}
	st.Summary = fmt.Sprintf("%s: %s", n.Role(), strings.Join(parts, ", "))
	if len(insts) == 0 {
		st.Summary = "no instances configured"
	}
	return st
}

func (p *Plugin) runningNode() (*node.Node, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		return nil, fmt.Errorf("vrrp is not running")
	}
	return p.node, nil
}

func (p *Plugin) handover(ctx context.Context, a sdk.Args) (any, error) {
	n, err := p.runningNode()
	if err != nil {
		return nil, err
	}
	d := a.Duration("for")
	resigned, err := n.Handover(ctx, a.String("instance"), d)
	if err != nil {
		return nil, err
	}
	hold := "until resume"
	if d > 0 {
		hold = "for " + d.String()
	}
	if resigned == nil {
		resigned = []string{}
	}
	return map[string]any{"resigned": resigned, "hold": hold}, nil
}

func (p *Plugin) resume(ctx context.Context, a sdk.Args) (any, error) {
	n, err := p.runningNode()
	if err != nil {
		return nil, err
	}
	if err := n.Resume(ctx, a.String("instance")); err != nil {
		return nil, err
	}
	return map[string]any{"resumed": true}, nil
}

// Cleanup removes the virtual IPs this plugin added, also those of a crashed process
// (from the journal in the state directory). A running node is stopped first.
func (p *Plugin) Cleanup(ctx context.Context) ([]string, error) {
	if err := p.Stop(ctx); err != nil {
		p.log.Warn("stop before cleanup", "error", err)
	}
	p.mu.Lock()
	vips, err := p.openVIPs()
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	removed, err := vips.Cleanup(ctx)
	if removed == nil {
		removed = []string{}
	}
	return removed, err
}

// shutdownTimeout bounds the resignation when the process is asked to end.
const shutdownTimeout = 5 * time.Second

// Shutdown resigns every instance and removes the virtual IPs, as Stop does; main calls
// it when the host goes away without stopping the plugin.
func (p *Plugin) Shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := p.Stop(ctx); err != nil && p.log != nil {
		p.log.Warn("resign on shutdown", "error", err)
	}
}

// ResignOnSignal makes the given signals (SIGTERM) resign every instance with priority
// 0 and remove the virtual IPs before the process exits, so that a backup takes over at
// once also when the plugin is terminated directly (systemd killing the whole control
// group) rather than stopped by sitelinkd. It returns a function that stops listening.
func (p *Plugin) ResignOnSignal(sigs ...os.Signal) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			if p.log != nil {
				p.log.Info("resigning on signal", "signal", sig.String())
			}
			p.Shutdown()
			os.Exit(0)
		case <-done:
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}
