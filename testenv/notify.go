package testenv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
)

// NotifySocket is a unixgram socket like systemd's NOTIFY_SOCKET: point a
// process's NOTIFY_SOCKET at [NotifySocket.Path] and read what it sends
// (READY=1, STATUS=…, WATCHDOG=1, …), one string per datagram.
type NotifySocket struct {
	conn    *net.UnixConn
	path    string
	created string // short directory made for the socket, if any
	stopped chan struct{}

	mu      sync.Mutex
	msgs    []string
	changed chan struct{}
	readErr error
	closed  bool
}

// NewNotifySocket listens on dir/notify.sock, or, if that path is too long
// for a unix socket, in a short directory of its own under the system temp
// dir, removed by Close. The caller must call Close.
func NewNotifySocket(dir string) (*NotifySocket, error) {
	path, created, err := socketPath(dir, "notify.sock")
	if err != nil {
		return nil, fmt.Errorf("testenv: notify socket: %w", err)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		if created != "" {
			_ = os.RemoveAll(created)
		}
		return nil, fmt.Errorf("testenv: notify socket: %w", err)
	}
	n := &NotifySocket{
		conn:    conn,
		path:    path,
		created: created,
		stopped: make(chan struct{}),
		changed: make(chan struct{}),
	}
	go n.read()
	return n, nil
}

func (n *NotifySocket) read() {
	defer close(n.stopped)
	buf := make([]byte, 64<<10)
	for {
		k, _, err := n.conn.ReadFromUnix(buf)
		n.mu.Lock()
		if err != nil {
			if !n.closed {
				n.readErr = err
			}
			close(n.changed)
			n.changed = make(chan struct{})
			n.mu.Unlock()
			return
		}
		n.msgs = append(n.msgs, string(buf[:k]))
		close(n.changed)
		n.changed = make(chan struct{})
		n.mu.Unlock()
	}
}

// Path returns the socket's path.
func (n *NotifySocket) Path() string { return n.path }

// Env returns "NOTIFY_SOCKET=<path>", to append to a command's environment.
func (n *NotifySocket) Env() string { return "NOTIFY_SOCKET=" + n.path }

// Messages returns every datagram received so far, oldest first.
func (n *NotifySocket) Messages() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...)
}

// WaitFor returns the first datagram received (including earlier ones) that
// contains substr, waiting for it until ctx is done.
func (n *NotifySocket) WaitFor(ctx context.Context, substr string) (string, error) {
	seen := 0
	for {
		n.mu.Lock()
		for ; seen < len(n.msgs); seen++ {
			if strings.Contains(n.msgs[seen], substr) {
				m := n.msgs[seen]
				n.mu.Unlock()
				return m, nil
			}
		}
		changed, readErr, closed := n.changed, n.readErr, n.closed
		n.mu.Unlock()
		if readErr != nil {
			return "", fmt.Errorf("testenv: notify socket %s: waiting for %q: %w", n.path, substr, readErr)
		}
		if closed {
			return "", fmt.Errorf("testenv: notify socket %s: waiting for %q: socket closed", n.path, substr)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return "", fmt.Errorf("testenv: notify socket %s: waiting for %q (got %q): %w",
				n.path, substr, n.Messages(), ctx.Err())
		}
	}
}

// Close stops listening and removes the socket file. It is idempotent.
func (n *NotifySocket) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	err := n.conn.Close()
	<-n.stopped
	if rerr := os.Remove(n.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	if n.created != "" {
		err = errors.Join(err, os.RemoveAll(n.created))
	}
	if err != nil {
		return fmt.Errorf("testenv: close notify socket %s: %w", n.path, err)
	}
	return nil
}
