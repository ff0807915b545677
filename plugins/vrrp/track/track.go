// Package track owns what the vrrp plugin tracks besides its peers: the state of network
// links (from netlink link updates) and of other Sitelink plugins (from their events),
// and how tracked objects turn a configured priority into an effective priority or a
// FAULT, with keepalived's weight semantics: weight 0 means FAULT while the object is
// down, a negative weight is added while it is down, a positive one while it is up.
package track

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/vrrp/config"
)

// Object is the state of one tracked object.
type Object struct {
	// Name describes it: "interface eth1", "event tunnel gateway=gw-a".
	Name   string `json:"name"`
	Weight int    `json:"weight"`
	Up     bool   `json:"up"`
}

// Effective returns the effective priority and a FAULT reason ("" when none) for a
// configured priority and tracked objects. The result stays within 1-254; the address
// owner (255) keeps its priority and only FAULTs.
func Effective(base uint8, objs []Object) (uint8, string) {
	p := int(base)
	var faults []string
	for _, o := range objs {
		switch {
		case o.Weight == 0 && !o.Up:
			faults = append(faults, o.Name+" is down")
		case o.Weight < 0 && !o.Up, o.Weight > 0 && o.Up:
			p += o.Weight
		}
	}
	if base == 255 {
		p = 255
	} else {
		p = min(max(p, 1), 254)
	}
	return uint8(p), strings.Join(faults, "; ")
}

// EventRule decides which events a tracker follows and what they mean.
type EventRule config.TrackEvent

// Name describes the rule for status and fault reasons.
func (r EventRule) Name() string {
	var b strings.Builder
	b.WriteString("event " + r.Type)
	if r.Source != "" {
		b.WriteString(" from " + r.Source)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Match)) {
		fmt.Fprintf(&b, " %s=%s", k, r.Match[k])
	}
	return b.String()
}

// Follows reports whether ev is about the tracked object.
func (r EventRule) Follows(ev sdk.Event) bool {
	if ev.Type != r.Type || (r.Source != "" && ev.Source != r.Source) {
		return false
	}
	return attrsMatch(ev.Attrs, r.Match)
}

// IsUp reports whether a followed event says the object is healthy.
func (r EventRule) IsUp(ev sdk.Event) bool { return attrsMatch(ev.Attrs, r.Up) }

func attrsMatch(attrs, want map[string]string) bool {
	for k, v := range want {
		if attrs[k] != v {
			return false
		}
	}
	return true
}

// Link is what the tracker knows of one network link.
type Link struct {
	Index int
	// Up is administratively up and running (carrier, IFF_RUNNING).
	Up bool
}

// Links follows the links of the current network namespace through netlink. It is
// safe for concurrent use.
type Links struct {
	mu     sync.Mutex
	byName map[string]Link
}

// LinkUp reports a link's state from its flags: up and running.
func LinkUp(l netlink.Link) bool {
	a := l.Attrs()
	return a.Flags&net.FlagUp != 0 && a.RawFlags&unix.IFF_RUNNING != 0
}

// WatchLinks lists the links and follows their changes until ctx ends, calling
// onChange (from its own goroutine) after each change and onError when the netlink
// subscription fails. done is closed when it stops (ctx ended or the subscription died).
func WatchLinks(ctx context.Context, onChange func(), onError func(error)) (links *Links, done <-chan struct{}, err error) {
	l := &Links{byName: map[string]Link{}}
	ch := make(chan netlink.LinkUpdate, 64)
	stop := make(chan struct{})
	if err := netlink.LinkSubscribeWithOptions(ch, stop, netlink.LinkSubscribeOptions{ErrorCallback: onError}); err != nil {
		return nil, nil, fmt.Errorf("subscribe to link updates: %w", err)
	}
	// Seed the table after subscribing: a change in between arrives as an update.
	all, err := netlink.LinkList()
	if err != nil {
		close(stop)
		return nil, nil, fmt.Errorf("list links: %w", err)
	}
	for _, lk := range all {
		l.byName[lk.Attrs().Name] = Link{Index: lk.Attrs().Index, Up: LinkUp(lk)}
	}
	fin := make(chan struct{})
	go func() {
		defer close(fin)
		defer close(stop)
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-ch:
				if !ok {
					return
				}
				l.apply(u)
				onChange()
			}
		}
	}()
	return l, fin, nil
}

func (l *Links) apply(u netlink.LinkUpdate) {
	name := u.Link.Attrs().Name
	l.mu.Lock()
	defer l.mu.Unlock()
	if u.Header.Type == unix.RTM_DELLINK {
		if cur, ok := l.byName[name]; ok && cur.Index == u.Link.Attrs().Index {
			delete(l.byName, name)
		}
		return
	}
	// A renamed link: forget its old name.
	for n, cur := range l.byName {
		if cur.Index == u.Link.Attrs().Index && n != name {
			delete(l.byName, n)
		}
	}
	l.byName[name] = Link{Index: u.Link.Attrs().Index, Up: LinkUp(u.Link)}
}

// Get returns a link's state and whether it exists.
func (l *Links) Get(name string) (Link, bool) {
	if l == nil {
		return Link{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lk, ok := l.byName[name]
	return lk, ok
}

// Names lists the known links (for tests and status).
func (l *Links) Names() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := slices.Collect(maps.Keys(l.byName))
	sort.Strings(out)
	return out
}
