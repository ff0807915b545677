package systemd_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sitelink/sitelink/testenv"
)

// unitKey is one "Key=Value" line of a unit file.
type unitKey struct {
	section, key, value string
	line                int
}

// parseUnit reads a unit file's keys and its leading comment block.
func parseUnit(t *testing.T, path string) (keys []unitKey, header string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	section, n, inHeader := "", 0, true
	var hb strings.Builder
	for sc.Scan() {
		n++
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
			if inHeader {
				hb.WriteString(l + "\n")
			}
			continue
		case l == "":
			continue
		}
		inHeader = false
		if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]") {
			section = l[1 : len(l)-1]
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || strings.HasSuffix(l, `\`) {
			t.Fatalf("%s:%d: not a plain Key=Value line: %q", path, n, l)
		}
		keys = append(keys, unitKey{section: section, key: strings.TrimSpace(k), value: strings.TrimSpace(v), line: n})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return keys, hb.String()
}

// systemd219 lists the keys systemd 219 (CentOS 7) knows that a unit like ours may use,
// with the values it accepts where newer versions added some (nil: any value).
var systemd219 = map[string]map[string][]string{
	"Unit": {
		"Description": nil, "Documentation": nil, "Wants": nil, "Requires": nil, "After": nil,
		"Before": nil, "Conflicts": nil, "BindsTo": nil, "PartOf": nil, "ConditionPathExists": nil,
	},
	"Service": {
		"Type":         {"simple", "forking", "oneshot", "dbus", "notify", "idle"},
		"NotifyAccess": {"none", "main", "all"}, // "exec" is 246
		"Environment":  nil, "EnvironmentFile": nil,
		"ExecStartPre": nil, "ExecStart": nil, "ExecStartPost": nil, "ExecReload": nil, "ExecStop": nil, "ExecStopPost": nil,
		"Restart":            {"no", "on-success", "on-failure", "on-abnormal", "on-watchdog", "on-abort", "always"},
		"RestartSec":         nil,
		"StartLimitInterval": nil, "StartLimitBurst": nil, "StartLimitAction": nil,
		"TimeoutStartSec": nil, "TimeoutStopSec": nil, "TimeoutSec": nil, "WatchdogSec": nil,
		"KillMode":   {"control-group", "process", "mixed", "none"},
		"KillSignal": nil, "SendSIGKILL": nil,
		"RuntimeDirectory": nil, "RuntimeDirectoryMode": nil,
		"LimitNOFILE": nil, "LimitCORE": nil,
		"User": nil, "Group": nil, "UMask": nil, "WorkingDirectory": nil,
		"PrivateTmp":            {"yes", "no", "true", "false"},
		"PrivateDevices":        {"yes", "no", "true", "false"},
		"ProtectHome":           {"yes", "no", "read-only"}, // "tmpfs" is 242
		"ProtectSystem":         {"yes", "no", "full"},      // "strict" is 232
		"NoNewPrivileges":       {"yes", "no", "true", "false"},
		"CapabilityBoundingSet": nil,
		"SuccessExitStatus":     nil, "RestartPreventExitStatus": nil,
	},
	"Install": {"WantedBy": nil, "Alias": nil},
}

// TestUnitKeysKnownToSystemd219 keeps the main unit loadable by CentOS 7's systemd: every
// key (and value) must be one 219 knows, and the header comment must name each key's
// version. Newer keys belong in sitelinkd.service.d/50-hardening.conf.
func TestUnitKeysKnownToSystemd219(t *testing.T) {
	keys, header := parseUnit(t, "sitelinkd.service")
	if len(keys) < 10 {
		t.Fatalf("only %d keys in sitelinkd.service", len(keys))
	}
	for _, k := range keys {
		known, ok := systemd219[k.section]
		if !ok {
			t.Errorf("sitelinkd.service:%d: section [%s] is not one of ours", k.line, k.section)
			continue
		}
		values, ok := known[k.key]
		switch {
		case !ok:
			t.Errorf("sitelinkd.service:%d: %s= is unknown to systemd 219 (CentOS 7): move it to the drop-in", k.line, k.key)
		case values != nil && !slices.Contains(values, k.value):
			t.Errorf("sitelinkd.service:%d: %s=%s: systemd 219 accepts only %v", k.line, k.key, k.value, values)
		}
		if k.section == "Service" && !strings.Contains(header, k.key+"=") {
			t.Errorf("sitelinkd.service:%d: the header comment does not say which systemd version %s= needs", k.line, k.key)
		}
	}
	// The drop-in holds only keys 219 lacks (or that would break there), never [Unit] ones.
	dropIn, _ := parseUnit(t, "sitelinkd.service.d/50-hardening.conf")
	for _, k := range dropIn {
		if k.section != "Service" {
			t.Errorf("50-hardening.conf:%d: [%s] in the hardening drop-in", k.line, k.section)
		}
	}
}

// TestUnitCommands checks the commands' shape: the config path comes from the
// environment with a default, the pre-start check and the cleanup are one-shot modes that
// need no running daemon, and reload is synchronous.
func TestUnitCommands(t *testing.T) {
	keys, _ := parseUnit(t, "sitelinkd.service")
	get := func(name string) []string {
		var vs []string
		for _, k := range keys {
			if k.key == name {
				vs = append(vs, k.value)
			}
		}
		return vs
	}
	want := map[string]string{
		"Environment":  "SITELINK_CONFIG=/etc/sitelink/sitelink.yaml",
		"ExecStartPre": "/usr/sbin/sitelinkd --check-config ${SITELINK_CONFIG}",
		"ExecStart":    "/usr/sbin/sitelinkd --config ${SITELINK_CONFIG} $SITELINKD_OPTS",
		"ExecReload":   "/usr/bin/sitelinkctl reload",
		"ExecStopPost": "-/usr/sbin/sitelinkd --cleanup --config ${SITELINK_CONFIG}",
	}
	for k, v := range want {
		if got := get(k); !slices.Contains(got, v) {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	// The default must come before the file that may override it.
	var envAt, fileAt int
	for _, k := range keys {
		switch k.key {
		case "Environment":
			envAt = k.line
		case "EnvironmentFile":
			fileAt = k.line
		}
	}
	if envAt == 0 || fileAt == 0 || envAt > fileAt {
		t.Errorf("Environment= (line %d) must precede EnvironmentFile= (line %d)", envAt, fileAt)
	}
}

// TestVerifyOnHost runs systemd-analyze verify on the unit and the drop-in in a scratch
// root (the host's own units copied for the dependencies, placeholder binaries for the
// commands): any message about our unit fails, also "Unknown key" warnings.
func TestVerifyOnHost(t *testing.T) {
	testenv.RequireTools(t, "systemd-analyze")
	root := t.TempDir()
	for _, f := range []struct{ src, dst string }{
		{"sitelinkd.service", "etc/systemd/system/sitelinkd.service"},
		{"sitelinkd.service.d/50-hardening.conf", "etc/systemd/system/sitelinkd.service.d/50-hardening.conf"},
	} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, f.dst)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, bin := range []string{"usr/sbin/sitelinkd", "usr/bin/sitelinkctl"} {
		p := filepath.Join(root, bin)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	units := "/usr/lib/systemd/system"
	if _, err := os.Stat(filepath.Join(units, "sysinit.target")); err != nil {
		units = "/lib/systemd/system"
	}
	if err := os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", units, filepath.Join(root, "usr/lib/systemd/system")).CombinedOutput(); err != nil {
		t.Fatalf("copy the host's units: %v\n%s", err, out)
	}
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", "--root="+root, "sitelinkd.service").CombinedOutput()
	if err != nil || strings.Contains(string(out), "sitelinkd") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The check must be able to fail: an unknown key is reported.
	unit := filepath.Join(root, "etc/systemd/system/sitelinkd.service")
	b, _ := os.ReadFile(unit)
	if err := os.WriteFile(unit, append(b, "\n[Service]\nProtectKernelLogz=yes\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ = exec.Command("systemd-analyze", "verify", "--man=no", "--root="+root, "sitelinkd.service").CombinedOutput()
	if !strings.Contains(string(out), "ProtectKernelLogz") {
		t.Fatalf("systemd-analyze verify did not report an unknown key:\n%s", out)
	}
}
