package testenv

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestBootContainer(t *testing.T) {
	Require(t, "systemd-nspawn", "nsenter", "debootstrap")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	root, err := CopyRootfs(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(root)
	m := BootTest(t, root, "sltest-boot")
	out, err := m.Exec(ctx, "systemctl", "is-system-running")
	if err != nil && !strings.Contains(out, "degraded") {
		t.Fatal(err)
	}
	pid1, err := m.Exec(ctx, "cat", "/proc/1/comm")
	if err != nil || strings.TrimSpace(pid1) != "systemd" {
		t.Fatalf("PID 1 in the container is %q (%v), want systemd", pid1, err)
	}
	// The container's network is its own: only lo.
	links, err := m.Exec(ctx, "ip", "-o", "link")
	if err != nil || strings.Count(strings.TrimSpace(links), "\n") != 0 || !strings.Contains(links, "lo:") {
		t.Fatalf("container links %q (%v), want only lo", links, err)
	}
}
