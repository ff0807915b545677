package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sitelink/sitelink/plugins/sdk/metrics"
	"github.com/sitelink/sitelink/plugins/vrrp/config"
	"github.com/sitelink/sitelink/plugins/vrrp/netio"
	"github.com/sitelink/sitelink/plugins/vrrp/packet"
	"github.com/sitelink/sitelink/plugins/vrrp/track"
	"github.com/sitelink/sitelink/plugins/vrrp/vip"
	"github.com/sitelink/sitelink/plugins/vrrp/vrouter"
)

// historyLen is how many transitions an instance remembers.
const historyLen = 16

// kernelTimeout bounds one netlink change of the virtual IPs.
const kernelTimeout = 5 * time.Second

// instance runs one virtual router. Its loop goroutine (run) owns the machine, the
// sockets and the timers; other goroutines talk to it through ctl and poke, and read
// its status under mu.
type instance struct {
	n       *Node
	cfg     config.Resolved
	log     *slog.Logger
	addrs   []netip.Addr
	addrSet map[netip.Addr]bool
	peers   map[netip.Addr]bool

	ctl     chan ctlReq
	pokeC   chan struct{}
	rx      chan netio.Received
	done    chan struct{}
	primary atomic.Value // netip.Addr, read by the receiver

	// Owned by the loop goroutine.
	m           *vrouter.Machine
	conn        *netio.Conn
	ann         *vip.Announcer
	burstCancel context.CancelFunc
	bursts      sync.WaitGroup
	repeatAt    time.Time
	refreshAt   time.Time
	sendFailing bool

	sent, recv, sendErrs, otherVRID, announced, becameMaster, transitions atomic.Uint64
	invalid                                                               [16]atomic.Uint64
	met                                                                   instMetrics

	mu       sync.Mutex
	snap     InstanceStatus
	history  []Transition
	lastErr  string
	lastWarn map[packet.Reason]time.Time
}

type instMetrics struct {
	sent, recv, sendErrs, announced *metrics.Counter
}

type ctlReq struct {
	fn   func(now time.Time) (acts []vrouter.Action, exit bool)
	done chan struct{}
}

func reasonIndex(r packet.Reason) int { return slices.Index(packet.Reasons, r) }

func newInstance(n *Node, c config.Resolved) *instance {
	in := &instance{n: n, cfg: c, log: n.log.With("instance", c.Name), addrs: c.Addrs(),
		addrSet: map[netip.Addr]bool{}, peers: map[netip.Addr]bool{},
		ctl: make(chan ctlReq), pokeC: make(chan struct{}, 1), rx: make(chan netio.Received, 64),
		done: make(chan struct{}), lastWarn: map[packet.Reason]time.Time{}}
	for _, a := range in.addrs {
		in.addrSet[a] = true
	}
	for _, p := range c.UnicastPeers {
		in.peers[p] = true
	}
	in.primary.Store(netip.Addr{})
	in.m = vrouter.New(vrouter.Config{VRID: c.VRID, Priority: c.Priority, Interval: c.Interval, Preempt: c.Preempt,
		PreemptDelay: c.PreemptDelay, ResignImmediate: c.ResignImmediate}, netip.Addr{})
	if mt := n.opts.Metrics; mt != nil {
		mt.init(c.Name)
		in.met = instMetrics{sent: mt.AdvertsSent.WithLabelValues(c.Name), recv: mt.AdvertsRecv.WithLabelValues(c.Name),
			sendErrs: mt.SendErrors.WithLabelValues(c.Name), announced: mt.Announcements.WithLabelValues(c.Name)}
	}
	in.snapshot()
	return in
}

func inc(c *metrics.Counter) {
	if c != nil {
		c.Inc()
	}
}

// poke asks the loop to re-evaluate links, addresses and tracking (coalesced).
func (in *instance) poke() {
	select {
	case in.pokeC <- struct{}{}:
	default:
	}
}

// call runs fn in the loop and waits for it.
func (in *instance) call(ctx context.Context, fn func(now time.Time) ([]vrouter.Action, bool)) error {
	req := ctlReq{fn: fn, done: make(chan struct{})}
	select {
	case in.ctl <- req:
	case <-in.done:
		return fmt.Errorf("instance %s is not running", in.cfg.Name)
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-req.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop resigns (priority 0 when master), releases the addresses and ends the loop.
func (in *instance) stop(ctx context.Context, reason string) error {
	err := in.call(ctx, func(now time.Time) ([]vrouter.Action, bool) { return in.m.Stop(now, reason), true })
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		err = nil // not running: nothing to stop
	}
	select {
	case <-in.done:
	case <-ctx.Done():
		return fmt.Errorf("stop instance %s: %w", in.cfg.Name, ctx.Err())
	}
	return err
}

func (in *instance) handover(ctx context.Context, d time.Duration) (wasMaster bool, err error) {
	var herr error
	err = in.call(ctx, func(now time.Time) ([]vrouter.Action, bool) {
		var until time.Time
		if d > 0 {
			until = now.Add(d)
		}
		wasMaster = in.m.State() == vrouter.Master
		acts, err := in.m.Handover(now, until)
		herr = err
		return acts, false
	})
	if err == nil {
		err = herr
	}
	return wasMaster, err
}

func (in *instance) resume(ctx context.Context) error {
	return in.call(ctx, func(now time.Time) ([]vrouter.Action, bool) { in.m.Resume(now); return nil, false })
}

// run is the instance's loop.
func (in *instance) run(ctx context.Context) {
	defer close(in.done)
	defer in.forget()
	defer in.closeSockets()
	if !in.cfg.Owner() {
		if err := in.n.opts.VIPs.Reserve(in.cfg.Name, in.cfg.Interface, in.cfg.VRID, in.cfg.VirtualIPs); err != nil {
			in.log.Error("cannot journal the virtual IPs", "error", err)
			in.setErr(err)
		}
	}
	in.exec(time.Now(), in.evaluate(time.Now()))
	in.exec(time.Now(), in.m.Start(time.Now()))
	in.snapshot()
	wake, stopTimer := in.newTimer()
	defer stopTimer()
	for {
		next := in.m.Deadline()
		for _, t := range []time.Time{in.repeatAt, in.refreshAt} {
			if !t.IsZero() && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
		tc := wake(next)
		select {
		case <-ctx.Done():
			in.exec(time.Now(), in.m.Stop(time.Now(), "plugin shutting down"))
			return
		case r := <-in.rx:
			in.handleAdvert(r)
		case <-tc:
			// An advertisement that arrived before the deadline counts first.
			for pending := true; pending; {
				select {
				case r := <-in.rx:
					in.handleAdvert(r)
				default:
					pending = false
				}
			}
			now := time.Now()
			in.exec(now, in.m.Tick(now))
			in.garpTimers(now)
		case <-in.pokeC:
			now := time.Now()
			in.exec(now, in.evaluate(now))
		case req := <-in.ctl:
			now := time.Now()
			acts, exit := req.fn(now)
			in.exec(now, acts)
			in.snapshot()
			close(req.done)
			if exit {
				return
			}
		}
		in.snapshot()
	}
}

func (in *instance) handleAdvert(r netio.Received) {
	now := time.Now()
	in.exec(now, in.m.Receive(now, vrouter.Received{Src: r.Src, Priority: r.Advert.Priority,
		Interval: time.Duration(r.Advert.Interval) * 10 * time.Millisecond}))
}

// newTimer returns wake, which arms the loop's timer for a deadline (zero: none) and
// returns the channel to wait on: a timerfd (precise) or, if that fails, a Go timer.
func (in *instance) newTimer() (wake func(time.Time) <-chan struct{}, stop func()) {
	if hr, err := newHRTimer(); err == nil {
		return func(at time.Time) <-chan struct{} {
			if err := hr.Set(at); err != nil {
				in.log.Warn("timerfd", "error", err)
			}
			if at.IsZero() {
				return nil
			}
			return hr.C
		}, hr.Close
	} else {
		in.log.Warn("no timerfd, timers may be a millisecond late", "error", err)
	}
	ch := make(chan struct{}, 1)
	var cur *time.Timer
	return func(at time.Time) <-chan struct{} {
			if cur != nil {
				cur.Stop()
			}
			if at.IsZero() {
				return nil
			}
			cur = time.AfterFunc(time.Until(at), func() {
				select {
				case ch <- struct{}{}:
				default:
				}
			})
			return ch
		}, func() {
			if cur != nil {
				cur.Stop()
			}
		}
}

// forget drops the instance's addresses from the kernel and the journal as it stops.
func (in *instance) forget() {
	if in.cfg.Owner() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), kernelTimeout)
	defer cancel()
	if _, err := in.n.opts.VIPs.Forget(ctx, in.cfg.Name); err != nil {
		in.log.Warn("cannot forget the virtual IPs", "error", err)
	}
}

func (in *instance) garpTimers(now time.Time) {
	if in.m.State() != vrouter.Master {
		in.repeatAt, in.refreshAt = time.Time{}, time.Time{}
		return
	}
	if !in.repeatAt.IsZero() && !now.Before(in.repeatAt) {
		in.repeatAt = time.Time{}
		in.announce()
	}
	if !in.refreshAt.IsZero() && !now.Before(in.refreshAt) {
		in.refreshAt = now.Add(in.cfg.GARPRefresh)
		in.addVIPs() // re-adds an address removed behind our back
		in.announce()
	}
}

// evaluate reads the links, the primary address and the tracked objects, and feeds the
// machine the resulting priority and fault.
func (in *instance) evaluate(now time.Time) []vrouter.Action {
	objs, own, ok := in.n.tracked(&in.cfg)
	fault := ""
	switch {
	case !ok:
		fault = fmt.Sprintf("interface %s not found", in.cfg.Interface)
	case !own.Up:
		fault = fmt.Sprintf("interface %s is down", in.cfg.Interface)
	}
	if ok && (in.conn == nil || in.conn.Index() != own.Index) {
		if err := in.openSockets(); err != nil {
			in.setErr(err)
			if fault == "" {
				fault = err.Error()
			}
		}
	}
	if ok {
		p, err := in.resolvePrimary(own.Index)
		if err != nil && fault == "" {
			fault = err.Error()
		}
		if p.IsValid() && p != in.m.Primary() {
			in.m.SetPrimary(p)
			in.primary.Store(p)
		}
	}
	prio, tfault := track.Effective(in.cfg.Priority, objs)
	if fault == "" {
		fault = tfault
	}
	in.mu.Lock()
	in.snap.Tracked = objs
	in.mu.Unlock()
	acts := in.m.SetPriority(now, prio)
	return append(acts, in.m.SetFault(now, fault)...)
}

// resolvePrimary finds the address adverts come from: the configured one if present,
// else the first IPv4 address that is not a virtual IP, or the first usable IPv6
// link-local address.
func (in *instance) resolvePrimary(index int) (netip.Addr, error) {
	family := netlink.FAMILY_V4
	if in.cfg.IPv6 {
		family = netlink.FAMILY_V6
	}
	list, err := netlink.AddrList(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index}}, family)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("list addresses of %s: %w", in.cfg.Interface, err)
	}
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if in.cfg.SourceAddress.IsValid() {
			if ip == in.cfg.SourceAddress {
				return ip, nil
			}
			continue
		}
		if in.addrSet[ip] || a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			continue
		}
		if in.cfg.IPv6 && !ip.IsLinkLocalUnicast() {
			continue
		}
		return ip, nil
	}
	if in.cfg.SourceAddress.IsValid() {
		return netip.Addr{}, fmt.Errorf("source address %s is not on %s", in.cfg.SourceAddress, in.cfg.Interface)
	}
	if in.cfg.IPv6 {
		return netip.Addr{}, fmt.Errorf("no usable IPv6 link-local address on %s", in.cfg.Interface)
	}
	return netip.Addr{}, fmt.Errorf("no IPv4 address on %s besides the virtual IPs", in.cfg.Interface)
}

func (in *instance) openSockets() error {
	in.closeSockets()
	conn, err := netio.Open(in.cfg.Interface, in.cfg.IPv6, in.cfg.UnicastPeers)
	if err != nil {
		return err
	}
	ann, err := vip.NewAnnouncer(in.cfg.Interface, in.cfg.IPv6)
	if err != nil {
		conn.Close()
		return err
	}
	in.conn, in.ann = conn, ann
	go in.receive(conn)
	return nil
}

func (in *instance) closeSockets() {
	in.stopBurst()
	if in.conn != nil {
		in.conn.Close()
		in.conn = nil
	}
	if in.ann != nil {
		in.ann.Close()
		in.ann = nil
	}
}

// receive reads advertisements until conn is closed, drops and counts what does not
// concern or convince this instance, and hands the rest to the loop.
func (in *instance) receive(conn *netio.Conn) {
	buf := make([]byte, 65536)
	oob := make([]byte, netio.OOBSize)
	for {
		r, err := conn.Receive(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if reason := packet.ReasonOf(err); reason != "" {
				in.drop(reason, err)
				continue
			}
			in.log.Warn("receiving advertisements failed", "error", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-in.done:
				return
			}
			continue
		}
		if r.Advert.VRID != in.cfg.VRID {
			in.otherVRID.Add(1)
			continue
		}
		if r.Src == in.primary.Load().(netip.Addr) {
			continue // our own, looped back
		}
		switch {
		case in.cfg.Owner():
			in.drop(packet.ReasonOwner, fmt.Errorf("advertisement from %s for VRID %d, whose addresses we own", r.Src, in.cfg.VRID))
			continue
		case len(in.peers) > 0 && !in.peers[r.Src]:
			in.drop(packet.ReasonUnknownPeer, fmt.Errorf("advertisement from %s, not a unicast peer", r.Src))
			continue
		case r.Advert.Priority != vrouter.OwnerPriority && !in.sameAddrs(r.Advert.Addrs):
			in.drop(packet.ReasonAddrList, fmt.Errorf("advertisement from %s lists %v, configured %v", r.Src, r.Advert.Addrs, in.addrs))
			continue
		}
		in.recv.Add(1)
		inc(in.met.recv)
		select {
		case in.rx <- r:
		case <-in.done:
			return
		}
	}
}

func (in *instance) sameAddrs(got []netip.Addr) bool {
	if len(got) != len(in.addrs) {
		return false
	}
	for _, a := range got {
		if !in.addrSet[a] {
			return false
		}
	}
	return true
}

// drop counts an invalid packet and logs it (a warning at most once a minute per
// reason, debug otherwise).
func (in *instance) drop(reason packet.Reason, err error) {
	if i := reasonIndex(reason); i >= 0 {
		in.invalid[i].Add(1)
	}
	if mt := in.n.opts.Metrics; mt != nil {
		mt.Invalid.WithLabelValues(in.cfg.Name, string(reason)).Inc()
	}
	in.mu.Lock()
	warn := time.Since(in.lastWarn[reason]) > time.Minute
	if warn {
		in.lastWarn[reason] = time.Now()
	}
	in.mu.Unlock()
	if warn {
		in.log.Warn("dropped invalid VRRP packet", "reason", string(reason), "error", err)
	} else {
		in.log.Debug("dropped invalid VRRP packet", "reason", string(reason), "error", err)
	}
}

func (in *instance) exec(now time.Time, acts []vrouter.Action) {
	for _, a := range acts {
		switch a.Kind {
		case vrouter.ActSend:
			in.send(a.Priority)
		case vrouter.ActAcquire:
			in.addVIPs()
			in.announce()
			if in.cfg.GARPRepeat > 0 {
				in.repeatAt = now.Add(in.cfg.GARPRepeat)
			}
			if in.cfg.GARPRefresh > 0 {
				in.refreshAt = now.Add(in.cfg.GARPRefresh)
			}
		case vrouter.ActRelease:
			in.stopBurst()
			in.repeatAt, in.refreshAt = time.Time{}, time.Time{}
			if !in.cfg.Owner() {
				ctx, cancel := context.WithTimeout(context.Background(), kernelTimeout)
				_, err := in.n.opts.VIPs.Release(ctx, in.cfg.Name)
				cancel()
				if err != nil {
					in.setErr(fmt.Errorf("remove virtual IPs: %w", err))
				}
			}
		case vrouter.ActAnnounce:
			in.announce()
		case vrouter.ActTransition:
			in.recordTransition(now, a)
		}
	}
}

func (in *instance) send(prio uint8) {
	p := in.m.Primary()
	if in.conn == nil || !p.IsValid() {
		in.sendErrs.Add(1)
		inc(in.met.sendErrs)
		return
	}
	adv := packet.Advert{VRID: in.cfg.VRID, Priority: prio, Interval: uint16(in.cfg.Interval / (10 * time.Millisecond)), Addrs: in.addrs}
	if err := in.conn.Send(&adv, p); err != nil {
		in.sendErrs.Add(1)
		inc(in.met.sendErrs)
		if !in.sendFailing {
			in.sendFailing = true
			in.log.Warn("cannot send advertisements", "error", err)
		}
		in.setErr(err)
		return
	}
	if in.sendFailing {
		in.sendFailing = false
		in.log.Info("sending advertisements again")
	}
	in.sent.Add(1)
	inc(in.met.sent)
}

func (in *instance) addVIPs() {
	if in.cfg.Owner() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), kernelTimeout)
	defer cancel()
	if err := in.n.opts.VIPs.Add(ctx, in.cfg.Name, in.cfg.Interface, in.cfg.VRID, in.cfg.VirtualIPs); err != nil {
		in.log.Error("cannot add virtual IPs", "error", err)
		in.setErr(fmt.Errorf("add virtual IPs: %w", err))
	}
}

// announce starts a burst of announcements (replacing one under way).
func (in *instance) announce() {
	in.stopBurst()
	if in.ann == nil {
		return
	}
	ann, addrs, count, gap := in.ann, in.addrs, in.cfg.GARPCount, in.cfg.GARPInterval
	once := func() {
		if err := ann.Announce(addrs); err != nil {
			in.setErr(err)
			in.log.Warn("cannot announce virtual IPs", "error", err)
			return
		}
		in.announced.Add(uint64(len(addrs)))
		if in.met.announced != nil {
			in.met.announced.Add(float64(len(addrs)))
		}
	}
	once() // the first one at once, from the loop: it is what moves the traffic
	if count <= 1 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	in.burstCancel = cancel
	in.bursts.Add(1)
	go func() {
		defer in.bursts.Done()
		for range count - 1 {
			t := time.NewTimer(gap)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			once()
		}
	}()
}

func (in *instance) stopBurst() {
	if in.burstCancel != nil {
		in.burstCancel()
		in.burstCancel = nil
	}
	in.bursts.Wait()
}

func (in *instance) setErr(err error) {
	in.mu.Lock()
	in.lastErr = err.Error()
	in.mu.Unlock()
}

func (in *instance) recordTransition(now time.Time, a vrouter.Action) {
	t := Transition{Instance: in.cfg.Name, Time: now, From: a.From.String(), To: a.To.String(), Reason: a.Reason}
	in.mu.Lock()
	in.history = append(in.history, t)
	if len(in.history) > historyLen {
		in.history = slices.Delete(in.history, 0, len(in.history)-historyLen)
	}
	if a.From != a.To {
		in.snap.Since = now
	}
	in.mu.Unlock()
	in.transitions.Add(1)
	if a.To == vrouter.Master {
		in.becameMaster.Add(1)
	}
	if mt := in.n.opts.Metrics; mt != nil {
		mt.Transitions.WithLabelValues(in.cfg.Name, t.To).Inc()
		if a.To == vrouter.Master {
			mt.BecameMasterAt.WithLabelValues(in.cfg.Name).Set(float64(now.UnixNano()) / 1e9)
		}
	}
	in.log.Info("vrrp transition", "event", "vrrp_transition", "from", t.From, "to", t.To, "reason", t.Reason,
		"priority", in.m.Priority())
	in.n.transitioned(t, a.To)
}

// snapshot copies the machine's state for status readers.
func (in *instance) snapshot() {
	m := in.m
	now := time.Now()
	in.mu.Lock()
	defer in.mu.Unlock()
	s := &in.snap
	c := &in.cfg
	s.Name, s.Interface, s.VRID = c.Name, c.Interface, int(c.VRID)
	s.Family = "ipv4"
	if c.IPv6 {
		s.Family = "ipv6"
	}
	s.State = m.State().String()
	if s.Since.IsZero() {
		s.Since = now
	}
	s.Fault = m.FaultReason()
	s.Master, s.MasterPriority = "", int(m.MasterPriority())
	if a := m.Master(); a.IsValid() {
		s.Master = a.String()
	}
	s.Priority, s.EffectivePriority = int(c.Priority), int(m.Priority())
	s.SourceAddress = ""
	if p := m.Primary(); p.IsValid() {
		s.SourceAddress = p.String()
	}
	if s.VirtualIPs == nil {
		for _, p := range c.VirtualIPs {
			s.VirtualIPs = append(s.VirtualIPs, p.String())
		}
		s.Mode = "multicast"
		if len(c.UnicastPeers) > 0 {
			s.Mode = "unicast"
			for _, p := range c.UnicastPeers {
				s.UnicastPeers = append(s.UnicastPeers, p.String())
			}
		}
		s.Preempt = c.Preempt
		if c.PreemptDelay > 0 {
			s.PreemptDelay = c.PreemptDelay.String()
		}
		s.AdvertInterval = c.Interval.String()
	}
	s.MasterAdvertInterval = m.MasterAdverInterval().String()
	s.MasterDownInterval = m.MasterDownInterval().String()
	s.Hold = m.HoldString(now)
	if mt := in.n.opts.Metrics; mt != nil {
		mt.State.WithLabelValues(c.Name).Set(float64(m.State()))
		mt.Priority.WithLabelValues(c.Name, "configured").Set(float64(c.Priority))
		mt.Priority.WithLabelValues(c.Name, "effective").Set(float64(m.Priority()))
	}
}

// status returns a copy of the instance's status.
func (in *instance) status() InstanceStatus {
	in.mu.Lock()
	s := in.snap
	s.VirtualIPs = slices.Clone(s.VirtualIPs)
	s.UnicastPeers = slices.Clone(s.UnicastPeers)
	s.Tracked = slices.Clone(s.Tracked)
	s.Transitions = slices.Clone(in.history)
	s.LastError = in.lastErr
	in.mu.Unlock()
	if s.Transitions == nil {
		s.Transitions = []Transition{}
	}
	s.Counters = Counters{AdvertsSent: in.sent.Load(), AdvertsReceived: in.recv.Load(), SendErrors: in.sendErrs.Load(),
		OtherVRID: in.otherVRID.Load(), Announcements: in.announced.Load(), BecameMaster: in.becameMaster.Load(),
		Transitions: in.transitions.Load(), Invalid: map[string]uint64{}}
	for i, r := range packet.Reasons {
		if v := in.invalid[i].Load(); v > 0 {
			s.Counters.Invalid[string(r)] = v
		}
	}
	return s
}
