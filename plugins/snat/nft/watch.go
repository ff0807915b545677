package nft

import (
	"context"
	"fmt"

	"github.com/google/nftables"
)

// Watch follows nftables changes (the NFNLGRP_NFTABLES netlink group) until ctx ends
// and calls changed, without blocking the monitor, after every transaction that touched
// a Sitelink table or could not be decoded (`nft flush ruleset`, `firewall-cmd
// --reload`, a rule deleted by hand; Sitelink's own batches too: the caller compares the
// kernel with what it wants before acting). ready is called once the subscription is in
// place. It returns nil when ctx ends and an error when the subscription breaks (e.g.
// ENOBUFS after an event storm); the caller should then check the kernel and watch
// again.
func (r *Reconciler) Watch(ctx context.Context, ready func(), changed func(what string)) error {
	// A big receive buffer: one batch of thousands of rules is as many events.
	c, err := nftables.New(append([]nftables.ConnOption{nftables.WithSockOptions(bigBuffers)}, r.opts...)...)
	if err != nil {
		return fmt.Errorf("open nftables netlink socket: %w", err)
	}
	mon := nftables.NewMonitor(nftables.WithMonitorEventBuffer(256))
	events, err := c.AddGenerationalMonitor(mon)
	if err != nil {
		return fmt.Errorf("subscribe to nftables events: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = mon.Close() })
	defer func() {
		stop()
		_ = mon.Close()
		// The monitor's goroutine may be blocked handing over an event: let it
		// finish so it sees the closed socket and ends.
		go func() {
			for range events {
			}
		}()
	}()
	if ready != nil {
		ready()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case evs, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("nftables event subscription closed")
			}
			if evs.GeneratedBy != nil && evs.GeneratedBy.Type == nftables.MonitorEventTypeOOB {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("nftables event subscription: %w", evs.GeneratedBy.Error)
			}
			if what := touchesUs(evs); what != "" {
				changed(what)
			}
		}
	}
}

// touchesUs says which change of a transaction concerns a Sitelink table ("" for none).
func touchesUs(evs *nftables.MonitorEvents) string {
	for _, ev := range evs.Changes {
		if ev.Error != nil {
			return fmt.Sprintf("undecodable nftables event %d: %v", ev.Type, ev.Error)
		}
		var t *nftables.Table
		switch d := ev.Data.(type) {
		case *nftables.Table:
			t = d
		case *nftables.Chain:
			t = d.Table
		case *nftables.Rule:
			t = d.Table
		default:
			continue // sets, elements, objects: Sitelink uses none
		}
		if t != nil && t.Name == TableName && isOurFamily(t.Family) {
			return fmt.Sprintf("%s in table %s %s", eventName(ev.Type), FamilyName(t.Family), TableName)
		}
	}
	return ""
}

func eventName(t nftables.MonitorEventType) string {
	switch t {
	case nftables.MonitorEventTypeNewTable:
		return "table added"
	case nftables.MonitorEventTypeDelTable:
		return "table deleted"
	case nftables.MonitorEventTypeNewChain:
		return "chain added"
	case nftables.MonitorEventTypeDelChain:
		return "chain deleted"
	case nftables.MonitorEventTypeNewRule:
		return "rule added"
	case nftables.MonitorEventTypeDelRule:
		return "rule deleted"
	}
	return fmt.Sprintf("event %d", t)
}
