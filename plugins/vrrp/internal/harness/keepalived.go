package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/sitelink/sitelink/testenv"
)

// KeepalivedConfig is one keepalived VRRPv3 instance.
type KeepalivedConfig struct {
	Interface string
	VRID      int
	Priority  int
	// AdvertInt is keepalived's advert_int in seconds ("1", "0.1").
	AdvertInt string
	// VIPs with prefix ("10.0.0.50/24").
	VIPs []string
	// UnicastSrc and Peers enable unicast mode.
	UnicastSrc string
	Peers      []string
	NoPreempt  bool
	// IPv6 makes it a native IPv6 instance.
	IPv6 bool
}

// Render returns the keepalived.conf text.
func (k KeepalivedConfig) Render(name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n  router_id %s\n  vrrp_version 3\n  vrrp_garp_master_delay 0\n}\n", name)
	fmt.Fprintf(&b, "vrrp_instance VI_%d {\n  state BACKUP\n  interface %s\n  virtual_router_id %d\n  priority %d\n  advert_int %s\n",
		k.VRID, k.Interface, k.VRID, k.Priority, k.AdvertInt)
	if k.IPv6 {
		b.WriteString("  native_ipv6\n")
	}
	if k.NoPreempt {
		b.WriteString("  nopreempt\n")
	}
	if len(k.Peers) > 0 {
		fmt.Fprintf(&b, "  unicast_src_ip %s\n  unicast_peer {\n", k.UnicastSrc)
		for _, p := range k.Peers {
			fmt.Fprintf(&b, "    %s\n", p)
		}
		b.WriteString("  }\n")
	}
	b.WriteString("  virtual_ipaddress {\n")
	for _, v := range k.VIPs {
		fmt.Fprintf(&b, "    %s dev %s\n", v, k.Interface)
	}
	b.WriteString("  }\n}\n")
	return b.String()
}

// Keepalived is a running keepalived (VRRP only) in a host.
type Keepalived struct {
	Name string
	Host *testenv.Host
	Proc *testenv.Process
	dir  string
}

// StartKeepalived writes the config and starts keepalived in the foreground in h.
func StartKeepalived(ctx context.Context, env *testenv.Env, h *testenv.Host, name string, cfg KeepalivedConfig) (*Keepalived, error) {
	dir := filepath.Join(env.Dir(), "keepalived-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(cfg.Render(name)), 0o644); err != nil {
		return nil, err
	}
	if out, err := h.Run(ctx, "keepalived", "-t", "-f", conf); err != nil {
		return nil, fmt.Errorf("keepalived config check: %w\n%s", err, out)
	}
	p, err := h.Start("keepalived", "-n", "-l", "-D", "-G", "-P", "-f", conf,
		"-p", filepath.Join(dir, "k.pid"), "-r", filepath.Join(dir, "vrrp.pid"), "-c", filepath.Join(dir, "chk.pid"))
	if err != nil {
		return nil, err
	}
	return &Keepalived{Name: name, Host: h, Proc: p, dir: dir}, nil
}

// State is the last state keepalived logged ("MASTER", "BACKUP", "FAULT", or "").
func (k *Keepalived) State() string {
	out := k.Proc.Output()
	best, state := -1, ""
	for _, s := range []string{"MASTER", "BACKUP", "FAULT"} {
		if i := strings.LastIndex(out, "Entering "+s+" STATE"); i > best {
			best, state = i, s
		}
	}
	return state
}

// VRRPPID is the pid of keepalived's VRRP child process (0 when not known yet).
func (k *Keepalived) VRRPPID() int {
	b, err := os.ReadFile(filepath.Join(k.dir, "vrrp.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Kill sends SIGKILL to keepalived's processes (parent and VRRP child).
func (k *Keepalived) Kill() error { return k.Proc.Kill() }

// Terminate sends SIGTERM to the parent, which stops the VRRP child gracefully
// (priority 0 advertisement).
func (k *Keepalived) Terminate() error { return k.Proc.Signal(syscall.SIGTERM) }
