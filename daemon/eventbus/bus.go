// Package eventbus carries events between plugins and the daemon: publish to every
// subscriber of the type, and keep the latest retained event of each type from each
// source for subscribers that come later (the current HA role, the tunnel's state).
package eventbus

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sitelink/sitelink/plugins/sdk"
)

// Bus is safe for concurrent use. A slow subscriber never blocks a publisher: when its
// buffer is full its events are dropped and counted.
type Bus struct {
	mu       sync.Mutex
	subs     map[*sub]struct{}
	retained map[retainKey]sdk.Event
	dropped  atomic.Uint64
	now      func() time.Time
}

type retainKey struct{ source, typ string }

type sub struct {
	types map[string]bool
	ch    chan sdk.Event
}

// New returns an empty bus.
func New() *Bus {
	return &Bus{subs: map[*sub]struct{}{}, retained: map[retainKey]sdk.Event{}, now: time.Now}
}

// Publish delivers ev to the subscribers of its type.
func (b *Bus) Publish(ev sdk.Event) {
	if ev.Time.IsZero() {
		ev.Time = b.now()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ev.Retain {
		b.retained[retainKey{ev.Source, ev.Type}] = ev
	}
	for s := range b.subs {
		if len(s.types) > 0 && !s.types[ev.Type] {
			continue
		}
		select {
		case s.ch <- ev:
		default:
			b.dropped.Add(1)
		}
	}
}

// Subscribe returns a channel of events of the given types (all when none), retained
// ones first. The channel closes when ctx ends.
func (b *Bus) Subscribe(ctx context.Context, types ...string) <-chan sdk.Event {
	s := &sub{ch: make(chan sdk.Event, 256)}
	if len(types) > 0 {
		s.types = make(map[string]bool, len(types))
		for _, t := range types {
			s.types[t] = true
		}
	}
	b.mu.Lock()
	for _, ev := range b.retained {
		if s.types == nil || s.types[ev.Type] {
			select {
			case s.ch <- ev:
			default:
				b.dropped.Add(1)
			}
		}
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	go func() {
		<-ctx.Done()
		b.mu.Lock()
		delete(b.subs, s)
		close(s.ch)
		b.mu.Unlock()
	}()
	return s.ch
}

// Retained returns the retained event of a type from a source.
func (b *Bus) Retained(source, typ string) (sdk.Event, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ev, ok := b.retained[retainKey{source, typ}]
	return ev, ok
}

// Forget drops the retained events of a source (a plugin that was removed).
func (b *Bus) Forget(source string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range b.retained {
		if k.source == source {
			delete(b.retained, k)
		}
	}
}

// Dropped counts events not delivered to a full subscriber.
func (b *Bus) Dropped() uint64 { return b.dropped.Load() }
