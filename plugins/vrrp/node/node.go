// Package node runs the vrrp plugin's virtual routers on the real kernel: for each
// configured instance a goroutine drives a vrouter.Machine with the sockets of package
// netio, the addresses of package vip and the tracked state of package track, and the
// node derives its HA role from the instances' states.
//
// The node's role works like a keepalived sync group: MASTER when every instance that
// affects the role is MASTER, FAULT when any of them is in FAULT, BACKUP otherwise
// (INIT counts as BACKUP). With no such instance there is no role (UNKNOWN).
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/vrrp/config"
	"github.com/sitelink/sitelink/plugins/vrrp/track"
	"github.com/sitelink/sitelink/plugins/vrrp/vip"
	"github.com/sitelink/sitelink/plugins/vrrp/vrouter"
)

// RoleChange is a change of the node's HA role.
type RoleChange struct {
	Role, Previous sdk.Role
	// Instance is the instance whose transition changed the role, Reason its reason.
	Instance, Reason string
}

// Options configure a Node.
type Options struct {
	Logger *slog.Logger
	// VIPs adds and removes the virtual addresses (required).
	VIPs *vip.Manager
	// Metrics may be nil.
	Metrics *Metrics
	// Subscribe delivers other plugins' events for event tracking (nil: none).
	Subscribe func(ctx context.Context, types ...string) (<-chan sdk.Event, error)
	// OnTransition and OnRole are called from the instances' goroutines, in order;
	// they must not block for long (queue, do not publish synchronously).
	OnTransition func(Transition)
	OnRole       func(RoleChange)
}

// Node runs a set of instances. Start, Apply and Stop may be called from any goroutine
// but not concurrently with each other.
type Node struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	running   bool
	ctx       context.Context
	cancel    context.CancelFunc
	links     *track.Links
	instances map[string]*instance
	order     []string
	states    map[string]vrouter.State
	role      sdk.Role
	eventUp   map[string][]bool // instance -> tracked event states
	rules     map[string][]track.EventRule
	subCancel context.CancelFunc
	subTypes  []string
	wg        sync.WaitGroup
}

// New returns a stopped node.
func New(opts Options) *Node {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Node{opts: opts, log: opts.Logger, instances: map[string]*instance{}, states: map[string]vrouter.State{},
		role: sdk.RoleUnknown, eventUp: map[string][]bool{}, rules: map[string][]track.EventRule{}}
}

// Start removes virtual IPs left by an earlier process, starts following links,
// addresses and events, and starts the instances.
func (n *Node) Start(ctx context.Context, cfgs []config.Resolved) error {
	n.mu.Lock()
	if n.running {
		n.mu.Unlock()
		return n.Apply(ctx, cfgs)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.running = true
	n.mu.Unlock()

	if removed, err := n.opts.VIPs.Cleanup(ctx); err != nil {
		n.log.Warn("cannot remove virtual IPs left by an earlier run", "error", err)
	} else if len(removed) > 0 {
		n.log.Info("removed virtual IPs left by an earlier run", "removed", removed)
	}
	links, linksDone, err := track.WatchLinks(n.ctx, n.refreshAll, func(err error) {
		if n.ctx.Err() == nil {
			n.log.Error("link updates failed", "error", err)
		}
	})
	if err != nil {
		n.stopWatchers()
		return err
	}
	n.mu.Lock()
	n.links = links
	n.mu.Unlock()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		<-linksDone
		if n.ctx.Err() == nil {
			n.log.Error("link updates stopped: interface tracking is frozen")
		}
	}()
	if err := n.watchAddrs(); err != nil {
		n.stopWatchers()
		return err
	}
	return n.Apply(ctx, cfgs)
}

func (n *Node) stopWatchers() {
	n.mu.Lock()
	n.cancel()
	n.running = false
	if n.subCancel != nil {
		n.subCancel()
		n.subCancel = nil
		n.subTypes = nil
	}
	n.mu.Unlock()
	n.wg.Wait()
}

// watchAddrs refreshes the instances (primary addresses) on address changes.
func (n *Node) watchAddrs() error {
	ch := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	if err := netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{
		ErrorCallback: func(err error) {
			if n.ctx.Err() == nil {
				n.log.Error("address updates failed", "error", err)
			}
		},
	}); err != nil {
		return fmt.Errorf("subscribe to address updates: %w", err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer close(done)
		for {
			select {
			case <-n.ctx.Done():
				return
			case _, ok := <-ch:
				if !ok {
					return
				}
				n.refreshAll()
			}
		}
	}()
	return nil
}

// refreshAll asks every instance to re-evaluate links, addresses and tracking.
func (n *Node) refreshAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, in := range n.instances {
		in.poke()
	}
}

// Apply makes the running instances match cfgs: unchanged ones keep running, removed
// ones resign and stop, new ones start, changed ones restart.
func (n *Node) Apply(ctx context.Context, cfgs []config.Resolved) error {
	n.mu.Lock()
	if !n.running {
		n.mu.Unlock()
		return errors.New("vrrp node is not running")
	}
	want := map[string]config.Resolved{}
	order := make([]string, 0, len(cfgs))
	for _, c := range cfgs {
		want[c.Name] = c
		order = append(order, c.Name)
	}
	var stop []*instance
	for name, in := range n.instances {
		if c, ok := want[name]; !ok || !reflect.DeepEqual(c, in.cfg) {
			stop = append(stop, in)
		}
	}
	n.mu.Unlock()

	var errs []error
	for _, in := range stop {
		if err := in.stop(ctx, "configuration changed"); err != nil {
			errs = append(errs, err)
		}
		n.mu.Lock()
		delete(n.instances, in.cfg.Name)
		delete(n.states, in.cfg.Name)
		delete(n.eventUp, in.cfg.Name)
		delete(n.rules, in.cfg.Name)
		n.mu.Unlock()
		if _, ok := want[in.cfg.Name]; !ok {
			n.opts.Metrics.forget(in.cfg.Name)
		}
	}

	n.mu.Lock()
	n.order = order
	var start []*instance
	for _, c := range cfgs {
		if _, ok := n.instances[c.Name]; ok {
			continue
		}
		in := newInstance(n, c)
		n.instances[c.Name] = in
		n.states[c.Name] = vrouter.Init
		rules := make([]track.EventRule, len(c.TrackEvents))
		up := make([]bool, len(c.TrackEvents))
		for i, te := range c.TrackEvents {
			rules[i] = track.EventRule(te)
			up[i] = te.Initial == "up"
		}
		n.rules[c.Name], n.eventUp[c.Name] = rules, up
		start = append(start, in)
	}
	n.mu.Unlock()

	// Before an instance runs it holds nothing: virtual IPs on its interface are
	// not ours (a crash without a journal, or added by hand) and must go.
	for _, in := range start {
		if in.cfg.Owner() {
			continue
		}
		removed, err := n.opts.VIPs.RemoveUnowned(ctx, in.cfg.Interface, in.cfg.VirtualIPs)
		if err != nil {
			errs = append(errs, fmt.Errorf("instance %s: %w", in.cfg.Name, err))
		}
		if len(removed) > 0 {
			n.log.Info("removed virtual IPs this node does not hold", "instance", in.cfg.Name, "removed", removed)
		}
	}
	force := false
	for _, in := range start {
		force = force || len(in.cfg.TrackEvents) > 0
	}
	if err := n.resubscribe(force); err != nil {
		errs = append(errs, err)
	}
	n.mu.Lock()
	for _, in := range start {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			in.run(n.ctx)
		}()
	}
	n.mu.Unlock()
	n.updateRole("", "configuration applied")
	return errors.Join(errs...)
}

// resubscribe follows the event types the instances track: again when they changed,
// or when force is set (a new instance needs the retained events, which a subscription
// delivers first). It is called by Apply only, so the subscription fields change under
// one caller; the host is called without holding the lock.
func (n *Node) resubscribe(force bool) error {
	n.mu.Lock()
	var types []string
	for _, rules := range n.rules {
		for _, r := range rules {
			if !slices.Contains(types, r.Type) {
				types = append(types, r.Type)
			}
		}
	}
	slices.Sort(types)
	if !force && slices.Equal(types, n.subTypes) && (n.subCancel != nil || len(types) == 0) {
		n.mu.Unlock()
		return nil
	}
	if n.subCancel != nil {
		n.subCancel()
		n.subCancel = nil
	}
	n.subTypes = nil
	parent := n.ctx
	n.mu.Unlock()
	if len(types) == 0 {
		return nil
	}
	if n.opts.Subscribe == nil {
		return fmt.Errorf("event tracking of %v configured but no event subscription available", types)
	}
	ctx, cancel := context.WithCancel(parent)
	ch, err := n.opts.Subscribe(ctx, types...)
	if err != nil {
		cancel()
		return fmt.Errorf("subscribe to %v events: %w", types, err)
	}
	n.mu.Lock()
	n.subCancel, n.subTypes = cancel, types
	n.mu.Unlock()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			for ev := range ch {
				n.onEvent(ev)
			}
			// The subscription ended while we still need it: subscribe again
			// (retained events first), backing off while the host does not answer.
			for delay := 100 * time.Millisecond; ; delay = min(2*delay, 10*time.Second) {
				if ctx.Err() != nil {
					return
				}
				n.log.Warn("event subscription ended, subscribing again", "types", types, "in", delay)
				select {
				case <-ctx.Done():
					return
				case <-time.After(delay):
				}
				var err error
				if ch, err = n.opts.Subscribe(ctx, types...); err == nil {
					break
				}
				n.log.Warn("subscribe to events", "types", types, "error", err)
			}
		}
	}()
	return nil
}

func (n *Node) onEvent(ev sdk.Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for name, rules := range n.rules {
		changed := false
		for i, r := range rules {
			if r.Follows(ev) {
				up := r.IsUp(ev)
				if n.eventUp[name][i] != up {
					n.eventUp[name][i] = up
					changed = true
				}
			}
		}
		if changed {
			if in := n.instances[name]; in != nil {
				in.poke()
			}
		}
	}
}

// tracked returns an instance's tracked objects and its own link state.
func (n *Node) tracked(c *config.Resolved) (objs []track.Object, own track.Link, ownOK bool) {
	n.mu.Lock()
	links := n.links
	rules := n.rules[c.Name]
	up := slices.Clone(n.eventUp[c.Name])
	n.mu.Unlock()
	own, ownOK = links.Get(c.Interface)
	for _, ti := range c.TrackInterfaces {
		l, ok := links.Get(ti.Name)
		objs = append(objs, track.Object{Name: "interface " + ti.Name, Weight: ti.Weight, Up: ok && l.Up})
	}
	for i, r := range rules {
		objs = append(objs, track.Object{Name: r.Name(), Weight: r.Weight, Up: i < len(up) && up[i]})
	}
	return objs, own, ownOK
}

// transitioned records an instance's new state and updates the role.
func (n *Node) transitioned(t Transition, to vrouter.State) {
	n.mu.Lock()
	if _, ok := n.instances[t.Instance]; ok {
		n.states[t.Instance] = to
	}
	n.mu.Unlock()
	if n.opts.OnTransition != nil {
		n.opts.OnTransition(t)
	}
	n.updateRole(t.Instance, t.Reason)
}

// DeriveRole is the node's role from its instances' states (see the package doc).
func DeriveRole(states []vrouter.State) sdk.Role {
	if len(states) == 0 {
		return sdk.RoleUnknown
	}
	all := true
	for _, s := range states {
		if s == vrouter.Fault {
			return sdk.RoleFault
		}
		all = all && s == vrouter.Master
	}
	if all {
		return sdk.RoleMaster
	}
	return sdk.RoleBackup
}

func (n *Node) updateRole(instance, reason string) {
	n.mu.Lock()
	var states []vrouter.State
	for name, in := range n.instances {
		if in.cfg.AffectsRole {
			states = append(states, n.states[name])
		}
	}
	role := DeriveRole(states)
	if !n.running && len(n.instances) == 0 {
		role = sdk.RoleBackup
	}
	prev := n.role
	if role == prev {
		n.mu.Unlock()
		return
	}
	n.role = role
	cb := n.opts.OnRole
	n.mu.Unlock()
	n.log.Info("node role changed", "role", string(role), "previous", string(prev), "instance", instance, "reason", reason)
	if cb != nil {
		cb(RoleChange{Role: role, Previous: prev, Instance: instance, Reason: reason})
	}
}

// Role is the node's current role.
func (n *Node) Role() sdk.Role {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.role
}

// Stop resigns every instance (priority 0 from masters), removes the virtual IPs and
// stops following the kernel. The role becomes BACKUP.
func (n *Node) Stop(ctx context.Context) error {
	n.mu.Lock()
	if !n.running {
		n.mu.Unlock()
		return nil
	}
	insts := make([]*instance, 0, len(n.instances))
	for _, in := range n.instances {
		insts = append(insts, in)
	}
	n.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(insts))
	for i, in := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = in.stop(ctx, "stopped")
		}()
	}
	wg.Wait()
	n.mu.Lock()
	n.instances = map[string]*instance{}
	n.states = map[string]vrouter.State{}
	n.rules, n.eventUp = map[string][]track.EventRule{}, map[string][]bool{}
	n.mu.Unlock()
	n.stopWatchers()
	n.updateRole("", "stopped")
	return errors.Join(errs...)
}

// Status returns every instance's status in configuration order.
func (n *Node) Status() []InstanceStatus {
	n.mu.Lock()
	insts := make([]*instance, 0, len(n.order))
	for _, name := range n.order {
		if in, ok := n.instances[name]; ok {
			insts = append(insts, in)
		}
	}
	n.mu.Unlock()
	out := make([]InstanceStatus, len(insts))
	for i, in := range insts {
		out[i] = in.status()
	}
	return out
}

func (n *Node) get(name string) (*instance, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	in, ok := n.instances[name]
	if !ok {
		return nil, fmt.Errorf("no vrrp instance %q", name)
	}
	return in, nil
}

func (n *Node) selected(name string) ([]*instance, error) {
	if name != "" {
		in, err := n.get(name)
		if err != nil {
			return nil, err
		}
		return []*instance{in}, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*instance, 0, len(n.instances))
	for _, name := range n.order {
		if in, ok := n.instances[name]; ok {
			out = append(out, in)
		}
	}
	return out, nil
}

// Handover makes the named instance (every instance when name is "") give up
// mastership on purpose and hold off preemption for d (0: until Resume). It returns
// the instances that were master and resigned.
func (n *Node) Handover(ctx context.Context, name string, d time.Duration) ([]string, error) {
	insts, err := n.selected(name)
	if err != nil {
		return nil, err
	}
	var resigned []string
	var errs []error
	for _, in := range insts {
		was, err := in.handover(ctx, d)
		if err != nil {
			errs = append(errs, fmt.Errorf("instance %s: %w", in.cfg.Name, err))
		}
		if was {
			resigned = append(resigned, in.cfg.Name)
		}
	}
	return resigned, errors.Join(errs...)
}

// Resume ends a hand-over hold of the named instance (every instance when "").
func (n *Node) Resume(ctx context.Context, name string) error {
	insts, err := n.selected(name)
	if err != nil {
		return err
	}
	var errs []error
	for _, in := range insts {
		if err := in.resume(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
