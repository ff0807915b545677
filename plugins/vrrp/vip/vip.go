// Package vip owns the virtual IP addresses on this node: adding and removing them with
// netlink, announcing them (gratuitous ARP for IPv4, unsolicited neighbour advertisements
// for IPv6), and a journal in the plugin's state directory of the addresses it added, so
// that a later process (after a crash, or `sitelinkd --cleanup`) removes exactly those.
//
// The journal is written before an address is ever added (when an instance starts) and
// cleared when the instance stops or leaves the configuration, so whatever is in the
// kernel because of us is always in the journal, and becoming master writes nothing to
// disk. IPv4 addresses also carry the
// label IFACE:vVRID (when it fits in 15 bytes) so that `ip address` shows whose they are.
package vip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// JournalFile is the journal's name in the state directory.
const JournalFile = "vips.json"

// Entry is one address the plugin added.
type Entry struct {
	Instance  string       `json:"instance"`
	Interface string       `json:"interface"`
	Prefix    netip.Prefix `json:"prefix"`
	Label     string       `json:"label,omitempty"`
	Added     time.Time    `json:"added"`
}

func (e Entry) String() string { return fmt.Sprintf("%s on %s", e.Prefix, e.Interface) }

// Manager adds and removes virtual IPs and keeps the journal. It is safe for
// concurrent use.
type Manager struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	entries []Entry
	links   map[string]netlink.Link // by name, so becoming master costs no lookup
}

// Open loads the journal in stateDir (a missing or unreadable journal starts empty; an
// unreadable one is set aside, never a reason to fail).
func Open(stateDir string, log *slog.Logger) (*Manager, error) {
	if log == nil {
		log = slog.Default()
	}
	m := &Manager{path: filepath.Join(stateDir, JournalFile), log: log}
	b, err := os.ReadFile(m.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return m, nil
	case err != nil:
		return nil, fmt.Errorf("read VIP journal: %w", err)
	}
	if err := json.Unmarshal(b, &m.entries); err != nil {
		bad := m.path + ".bad"
		log.Warn("VIP journal unreadable, set aside", "path", m.path, "moved_to", bad, "error", err)
		_ = os.Rename(m.path, bad)
		m.entries = nil
	}
	return m, nil
}

// Entries returns the journal.
func (m *Manager) Entries() []Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.entries)
}

// save writes the journal atomically (temp file, fsync, rename, fsync of the directory).
func (m *Manager) save() error {
	b, err := json.MarshalIndent(m.entries, "", "  ")
	if err != nil {
		return fmt.Errorf("encode VIP journal: %w", err)
	}
	dir := filepath.Dir(m.path)
	tmp, err := os.CreateTemp(dir, JournalFile+".tmp*")
	if err != nil {
		return fmt.Errorf("write VIP journal: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write VIP journal: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync VIP journal: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write VIP journal: %w", err)
	}
	if err := os.Rename(tmp.Name(), m.path); err != nil {
		return fmt.Errorf("replace VIP journal: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Label is the IPv4 label for an instance's addresses ("" when it does not fit).
func Label(ifname string, vrid uint8) string {
	l := fmt.Sprintf("%s:v%d", ifname, vrid)
	if len(l) > 15 {
		return ""
	}
	return l
}

func nlAddr(link netlink.Link, p netip.Prefix, label string) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		LinkIndex: link.Attrs().Index}
	if p.Addr().Is4() {
		a.Label = label
	} else {
		// Usable at once: no duplicate address detection for a virtual IP.
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// Reserve journals an instance's addresses before they are ever added, so that
// becoming master writes nothing to disk. Entries stay until Forget or Cleanup: an entry
// means "ours whenever it is on that interface".
func (m *Manager) Reserve(instance, ifname string, vrid uint8, prefixes []netip.Prefix) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reserveLocked(instance, ifname, vrid, prefixes)
}

func (m *Manager) reserveLocked(instance, ifname string, vrid uint8, prefixes []netip.Prefix) error {
	label := Label(ifname, vrid)
	changed := false
	for _, p := range prefixes {
		if !slices.ContainsFunc(m.entries, func(e Entry) bool { return e.Interface == ifname && e.Prefix == p }) {
			e := Entry{Instance: instance, Interface: ifname, Prefix: p, Added: time.Now().UTC()}
			if p.Addr().Is4() {
				e.Label = label
			}
			m.entries = append(m.entries, e)
			changed = true
		}
	}
	if changed {
		return m.save()
	}
	return nil
}

// Add puts prefixes on the interface for an instance, journalling them first if Reserve
// did not. It is idempotent: addresses already there are replaced (refreshed), not
// duplicated.
func (m *Manager) Add(ctx context.Context, instance, ifname string, vrid uint8, prefixes []netip.Prefix) error {
	label := Label(ifname, vrid)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.reserveLocked(instance, ifname, vrid, prefixes); err != nil {
		return err
	}
	var errs []error
	for _, p := range prefixes {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := m.replace(ifname, p, label); err != nil {
			errs = append(errs, fmt.Errorf("add %s to %s: %w", p, ifname, err))
		}
	}
	return errors.Join(errs...)
}

// replace adds or refreshes an address on the cached link, looking the link up again
// once if that fails (the interface may have been recreated).
func (m *Manager) replace(ifname string, p netip.Prefix, label string) error {
	for attempt := 0; ; attempt++ {
		link, ok := m.links[ifname]
		if !ok {
			var err error
			if link, err = netlink.LinkByName(ifname); err != nil {
				return fmt.Errorf("find interface %s: %w", ifname, err)
			}
			if m.links == nil {
				m.links = map[string]netlink.Link{}
			}
			m.links[ifname] = link
		}
		err := netlink.AddrReplace(link, nlAddr(link, p, label))
		if err == nil || attempt > 0 || !ok {
			return err
		}
		delete(m.links, ifname)
	}
}

// Release takes an instance's addresses off their interfaces; they stay in the journal
// (see Reserve). Addresses already gone are not an error. It returns what it removed.
func (m *Manager) Release(ctx context.Context, instance string) ([]string, error) {
	return m.removeWhere(ctx, func(e Entry) bool { return e.Instance == instance }, false)
}

// Forget releases an instance's addresses and drops them from the journal (the
// instance stops or leaves the configuration).
func (m *Manager) Forget(ctx context.Context, instance string) ([]string, error) {
	return m.removeWhere(ctx, func(e Entry) bool { return e.Instance == instance }, true)
}

// Cleanup removes every address in the journal (all instances) and empties it, e.g.
// after a crash.
func (m *Manager) Cleanup(ctx context.Context) ([]string, error) {
	return m.removeWhere(ctx, func(Entry) bool { return true }, true)
}

func (m *Manager) removeWhere(ctx context.Context, match func(Entry) bool, forget bool) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var removed []string
	var errs []error
	keep := m.entries[:0:0]
	for _, e := range m.entries {
		if !match(e) {
			keep = append(keep, e)
			continue
		}
		if err := ctx.Err(); err != nil {
			keep = append(keep, e)
			errs = append(errs, err)
			continue
		}
		gone, err := delAddr(e.Interface, e.Prefix)
		if err != nil || !forget {
			keep = append(keep, e)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if gone {
			removed = append(removed, e.String())
		}
	}
	if len(keep) != len(m.entries) {
		m.entries = keep
		if err := m.save(); err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// delAddr deletes an address; it reports whether the address was there. A missing
// interface means the address is gone too.
func delAddr(ifname string, p netip.Prefix) (bool, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return false, nil
		}
		return false, fmt.Errorf("find interface %s: %w", ifname, err)
	}
	if err := netlink.AddrDel(link, nlAddr(link, p, "")); err != nil {
		if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return false, nil
		}
		return false, fmt.Errorf("remove %s from %s: %w", p, ifname, err)
	}
	return true, nil
}

// RemoveUnowned removes configured virtual IPs that are on the interface although this
// process does not hold them (a node that is not master must not answer for them): left
// by a crashed process whose journal was lost, or added by hand. It returns what it
// removed.
func (m *Manager) RemoveUnowned(ctx context.Context, ifname string, prefixes []netip.Prefix) ([]string, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, nil
		}
		return nil, fmt.Errorf("find interface %s: %w", ifname, err)
	}
	present, err := Present(link)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, p := range prefixes {
		if ctx.Err() != nil {
			return removed, ctx.Err()
		}
		if !present[p.Addr()] {
			continue
		}
		gone, err := delAddr(ifname, p)
		if err != nil {
			errs = append(errs, err)
		} else if gone {
			removed = append(removed, fmt.Sprintf("%s on %s", p, ifname))
		}
	}
	return removed, errors.Join(errs...)
}

// Present returns the addresses (both families) on a link.
func Present(link netlink.Link) (map[netip.Addr]bool, error) {
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", link.Attrs().Name, err)
	}
	out := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out[ip.Unmap()] = true
		}
	}
	return out, nil
}
