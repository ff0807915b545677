package wg

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sitelink/sitelink/plugins/tunnel/config"
)

// kernel is the kernel's WireGuard: a netlink link of type wireguard, configured and
// read through wgctrl (generic netlink).
type kernel struct {
	name   string
	client *wgctrl.Client
	owned  bool // the link was created here and is deleted by Close

	closeOnce sync.Once
	closeErr  error
}

func openKernel(_ context.Context, opts Options) (*kernel, error) {
	la := netlink.NewLinkAttrs()
	la.Name = opts.Name
	la.MTU = opts.MTU
	err := netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: la})
	switch {
	case err == nil:
	case isNoKernelWireGuard(err):
		return nil, fmt.Errorf("create WireGuard interface %s: %w (%v): use backend userspace or auto", opts.Name, ErrNoKernelWireGuard, err)
	case errors.Is(err, unix.EEXIST):
		return nil, fmt.Errorf("create WireGuard interface %s: an interface of that name exists", opts.Name)
	default:
		return nil, fmt.Errorf("create WireGuard interface %s: %w", opts.Name, err)
	}
	k, err := attachKernel(opts.Name)
	if err != nil {
		if l, lerr := netlink.LinkByName(opts.Name); lerr == nil {
			_ = netlink.LinkDel(l)
		}
		return nil, err
	}
	k.owned = true
	return k, nil
}

// attachKernel configures an existing interface through wgctrl. wgctrl reaches kernel
// interfaces over generic netlink and userspace ones through their socket in
// /var/run/wireguard, which is how this path is tested where the kernel has no
// WireGuard.
func attachKernel(name string) (*kernel, error) {
	c, err := wgctrl.New()
	if err != nil {
		return nil, fmt.Errorf("open wgctrl: %w", err)
	}
	return &kernel{name: name, client: c}, nil
}

func (k *kernel) Kind() config.Backend { return config.BackendKernel }
func (k *kernel) Name() string         { return k.name }
func (k *kernel) Socket() string       { return "" }

func (k *kernel) Configure(c wgtypes.Config) error {
	if err := k.client.ConfigureDevice(k.name, c); err != nil {
		return fmt.Errorf("configure %s: %w", k.name, err)
	}
	return nil
}

func (k *kernel) Device() (*wgtypes.Device, error) {
	d, err := k.client.Device(k.name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", k.name, err)
	}
	return d, nil
}

func (k *kernel) Nudge(wgtypes.Key) error { return ErrUnsupported }

func (k *kernel) Close() error {
	k.closeOnce.Do(func() {
		var errs []error
		if k.owned {
			if l, err := netlink.LinkByName(k.name); err == nil {
				if err := netlink.LinkDel(l); err != nil {
					errs = append(errs, fmt.Errorf("delete %s: %w", k.name, err))
				}
			}
		}
		if err := k.client.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close wgctrl: %w", err))
		}
		k.closeErr = errors.Join(errs...)
	})
	return k.closeErr
}
