package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

func TestDBusAnswers(t *testing.T) {
	RequireTools(t, "dbus-daemon", "dbus-send")
	d := StartTestDBus(t)
	if !strings.HasPrefix(d.Address(), "unix:path=") {
		t.Fatalf("Address() = %q", d.Address())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "dbus-send", "--bus="+d.Address(), "--print-reply",
		"--dest=org.freedesktop.DBus", "/", "org.freedesktop.DBus.ListNames").CombinedOutput()
	if err != nil {
		t.Fatalf("dbus-send: %v: %s\ndaemon output: %s", err, out, d.Output())
	}
	if !strings.Contains(string(out), `"org.freedesktop.DBus"`) {
		t.Fatalf("ListNames reply lacks the bus itself: %s", out)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := exec.CommandContext(ctx, "dbus-send", "--bus="+d.Address(), "--print-reply",
		"--dest=org.freedesktop.DBus", "/", "org.freedesktop.DBus.ListNames").Run(); err == nil {
		t.Fatal("the bus still answers after Close")
	}
}

// requestName connects to the bus and asks for name.
func requestName(t *testing.T, addr, name string) error {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	reply, err := conn.RequestName(name, dbus.NameFlagDoNotQueue)
	if err != nil {
		return err
	}
	if reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName(%s) = %v, want primary owner", name, reply)
	}
	return nil
}

func TestDBusPolicy(t *testing.T) {
	Require(t, "dbus-daemon")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Default: root may own any name.
	d := StartTestDBus(t)
	if err := requestName(t, d.Address(), "org.sitelink.Anything"); err != nil {
		t.Fatalf("root could not own a name on the default bus: %v", err)
	}

	// StrictRoot: only the included policy file grants names.
	policy := filepath.Join(t.TempDir(), "org.sitelink.Test.conf")
	err := os.WriteFile(policy, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <policy user="root">
    <allow own="org.sitelink.Test"/>
  </policy>
</busconfig>
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	strict, err := StartDBusConfig(ctx, DBusConfig{Dir: t.TempDir(), PolicyFiles: []string{policy}, StrictRoot: true})
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	if err := requestName(t, strict.Address(), "org.sitelink.Test"); err != nil {
		t.Fatalf("the policy file did not let root own org.sitelink.Test: %v", err)
	}
	err = requestName(t, strict.Address(), "org.sitelink.Other")
	if err == nil || !strings.Contains(err.Error(), "not allowed") && !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("owning a name no policy grants: err = %v, want access denied", err)
	}
}

func TestDBusBadPolicyFails(t *testing.T) {
	RequireTools(t, "dbus-daemon")
	bad := filepath.Join(t.TempDir(), "bad.conf")
	if err := os.WriteFile(bad, []byte("<busconfig><nonsense"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := StartDBus(ctx, t.TempDir(), bad)
	if err == nil {
		d.Close()
		t.Fatal("dbus-daemon started with a broken policy file")
	}
	t.Logf("expected error: %v", err)
}
