package tunneltest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sitelink/sitelink/testenv"
)

// WGInterface is a stock wireguard-go interface configured with `wg` (the gateway, or a
// standalone connector in the benchmark): nothing of the plugin's code is involved.
type WGInterface struct {
	Host    *testenv.Host
	Iface   string
	Key     wgtypes.Key
	Port    int // 0: none set
	Addr    netip.Prefix
	MTU     int
	Peers   []WGPeer
	Routes  []string // prefixes routed into the interface
	Binary  string   // wireguard-go
	KeyFile string
	proc    *testenv.Process
}

// WGPeer is a peer as `wg set` takes it.
type WGPeer struct {
	PublicKey  wgtypes.Key
	AllowedIPs []string
	Endpoint   string
	Keepalive  int
}

// UniqueIface returns an interface name unique on this machine (the wireguard-go
// sockets in /var/run/wireguard are shared by all namespaces): prefix + 8 hex digits.
func UniqueIface(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Start runs wireguard-go in the host and configures it with wg and ip. It can be
// called again after Kill.
func (w *WGInterface) Start(ctx context.Context, dir string) error {
	if w.KeyFile == "" {
		w.KeyFile = filepath.Join(dir, w.Iface+".key")
		if err := os.WriteFile(w.KeyFile, []byte(w.Key.String()+"\n"), 0o600); err != nil {
			return err
		}
	}
	sock := "/var/run/wireguard/" + w.Iface + ".sock"
	_ = os.Remove(sock) // a socket of a killed run
	cmd := w.Host.Command(context.Background(), w.Binary, "-f", w.Iface)
	cmd.Env = append(os.Environ(), "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error")
	p, err := w.Host.StartCmd(cmd)
	if err != nil {
		return err
	}
	w.proc = p
	if err := testenv.WaitFor(ctx, "wireguard-go socket "+sock, func() (bool, error) {
		if p.Exited() {
			return false, fmt.Errorf("wireguard-go exited: %s", p.Output())
		}
		_, err := os.Stat(sock)
		return err == nil, nil
	}); err != nil {
		return err
	}
	args := []string{"set", w.Iface, "private-key", w.KeyFile}
	if w.Port != 0 {
		args = append(args, "listen-port", strconv.Itoa(w.Port))
	}
	for _, pr := range w.Peers {
		args = append(args, "peer", pr.PublicKey.String(), "allowed-ips", strings.Join(pr.AllowedIPs, ","))
		if pr.Endpoint != "" {
			args = append(args, "endpoint", pr.Endpoint)
		}
		if pr.Keepalive != 0 {
			args = append(args, "persistent-keepalive", strconv.Itoa(pr.Keepalive))
		}
	}
	if _, err := w.Host.Run(ctx, "wg", args...); err != nil {
		return err
	}
	mtu := w.MTU
	if mtu == 0 {
		mtu = 1420
	}
	steps := [][]string{{"link", "set", w.Iface, "mtu", strconv.Itoa(mtu), "up"}}
	if w.Addr.IsValid() {
		steps = append(steps, []string{"addr", "add", w.Addr.String(), "dev", w.Iface})
	}
	for _, r := range w.Routes {
		steps = append(steps, []string{"route", "replace", r, "dev", w.Iface})
	}
	for _, s := range steps {
		if _, err := w.Host.IP(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// Kill stops wireguard-go with SIGKILL: the interface and its routes disappear.
func (w *WGInterface) Kill(ctx context.Context) error {
	if w.proc == nil {
		return errors.New("not started")
	}
	if err := w.proc.Kill(); err != nil {
		return err
	}
	_ = os.Remove("/var/run/wireguard/" + w.Iface + ".sock")
	return testenv.WaitFor(ctx, "interface "+w.Iface+" to disappear", func() (bool, error) {
		_, err := w.Host.IP(ctx, "link", "show", w.Iface)
		return err != nil, nil
	})
}

// SetPeer adds (or changes) a peer on the running interface, and remembers it for the
// next Start.
func (w *WGInterface) SetPeer(ctx context.Context, pr WGPeer) error {
	replaced := false
	for i := range w.Peers {
		if w.Peers[i].PublicKey == pr.PublicKey {
			w.Peers[i], replaced = pr, true
		}
	}
	if !replaced {
		w.Peers = append(w.Peers, pr)
	}
	args := []string{"set", w.Iface, "peer", pr.PublicKey.String(), "allowed-ips", strings.Join(pr.AllowedIPs, ",")}
	if pr.Endpoint != "" {
		args = append(args, "endpoint", pr.Endpoint)
	}
	if pr.Keepalive != 0 {
		args = append(args, "persistent-keepalive", strconv.Itoa(pr.Keepalive))
	}
	if _, err := w.Host.Run(ctx, "wg", args...); err != nil {
		return err
	}
	for _, r := range w.Routes {
		if _, err := w.Host.IP(ctx, "route", "replace", r, "dev", w.Iface); err != nil {
			return err
		}
	}
	return nil
}

// PID is wireguard-go's process id.
func (w *WGInterface) PID() int { return w.proc.PID() }

// Show returns `wg show IFACE dump`.
func (w *WGInterface) Show(ctx context.Context) (string, error) {
	return w.Host.Run(ctx, "wg", "show", w.Iface, "dump")
}

// WaitHandshake waits until wg reports a handshake with peer at or after since.
func (w *WGInterface) WaitHandshake(ctx context.Context, peer wgtypes.Key, since time.Time) error {
	return testenv.WaitFor(ctx, "handshake on "+w.Iface, func() (bool, error) {
		out, err := w.Host.Run(ctx, "wg", "show", w.Iface, "latest-handshakes")
		if err != nil {
			return false, nil
		}
		for _, ln := range strings.Split(out, "\n") {
			f := strings.Fields(ln)
			if len(f) == 2 && f[0] == peer.String() {
				sec, _ := strconv.ParseInt(f[1], 10, 64)
				return sec != 0 && !time.Unix(sec, 0).Before(since.Truncate(time.Second)), nil
			}
		}
		return false, nil
	})
}
