// Package sysctl enables IP forwarding for the interfaces the snat plugin needs and
// reports every sysctl it changed. IPv4 forwarding is per interface
// (net.ipv4.conf.IF.forwarding, checked on the interface a packet arrives on). IPv6
// forwarding is per interface only from Linux 6.17 (net.ipv6.conf.IF.force_forwarding);
// on older kernels the only switch is net.ipv6.conf.all.forwarding, which is then used
// and reported.
package sysctl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Change is one sysctl the plugin changed.
type Change struct {
	Key  string    `json:"key"`
	From string    `json:"from"`
	To   string    `json:"to"`
	Time time.Time `json:"time"`
}

// Forwarding enables forwarding. Its zero value works on /proc/sys of the caller's
// network namespace.
type Forwarding struct {
	// Root is the sysctl tree ("" means /proc/sys); tests point it at a fake tree.
	Root string
	// Do runs a function in the right network namespace (nil runs it directly):
	// /proc/sys/net shows the namespace of the thread that opens it.
	Do func(func() error) error
	// Now returns the time (nil means time.Now).
	Now func() time.Time
}

// Result is what Enable found and did.
type Result struct {
	// Changed are the sysctls written.
	Changed []Change
	// Missing are interfaces that do not exist (yet): try again when they appear.
	Missing []string
}

// Enable makes sure forwarding is on for ifaces, for IPv4 (v4) and IPv6 (v6). It writes
// only values that are not already 1.
func (f *Forwarding) Enable(ifaces []string, v4, v6 bool) (Result, error) {
	var res Result
	run := f.Do
	if run == nil {
		run = func(fn func() error) error { return fn() }
	}
	err := run(func() error {
		var errs []error
		allDone := false
		for _, ifname := range ifaces {
			if strings.ContainsAny(ifname, "/") || ifname == "" || ifname == "." || ifname == ".." {
				errs = append(errs, fmt.Errorf("interface name %q is invalid", ifname))
				continue
			}
			if _, err := os.Stat(f.path("net/ipv4/conf", ifname)); errors.Is(err, fs.ErrNotExist) {
				res.Missing = append(res.Missing, ifname)
				continue
			}
			if v4 {
				if err := f.ensure(&res, "net/ipv4/conf/"+ifname+"/forwarding"); err != nil {
					errs = append(errs, err)
				}
			}
			if v6 {
				force := "net/ipv6/conf/" + ifname + "/force_forwarding"
				if _, err := os.Stat(f.path(force)); err == nil {
					if err := f.ensure(&res, force); err != nil {
						errs = append(errs, err)
					}
				} else if !allDone {
					allDone = true
					if err := f.ensure(&res, "net/ipv6/conf/all/forwarding"); err != nil {
						errs = append(errs, err)
					}
				}
			}
		}
		return errors.Join(errs...)
	})
	return res, err
}

func (f *Forwarding) path(parts ...string) string {
	root := f.Root
	if root == "" {
		root = "/proc/sys"
	}
	return filepath.Join(append([]string{root}, parts...)...)
}

func (f *Forwarding) ensure(res *Result, rel string) error {
	p := f.path(rel)
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("read sysctl %s: %w", keyOf(rel), err)
	}
	cur := strings.TrimSpace(string(b))
	if cur == "1" {
		return nil
	}
	if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("set sysctl %s=1: %w", keyOf(rel), err)
	}
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	res.Changed = append(res.Changed, Change{Key: keyOf(rel), From: cur, To: "1", Time: now()})
	return nil
}

// keyOf turns a path under /proc/sys into a sysctl key, as sysctl(8) prints it (a '.'
// in an interface name becomes '/').
func keyOf(rel string) string {
	parts := strings.Split(rel, "/")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(p, ".", "/")
	}
	return strings.Join(parts, ".")
}
