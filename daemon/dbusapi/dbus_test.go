package dbusapi

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/testenv"
)

// signalTimeout bounds the wait for one signal.
const signalTimeout = 10 * time.Second

// writeConfig writes the fake daemon's config file.
func writeConfig(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// subscribe delivers the service's signals (and NameOwnerChanged for its name) on conn
// to the returned channel.
func subscribe(t testing.TB, conn *dbus.Conn) chan *dbus.Signal {
	t.Helper()
	if err := conn.AddMatchSignal(dbus.WithMatchSender(BusName), dbus.WithMatchObjectPath(ObjectPath)); err != nil {
		t.Fatal(err)
	}
	if err := conn.AddMatchSignal(dbus.WithMatchSender("org.freedesktop.DBus"), dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, BusName)); err != nil {
		t.Fatal(err)
	}
	ch := make(chan *dbus.Signal, 256)
	conn.Signal(ch)
	return ch
}

// waitSignal returns the first signal called name for which match (nil: any) is true,
// skipping others; it fails the test after signalTimeout.
func waitSignal(t testing.TB, ch <-chan *dbus.Signal, name string, match func(*dbus.Signal) bool) *dbus.Signal {
	t.Helper()
	timeout := time.NewTimer(signalTimeout)
	defer timeout.Stop()
	var skipped []string
	for {
		select {
		case sig := <-ch:
			if sig.Name == name && (match == nil || match(sig)) {
				return sig
			}
			skipped = append(skipped, fmt.Sprintf("%s%v", sig.Name, sig.Body))
		case <-timeout.C:
			t.Fatalf("no %s signal within %s; got %v", name, signalTimeout, skipped)
			return nil
		}
	}
}

// changedProps returns the changed properties of a PropertiesChanged signal.
func changedProps(sig *dbus.Signal) map[string]dbus.Variant {
	if len(sig.Body) != 3 || sig.Body[0] != Interface {
		return nil
	}
	m, _ := sig.Body[1].(map[string]dbus.Variant)
	return m
}

// errorName returns the D-Bus error name of err ("" for nil, the text otherwise).
func errorName(err error) string {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

func TestServe(t *testing.T) {
	requireRoot(t)
	bus := startBus(t, t.TempDir())
	client := dial(t, bus.Address())
	sigs := subscribe(t, client)
	cfg := filepath.Join(t.TempDir(), "sitelink.conf")
	writeConfig(t, cfg, "plugin tunnel\nplugin snat\n")
	backend := newFakeBackend(cfg)
	rec := newLogRecorder()
	serving(t, backend, Options{Address: bus.Address(), Logger: testLogger(t, rec)})
	obj := client.Object(BusName, ObjectPath)

	// The object is exported before the name is requested: a client that reacts to the
	// name appearing can use it at once.
	waitSignal(t, sigs, "org.freedesktop.DBus.NameOwnerChanged", func(s *dbus.Signal) bool {
		return len(s.Body) == 3 && s.Body[2] != ""
	})
	var all map[string]dbus.Variant
	if err := obj.Call(propertiesInterface+".GetAll", 0, Interface).Store(&all); err != nil {
		t.Fatalf("GetAll right after the name appeared: %v", err)
	}
	waitOwned(t, client, backend)

	t.Run("Properties", func(t *testing.T) {
		want := map[string]any{
			"Version": "1.2.3-test", "State": api.DaemonDegraded, "Role": "BACKUP",
			"Plugins": map[string]string{"tunnel": "running", "snat": "failed"},
		}
		for name, w := range want {
			var v dbus.Variant
			if err := obj.Call(propertiesInterface+".Get", 0, Interface, name).Store(&v); err != nil {
				t.Fatalf("Get %s: %v", name, err)
			}
			if fmt.Sprint(v.Value()) != fmt.Sprint(w) {
				t.Errorf("%s = %v, want %v", name, v.Value(), w)
			}
			if fmt.Sprint(all[name].Value()) != fmt.Sprint(w) {
				t.Errorf("GetAll %s = %v, want %v", name, all[name].Value(), w)
			}
		}
		if len(all) != len(want) {
			t.Errorf("GetAll returned %d properties: %v", len(all), all)
		}
		err := obj.Call(propertiesInterface+".Set", 0, Interface, "State", dbus.MakeVariant("running")).Err
		if errorName(err) != "org.freedesktop.DBus.Error.PropertyReadOnly" {
			t.Errorf("Set State: %v, want PropertyReadOnly", err)
		}
	})

	t.Run("Introspect", func(t *testing.T) {
		node, err := introspect.Call(obj)
		if err != nil {
			t.Fatal(err)
		}
		var iface *introspect.Interface
		var names []string
		for i := range node.Interfaces {
			names = append(names, node.Interfaces[i].Name)
			if node.Interfaces[i].Name == Interface {
				iface = &node.Interfaces[i]
			}
		}
		slices.Sort(names)
		if want := []string{"org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Peer", "org.freedesktop.DBus.Properties", Interface}; !slices.Equal(names, want) {
			t.Errorf("interfaces %v, want %v", names, want)
		}
		if iface == nil {
			t.Fatal("no " + Interface)
		}
		if len(iface.Methods) != 4 || len(iface.Properties) != 4 || len(iface.Signals) != 2 {
			t.Errorf("%d methods, %d properties, %d signals; want 4, 4, 2", len(iface.Methods), len(iface.Properties), len(iface.Signals))
		}
		root, err := introspect.Call(client.Object(BusName, "/"))
		if err != nil || len(root.Children) != 1 || root.Children[0].Name != "org" {
			t.Errorf("introspection of / = %+v, %v; want child org", root, err)
		}
		var raw string
		if err := obj.Call(introspectableInterface+".Introspect", 0).Store(&raw); err != nil {
			t.Fatal(err)
		}
		if err := xml.Unmarshal([]byte(raw), new(introspect.Node)); err != nil {
			t.Errorf("introspection XML: %v", err)
		}
	})

	t.Run("GetStatus", func(t *testing.T) {
		var s string
		if err := obj.Call(Interface+".GetStatus", 0).Store(&s); err != nil {
			t.Fatal(err)
		}
		var st api.Status
		if err := json.Unmarshal([]byte(s), &st); err != nil {
			t.Fatalf("GetStatus is not api.Status JSON: %v: %s", err, s)
		}
		if st.Version != "1.2.3-test" || st.PID != 4242 || len(st.Plugins) != 2 || st.Plugins[0].Name != "tunnel" {
			t.Errorf("status = %+v", st)
		}
	})

	t.Run("RestartPlugin", func(t *testing.T) {
		if err := obj.Call(Interface+".RestartPlugin", 0, "tunnel").Err; err != nil {
			t.Fatal(err)
		}
		if calls := backend.callList(); !slices.Contains(calls, "restart tunnel") {
			t.Errorf("backend calls %v", calls)
		}
		audits := backend.auditList()
		if len(audits) == 0 {
			t.Fatal("no audit")
		}
		a := audits[len(audits)-1]
		if a.what != "restart plugin tunnel (D-Bus)" || !a.who.Credentials || a.who.UID != 0 || a.who.PID != os.Getpid() || a.who.GID != 0 {
			t.Errorf("audit = %+v, want restart by uid 0 gid 0 pid %d", a, os.Getpid())
		}
		err := obj.Call(Interface+".RestartPlugin", 0, "nope").Err
		if errorName(err) != ErrorNotFound || !strings.Contains(err.Error(), "nope") {
			t.Errorf("RestartPlugin(nope) = %v, want %s", err, ErrorNotFound)
		}
	})

	t.Run("InvokeAction", func(t *testing.T) {
		audits := len(backend.auditList())
		var res string
		if err := obj.Call(Interface+".InvokeAction", 0, "tunnel", "peers", map[string]string{}).Store(&res); err != nil {
			t.Fatal(err)
		}
		if res != `{"action":"peers","args":{},"plugin":"tunnel"}` {
			t.Errorf("peers result %q (want compact JSON)", res)
		}
		if n := len(backend.auditList()); n != audits {
			t.Errorf("a non-mutating action was audited")
		}
		if err := obj.Call(Interface+".InvokeAction", 0, "tunnel", "switch", map[string]string{"peer": "gw-b"}).Store(&res); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(res, `"peer":"gw-b"`) {
			t.Errorf("switch result %q", res)
		}
		all := backend.auditList()
		if len(all) != audits+1 || all[len(all)-1].what != `action tunnel switch peer="gw-b" (D-Bus)` {
			t.Errorf("audits after switch: %+v", all[audits:])
		}
		for _, tc := range []struct {
			plugin, action string
			args           map[string]string
			want           string
		}{
			{"tunnel", "switch", map[string]string{}, ErrorInvalidArgument},
			{"tunnel", "peers", map[string]string{"x": "1"}, ErrorInvalidArgument},
			{"snat", "tail", map[string]string{}, ErrorInvalidArgument},
			{"nope", "peers", map[string]string{}, ErrorNotFound},
			{"tunnel", "nope", map[string]string{}, ErrorNotFound},
			{"tunnel", "broken", map[string]string{}, ErrorUnavailable},
		} {
			err := obj.Call(Interface+".InvokeAction", 0, tc.plugin, tc.action, tc.args).Store(&res)
			if errorName(err) != tc.want {
				t.Errorf("InvokeAction(%s, %s, %v) = %v, want %s", tc.plugin, tc.action, tc.args, err, tc.want)
			}
		}
	})

	t.Run("Reload", func(t *testing.T) {
		writeConfig(t, cfg, "plugin tunnel\nplugin snat\nplugin proxy\n")
		var s string
		if err := obj.Call(Interface+".Reload", 0).Store(&s); err != nil {
			t.Fatal(err)
		}
		var res api.ReloadResult
		if err := json.Unmarshal([]byte(s), &res); err != nil || !slices.Equal(res.Added, []string{"proxy"}) {
			t.Fatalf("Reload result %s (%v), want proxy added", s, err)
		}
		waitSignal(t, sigs, propertiesInterface+".PropertiesChanged", func(s *dbus.Signal) bool {
			_, ok := changedProps(s)["Plugins"].Value().(map[string]string)["proxy"]
			return ok
		})
		if a := backend.auditList(); a[len(a)-1].what != "reload (D-Bus)" {
			t.Errorf("last audit %+v", a[len(a)-1])
		}
	})

	t.Run("ReloadBadConfig", func(t *testing.T) {
		before := backend.Status(context.Background())
		writeConfig(t, cfg, "plugin tunnel\n  bogus thing\nplugin snat\n")
		err := obj.Call(Interface+".Reload", 0).Err
		var de dbus.Error
		if !errors.As(err, &de) || de.Name != ErrorInvalidConfig {
			t.Fatalf("Reload with a bad config = %v, want %s", err, ErrorInvalidConfig)
		}
		line := cfg + `:2:3: unknown directive "bogus"`
		if len(de.Body) != 1 || de.Body[0] != "invalid config:\n"+line {
			t.Errorf("error body %#v, want one string: invalid config:\\n%s", de.Body, line)
		}
		// The old config is kept: same plugins, the rejection is reported in the status.
		var s string
		if err := obj.Call(Interface+".GetStatus", 0).Store(&s); err != nil {
			t.Fatal(err)
		}
		var st api.Status
		if err := json.Unmarshal([]byte(s), &st); err != nil {
			t.Fatal(err)
		}
		names := func(ps []api.PluginStatus) (n []string) {
			for _, p := range ps {
				n = append(n, p.Name)
			}
			return n
		}
		if !slices.Equal(names(st.Plugins), names(before.Plugins)) || !st.LastReload.Equal(before.LastReload) || st.ConfigError == "" {
			t.Errorf("after a rejected reload: plugins %v (before %v), last reload %v (before %v), config error %q",
				names(st.Plugins), names(before.Plugins), st.LastReload, before.LastReload, st.ConfigError)
		}
		var plugins dbus.Variant
		if err := obj.Call(propertiesInterface+".Get", 0, Interface, "Plugins").Store(&plugins); err != nil {
			t.Fatal(err)
		}
		if got := plugins.Value().(map[string]string); len(got) != 3 {
			t.Errorf("Plugins property after a rejected reload: %v", got)
		}
	})

	t.Run("Signals", func(t *testing.T) {
		// A plugin changes state: the signal carries the new state last, and the
		// properties follow (all plugins running now: the daemon is running).
		backend.setPluginState("snat", api.PluginRunning)
		sig := waitSignal(t, sigs, Interface+".PluginStateChanged", nil)
		if fmt.Sprint(sig.Body) != "[snat failed running]" {
			t.Errorf("PluginStateChanged%v, want (snat, failed, running)", sig.Body)
		}
		sig = waitSignal(t, sigs, propertiesInterface+".PropertiesChanged", func(s *dbus.Signal) bool {
			return changedProps(s)["Plugins"].Value() != nil
		})
		ch := changedProps(sig)
		if ch["Plugins"].Value().(map[string]string)["snat"] != "running" || ch["State"].Value() != api.DaemonRunning {
			t.Errorf("PropertiesChanged %v, want snat running and State running", ch)
		}

		backend.setRole("MASTER")
		sig = waitSignal(t, sigs, Interface+".RoleChanged", nil)
		if fmt.Sprint(sig.Body) != "[BACKUP MASTER]" {
			t.Errorf("RoleChanged%v, want (BACKUP, MASTER)", sig.Body)
		}
		sig = waitSignal(t, sigs, propertiesInterface+".PropertiesChanged", func(s *dbus.Signal) bool {
			return changedProps(s)["Role"].Value() != nil
		})
		if r := changedProps(sig)["Role"].Value(); r != "MASTER" {
			t.Errorf("PropertiesChanged Role = %v, want MASTER", r)
		}
		var role dbus.Variant
		if err := obj.Call(propertiesInterface+".Get", 0, Interface, "Role").Store(&role); err != nil || role.Value() != "MASTER" {
			t.Errorf("Role = %v, %v; want MASTER", role.Value(), err)
		}

		// A repeated role event (e.g. the retained one) changes nothing: no signal before
		// the next plugin change.
		backend.setRole("MASTER")
		backend.setPluginState("tunnel", api.PluginBackoff)
		timeout := time.After(signalTimeout)
		for done := false; !done; {
			select {
			case s := <-sigs:
				switch s.Name {
				case Interface + ".RoleChanged":
					t.Errorf("RoleChanged%v for an unchanged role", s.Body)
				case Interface + ".PluginStateChanged":
					if fmt.Sprint(s.Body) != "[tunnel running backoff]" {
						t.Errorf("PluginStateChanged%v, want (tunnel, running, backoff)", s.Body)
					}
					done = true
				}
			case <-timeout:
				t.Fatal("no PluginStateChanged for tunnel")
			}
		}
	})

	if n := rec.levelCount(slog.LevelWarn) + rec.levelCount(slog.LevelError); n != 0 {
		t.Errorf("%d warnings or errors logged:\n%s", n, rec.dump())
	}
}

// TestPolicyAccess checks the shipped policy against real users: a user outside
// sitelink-admin may only introspect and ping (and gets no signals); a member may call
// methods and read properties; nobody but root may own the name or set properties.
func TestPolicyAccess(t *testing.T) {
	requireRoot(t, "useradd", "userdel", "groupadd", "groupdel")
	ensureGroup(t, adminGroup)
	outsider := createUser(t)
	member := createUser(t, adminGroup)
	dir := sharedDir(t)
	bin := helperBinary(t, dir)
	bus := startBus(t, dir)
	client := dial(t, bus.Address())
	sigs := subscribe(t, client)
	backend := newFakeBackend(filepath.Join(t.TempDir(), "none.conf"))
	serving(t, backend, Options{Address: bus.Address(), Logger: testLogger(t, newLogRecorder())})
	waitOwned(t, client, backend)

	const denied = "org.freedesktop.DBus.Error.AccessDenied"
	for _, tc := range []struct {
		who  testUser
		want map[string]string
	}{
		{outsider, map[string]string{
			"Introspect": "ok", "Ping": "ok", "GetStatus": denied, "RestartPlugin": denied,
			"Get": denied, "GetAll": denied, "Set": denied, "RequestName": denied}},
		{member, map[string]string{
			"Introspect": "ok", "Ping": "ok", "GetStatus": "ok", "RestartPlugin": "ok",
			"Get": "ok", "GetAll": "ok", "Set": denied, "RequestName": denied}},
	} {
		got := probe(t, bin, bus.Address(), tc.who)
		if !maps.Equal(got, tc.want) {
			t.Errorf("as %s (uid %d, groups %v):\n got %v\nwant %v", tc.who.name, tc.who.uid, tc.who.groups, got, tc.want)
		}
	}
	// Only the member's RestartPlugin reached the daemon, audited with its uid.
	if calls := backend.callList(); !slices.Equal(calls, []string{"restart tunnel"}) {
		t.Errorf("backend calls %v, want only the member's restart", calls)
	}
	if a := backend.auditList(); len(a) != 1 || a[0].who.UID != member.uid || a[0].what != "restart plugin tunnel (D-Bus)" {
		t.Errorf("audits %+v, want one restart by uid %d", a, member.uid)
	}

	// Signals reach the member, not the outsider.
	type helper struct {
		name  string
		stdin io.WriteCloser
		out   *bufio.Reader
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var helpers []helper
	for _, u := range []testUser{member, outsider} {
		cmd := helperCommand(ctx, bin, "signals", bus.Address(), u)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Wait() })
		h := helper{u.name, stdin, bufio.NewReader(stdout)}
		if line, err := h.out.ReadString('\n'); err != nil || line != "READY\n" {
			t.Fatalf("signals helper as %s: %q, %v", u.name, line, err)
		}
		helpers = append(helpers, h)
	}
	backend.setPluginState("snat", api.PluginRunning)
	waitSignal(t, sigs, Interface+".PluginStateChanged", nil)
	waitSignal(t, sigs, propertiesInterface+".PropertiesChanged", nil)
	got := map[string]string{}
	for _, h := range helpers {
		if _, err := io.WriteString(h.stdin, "GO\n"); err != nil {
			t.Fatal(err)
		}
		line, err := h.out.ReadString('\n')
		if err != nil {
			t.Fatalf("signals helper %s: %v", h.name, err)
		}
		got[h.name] = strings.TrimSpace(line)
		h.stdin.Close()
	}
	if got[member.name] != "signals=2" || got[outsider.name] != "signals=0" {
		t.Errorf("signals received: member %s, outsider %s; want 2 (PluginStateChanged, PropertiesChanged) and 0",
			got[member.name], got[outsider.name])
	}
}

// TestServeWithoutBus: no bus at the address means one warning, quiet retries, and the
// service appears once a bus does.
func TestServeWithoutBus(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	addr := socketAddress(dir)
	backend := newFakeBackend(filepath.Join(dir, "none.conf"))
	rec := newLogRecorder()
	serving(t, backend, Options{Address: addr, Logger: testLogger(t, rec), MinRetry: 10 * time.Millisecond, MaxRetry: 50 * time.Millisecond})

	testenv.Eventually(t, 20*time.Second, "five quiet retries", func() (bool, error) {
		return rec.count(slog.LevelDebug, "attempt failed") >= 5, nil
	})
	if n := rec.levelCount(slog.LevelWarn); n != 1 || rec.count(slog.LevelWarn, "D-Bus unavailable") != 1 {
		t.Fatalf("%d warnings, want exactly one \"D-Bus unavailable\":\n%s", n, rec.dump())
	}

	bus := startBus(t, dir)
	client := dial(t, bus.Address())
	waitOwned(t, client, backend)
	var v dbus.Variant
	if err := client.Object(BusName, ObjectPath).Call(propertiesInterface+".Get", 0, Interface, "Version").Store(&v); err != nil {
		t.Fatal(err)
	}
	if n := rec.levelCount(slog.LevelWarn); n != 1 {
		t.Errorf("%d warnings after the bus appeared, want still one:\n%s", n, rec.dump())
	}
}

// TestServeReconnects: the bus restarts (killed, a new one at the same address); the
// service reconnects, exports again, takes the name back and follows events again.
func TestServeReconnects(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	bus := startBus(t, dir)
	backend := newFakeBackend(filepath.Join(dir, "none.conf"))
	rec := newLogRecorder()
	serving(t, backend, Options{Address: socketAddress(dir), Logger: testLogger(t, rec), MinRetry: 20 * time.Millisecond, MaxRetry: 200 * time.Millisecond})
	waitOwned(t, dial(t, bus.Address()), backend)

	for restart := 1; restart <= 2; restart++ {
		if err := bus.Close(); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 20*time.Second, "the lost connection noticed", func() (bool, error) {
			return rec.count(slog.LevelWarn, "connection lost") == restart, nil
		})
		bus = startBus(t, dir)
		client := dial(t, bus.Address())
		sigs := subscribe(t, client)
		waitOwned(t, client, backend)
		var s string
		if err := client.Object(BusName, ObjectPath).Call(Interface+".GetStatus", 0).Store(&s); err != nil {
			t.Fatalf("GetStatus after restart %d: %v", restart, err)
		}
		state := api.PluginRunning
		if restart == 2 {
			state = api.PluginStopped
		}
		backend.setPluginState("snat", state)
		sig := waitSignal(t, sigs, Interface+".PluginStateChanged", nil)
		if sig.Body[2] != state {
			t.Errorf("after restart %d: PluginStateChanged%v, want new state %s", restart, sig.Body, state)
		}
	}
	if n, lost := rec.levelCount(slog.LevelWarn), rec.count(slog.LevelWarn, "connection lost"); n != 2 || lost != 2 {
		t.Errorf("%d warnings (%d \"connection lost\"), want one per restart:\n%s", n, lost, rec.dump())
	}
	if n := rec.count(slog.LevelInfo, "D-Bus service ready"); n != 3 {
		t.Errorf("service ready %d times, want 3", n)
	}
}

// TestServeNameTaken: Serve fails clearly when another connection owns the name.
func TestServeNameTaken(t *testing.T) {
	requireRoot(t)
	bus := startBus(t, t.TempDir())
	other := dial(t, bus.Address())
	if reply, err := other.RequestName(BusName, dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("taking the name first: %v, %v", reply, err)
	}
	done := serving(t, newFakeBackend("none"), Options{Address: bus.Address(), Logger: testLogger(t, newLogRecorder())})
	select {
	case err := <-done:
		if !errors.Is(err, ErrNameTaken) || !strings.Contains(err.Error(), other.Names()[0]) {
			t.Errorf("Serve = %v, want ErrNameTaken naming the owner %s", err, other.Names()[0])
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not fail within 20s")
	}
}

// TestServeNotAllowed: without the shipped policy the bus refuses the name, and Serve
// says so.
func TestServeNotAllowed(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bus, err := testenv.StartDBusConfig(ctx, testenv.DBusConfig{Dir: t.TempDir(), StrictRoot: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	done := serving(t, newFakeBackend("none"), Options{Address: bus.Address(), Logger: testLogger(t, newLogRecorder())})
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotAllowed) {
			t.Errorf("Serve = %v, want ErrNotAllowed", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not fail within 20s")
	}
}

// TestRoleFromStatusAndEvents: the Role property and RoleChanged follow both the role
// events and the daemon's status, without duplicates or flapping: a role seen in the
// status first is announced once (not again when its event comes), and a role from an
// event is not undone by a status that has not caught up yet.
func TestRoleFromStatusAndEvents(t *testing.T) {
	requireRoot(t)
	bus := startBus(t, t.TempDir())
	client := dial(t, bus.Address())
	sigs := subscribe(t, client)
	backend := newFakeBackend(filepath.Join(t.TempDir(), "none.conf"))
	serving(t, backend, Options{Address: bus.Address(), Logger: testLogger(t, newLogRecorder()), RefreshInterval: 20 * time.Millisecond})
	waitOwned(t, client, backend)

	// noRoleChangeUntil fails on any RoleChanged before the PluginStateChanged that a
	// plugin change made after a few refreshes causes.
	states := []string{api.PluginRunning, api.PluginBackoff}
	marks := 0
	noRoleChangeUntilMark := func(what string) {
		t.Helper()
		n := backend.statusCount()
		testenv.Eventually(t, 10*time.Second, "five property refreshes", func() (bool, error) {
			return backend.statusCount() >= n+5, nil
		})
		marks++
		backend.setPluginState("snat", states[marks%2])
		timeout := time.After(signalTimeout)
		for {
			select {
			case s := <-sigs:
				switch s.Name {
				case Interface + ".RoleChanged":
					t.Errorf("%s: RoleChanged%v", what, s.Body)
				case Interface + ".PluginStateChanged":
					return
				}
			case <-timeout:
				t.Fatalf("%s: no PluginStateChanged", what)
			}
		}
	}

	backend.setRoleQuietly("FAULT")
	if sig := waitSignal(t, sigs, Interface+".RoleChanged", nil); fmt.Sprint(sig.Body) != "[BACKUP FAULT]" {
		t.Errorf("role seen in the status: RoleChanged%v, want (BACKUP, FAULT)", sig.Body)
	}
	backend.publishRole("FAULT", "BACKUP") // its event, late
	noRoleChangeUntilMark("late event for a role already announced")

	backend.publishRole("MASTER", "FAULT") // the supervisor has not handled it yet
	if sig := waitSignal(t, sigs, Interface+".RoleChanged", nil); fmt.Sprint(sig.Body) != "[FAULT MASTER]" {
		t.Errorf("role event: RoleChanged%v, want (FAULT, MASTER)", sig.Body)
	}
	noRoleChangeUntilMark("status behind the event")
	backend.setRoleQuietly("MASTER") // now it has
	noRoleChangeUntilMark("status caught up with the event")
	var role dbus.Variant
	if err := client.Object(BusName, ObjectPath).Call(propertiesInterface+".Get", 0, Interface, "Role").Store(&role); err != nil || role.Value() != "MASTER" {
		t.Errorf("Role = %v, %v; want MASTER", role.Value(), err)
	}
}
