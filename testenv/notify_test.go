package testenv

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sendDatagram(t *testing.T, path, msg string) {
	t.Helper()
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("dial notify socket: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("send to notify socket: %v", err)
	}
}

func TestNotifySocketReceives(t *testing.T) {
	dir := t.TempDir()
	n, err := NewNotifySocket(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.Path() != filepath.Join(dir, "notify.sock") {
		t.Fatalf("Path() = %s, want it in %s", n.Path(), dir)
	}
	if n.Env() != "NOTIFY_SOCKET="+n.Path() {
		t.Fatalf("Env() = %q", n.Env())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	sendDatagram(t, n.Path(), "STATUS=starting")
	go func() {
		c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.Path(), Net: "unixgram"})
		if err == nil {
			c.Write([]byte("READY=1\nSTATUS=up"))
			c.Close()
		}
	}()
	got, err := n.WaitFor(ctx, "READY=1")
	if err != nil {
		t.Fatal(err)
	}
	if got != "READY=1\nSTATUS=up" {
		t.Fatalf("WaitFor returned %q", got)
	}
	if m := n.Messages(); len(m) != 2 || m[0] != "STATUS=starting" {
		t.Fatalf("Messages() = %q", m)
	}
	// An earlier message is found too.
	if got, err := n.WaitFor(ctx, "starting"); err != nil || got != "STATUS=starting" {
		t.Fatalf("WaitFor(starting) = %q, %v", got, err)
	}

	short, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	if _, err := n.WaitFor(short, "WATCHDOG=1"); err == nil {
		t.Fatal("WaitFor found a message that was never sent")
	}

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(n.Path()); !os.IsNotExist(err) {
		t.Fatalf("socket file still there after Close: %v", err)
	}
	if _, err := n.WaitFor(ctx, "never"); err == nil {
		t.Fatal("WaitFor on a closed socket did not fail")
	}
}

// A child process using systemd-notify, like a real service, is heard.
func TestNotifySocketFromChild(t *testing.T) {
	RequireTools(t, "systemd-notify")
	n, err := NewNotifySocket(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	cmd := exec.Command("systemd-notify", "--ready", "--status=hello")
	cmd.Env = append(os.Environ(), n.Env())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemd-notify: %v: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := n.WaitFor(ctx, "READY=1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "STATUS=hello") {
		t.Fatalf("got %q, want STATUS=hello in it", got)
	}
}

func TestNotifySocketLongDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 120))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	n, err := NewNotifySocket(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Path()) > maxSocketPath || !strings.HasPrefix(filepath.Base(filepath.Dir(n.Path())), Prefix) {
		t.Fatalf("Path() = %s: want a short path in a %s directory", n.Path(), Prefix)
	}
	sendDatagram(t, n.Path(), "READY=1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.WaitFor(ctx, "READY=1"); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(n.Path())); !os.IsNotExist(err) {
		t.Fatalf("short socket dir left behind: %v", err)
	}
}
