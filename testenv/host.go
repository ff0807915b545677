package testenv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Host is a network namespace of an [Env], with lo up. Veth links, addresses,
// routes and sysctls are set inside it; processes run inside it.
type Host struct {
	env  *Env
	name string
	ns   string
}

// Switch is a Linux bridge ("br0", STP and multicast snooping off) in its own
// namespace; hosts are plugged into it with [Env.Plug]. The embedded Host is
// the switch's namespace, for running tcpdump there or cutting a port.
type Switch struct {
	*Host
	ports map[string]string // "host/ifname" -> port name
}

// BridgeName is the name of the bridge inside every [Switch] namespace.
const BridgeName = "br0"

// Host creates a network namespace called name (letters, digits, '.', '_',
// '-'; unique within the Env) and brings its loopback up. IPv6 duplicate
// address detection is switched off for interfaces created later, so IPv6
// addresses are usable at once.
func (e *Env) Host(name string) (*Host, error) {
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("testenv: host name %q: want 1-64 of [A-Za-z0-9_.-], not starting with '-'", name)
	}
	h := &Host{env: e, name: name, ns: e.nsName(name)}
	if err := e.register(h); err != nil {
		return nil, fmt.Errorf("testenv: host %s: %w", name, err)
	}
	if _, err := e.ip("netns", "add", h.ns); err != nil {
		return nil, fmt.Errorf("testenv: host %s: %w", name, err)
	}
	if _, err := e.ip("-n", h.ns, "link", "set", "lo", "up"); err != nil {
		return nil, fmt.Errorf("testenv: host %s: %w", name, err)
	}
	if _, err := os.Stat("/proc/sys/net/ipv6"); err == nil {
		if err := h.SetSysctl("net.ipv6.conf.default.accept_dad", "0"); err != nil {
			return nil, fmt.Errorf("testenv: host %s: %w", name, err)
		}
	}
	return h, nil
}

// Switch creates a namespace called name holding a bridge named [BridgeName].
func (e *Env) Switch(name string) (*Switch, error) {
	h, err := e.Host(name)
	if err != nil {
		return nil, fmt.Errorf("testenv: switch: %w", err)
	}
	if _, err := e.ip("-n", h.ns, "link", "add", BridgeName, "type", "bridge",
		"stp_state", "0", "mcast_snooping", "0"); err != nil {
		return nil, fmt.Errorf("testenv: switch %s: %w", name, err)
	}
	if _, err := e.ip("-n", h.ns, "link", "set", BridgeName, "up"); err != nil {
		return nil, fmt.Errorf("testenv: switch %s: %w", name, err)
	}
	return &Switch{Host: h, ports: make(map[string]string)}, nil
}

// Link creates a veth pair, aIf inside a and bIf inside b, and brings both
// ends up. The ends are created directly in their namespaces; nothing appears
// in the host's namespace.
func (e *Env) Link(a *Host, aIf string, b *Host, bIf string) error {
	if err := checkIfName(aIf); err != nil {
		return fmt.Errorf("testenv: link %s:%s-%s:%s: %w", a.name, aIf, b.name, bIf, err)
	}
	if err := checkIfName(bIf); err != nil {
		return fmt.Errorf("testenv: link %s:%s-%s:%s: %w", a.name, aIf, b.name, bIf, err)
	}
	if a == b && aIf == bIf {
		return fmt.Errorf("testenv: link %s:%s to itself", a.name, aIf)
	}
	steps := [][]string{
		{"-n", a.ns, "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.ns},
		{"-n", a.ns, "link", "set", aIf, "up"},
		{"-n", b.ns, "link", "set", bIf, "up"},
	}
	for _, args := range steps {
		if _, err := e.ip(args...); err != nil {
			return fmt.Errorf("testenv: link %s:%s-%s:%s: %w", a.name, aIf, b.name, bIf, err)
		}
	}
	return nil
}

// Plug connects host h to switch sw with a veth pair: ifname inside h, and a
// port named "p<N>" enslaved to the bridge inside sw (see [Switch.Port]).
func (e *Env) Plug(h *Host, ifname string, sw *Switch) error {
	if err := checkIfName(ifname); err != nil {
		return fmt.Errorf("testenv: plug %s:%s into %s: %w", h.name, ifname, sw.name, err)
	}
	port := fmt.Sprintf("p%d", e.nextPort())
	steps := [][]string{
		{"-n", h.ns, "link", "add", ifname, "type", "veth", "peer", "name", port, "netns", sw.ns},
		{"-n", sw.ns, "link", "set", port, "master", BridgeName, "up"},
		{"-n", h.ns, "link", "set", ifname, "up"},
	}
	for _, args := range steps {
		if _, err := e.ip(args...); err != nil {
			return fmt.Errorf("testenv: plug %s:%s into %s: %w", h.name, ifname, sw.name, err)
		}
	}
	e.mu.Lock()
	sw.ports[h.name+"/"+ifname] = port
	e.mu.Unlock()
	return nil
}

// Port returns the name of the bridge port (inside sw's namespace) that
// [Env.Plug] made for h's interface ifname, for example to cut it with
// sw.LinkDown(port).
func (sw *Switch) Port(h *Host, ifname string) (string, bool) {
	sw.env.mu.Lock()
	defer sw.env.mu.Unlock()
	p, ok := sw.ports[h.name+"/"+ifname]
	return p, ok
}

// Bridge returns the bridge's interface name inside the switch namespace.
func (sw *Switch) Bridge() string { return BridgeName }

// Name returns the host's name as given to [Env.Host].
func (h *Host) Name() string { return h.name }

// NSName returns the network namespace's name, for `ip netns exec NAME` or
// `ip -n NAME`.
func (h *Host) NSName() string { return h.ns }

// NSPath returns the namespace's path, /run/netns/NAME, for nsenter or
// netns.GetFromPath.
func (h *Host) NSPath() string { return filepath.Join(netnsDir, h.ns) }

// IP runs `ip -n NS args...` for this host and returns its combined output.
func (h *Host) IP(ctx context.Context, args ...string) (string, error) {
	out, err := runIP(ctx, append([]string{"-n", h.ns}, args...)...)
	if err != nil {
		return out, fmt.Errorf("testenv: host %s: %w", h.name, err)
	}
	return out, nil
}

// AddAddr adds an address in CIDR notation ("10.0.0.1/24", "fd00::1/64") to
// ifname. IPv6 addresses are added with nodad, so they are usable at once.
func (h *Host) AddAddr(ifname, cidr string) error {
	args := []string{"-n", h.ns, "addr", "add", cidr, "dev", ifname}
	if strings.Contains(cidr, ":") {
		args = append(args, "nodad")
	}
	if _, err := h.env.ip(args...); err != nil {
		return fmt.Errorf("testenv: host %s: add address: %w", h.name, err)
	}
	return nil
}

// AddRoute adds a route to dst (a prefix, or "default") via the gateway via.
// The family follows the addresses (an IPv6 gateway makes an IPv6 route).
func (h *Host) AddRoute(dst, via string) error {
	args := []string{"-n", h.ns}
	if strings.Contains(dst, ":") || strings.Contains(via, ":") {
		args = append(args, "-6")
	}
	args = append(args, "route", "add", dst, "via", via)
	if _, err := h.env.ip(args...); err != nil {
		return fmt.Errorf("testenv: host %s: add route: %w", h.name, err)
	}
	return nil
}

// SetSysctl writes a sysctl inside the namespace, for example
// ("net.ipv4.ip_forward", "1"). The key is dotted, or a path under /proc/sys
// with slashes (needed when an interface name contains a dot).
func (h *Host) SetSysctl(key, value string) error {
	path := sysctlPath(key)
	err := h.Do(func() error {
		return os.WriteFile(path, []byte(value), 0o644)
	})
	if err != nil {
		return fmt.Errorf("testenv: host %s: sysctl %s=%s: %w", h.name, key, value, err)
	}
	return nil
}

// Sysctl reads a sysctl inside the namespace (key as for [Host.SetSysctl]).
func (h *Host) Sysctl(key string) (string, error) {
	var v []byte
	err := h.Do(func() error {
		var err error
		v, err = os.ReadFile(sysctlPath(key))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("testenv: host %s: read sysctl %s: %w", h.name, key, err)
	}
	return strings.TrimSpace(string(v)), nil
}

func sysctlPath(key string) string {
	if !strings.Contains(key, "/") {
		key = strings.ReplaceAll(key, ".", "/")
	}
	return filepath.Join("/proc/sys", strings.TrimPrefix(key, "/proc/sys/"))
}

// LinkDown sets ifname down, which also takes the carrier of its veth peer
// down: a cut cable for failover tests.
func (h *Host) LinkDown(ifname string) error {
	if _, err := h.env.ip("-n", h.ns, "link", "set", ifname, "down"); err != nil {
		return fmt.Errorf("testenv: host %s: %w", h.name, err)
	}
	return nil
}

// LinkUp sets ifname up again.
func (h *Host) LinkUp(ifname string) error {
	if _, err := h.env.ip("-n", h.ns, "link", "set", ifname, "up"); err != nil {
		return fmt.Errorf("testenv: host %s: %w", h.name, err)
	}
	return nil
}

// Do runs fn on a goroutine locked to an OS thread that has entered the
// host's network namespace, and returns fn's error. Sockets, listeners and
// netlink handles opened inside fn belong to the namespace and keep working
// after Do returns. Goroutines started by fn do not run in the namespace, and
// fn must not call t.FailNow (it runs on another goroutine); a panic in fn is
// returned as an error. If the thread cannot return to its original
// namespace, it is discarded rather than reused.
func (h *Host) Do(fn func() error) error {
	target, err := os.Open(h.NSPath())
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("testenv: host %s: namespace is gone: %w", h.name, err)
		}
		return fmt.Errorf("testenv: host %s: %w", h.name, err)
	}
	defer target.Close()

	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("testenv: host %s: open current namespace: %w", h.name, err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("testenv: host %s: setns: %w", h.name, err)
			return
		}
		fnErr := callRecover(fn)
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread ends with this goroutine.
			done <- errors.Join(fnErr, fmt.Errorf("testenv: host %s: return to original namespace: %w", h.name, err))
			return
		}
		runtime.UnlockOSThread()
		done <- fnErr
	}()
	return <-done
}

func callRecover(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			buf := make([]byte, 16<<10)
			buf = buf[:runtime.Stack(buf, false)]
			err = fmt.Errorf("panic in Host.Do: %v\n%s", r, buf)
		}
	}()
	return fn()
}

// checkIfName reports whether name is a valid Linux interface name.
func checkIfName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("interface name %q is invalid", name)
	case len(name) > unix.IFNAMSIZ-1:
		return fmt.Errorf("interface name %q is longer than %d bytes", name, unix.IFNAMSIZ-1)
	case strings.ContainsAny(name, "/: \t\n"):
		return fmt.Errorf("interface name %q contains '/', ':' or white space", name)
	}
	return nil
}
