package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// DBusConfig describes a private message bus.
type DBusConfig struct {
	// Dir receives bus.conf and, if the path is short enough, the socket.
	Dir string
	// PolicyFiles are included after the default policy, like the files in
	// /etc/dbus-1/system.d; a directory is included with <includedir>.
	PolicyFiles []string
	// StrictRoot drops the blanket permission for root to own any name, so
	// that only PolicyFiles grant names (to test a shipped policy file).
	StrictRoot bool
}

// DBus is a private dbus-daemon with a system-bus style policy.
type DBus struct {
	proc    *Process
	addr    string
	created string // short socket directory, if one was made
}

// StartDBus starts a private dbus-daemon whose configuration (bus.conf) is
// written to dir: the system bus's policy (deny owning names and method
// calls by default, allow signals, replies and calls to the bus itself), root
// may own any name, and policyFiles are included. The caller must call
// Close.
func StartDBus(ctx context.Context, dir string, policyFiles ...string) (*DBus, error) {
	return StartDBusConfig(ctx, DBusConfig{Dir: dir, PolicyFiles: policyFiles})
}

// StartTestDBus is [StartDBus] for a test: it requires dbus-daemon (see
// [RequireTools]), uses t.TempDir() and registers Close with t.Cleanup.
func StartTestDBus(t testing.TB, policyFiles ...string) *DBus {
	t.Helper()
	RequireTools(t, "dbus-daemon")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := StartDBus(ctx, t.TempDir(), policyFiles...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return d
}

// StartDBusConfig starts a private dbus-daemon as described by cfg and waits
// until it prints its address (until ctx is done).
func StartDBusConfig(ctx context.Context, cfg DBusConfig) (*DBus, error) {
	sock, created, err := socketPath(cfg.Dir, "bus.sock")
	if err != nil {
		return nil, fmt.Errorf("testenv: dbus: %w", err)
	}
	d := &DBus{created: created}
	if err := d.start(ctx, cfg, sock); err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("testenv: dbus: %w", err)
	}
	return d, nil
}

func (d *DBus) start(ctx context.Context, cfg DBusConfig, sock string) error {
	conf, err := busConfig(sock, cfg)
	if err != nil {
		return err
	}
	confPath := filepath.Join(cfg.Dir, "bus.conf")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("address pipe: %w", err)
	}
	defer r.Close()
	cmd := exec.Command("dbus-daemon", "--config-file="+confPath, "--nofork", "--nopidfile", "--print-address=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second
	d.proc = newProcess(cmd, "host namespace")
	err = d.proc.start()
	w.Close()
	if err != nil {
		return err
	}

	type line struct {
		s   string
		err error
	}
	got := make(chan line, 1)
	go func() {
		s, err := bufio.NewReader(r).ReadString('\n')
		got <- line{s, err}
	}()
	select {
	case l := <-got:
		d.addr = strings.TrimSpace(l.s)
		if l.err != nil || d.addr == "" {
			select { // the daemon closed its end, so it is most likely exiting
			case <-d.proc.done:
			case <-ctx.Done():
			}
			return fmt.Errorf("dbus-daemon gave no address (%v, %v): %s", l.err, d.proc.err, d.proc.Output())
		}
		return nil
	case <-ctx.Done():
		r.Close() // unblocks the reader
		return fmt.Errorf("waiting for dbus-daemon's address: %w; output: %s", ctx.Err(), d.proc.Output())
	}
}

// Address returns the bus address, e.g. "unix:path=/tmp/…/bus.sock,guid=…",
// for dbus.Connect or DBUS_SYSTEM_BUS_ADDRESS.
func (d *DBus) Address() string { return d.addr }

// Output returns what dbus-daemon printed (warnings such as "Failed to set
// fd limit" are harmless).
func (d *DBus) Output() string {
	if d.proc == nil {
		return ""
	}
	return d.proc.Output()
}

// Close kills the daemon and removes the socket. It is idempotent.
func (d *DBus) Close() error {
	var errs []error
	if d.proc != nil {
		errs = append(errs, d.proc.Kill())
	}
	if d.created != "" {
		errs = append(errs, os.RemoveAll(d.created))
		d.created = ""
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close dbus-daemon: %w", err)
	}
	return nil
}

// busConfig returns a bus.conf for a private bus listening on sock.
func busConfig(sock string, cfg DBusConfig) ([]byte, error) {
	esc := func(s string) string {
		var b bytes.Buffer
		_ = xml.EscapeText(&b, []byte(s))
		return b.String()
	}
	var inc strings.Builder
	for _, f := range cfg.PolicyFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, fmt.Errorf("policy file %s: %w", f, err)
		}
		st, err := os.Stat(abs)
		if err != nil {
			return nil, fmt.Errorf("policy file: %w", err)
		}
		if st.IsDir() {
			fmt.Fprintf(&inc, "  <includedir>%s</includedir>\n", esc(abs))
		} else {
			fmt.Fprintf(&inc, "  <include>%s</include>\n", esc(abs))
		}
	}
	root := `  <policy user="root">
    <allow own="*"/>
  </policy>
`
	if cfg.StrictRoot {
		root = ""
	}
	return fmt.Appendf(nil, busConfTemplate, esc("unix:path="+sock), root, inc.String()), nil
}

// busConfTemplate follows Debian's /usr/share/dbus-1/system.conf, without
// user switching, forking, a pid file, syslog or service activation.
const busConfTemplate = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>%s</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
%s%s</busconfig>
`
