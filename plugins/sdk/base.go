package sdk

import (
	"context"
	"encoding/json"
)

// Base gives a plugin default implementations of the Plugin methods it does not need:
// Init keeps the Host (see Host()), Configure accepts anything, Start, Stop and Cleanup do
// nothing and Status reports OK. Embed it and override what matters.
type Base struct {
	host Host
}

// Init stores the host.
func (b *Base) Init(_ context.Context, h Host) error { b.host = h; return nil }

// Host returns the host given to Init (nil before).
func (b *Base) Host() Host { return b.host }

// Configure accepts any config.
func (b *Base) Configure(context.Context, json.RawMessage, bool) error { return nil }

// Start does nothing.
func (b *Base) Start(context.Context, Role) error { return nil }

// Stop does nothing.
func (b *Base) Stop(context.Context) error { return nil }

// Status reports OK.
func (b *Base) Status(context.Context) Status { return Status{Health: HealthOK} }

// Cleanup removes nothing.
func (b *Base) Cleanup(context.Context) ([]string, error) { return nil, nil }
