package wg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/sitelink/sitelink/plugins/tunnel/config"
)

// DefaultSocketDir is where `wg` looks for userspace interfaces.
const DefaultSocketDir = "/var/run/wireguard"

// userspace is wireguard-go running in this process over a TUN device.
type userspace struct {
	name string
	dev  *device.Device
	sock string
	ln   *net.UnixListener
	log  *slog.Logger

	closeOnce sync.Once
	acceptWG  sync.WaitGroup
}

func openUserspace(opts Options) (*userspace, error) {
	t, err := tun.CreateTUN(opts.Name, opts.MTU)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			// CAP_NET_ADMIN does not bypass the device node's mode: udev's default rules
			// make /dev/net/tun 0666, a machine without them leaves it 0600 root.
			return nil, fmt.Errorf("create TUN device %s: %w (the plugin runs unprivileged: /dev/net/tun must be mode 0666, as udev's default rules make it; see docs/troubleshooting.md)", opts.Name, err)
		}
		return nil, fmt.Errorf("create TUN device %s: %w", opts.Name, err)
	}
	name, err := t.Name()
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("name of TUN device %s: %w", opts.Name, err)
	}
	log := opts.Logger.With("interface", name, "backend", "userspace")
	u := &userspace{name: name, log: log}
	u.dev = device.NewDevice(t, conn.NewDefaultBind(), deviceLogger(log))
	if err := u.listen(opts.SocketDirs); err != nil {
		// Not fatal: the tunnel works without it, only `wg show` does not.
		log.Warn("no WireGuard configuration socket: `wg show` will not see the interface", "error", err)
	}
	return u, nil
}

// deviceLogger sends wireguard-go's logs to slog: its verbose lines (one per handshake
// or keepalive) at debug level, its errors as warnings, each kind of error at most once
// a minute (a dead gateway makes wireguard-go report every handshake it cannot send).
func deviceLogger(log *slog.Logger) *device.Logger {
	var mu sync.Mutex
	last := map[string]time.Time{}
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug(fmt.Sprintf(format, args...), "source", "wireguard-go")
			}
		},
		Errorf: func(format string, args ...any) {
			mu.Lock()
			now := time.Now()
			if t, ok := last[format]; ok && now.Sub(t) < time.Minute {
				mu.Unlock()
				return
			}
			if len(last) > 256 {
				clear(last)
			}
			last[format] = now
			mu.Unlock()
			log.Warn(fmt.Sprintf(format, args...), "source", "wireguard-go")
		},
	}
}

// listen serves the configuration protocol on DIR/NAME.sock in the first directory
// where that works.
func (u *userspace) listen(dirs []string) error {
	var errs []error
	for _, dir := range dirs {
		ln, path, err := listenSocket(dir, u.name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		u.ln, u.sock = ln, path
		u.acceptWG.Add(1)
		go u.accept()
		return nil
	}
	if len(errs) == 0 {
		return errors.New("no socket directory given")
	}
	return errors.Join(errs...)
}

func listenSocket(dir, name string) (*net.UnixListener, string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", fmt.Errorf("socket directory: %w", err)
	}
	path := filepath.Join(dir, name+".sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		// A socket left by a killed process: remove it if nobody answers on it.
		if c, derr := net.DialTimeout("unix", path, time.Second); derr == nil {
			c.Close()
			return nil, "", fmt.Errorf("%s is in use by another process", path)
		}
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return nil, "", fmt.Errorf("listen on %s: %w (and cannot remove it: %v)", path, err, rerr)
		}
		if ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"}); err != nil {
			return nil, "", fmt.Errorf("listen on %s: %w", path, err)
		}
	}
	// Owner (the plugin's user) and root only: the protocol can read the private key.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, "", fmt.Errorf("chmod %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	return ln, path, nil
}

func (u *userspace) accept() {
	defer u.acceptWG.Done()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		go u.dev.IpcHandle(c)
	}
}

func (u *userspace) Kind() config.Backend { return config.BackendUserspace }
func (u *userspace) Name() string         { return u.name }
func (u *userspace) Socket() string       { return u.sock }

func (u *userspace) Configure(c wgtypes.Config) error {
	if err := u.dev.IpcSet(RenderUAPI(c)); err != nil {
		return fmt.Errorf("configure %s: %w", u.name, err)
	}
	// Up is idempotent; it binds the UDP socket.
	if err := u.dev.Up(); err != nil {
		return fmt.Errorf("bring up WireGuard device %s: %w", u.name, err)
	}
	return nil
}

func (u *userspace) Device() (*wgtypes.Device, error) {
	text, err := u.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u.name, err)
	}
	return ParseUAPI(u.name, text)
}

func (u *userspace) Nudge(key wgtypes.Key) error {
	p := u.dev.LookupPeer(device.NoisePublicKey(key))
	if p == nil {
		return fmt.Errorf("%s has no peer %s", u.name, key)
	}
	return p.SendHandshakeInitiation(false)
}

func (u *userspace) Close() error {
	u.closeOnce.Do(func() {
		if u.ln != nil {
			u.ln.Close()
			u.acceptWG.Wait()
		}
		u.dev.Close() // closes the TUN device: the kernel removes the interface
	})
	return nil
}
