package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/sitelink/sitelink/plugins/tunnel/link"
	"github.com/sitelink/sitelink/plugins/tunnel/mss"
	"github.com/sitelink/sitelink/plugins/tunnel/probe"
	"github.com/sitelink/sitelink/plugins/tunnel/route"
	"github.com/sitelink/sitelink/plugins/tunnel/wg"
)

// System is everything the engine does to the kernel and the network, so that tests
// can replace it. Kernel returns the real one.
type System interface {
	// PrepareLink removes a leftover interface of the plugin called name.
	PrepareLink(name string) (bool, error)
	// OpenBackend creates the WireGuard interface.
	OpenBackend(ctx context.Context, opts wg.Options) (wg.Backend, error)
	// ConfigureLink marks the interface and sets its MTU, addresses and up state.
	ConfigureLink(name string, mtu int, addrs []netip.Prefix) error
	// ApplyRoutes reconciles the plugin's routes in table.
	ApplyRoutes(table int, link string, want []route.Route) (route.Result, error)
	// CleanupOtherTables removes the plugin's routes from every table but keep.
	CleanupOtherTables(keep int) ([]string, error)
	// ApplyMSS programs MSS clamping; RemoveMSS removes it.
	ApplyMSS(c mss.Clamp) (bool, error)
	RemoveMSS() ([]string, error)
	// Cleanup removes everything the plugin may have left in the kernel.
	Cleanup() ([]string, error)
	// NewPinger returns an ICMP prober bound to the interface.
	NewPinger(dev string) Pinger
	// Resolve turns a gateway's host into an address.
	Resolve(ctx context.Context, host string) (netip.Addr, error)
}

// Pinger sends probes.
type Pinger interface {
	Send(dst netip.Addr) error
	Close() error
}

// Kernel returns the System that programs this process's network namespace.
func Kernel() System { return kernelSystem{} }

type kernelSystem struct{}

func (kernelSystem) PrepareLink(name string) (bool, error) { return link.Prepare(name) }

func (kernelSystem) OpenBackend(ctx context.Context, opts wg.Options) (wg.Backend, error) {
	return wg.Open(ctx, opts)
}

func (kernelSystem) ConfigureLink(name string, mtu int, addrs []netip.Prefix) error {
	return link.Configure(name, mtu, addrs)
}

func (kernelSystem) ApplyRoutes(table int, l string, want []route.Route) (route.Result, error) {
	return route.Manager{Table: table, Link: l}.Apply(want)
}

func (kernelSystem) CleanupOtherTables(keep int) ([]string, error) {
	return route.CleanupOtherTables(keep)
}
func (kernelSystem) ApplyMSS(c mss.Clamp) (bool, error) { return mss.Apply(c) }
func (kernelSystem) RemoveMSS() ([]string, error)       { return mss.Remove() }
func (kernelSystem) NewPinger(dev string) Pinger        { return probe.New(dev) }

// Cleanup removes the routes first (blackhole ones outlive the interface), then the
// interfaces, then the nftables tables.
func (kernelSystem) Cleanup() ([]string, error) {
	var all []string
	var errs []error
	for _, f := range []func() ([]string, error){route.Cleanup, link.Cleanup, mss.Remove} {
		removed, err := f()
		all = append(all, removed...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return all, errors.Join(errs...)
}

func (kernelSystem) Resolve(ctx context.Context, host string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap(), nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, a := range addrs {
		if a.Unmap().Is4() {
			return a.Unmap(), nil // IPv4 first: the more likely path out of a site
		}
	}
	if len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("resolve %s: no address", host)
	}
	return addrs[0], nil
}
