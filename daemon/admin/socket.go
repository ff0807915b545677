package admin

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// listenSocket creates the admin socket at opts.SocketPath, replacing a stale one, and
// sets its owner and mode.
func listenSocket(opts Options, groups *groupResolver) (net.Listener, error) {
	path := opts.SocketPath
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: listen: %w", err)
	}
	if err := setSocketAccess(path, opts, groups); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// removeStaleSocket removes a socket file nobody listens on. A socket that accepts a
// connection belongs to a running daemon: that is an error, as is a path that is not a
// socket.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("admin socket: %s exists and is not a socket; not removing it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("admin socket: another sitelinkd is listening on %s", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("admin socket: checking whether %s is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("admin socket: remove stale socket: %w", err)
	}
	return nil
}

// setSocketAccess gives the socket to root (the daemon's user) and the socket group with
// mode 0660, or mode 0600 when there is no such group, unless opts says otherwise.
func setSocketAccess(path string, opts Options, groups *groupResolver) error {
	gid, haveGroup := -1, false
	if opts.SocketGroup != "" {
		gid, haveGroup = groups.gid(opts.SocketGroup)
	} else if g, ok := groups.gid(opts.ReaderGroup); ok {
		gid, haveGroup = g, true
	} else if g, ok := groups.gid(opts.AdminGroup); ok {
		gid, haveGroup = g, true
	}
	mode := opts.SocketMode
	if mode == 0 {
		mode = 0o600
		if haveGroup {
			mode = 0o660
		}
	}
	if haveGroup {
		if err := os.Chown(path, -1, gid); err != nil {
			return fmt.Errorf("admin socket: chown: %w", err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("admin socket: chmod: %w", err)
	}
	return nil
}
