package packaging

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sitelink/sitelink/testenv"
)

// rpmDB is the rpm database inside a rootfs: Debian's rpm keeps it in $HOME/.rpmdb, so
// the host's `rpm --root` and the container's rpm (HOME=/root) share this one.
const rpmDB = "/root/.rpmdb"

// rootRPM runs the host's rpm on the rootfs root, scriptlets running chrooted in it.
func rootRPM(t testing.TB, root string, env []string, args ...string) string {
	t.Helper()
	return run(t, "", env, "rpm", append([]string{"--root", root, "--dbpath", rpmDB}, args...)...)
}

// idNames maps numeric ids to names from a rootfs's /etc/passwd or /etc/group, and
// returns the entries by name.
func idNames(t testing.TB, file string) (byID map[uint32]string, byName map[string][]string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	byID, byName = map[uint32]string{}, map[string][]string{}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Split(l, ":")
		if len(f) < 3 {
			continue
		}
		id, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		byID[uint32(id)] = f[0]
		byName[f[0]] = f
	}
	return byID, byName
}

// checkAccounts checks the user and groups %pre creates.
func checkAccounts(t *testing.T, root string) {
	t.Helper()
	_, users := idNames(t, filepath.Join(root, "etc/passwd"))
	_, groups := idNames(t, filepath.Join(root, "etc/group"))
	u, ok := users["sitelink"]
	if !ok {
		t.Fatal("no user sitelink")
	}
	uid, _ := strconv.Atoi(u[2])
	if uid == 0 || uid >= 1000 || u[5] != "/var/lib/sitelink" || u[6] != "/sbin/nologin" {
		t.Errorf("user sitelink is %q, want a system user (uid 1-999), home /var/lib/sitelink, shell /sbin/nologin", u)
	}
	for _, name := range []string{"sitelink", "sitelink-admin"} {
		g, ok := groups[name]
		if !ok {
			t.Errorf("no group %s", name)
			continue
		}
		gid, _ := strconv.Atoi(g[2])
		if gid == 0 || gid >= 1000 {
			t.Errorf("group %s has gid %d, want a system group", name, gid)
		}
		if name == "sitelink" && g[2] != u[3] {
			t.Errorf("user sitelink's primary group is %s, want sitelink (%s)", u[3], g[2])
		}
	}
}

// checkInstalled compares every path of the installed package (from the rpm database)
// with the files in root: type, permissions, owner and group by name in root's own
// passwd and group files.
func checkInstalled(t *testing.T, root string) {
	t.Helper()
	users, _ := idNames(t, filepath.Join(root, "etc/passwd"))
	groups, _ := idNames(t, filepath.Join(root, "etc/group"))
	out := rootRPM(t, root, nil, "-q", "--qf", `[%{FILENAMES}\t%{FILEMODES:perms}\t%{FILEUSERNAME}\t%{FILEGROUPNAME}\n]`, "sitelink")
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 4 {
			t.Fatalf("bad query line %q", l)
		}
		fi, err := os.Lstat(filepath.Join(root, f[0]))
		if err != nil {
			t.Errorf("installed path: %v", err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		perms := permString(fi.IsDir(), fi.Mode())
		if perms != f[1] || users[st.Uid] != f[2] || groups[st.Gid] != f[3] {
			t.Errorf("%s is %s %s:%s on disk, the package says %s %s:%s", f[0], perms, users[st.Uid], groups[st.Gid], f[1], f[2], f[3])
		}
		n++
	}
	if n < 20 {
		t.Errorf("only %d installed paths", n)
	}
}

func exists(root, p string) bool {
	_, err := os.Lstat(filepath.Join(root, p))
	return err == nil
}

func writeFile(t testing.TB, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

// checkInstallUpgradeErase installs the el7 package into a Debian rootfs with rpm --root
// (scriptlets run chrooted), upgrades it with a changed default config, erases it, and
// erases once more with SITELINK_PURGE=1.
func checkInstallUpgradeErase(t *testing.T, b *builds) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	root, err := testenv.CopyRootfs(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const (
		config  = "/etc/sitelink/sitelink.yaml"
		wants   = "/etc/systemd/system/multi-user.target.wants/sitelinkd.service"
		state   = "/var/lib/sitelink/plugins/tunnel/keys"
		cached  = "/var/log/sitelink/cache/00000000000000000001.ndjson"
		evrRel1 = testVersion + "-1.el7"
		evrRel2 = testVersion + "-2.el7"
	)

	// Install.
	rootRPM(t, root, nil, "-ivh", "--nodeps", b.path(7, "1"))
	if got := strings.TrimSpace(rootRPM(t, root, nil, "-q", "--qf", "%{VERSION}-%{RELEASE}", "sitelink")); got != evrRel1 {
		t.Fatalf("installed %q, want %s", got, evrRel1)
	}
	checkAccounts(t, root)
	checkInstalled(t, root)
	// %post: systemctl preset (Debian's default preset enables) and tmpfiles.
	if !exists(root, wants) {
		t.Errorf("%%post did not enable sitelinkd per preset: no %s", wants)
	}
	if exists(root, "/usr/lib/systemd/system/sitelinkd.service.d") {
		t.Error("el7 package installed the hardening drop-in (needs systemd >= 232)")
	}

	// The operator edits the config; plugins leave state and cache.
	edited := append(readFile(t, filepath.Join(root, config)), "# edited by the operator\n"...)
	writeFile(t, filepath.Join(root, config), edited, 0o640)
	writeFile(t, filepath.Join(root, state), []byte("state\n"), 0o600)
	writeFile(t, filepath.Join(root, cached), []byte("{}\n"), 0o640)

	// Upgrade: release 2 ships a different default config.
	rootRPM(t, root, nil, "-Uvh", "--nodeps", b.path(7, "2"))
	if got := strings.TrimSpace(rootRPM(t, root, nil, "-q", "--qf", "%{VERSION}-%{RELEASE}", "sitelink")); got != evrRel2 {
		t.Fatalf("after upgrade %q, want %s", got, evrRel2)
	}
	if got := readFile(t, filepath.Join(root, config)); !bytes.Equal(got, edited) {
		t.Errorf("upgrade replaced the edited config:\n%s", tail(string(got), 300))
	}
	if got := readFile(t, filepath.Join(root, config+".rpmnew")); !bytes.Equal(got, b.config2) {
		t.Errorf("%s.rpmnew is not release 2's default config", config)
	}
	for _, p := range []string{state, cached} {
		if !exists(root, p) {
			t.Errorf("upgrade lost %s", p)
		}
	}
	checkAccounts(t, root)
	checkInstalled(t, root)
	if !exists(root, wants) {
		t.Error("upgrade disabled sitelinkd")
	}

	// Erase: unit and binaries go; state, cache, accounts and the edited config stay.
	rootRPM(t, root, nil, "-e", "--nodeps", "sitelink")
	for _, p := range []string{"/usr/lib/systemd/system/sitelinkd.service", "/usr/sbin/sitelinkd", "/usr/bin/sitelinkctl",
		"/usr/libexec/sitelink", wants, "/usr/lib/tmpfiles.d/sitelink.conf", "/etc/dbus-1/system.d/org.sitelink.Sitelink1.conf"} {
		if exists(root, p) {
			t.Errorf("erase left %s", p)
		}
	}
	for _, p := range []string{state, cached, config + ".rpmsave"} {
		if !exists(root, p) {
			t.Errorf("erase removed %s", p)
		}
	}
	checkAccounts(t, root)

	// Erase with SITELINK_PURGE=1 removes state and cache.
	rootRPM(t, root, nil, "-ivh", "--nodeps", b.path(7, "1"))
	if !exists(root, state) {
		t.Error("reinstall lost the state")
	}
	rootRPM(t, root, []string{"SITELINK_PURGE=1"}, "-e", "--nodeps", "sitelink")
	for _, p := range []string{"/var/lib/sitelink", "/var/log/sitelink"} {
		if exists(root, p) {
			t.Errorf("erase with SITELINK_PURGE=1 left %s", p)
		}
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Clip(data)
}

// copyRPMTool copies the host's rpm (Debian 12, like the rootfs) with its libraries into
// root, for install.sh's no-yum path inside the container.
func copyRPMTool(t testing.TB, root string) {
	t.Helper()
	const script = `set -e
R=$1
files=$(dpkg -L rpm rpm-common librpm9 librpmio9 | sort -u)
for f in $files; do
  if [ -d "$f" ] && [ ! -L "$f" ]; then continue; fi
  [ -e "$R$f" ] || [ -L "$R$f" ] || { mkdir -p "$R${f%/*}" && cp -a "$f" "$R$f"; }
done
for f in $files; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  [ "$(head -c 4 "$f" | tail -c 3)" = ELF ] || continue
  ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  [ -e "$R$lib" ] || { mkdir -p "$R${lib%/*}" && cp -L "$lib" "$R$lib"; }
done
chroot "$R" rpm --version`
	out := run(t, "", nil, "bash", "-c", script, "copy-rpm", root)
	if !strings.Contains(out, "RPM version") {
		t.Fatalf("rpm in the rootfs: %s", out)
	}
}

// machineRun runs a shell command in the container and returns its output and exit code.
func machineRun(ctx context.Context, m *testenv.Machine, cmd string) (string, int) {
	out, err := m.Exec(ctx, "env", "HOME=/root", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "bash", "-c", cmd)
	if err != nil {
		return out, errExit(err)
	}
	return out, 0
}

// must runs cmd in the container and fails the test when it fails.
func must(t *testing.T, ctx context.Context, m *testenv.Machine, cmd string) string {
	t.Helper()
	out, code := machineRun(ctx, m, cmd)
	if code != 0 {
		t.Fatalf("in the container: %s: exit %d\n%s", cmd, code, tail(out, 3000))
	}
	return out
}

// waitActive waits until sitelinkd is active (Type=notify: READY=1 was sent) and
// sitelinkctl status answers.
func waitActive(t *testing.T, m *testenv.Machine, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := testenv.WaitFor(ctx, what, func() (bool, error) {
		out, _ := machineRun(ctx, m, "systemctl is-active sitelinkd")
		if s := strings.TrimSpace(out); s != "active" {
			return false, fmt.Errorf("sitelinkd is %s", s)
		}
		if out, code := machineRun(ctx, m, "sitelinkctl status"); code != 0 {
			return false, fmt.Errorf("sitelinkctl status: exit %d: %s", code, out)
		}
		return true, nil
	})
	if err != nil {
		logs, _ := machineRun(context.Background(), m, "systemctl status sitelinkd --no-pager -l; journalctl -u sitelinkd --no-pager -n 40 -o cat; sitelinkctl plugins show logcache")
		t.Fatalf("%v\n%s", err, tail(logs, 6000))
	}
}

// checkBoot boots a Debian rootfs with the package for EL version el installed (rpm
// --root): el9 is the realistic one (Debian 12 and EL9 both run systemd 252) with its
// hardening drop-in; el7 is CentOS 7's build without it. It checks the
// service from the installed unit, access to sitelinkctl, the D-Bus name, systemd-analyze
// verify, install.sh against a local repository (refusal without the override, upgrade
// to release 2, a second run, --config), the daemon under Linux 3.10's system calls, and
// install.sh --uninstall [--purge].
func checkBoot(t *testing.T, b *builds, el int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := testenv.CopyRootfs(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	copyRPMTool(t, root)
	rootRPM(t, root, nil, "-ivh", "--nodeps", b.path(el, "1"))

	// The local repository with release 2, served inside the container as file://.
	dist := t.TempDir()
	if err := os.Link(b.path(el, "2"), filepath.Join(dist, filepath.Base(b.path(el, "2")))); err != nil {
		t.Fatal(err)
	}
	run(t, b.repo, nil, filepath.Join(b.repo, "packaging/make-repo.sh"), "-d", dist,
		"-o", filepath.Join(root, "srv/sitelink-repo"), "-u", "file:///srv/sitelink-repo")
	// The old-kernel wrapper (this test binary).
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run(t, "", nil, "install", "-D", "-m", "0755", self, filepath.Join(root, "usr/local/sbin", oldKernelName))

	// %post enabled the unit (Debian's preset enables; EL's disables). Disable it for the
	// boot, which would otherwise wait for it, and start it explicitly once booted.
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/sitelinkd.service")
	if !exists(root, "/etc/systemd/system/multi-user.target.wants/sitelinkd.service") {
		t.Errorf("%%post did not enable sitelinkd per preset")
	}
	if err := os.Remove(wants); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}

	m := testenv.BootTest(t, root, fmt.Sprintf("sltest-pkg%d-%d", el, os.Getpid()))
	must(t, ctx, m, "systemctl start --no-block sitelinkd")
	waitActive(t, m, "sitelinkd from the installed unit")
	if out := must(t, ctx, m, "systemctl show -p FragmentPath -p DropInPaths sitelinkd"); !strings.Contains(out, "/sitelinkd.service") ||
		strings.Contains(out, "50-hardening.conf") != (el >= 8) {
		t.Errorf("the running unit is not the installed one with its drop-in:\n%s", out)
	}

	t.Run("tmpfiles", func(t *testing.T) {
		// Made at boot by systemd-tmpfiles from the packaged tmpfiles.d file.
		out := must(t, ctx, m, "stat -c '%n %a %U %G' /run/sitelink /run/wireguard")
		for _, want := range []string{"/run/sitelink 755 root root", "/run/wireguard 770 root sitelink"} {
			if !strings.Contains(out, want) {
				t.Errorf("want %q after boot, have:\n%s", want, out)
			}
		}
	})
	t.Run("access", func(t *testing.T) { checkAccess(t, ctx, m) })
	t.Run("dbus", func(t *testing.T) {
		out := must(t, ctx, m, "busctl --system --no-pager --no-legend list")
		if !strings.Contains(out, "org.sitelink.Sitelink1") {
			t.Errorf("org.sitelink.Sitelink1 is not on the system bus (policy not installed where dbus reads it?):\n%s", out)
		}
	})
	t.Run("verify", func(t *testing.T) {
		// --man=no: the minimal rootfs has no man(1); the man pages' presence is checked
		// in the file list.
		out, code := machineRun(ctx, m, "systemd-analyze verify --man=no /usr/lib/systemd/system/sitelinkd.service 2>&1")
		t.Logf("systemd-analyze verify: exit %d %s", code, out)
		if code != 0 || strings.Contains(out, "sitelinkd.service") {
			t.Errorf("systemd-analyze verify: exit %d\n%s", code, out)
		}
	})
	t.Run("install.sh", func(t *testing.T) { checkInstallScript(t, ctx, m, el) })
	t.Run("oldkernel", func(t *testing.T) { checkOldKernelService(t, ctx, m) })
	t.Run("uninstall", func(t *testing.T) { checkUninstall(t, ctx, m, el) })
}

// checkAccess runs sitelinkctl as root, as an administrator (groups sitelink-admin and
// sitelink, as docs/cli.md says), as a reader (sitelink) and as an outsider.
func checkAccess(t *testing.T, ctx context.Context, m *testenv.Machine) {
	must(t, ctx, m, "useradd -M -G sitelink-admin,sitelink sltest-admin; useradd -M -G sitelink sltest-reader; useradd -M sltest-outsider")
	cases := []struct {
		who, cmd string
		code     int
		want     string
	}{
		{"root", "sitelinkctl status", 0, "logcache"},
		{"root", "sitelinkctl reload", 0, ""},
		{"sltest-admin", "sitelinkctl status", 0, "logcache"},
		{"sltest-admin", "sitelinkctl reload", 0, ""},
		{"sltest-reader", "sitelinkctl status", 0, "logcache"},
		{"sltest-reader", "sitelinkctl reload", 4, "permission denied"},
		{"sltest-outsider", "sitelinkctl status", 4, "permission denied"},
	}
	for _, c := range cases {
		cmd := c.cmd
		if c.who != "root" {
			cmd = "runuser -u " + c.who + " -- " + c.cmd
		}
		out, code := machineRun(ctx, m, cmd+" 2>&1")
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("%s: %s: exit %d, want %d with %q:\n%s", c.who, c.cmd, code, c.code, c.want, out)
		}
	}
}

// checkInstallScript runs install.sh in the container against the local repository.
func checkInstallScript(t *testing.T, ctx context.Context, m *testenv.Machine, el int) {
	const script = "bash /srv/sitelink-repo/install.sh --repo file:///srv/sitelink-repo"
	// Debian is refused without the override.
	out, code := machineRun(ctx, m, script+" 2>&1")
	if code != 1 || !strings.Contains(out, "OS supported FAIL") || !strings.Contains(out, "Debian") {
		t.Errorf("install.sh on Debian without SITELINK_INSTALL_ANY_OS: exit %d\n%s", code, out)
	}
	dist := fmt.Sprintf(".el%d", el)
	override := fmt.Sprintf("SITELINK_INSTALL_ANY_OS=1 SITELINK_EL_VERSION=%d ", el)
	for i, want := range []string{
		"sitelink " + testVersion + "-1" + dist + " -> " + testVersion + "-2" + dist, // upgrade from the repository
		"sitelink " + testVersion + "-2" + dist + ", already installed",              // run twice: nothing to do
	} {
		out, code := machineRun(ctx, m, override+script+" 2>&1")
		t.Logf("install.sh run %d:\n%s", i+1, out)
		if code != 0 {
			t.Fatalf("install.sh run %d: exit %d\n%s", i+1, code, out)
		}
		for _, line := range []string{"package installed OK", "service online OK"} {
			if !strings.Contains(out, line) {
				t.Errorf("install.sh run %d: no %q line:\n%s", i+1, line, out)
			}
		}
		if !strings.Contains(out, want) || strings.Contains(out, "FAIL") {
			t.Errorf("install.sh run %d: want %q and no FAIL:\n%s", i+1, want, out)
		}
	}
	if out := must(t, ctx, m, "rpm -q sitelink"); strings.TrimSpace(out) != "sitelink-"+testVersion+"-2"+dist+".x86_64" {
		t.Errorf("after install.sh: %q", out)
	}
	waitActive(t, m, "sitelinkd after install.sh")

	// --config: a bad file is refused and changes nothing; a good one is written
	// (root:sitelink 0640, the old one backed up) and the service restarted with it.
	must(t, ctx, m, "cp /etc/sitelink/sitelink.yaml /root/good.yaml && echo '# from install.sh --config' >> /root/good.yaml && "+
		"printf 'daemon:\n  no_such_key: 1\n' > /root/bad.yaml && md5sum /etc/sitelink/sitelink.yaml > /root/before.md5")
	out, code = machineRun(ctx, m, override+script+" --config /root/bad.yaml 2>&1")
	if code != 1 || !strings.Contains(out, "config written FAIL") || !strings.Contains(out, "no_such_key") {
		t.Errorf("install.sh --config bad.yaml: exit %d\n%s", code, out)
	}
	must(t, ctx, m, "md5sum -c --quiet /root/before.md5")
	out, code = machineRun(ctx, m, override+script+" --config /root/good.yaml 2>&1")
	if code != 0 || !strings.Contains(out, "config written OK") || !strings.Contains(out, "service online OK") {
		t.Errorf("install.sh --config good.yaml: exit %d\n%s", code, out)
	}
	out = must(t, ctx, m, "cmp /root/good.yaml /etc/sitelink/sitelink.yaml && stat -c '%a %U:%G' /etc/sitelink/sitelink.yaml && ls /etc/sitelink/")
	if !strings.Contains(out, "640 root:sitelink") || !strings.Contains(out, "sitelink.yaml.bak-") {
		t.Errorf("config written by install.sh:\n%s", out)
	}
	waitActive(t, m, "sitelinkd after install.sh --config")
}

// checkUninstall removes the package with install.sh --uninstall, first keeping the
// data, then (after a reinstall from the repository) purging it.
func checkUninstall(t *testing.T, ctx context.Context, m *testenv.Machine, el int) {
	const script = "SITELINK_INSTALL_ANY_OS=1 SITELINK_EL_VERSION=%d bash /srv/sitelink-repo/install.sh "
	out, code := machineRun(ctx, m, fmt.Sprintf(script, el)+"--uninstall 2>&1")
	if code != 0 || !strings.Contains(out, "package removed OK") {
		t.Fatalf("install.sh --uninstall: exit %d\n%s", code, out)
	}
	out, _ = machineRun(ctx, m, "rpm -q sitelink; systemctl is-active sitelinkd; ls /usr/lib/systemd/system/sitelinkd.service; ls -d /var/lib/sitelink /var/log/sitelink/cache")
	for _, want := range []string{"package sitelink is not installed", "inactive", "No such file", "/var/lib/sitelink", "/var/log/sitelink/cache"} {
		if strings.Contains(out, want) {
			continue
		}
		journal, _ := machineRun(ctx, m, "systemctl status --no-pager sitelinkd; journalctl --no-pager -n 60 -u sitelinkd")
		t.Errorf("after --uninstall: no %q in\n%s\nthe unit's status and journal:\n%s", want, out, journal)
	}
	must(t, ctx, m, fmt.Sprintf(script, el)+"--repo file:///srv/sitelink-repo")
	out, code = machineRun(ctx, m, fmt.Sprintf(script, el)+"--uninstall --purge 2>&1")
	if code != 0 || !strings.Contains(out, "package removed OK") || !strings.Contains(out, "data purged OK") {
		t.Fatalf("install.sh --uninstall --purge: exit %d\n%s", code, out)
	}
	if out, code := machineRun(ctx, m, "ls -d /var/lib/sitelink /var/log/sitelink 2>&1"); code == 0 {
		t.Errorf("--purge left the data:\n%s", out)
	}
}

// checkOldKernelService runs the installed sitelinkd and its plugins from the unit under
// Linux 3.10's system calls (the wrapper's seccomp filter, inherited by the plugins).
func checkOldKernelService(t *testing.T, ctx context.Context, m *testenv.Machine) {
	must(t, ctx, m, `mkdir -p /etc/systemd/system/sitelinkd.service.d && cat > /etc/systemd/system/sitelinkd.service.d/99-oldkernel.conf <<'EOF'
[Service]
ExecStart=
ExecStart=/usr/local/sbin/sitelink-oldkernel /usr/sbin/sitelinkd --config ${SITELINK_CONFIG} $SITELINKD_OPTS
EOF
systemctl daemon-reload && systemctl restart sitelinkd`)
	waitActive(t, m, "sitelinkd under Linux 3.10 system calls")
	out := must(t, ctx, m, `pid=$(systemctl show -p MainPID --value sitelinkd); grep ^Seccomp: /proc/$pid/status; `+
		`for c in $(pgrep -P $pid); do grep ^Seccomp: /proc/$c/status; done; sitelinkctl status`)
	t.Logf("under the filter:\n%s", out)
	if strings.Count(out, "Seccomp:\t2") < 2 {
		t.Errorf("sitelinkd and its plugin do not run under the filter:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^logcache\s+running\s`).MatchString(out) {
		t.Errorf("logcache is not running under Linux 3.10 system calls:\n%s", out)
	}
	must(t, ctx, m, "rm /etc/systemd/system/sitelinkd.service.d/99-oldkernel.conf && systemctl daemon-reload && systemctl restart sitelinkd")
}
