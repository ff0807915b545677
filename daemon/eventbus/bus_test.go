package eventbus

import (
	"context"
	"testing"
	"time"

	"github.com/sitelink/sitelink/plugins/sdk"
)

func recv(t *testing.T, ch <-chan sdk.Event) sdk.Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return sdk.Event{}
}

func TestFilterAndRetain(t *testing.T) {
	b := New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.Publish(sdk.Event{Type: "role", Source: "vrrp", Retain: true, Attrs: map[string]string{"role": "BACKUP"}})
	b.Publish(sdk.Event{Type: "role", Source: "vrrp", Retain: true, Attrs: map[string]string{"role": "MASTER"}})
	roles := b.Subscribe(ctx, "role")
	if ev := recv(t, roles); ev.Attrs["role"] != "MASTER" || ev.Time.IsZero() {
		t.Fatalf("retained event = %+v, want the latest (MASTER) with a time", ev)
	}
	b.Publish(sdk.Event{Type: "tunnel", Source: "tunnel"})
	b.Publish(sdk.Event{Type: "role", Source: "vrrp", Attrs: map[string]string{"role": "FAULT"}})
	if ev := recv(t, roles); ev.Type != "role" || ev.Attrs["role"] != "FAULT" {
		t.Fatalf("got %+v, want the FAULT role event (tunnel filtered out)", ev)
	}
	b.Forget("vrrp")
	if _, ok := b.Retained("vrrp", "role"); ok {
		t.Fatal("Forget kept the retained event")
	}
}

func TestSlowSubscriberDoesNotBlock(t *testing.T) {
	b := New()
	ctx, cancel := context.WithCancel(context.Background())
	ch := b.Subscribe(ctx)
	for i := 0; i < 1000; i++ {
		b.Publish(sdk.Event{Type: "x"})
	}
	if b.Dropped() != 1000-256 {
		t.Fatalf("dropped %d, want %d", b.Dropped(), 1000-256)
	}
	cancel()
	n := 0
	for range ch {
		n++
	}
	if n != 256 {
		t.Fatalf("drained %d events, want 256", n)
	}
}
