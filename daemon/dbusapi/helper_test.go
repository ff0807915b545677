package dbusapi

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/sitelink/sitelink/testenv"
)

// The test binary doubles as a D-Bus client run as another user: with helperEnv set,
// TestMain runs that client instead of the tests.
const (
	helperEnv     = "SITELINK_DBUSAPI_HELPER" // "probe" or "signals"
	helperAddrEnv = "SITELINK_DBUSAPI_BUS"
	adminGroup    = "sitelink-admin" // the group the shipped policy names
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Getenv(helperAddrEnv)))
	}
	os.Exit(m.Run())
}

// runHelper is the client run as another user. "probe" tries each kind of call and prints
// "NAME=ok" or "NAME=<D-Bus error name>" per line. "signals" subscribes to the service's
// signals, prints READY, waits for a line on stdin, makes a round trip to the service (so
// that every signal the bus sent before is in), then prints "signals=N".
func runHelper(mode, addr string) int {
	conn, err := dbus.Connect(addr)
	if err != nil {
		fmt.Println("connect=" + err.Error())
		return 1
	}
	defer conn.Close()
	obj := conn.Object(BusName, ObjectPath)
	result := func(err error) string {
		var de dbus.Error
		if errors.As(err, &de) {
			return de.Name
		}
		if err != nil {
			return "error:" + err.Error()
		}
		return "ok"
	}
	switch mode {
	case "probe":
		var s string
		var v dbus.Variant
		var all map[string]dbus.Variant
		fmt.Println("Introspect=" + result(obj.Call(introspectableInterface+".Introspect", 0).Store(&s)))
		fmt.Println("Ping=" + result(obj.Call("org.freedesktop.DBus.Peer.Ping", 0).Err))
		fmt.Println("GetStatus=" + result(obj.Call(Interface+".GetStatus", 0).Store(&s)))
		fmt.Println("RestartPlugin=" + result(obj.Call(Interface+".RestartPlugin", 0, "tunnel").Err))
		fmt.Println("Get=" + result(obj.Call(propertiesInterface+".Get", 0, Interface, "State").Store(&v)))
		fmt.Println("GetAll=" + result(obj.Call(propertiesInterface+".GetAll", 0, Interface).Store(&all)))
		fmt.Println("Set=" + result(obj.Call(propertiesInterface+".Set", 0, Interface, "State", dbus.MakeVariant("x")).Err))
		_, err := conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
		fmt.Println("RequestName=" + result(err))
		return 0
	case "signals":
		if err := conn.AddMatchSignal(dbus.WithMatchSender(BusName), dbus.WithMatchObjectPath(ObjectPath)); err != nil {
			fmt.Println("addmatch=" + result(err))
			return 1
		}
		ch := make(chan *dbus.Signal, 64)
		conn.Signal(ch)
		fmt.Println("READY")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			fmt.Println("stdin=" + err.Error())
			return 1
		}
		if err := obj.Call("org.freedesktop.DBus.Peer.Ping", 0).Err; err != nil {
			fmt.Println("ping=" + result(err))
			return 1
		}
		n := 0
		for {
			select {
			case sig := <-ch:
				if sig.Sender != "org.freedesktop.DBus" {
					n++
				}
				continue
			default:
			}
			break
		}
		fmt.Printf("signals=%d\n", n)
		return 0
	}
	fmt.Println("unknown helper mode " + mode)
	return 2
}

// requireRoot fails (CI=true) or skips the test without root or the tools.
func requireRoot(t testing.TB, tools ...string) {
	t.Helper()
	testenv.Require(t, append([]string{"dbus-daemon"}, tools...)...)
}

// sharedDir returns a new directory that other users can traverse (t.TempDir's are
// private), removed when the test ends. The bus socket goes there.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sldbus-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startBus starts a private system-style bus in dir that loads the shipped policy and
// nothing else grants names (StrictRoot), and stops it when the test ends.
func startBus(t testing.TB, dir string) *testenv.DBus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bus, err := testenv.StartDBusConfig(ctx, testenv.DBusConfig{Dir: dir, PolicyFiles: []string{policyFile(t)}, StrictRoot: true})
	if err != nil {
		t.Fatalf("start dbus-daemon with the shipped policy: %v", err)
	}
	t.Cleanup(func() {
		if err := bus.Close(); err != nil {
			t.Errorf("stop dbus-daemon: %v", err)
		}
	})
	return bus
}

// socketAddress is the bus address without the guid, which changes when the bus restarts.
func socketAddress(dir string) string { return "unix:path=" + filepath.Join(dir, "bus.sock") }

// dial connects to the bus as this process (root), closed when the test ends.
func dial(t testing.TB, addr string) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// serving runs Serve in the background until the test ends; the cleanup checks that it
// returns nil promptly. It returns Serve's result channel for tests that expect an error.
func serving(t testing.TB, backend *fakeBackend, opts Options) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, backend, opts)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err, ok := <-done:
			if ok && err != nil {
				t.Errorf("Serve returned %v after ctx ended, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return within 10s after ctx ended")
		}
	})
	return done
}

// waitOwned waits until BusName has an owner on conn's bus and Serve follows events.
func waitOwned(t testing.TB, conn *dbus.Conn, backend *fakeBackend) {
	t.Helper()
	testenv.Eventually(t, 15*time.Second, BusName+" owned and events followed", func() (bool, error) {
		var has bool
		if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, BusName).Store(&has); err != nil {
			return false, err
		}
		return has && backend.subscriberCount() > 0, nil
	})
}

// testLogger returns a logger that records into rec and also writes to the test log.
func testLogger(t testing.TB, rec logRecorder) *slog.Logger {
	return slog.New(teeHandler{rec, slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})})
}

type teeHandler struct {
	a, b slog.Handler
}

func (h teeHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	return errors.Join(h.a.Handle(ctx, r), h.b.Handle(ctx, r))
}
func (h teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{h.a.WithAttrs(as), h.b.WithAttrs(as)}
}
func (h teeHandler) WithGroup(g string) slog.Handler {
	return teeHandler{h.a.WithGroup(g), h.b.WithGroup(g)}
}

// testUser is a system user created for a test.
type testUser struct {
	name     string
	uid, gid int
	groups   []int
}

// ensureGroup returns the gid of group name, creating the group (and removing it when
// the test ends) if it does not exist.
func ensureGroup(t *testing.T, name string) int {
	t.Helper()
	if g, err := user.LookupGroup(name); err == nil {
		gid, _ := strconv.Atoi(g.Gid)
		return gid
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := runUserdb(ctx, "groupadd", "--system", name); err != nil {
		t.Fatalf("groupadd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if out, err := runUserdb(ctx, "groupdel", name); err != nil {
			t.Errorf("groupdel %s: %v: %s", name, err, out)
		}
	})
	g, err := user.LookupGroup(name)
	if err != nil {
		t.Fatalf("group %s after groupadd: %v", name, err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	return gid
}

// runUserdb runs a user database command (useradd, userdel, groupadd, groupdel),
// retrying while another process holds the lock of /etc/passwd or /etc/group.
func runUserdb(ctx context.Context, name string, args ...string) ([]byte, error) {
	var out []byte
	var runErr error
	err := testenv.WaitFor(ctx, name, func() (bool, error) {
		out, runErr = exec.CommandContext(ctx, name, args...).CombinedOutput()
		if runErr != nil && strings.Contains(strings.ToLower(string(out)), "lock") {
			return false, fmt.Errorf("%w: %s", runErr, out)
		}
		return true, nil
	})
	if err != nil {
		return out, err
	}
	return out, runErr
}

// createUser adds a user without a home directory, in the supplementary groups given,
// and deletes it when the test ends.
func createUser(t *testing.T, groups ...string) testUser {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := "sltdbus" + hex.EncodeToString(b[:])
	args := []string{"-M", "-N", "-s", "/usr/sbin/nologin"}
	if len(groups) > 0 {
		args = append(args, "-G", strings.Join(groups, ","))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := runUserdb(ctx, "useradd", append(args, name)...); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if out, err := runUserdb(ctx, "userdel", name); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("user %s after useradd: %v", name, err)
	}
	tu := testUser{name: name}
	tu.uid, _ = strconv.Atoi(u.Uid)
	tu.gid, _ = strconv.Atoi(u.Gid)
	for _, g := range groups {
		grp, err := user.LookupGroup(g)
		if err != nil {
			t.Fatal(err)
		}
		gid, _ := strconv.Atoi(grp.Gid)
		tu.groups = append(tu.groups, gid)
	}
	return tu
}

// helperBinary copies the test binary into dir (readable by every user), since the
// build directory is private to root.
func helperBinary(t *testing.T, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "dbusapi-helper.test")
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// helperCommand returns the test binary in helper mode, run as u.
func helperCommand(ctx context.Context, bin, mode, addr string, u testUser) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = []string{helperEnv + "=" + mode, helperAddrEnv + "=" + addr, "PATH=/usr/bin:/bin"}
	groups := make([]uint32, 0, len(u.groups))
	for _, g := range u.groups {
		groups = append(groups, uint32(g))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), Groups: groups}}
	cmd.Dir = "/"
	cmd.WaitDelay = time.Second
	return cmd
}

// probe runs the "probe" helper as u and returns its results by call.
func probe(t *testing.T, bin, addr string, u testUser) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := helperCommand(ctx, bin, "probe", addr, u).CombinedOutput()
	if err != nil {
		t.Fatalf("helper as %s: %v: %s", u.name, err, out)
	}
	res := map[string]string{}
	for line := range strings.Lines(string(out)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			res[k] = v
		}
	}
	return res
}
