// Package wg owns the WireGuard interface: it creates it with the kernel's WireGuard
// (a netlink link configured through wgctrl) or with wireguard-go in this process over
// a TUN device, applies peer configs to it, reads its per-peer counters, and removes it.
//
// `auto` tries the kernel first and falls back to userspace when the kernel has no
// WireGuard (the link type is unknown). The userspace backend also serves WireGuard's
// configuration protocol on a unix socket, so that `wg show` works: in
// /var/run/wireguard when the plugin may create it there, else in the plugin's runtime
// directory.
package wg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sitelink/sitelink/plugins/tunnel/config"
)

// ErrUnsupported is returned by Backend.Nudge when the backend cannot start a handshake
// on request.
var ErrUnsupported = errors.New("not supported by this WireGuard backend")

// ErrNoKernelWireGuard says the kernel has no WireGuard module.
var ErrNoKernelWireGuard = errors.New("the kernel has no WireGuard (link type wireguard unknown)")

// Backend is a WireGuard interface.
type Backend interface {
	// Kind is the implementation in use (userspace or kernel).
	Kind() config.Backend
	// Name is the interface's name.
	Name() string
	// Configure applies a config; it never replaces peers wholesale unless asked
	// (ReplacePeers), so sessions survive.
	Configure(c wgtypes.Config) error
	// Device reads the interface's state and per-peer counters.
	Device() (*wgtypes.Device, error)
	// Nudge starts a handshake with a peer now (a liveness probe); WireGuard itself
	// sends at most one initiation per peer every 5 s. ErrUnsupported when the backend
	// cannot.
	Nudge(peer wgtypes.Key) error
	// Socket is the path of the configuration protocol socket ("" when none).
	Socket() string
	// Close removes the interface.
	Close() error
}

// Options say what interface to build.
type Options struct {
	Name string
	MTU  int
	Kind config.Backend
	// SocketDirs are tried in order for the userspace configuration socket.
	SocketDirs []string
	Logger     *slog.Logger
}

// Open creates the interface. With Kind auto it uses the kernel when it can and
// userspace otherwise.
func Open(ctx context.Context, opts Options) (Backend, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	switch opts.Kind {
	case config.BackendUserspace:
		return openUserspace(opts)
	case config.BackendKernel:
		return openKernel(ctx, opts)
	case config.BackendAuto, "":
		b, err := openKernel(ctx, opts)
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, ErrNoKernelWireGuard) {
			return nil, err
		}
		opts.Logger.Info("kernel WireGuard not available, using userspace WireGuard", "interface", opts.Name)
		return openUserspace(opts)
	}
	return nil, fmt.Errorf("unknown WireGuard backend %q", opts.Kind)
}

// isNoKernelWireGuard reports whether a link creation error means the link type is
// unknown.
func isNoKernelWireGuard(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EAFNOSUPPORT)
}
