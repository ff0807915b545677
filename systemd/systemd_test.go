package systemd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/testenv"
)

// TestUnderSystemd boots a Debian 12 container with the unit installed and checks, in
// order, against one boot: systemd-analyze verify; systemctl start returning only after
// READY; the STATUS= line; the plugins' user, capabilities and state directory under the
// unit's hardening; the journal's fields; the admin socket's permissions; D-Bus on the
// system bus with the shipped policy; reload (good and bad); the watchdog killing and
// restarting a hung daemon; stop leaving no process and no kernel state; and a start
// without /etc/sysconfig/sitelinkd. It logs the RSS and watchdog figures (BenchmarkWatchdog
// measures them over several hangs) and asserts no speed or memory figure.
func TestUnderSystemd(t *testing.T) {
	s := bootSite(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("verify", func(t *testing.T) {
		s := s.on(t)
		out, code := s.exitCode(ctx, "systemd-analyze", "verify", "--man=no", unitName)
		var ours []string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "sitelinkd") {
				ours = append(ours, l)
			}
		}
		if code != 0 || len(ours) > 0 {
			t.Fatalf("systemd-analyze verify %s: exit %d, about our unit: %q\n%s", unitName, code, ours, out)
		}
	})

	t.Run("start waits for READY", func(t *testing.T) {
		s := s.on(t)
		took := s.start(ctx)
		// When systemctl start returns, the unit is active and every plugin already runs:
		// active came with READY=1, which waits for slow's Start.
		if out, _ := s.exitCode(ctx, "systemctl", "is-active", unitName); strings.TrimSpace(out) != "active" {
			t.Fatalf("after systemctl start the unit is %q, want active", out)
		}
		st, err := s.status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ok, list := allRunning(st); !ok || len(st.Plugins) != 2 {
			t.Fatalf("right after systemctl start the plugins are %s; want slow and kern running (active before READY?)", list)
		}
		if took < startDelay {
			t.Fatalf("systemctl start took %v, less than slow's start delay %v: it did not wait for READY", took, startDelay)
		}
		if !s.linkExists(ctx, vethName) {
			t.Fatalf("kern did not create %s (does it have CAP_NET_ADMIN under the unit's hardening?)", vethName)
		}
		t.Logf("systemctl start took %v (slow's Start takes %v)", took.Round(time.Millisecond), startDelay)
	})

	t.Run("status line", func(t *testing.T) {
		s := s.on(t)
		out, _ := s.exitCode(ctx, "systemctl", "status", "--no-pager", unitName)
		if !strings.Contains(out, `Status: "2/2 plugins running`) {
			t.Fatalf("systemctl status has no STATUS= line \"2/2 plugins running…\":\n%s", out)
		}
	})

	t.Run("plugins under hardening", func(t *testing.T) {
		s := s.on(t)
		var st struct {
			UID              int      `json:"uid"`
			CapEff           []string `json:"cap_eff"`
			StateDirWritable bool     `json:"state_dir_writable"`
		}
		out := s.exec(ctx, "sitelinkctl", "--json", "kern", "state")
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("kern state %q: %v", out, err)
		}
		uid := strings.TrimSpace(s.exec(ctx, "id", "-u", "sitelink"))
		if strconv.Itoa(st.UID) != uid || !slices.Equal(st.CapEff, []string{"CAP_NET_ADMIN"}) || !st.StateDirWritable {
			dirs, _ := s.m.Exec(ctx, "ls", "-ld", "/var/lib/sitelink", "/var/lib/sitelink/plugins", "/var/lib/sitelink/plugins/kern")
			t.Fatalf("kern runs as uid %d with %v, state dir writable %v; want uid %s (sitelink), [CAP_NET_ADMIN], writable\n%s",
				st.UID, st.CapEff, st.StateDirWritable, uid, dirs)
		}
		pid := s.mainPID(ctx)
		if status := s.exec(ctx, "cat", fmt.Sprintf("/proc/%d/status", pid)); !strings.Contains(status, "NoNewPrivs:\t1") {
			t.Fatalf("sitelinkd runs without no_new_privs (NoNewPrivileges=yes):\n%s", status)
		}
	})

	t.Run("journal fields", func(t *testing.T) {
		s := s.on(t)
		entries := s.journal(ctx)
		checks := []struct {
			what  string
			match func(entry) bool
		}{
			{"EVENT=ready from sitelinkd", func(e entry) bool { return e["EVENT"] == "ready" }},
			{"PLUGIN=slow EVENT=plugin_up", func(e entry) bool { return e["PLUGIN"] == "slow" && e["EVENT"] == "plugin_up" }},
			{"the plugin's own field (PLUGIN=kern STATE_DIR=)", func(e entry) bool {
				return e["PLUGIN"] == "kern" && strings.Contains(e["STATE_DIR"], "kern")
			}},
		}
		for _, c := range checks {
			if _, ok := find(entries, time.Time{}, c.match); !ok {
				t.Errorf("journalctl -u %s -o json has no entry with %s (%d entries)", unitName, c.what, len(entries))
			}
		}
	})

	t.Run("admin socket", func(t *testing.T) {
		s := s.on(t)
		if out, code := s.exitCode(ctx, "runuser", "-u", "nobody", "--", "sitelinkctl", "status"); code != 4 {
			t.Fatalf("sitelinkctl status as nobody: exit %d, want 4 (permission denied):\n%s", code, out)
		}
		if out, code := s.exitCode(ctx, "runuser", "-u", adminUser, "--", "sitelinkctl", "status"); code != 0 {
			t.Fatalf("sitelinkctl status as %s (sitelink-admin, sitelink): exit %d:\n%s", adminUser, code, out)
		}
	})

	t.Run("dbus", func(t *testing.T) {
		s := s.on(t)
		call := []string{"busctl", "--system", "--json=short", "call", busName, busPath, busName, "GetStatus"}
		var out string
		err := testenv.WaitFor(ctx, "sitelinkd on the system bus", func() (bool, error) {
			var err error
			out, err = s.m.Exec(ctx, call...)
			return err == nil, err
		})
		if err != nil {
			t.Fatal(err)
		}
		var reply struct {
			Type string   `json:"type"`
			Data []string `json:"data"`
		}
		var st api.Status
		if err := json.Unmarshal([]byte(out), &reply); err != nil || len(reply.Data) != 1 {
			t.Fatalf("GetStatus reply %q: %v", out, err)
		}
		if err := json.Unmarshal([]byte(reply.Data[0]), &st); err != nil || st.PID != s.mainPID(ctx) || len(st.Plugins) != 2 {
			t.Fatalf("GetStatus = %+v (%v), want the daemon's status with 2 plugins", st, err)
		}
		var state struct{ Data string }
		out = s.exec(ctx, "busctl", "--system", "--json=short", "get-property", busName, busPath, busName, "State")
		if err := json.Unmarshal([]byte(out), &state); err != nil || state.Data != api.DaemonRunning {
			t.Fatalf("State property %q (%v), want running", out, err)
		}
		var plugins struct{ Data map[string]string }
		out = s.exec(ctx, "busctl", "--system", "--json=short", "get-property", busName, busPath, busName, "Plugins")
		if err := json.Unmarshal([]byte(out), &plugins); err != nil || plugins.Data["slow"] != api.PluginRunning || plugins.Data["kern"] != api.PluginRunning {
			t.Fatalf("Plugins property %q (%v), want slow and kern running", out, err)
		}
		if out, code := s.exitCode(ctx, "runuser", "-u", adminUser, "--", "busctl", "--system", "call", busName, busPath, busName, "GetStatus"); code != 0 {
			t.Fatalf("GetStatus as %s (group sitelink-admin): exit %d: %s", adminUser, code, out)
		}
		// Others: AccessDenied for methods and properties, introspection allowed.
		for _, args := range [][]string{
			{"dbus-send", "--system", "--print-reply", "--dest=" + busName, busPath, busName + ".GetStatus"},
			{"dbus-send", "--system", "--print-reply", "--dest=" + busName, busPath, "org.freedesktop.DBus.Properties.Get",
				"string:" + busName, "string:State"},
		} {
			out, code := s.exitCode(ctx, append([]string{"runuser", "-u", "nobody", "--"}, args...)...)
			if code == 0 || !strings.Contains(out, "org.freedesktop.DBus.Error.AccessDenied") {
				t.Fatalf("%s as nobody: exit %d, want AccessDenied:\n%s", args[len(args)-1], code, out)
			}
		}
		if out, code := s.exitCode(ctx, "runuser", "-u", "nobody", "--", "busctl", "--system", "introspect", "--xml-interface", busName, busPath); code != 0 || !strings.Contains(out, "GetStatus") {
			t.Fatalf("introspection as nobody: exit %d:\n%s", code, out)
		}
	})

	t.Run("rss", func(t *testing.T) {
		s := s.on(t)
		// Metrics are on (admin socket and TCP): scrape them once, as Prometheus would.
		out := s.exec(ctx, "bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/9101; printf 'GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n' >&3; cat <&3`)
		if !strings.Contains(out, "200 OK") || !strings.Contains(out, "plugin=\"slow\"") {
			t.Fatalf("metrics over TCP:\n%.2000s", out)
		}
		pid := s.mainPID(ctx)
		m := s.procMemory(ctx, pid)
		t.Logf("figure: sitelinkd (D-Bus and metrics on, 2 plugins): VmRSS %d KiB (RssAnon %d, RssFile %d), VmHWM %d KiB",
			m["VmRSS"], m["RssAnon"], m["RssFile"], m["VmHWM"])
	})

	t.Run("reload", func(t *testing.T) {
		s := s.on(t)
		pid := s.mainPID(ctx)
		greeting := func() string {
			t.Helper()
			var r struct{ Greeting string }
			out := s.exec(ctx, "sitelinkctl", "--json", "slow", "echo")
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("slow echo %q: %v", out, err)
			}
			return r.Greeting
		}
		if g := greeting(); g != "first" {
			t.Fatalf("greeting before reload %q", g)
		}
		s.writeConfig("second", "")
		s.exec(ctx, "systemctl", "reload", unitName)
		// systemctl reload is synchronous (ExecReload=sitelinkctl reload): no waiting.
		if g := greeting(); g != "second" {
			t.Fatalf("after systemctl reload the greeting is %q, want second", g)
		}
		// A bad file: systemctl reload fails, the old config stays, the error is in status.
		s.writeConfig("third", "    colour: red\n")
		if out, code := s.exitCode(ctx, "systemctl", "reload", unitName); code == 0 {
			t.Fatalf("systemctl reload of a bad config succeeded:\n%s", out)
		}
		st, err := s.status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(st.ConfigError, "sitelink.yaml:") || !strings.Contains(st.ConfigError, "colour") {
			t.Fatalf("config error in status %q, want the position and the key", st.ConfigError)
		}
		if g := greeting(); g != "second" {
			t.Fatalf("after a rejected reload the greeting is %q, want second", g)
		}
		if out, _ := s.exitCode(ctx, "systemctl", "is-active", unitName); strings.TrimSpace(out) != "active" || s.mainPID(ctx) != pid {
			t.Fatalf("after reloads the unit is %q with MainPID %d, want active, %d", out, s.mainPID(ctx), pid)
		}
		// Back to a good file (a restart checks it with ExecStartPre).
		s.writeConfig("second", "")
		s.exec(ctx, "systemctl", "reload", unitName)
	})

	t.Run("watchdog", func(t *testing.T) {
		s := s.on(t)
		before := s.sitelinkProcesses(ctx)
		detect, newPID, active := s.hang(ctx)
		t.Logf("figure: WatchdogSec=%v: hang → \"Watchdog timeout\" %v, → new MainPID %v, → active %v",
			watchdogInterval, detect.Round(time.Millisecond), newPID.Round(time.Millisecond), active.Round(time.Millisecond))
		st, err := s.status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ok, list := allRunning(st); !ok {
			t.Fatalf("after the watchdog restart the plugins are %s", list)
		}
		// None of the hung daemon's processes (daemon, plugins) is left.
		after := s.sitelinkProcesses(ctx)
		for _, p := range before {
			if slices.Contains(after, p) {
				t.Errorf("process %q of the killed daemon survived the restart (now: %q)", p, after)
			}
		}
		if !s.linkExists(ctx, vethName) {
			t.Fatalf("after the restart kern did not create %s again", vethName)
		}
	})

	t.Run("stop", func(t *testing.T) {
		s := s.on(t)
		since := time.Now()
		s.exec(ctx, "systemctl", "stop", unitName)
		if left := s.sitelinkProcesses(ctx); len(left) > 0 {
			t.Fatalf("after systemctl stop these processes remain: %q", left)
		}
		if s.linkExists(ctx, vethName) || s.linkExists(ctx, vethName+"-p") {
			t.Fatalf("after systemctl stop the veth pair %s is still there", vethName)
		}
		// Removed by ExecStopPost=sitelinkd --cleanup (kern's Stop leaves it).
		if _, ok := find(s.journal(ctx), since, func(e entry) bool {
			return strings.Contains(e["MESSAGE"], "kern: removed 1 item(s): link "+vethName)
		}); !ok {
			t.Fatalf("the journal has no line of sitelinkd --cleanup removing %s", vethName)
		}
	})

	t.Run("start without sysconfig", func(t *testing.T) {
		s := s.on(t)
		s.exec(ctx, "mv", "/etc/sysconfig/sitelinkd", "/etc/sysconfig/sitelinkd.off")
		s.start(ctx)
		if out, _ := s.exitCode(ctx, "systemctl", "is-active", unitName); strings.TrimSpace(out) != "active" {
			t.Fatalf("without /etc/sysconfig/sitelinkd the unit is %q, want active", out)
		}
		s.exec(ctx, "systemctl", "stop", unitName)
	})
}

// BenchmarkWatchdog measures, under systemd with WatchdogSec=2s, how long systemd takes to
// notice a hung sitelinkd (from the daemon's hang to "Watchdog timeout"), to start a new
// one (new MainPID; includes RestartSec=2 and ExecStopPost cleanup) and to have it active
// again (includes ExecStartPre and slow's 1.5 s start), and sitelinkd's VmRSS after
// start. Each iteration is one hang (about 7 s); the container boots once per run.
//
//	go test -count=1 -run '^$' -bench Watchdog -benchtime 5x ./systemd/
func BenchmarkWatchdog(b *testing.B) {
	s := bootSite(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s.start(ctx)
	rss := s.procMemory(ctx, s.mainPID(ctx))["VmRSS"]
	var detect, newPID, active, detectMax time.Duration
	detectMin := time.Hour
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Each watchdog restart counts against StartLimitBurst: forget them.
		s.exec(ctx, "systemctl", "reset-failed", unitName)
		d, p, a := s.hang(ctx)
		detect += d
		newPID += p
		active += a
		detectMax, detectMin = max(detectMax, d), min(detectMin, d)
	}
	n := float64(b.N)
	b.ReportMetric(float64(rss), "rss-KiB")
	b.ReportMetric(float64(detect.Milliseconds())/n, "detect-ms")
	b.ReportMetric(float64(detectMin.Milliseconds()), "detect-min-ms")
	b.ReportMetric(float64(detectMax.Milliseconds()), "detect-max-ms")
	b.ReportMetric(float64(newPID.Milliseconds())/n, "newpid-ms")
	b.ReportMetric(float64(active.Milliseconds())/n, "active-ms")
}
