package dbusapi

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/sitelink/sitelink/daemon/admin"
	"github.com/sitelink/sitelink/daemon/api"
)

// policyFile is the shipped bus policy.
func policyFile(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test's source file")
	}
	p := filepath.Join(filepath.Dir(file), "..", "..", "packaging", "dbus", BusName+".conf")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("shipped policy: %v", err)
	}
	return p
}

func TestInterfaceDescription(t *testing.T) {
	iface, err := interfaceDescription()
	if err != nil {
		t.Fatal(err)
	}
	if iface.Name != Interface {
		t.Fatalf("interface name %q", iface.Name)
	}
	sig := func(args []introspect.Arg) string {
		var s []string
		for _, a := range args {
			s = append(s, a.Direction+" "+a.Type+" "+a.Name)
		}
		return strings.Join(s, ", ")
	}
	gotMethods := map[string]string{}
	for _, m := range iface.Methods {
		gotMethods[m.Name] = sig(m.Args)
	}
	wantMethods := map[string]string{
		"GetStatus":     "out s status_json",
		"Reload":        "out s result_json",
		"RestartPlugin": "in s name",
		"InvokeAction":  "in s plugin, in s action, in a{ss} args, out s result_json",
	}
	if fmt.Sprint(gotMethods) != fmt.Sprint(wantMethods) {
		t.Errorf("methods:\n got %v\nwant %v", gotMethods, wantMethods)
	}
	gotProps := map[string]string{}
	for _, p := range iface.Properties {
		gotProps[p.Name] = p.Type + " " + p.Access + " " + p.Annotations[0].Value
	}
	wantProps := map[string]string{
		"Version": "s read const", "State": "s read true", "Role": "s read true", "Plugins": "a{ss} read true",
	}
	if fmt.Sprint(gotProps) != fmt.Sprint(wantProps) {
		t.Errorf("properties:\n got %v\nwant %v", gotProps, wantProps)
	}
	gotSignals := map[string]string{}
	for _, s := range iface.Signals {
		gotSignals[s.Name] = sig(s.Args)
	}
	wantSignals := map[string]string{
		"PluginStateChanged": " s name,  s old_state,  s new_state",
		"RoleChanged":        " s old_role,  s new_role",
	}
	if fmt.Sprint(gotSignals) != fmt.Sprint(wantSignals) {
		t.Errorf("signals:\n got %v\nwant %v", gotSignals, wantSignals)
	}

	nodes, err := introspection()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []dbus.ObjectPath{"/", "/org", "/org/sitelink", ObjectPath} {
		if _, ok := nodes[p]; !ok {
			t.Errorf("no introspection for %s", p)
		}
	}
	xmlText, derr := nodes["/org/sitelink"].Introspect()
	if derr != nil || !strings.Contains(xmlText, `<node name="Sitelink1">`) {
		t.Errorf("/org/sitelink does not list its child: %v %s", derr, xmlText)
	}
}

func TestDBusError(t *testing.T) {
	for _, tc := range []struct {
		err      error
		name     string
		contains string
	}{
		{fmt.Errorf("reload: %w", &admin.ConfigError{Errors: []string{"/etc/s.yaml:3:5: bad", "/etc/s.yaml:9:1: worse"}}),
			ErrorInvalidConfig, "invalid config:\n/etc/s.yaml:3:5: bad\n/etc/s.yaml:9:1: worse"},
		{fmt.Errorf("plugin x: %w", admin.ErrNotFound), ErrorNotFound, "plugin x"},
		{fmt.Errorf("bad: %w", admin.ErrInvalidArgument), ErrorInvalidArgument, "bad"},
		{admin.ErrConflict, ErrorConflict, "conflict"},
		{fmt.Errorf("gone: %w", admin.ErrUnavailable), ErrorUnavailable, "gone"},
		{fmt.Errorf("call: %w", context.DeadlineExceeded), ErrorUnavailable, "timed out"},
		{errors.New("boom"), ErrorFailed, "boom"},
	} {
		got := dbusError(tc.err)
		if got.Name != tc.name || !strings.Contains(got.Error(), tc.contains) {
			t.Errorf("dbusError(%v) = %s %q, want %s containing %q", tc.err, got.Name, got.Error(), tc.name, tc.contains)
		}
	}
	ce := dbusError(&admin.ConfigError{Errors: []string{"f:1:2: x"}})
	if len(ce.Body) != 1 || ce.Body[0] != "invalid config:\nf:1:2: x" {
		t.Errorf("InvalidConfig body = %#v, want one string with the lines", ce.Body)
	}
}

func TestCheckArgs(t *testing.T) {
	spec := api.ActionSpec{Name: "switch", Args: []api.ArgSpec{{Name: "peer", Type: "string", Required: true}, {Name: "force", Type: "bool"}}}
	for _, tc := range []struct {
		args map[string]string
		want string // "" = ok
	}{
		{map[string]string{"peer": "gw-b"}, ""},
		{map[string]string{"peer": "gw-b", "force": "true"}, ""},
		{map[string]string{}, `missing required argument "peer"`},
		{map[string]string{"peer": "a", "colour": "red"}, `unknown argument "colour" (known: force, peer)`},
	} {
		err := api.CheckArgs(spec, tc.args)
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckArgs(%v) = %v, want %q", tc.args, err, tc.want)
		}
	}
	if err := api.CheckArgs(api.ActionSpec{}, map[string]string{"x": "1"}); err == nil || !strings.Contains(err.Error(), "takes no arguments") {
		t.Errorf("argument to an action without arguments: %v", err)
	}
}

func TestPropertiesUpdate(t *testing.T) {
	p := newProperties(values{Version: "1", State: "running", Role: "MASTER", Plugins: map[string]string{"a": "running", "b": "running"}})
	if got := p.update(values{Version: "1", State: "running", Role: "MASTER", Plugins: map[string]string{"a": "running", "b": "running"}}, ""); len(got) != 0 {
		t.Errorf("no change reported %v", got)
	}
	// A plugin removed and the state changed: both in one change set, and the removed
	// plugin is gone (godbus's prop.SetMust would have merged the maps).
	got := p.update(values{Version: "1", State: "degraded", Role: "BACKUP", Plugins: map[string]string{"a": "failed"}}, "Role")
	if len(got) != 2 || got["State"].Value() != "degraded" || fmt.Sprint(got["Plugins"].Value()) != "map[a:failed]" {
		t.Errorf("changes = %v", got)
	}
	all, derr := p.GetAll(Interface)
	if derr != nil {
		t.Fatal(derr)
	}
	if fmt.Sprint(all["Plugins"].Value()) != "map[a:failed]" || all["Role"].Value() != "MASTER" {
		t.Errorf("GetAll = %v (Role must be kept: it was skipped)", all)
	}
	if old, changed := p.setRole("BACKUP"); old != "MASTER" || !changed {
		t.Errorf("setRole = %q, %v", old, changed)
	}
	if _, changed := p.setRole("BACKUP"); changed {
		t.Error("setRole with the same role reported a change")
	}
	if err := p.Set(Interface, "State", dbus.MakeVariant("x")); err == nil || err.Name != "org.freedesktop.DBus.Error.PropertyReadOnly" {
		t.Errorf("Set = %v, want PropertyReadOnly", err)
	}
	if _, err := p.Get(Interface, "Nope"); err == nil || err.Name != "org.freedesktop.DBus.Error.UnknownProperty" {
		t.Errorf("Get(Nope) = %v", err)
	}
	if _, err := p.Get("org.example.Other", "State"); err == nil || err.Name != "org.freedesktop.DBus.Error.UnknownInterface" {
		t.Errorf("Get(other interface) = %v", err)
	}
}

// dbus110Attrs are the attributes dbus 1.10's config parser knows on <allow>/<deny>
// (bus/config-parser.c), minus own_prefix and log, which this check also refuses to be
// safe. Newer ones (send_destination_prefix, send_broadcast, max_fds, min_fds) make
// dbus 1.10 reject the whole file.
var dbus110Attrs = []string{
	"send_interface", "send_member", "send_error", "send_destination", "send_path", "send_type",
	"receive_interface", "receive_member", "receive_error", "receive_sender", "receive_path", "receive_type",
	"eavesdrop", "send_requested_reply", "receive_requested_reply", "own", "user", "group",
}

// TestPolicyFileIsDBus110 checks the shipped policy statically: the standard DTD, only
// <policy>, <allow> and <deny>, only attributes dbus 1.10 knows, and no rule mixing
// send_, receive_ and own (which dbus refuses). The integration tests load it into a real
// dbus-daemon.
func TestPolicyFileIsDBus110(t *testing.T) {
	data, err := os.ReadFile(policyFile(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"`) ||
		!strings.Contains(string(data), `"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd"`) {
		t.Error("the policy does not declare the standard busconfig DOCTYPE")
	}
	dec := xml.NewDecoder(strings.NewReader(string(data)))
	var stack []string
	rules := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("policy XML: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			if _, end := tok.(xml.EndElement); end {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		parent := ""
		if len(stack) > 0 {
			parent = stack[len(stack)-1]
		}
		stack = append(stack, se.Name.Local)
		switch se.Name.Local {
		case "busconfig":
			if parent != "" {
				t.Errorf("nested <busconfig>")
			}
		case "policy":
			if parent != "busconfig" {
				t.Errorf("<policy> inside <%s>", parent)
			}
			if len(se.Attr) != 1 || !slices.Contains([]string{"context", "user", "group"}, se.Attr[0].Name.Local) {
				t.Errorf("<policy %v>: want exactly one of context, user, group", se.Attr)
			}
		case "allow", "deny":
			if parent != "policy" {
				t.Errorf("<%s> inside <%s>", se.Name.Local, parent)
			}
			rules++
			kinds := map[string]bool{}
			for _, a := range se.Attr {
				name := a.Name.Local
				if !slices.Contains(dbus110Attrs, name) {
					t.Errorf("<%s %s=%q>: attribute unknown to dbus 1.10", se.Name.Local, name, a.Value)
				}
				switch {
				case strings.HasPrefix(name, "send_"):
					kinds["send"] = true
				case strings.HasPrefix(name, "receive_"):
					kinds["receive"] = true
				case name == "own":
					kinds["own"] = true
				}
			}
			if len(kinds) > 1 {
				t.Errorf("<%s %v> mixes %v", se.Name.Local, se.Attr, kinds)
			}
		default:
			t.Errorf("element <%s> is not needed in a service policy", se.Name.Local)
		}
	}
	if rules == 0 {
		t.Error("the policy has no rules")
	}
}
