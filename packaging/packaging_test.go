package packaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sitelink/sitelink/testenv"
)

func TestMain(m *testing.M) {
	// Copied or linked under this name, the test binary is the old-kernel wrapper
	// (oldkernel_test.go): it runs a command under a Linux 3.10 system call set.
	if filepath.Base(os.Args[0]) == oldKernelName {
		os.Exit(oldKernelMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// testVersion is the RPM version the tests build; releases 1 and 2 make an upgrade.
const testVersion = "0.1.0"

// fastPayload keeps the test builds quick (about 2 s instead of a minute of xz per
// package). It is still one of the compressors rpm 4.11 reads; the release payload
// (the spec's default, xz) is checked by `make rpm` with check-rpm.sh and by
// TestSpecPayloadDefault.
const fastPayload = "w1.gzdio"

// builds are the RPMs the tests make from the binaries in bin/.
type builds struct {
	repo    string   // the repository's root
	bin     string   // bin/ of make build
	dir     string   // where the RPMs are
	plugins []string // names of the built-in plugins in bin/plugins
	config2 []byte   // the default config shipped in release 2 (changed from release 1)
}

// path is the RPM for EL version el and release rel.
func (b *builds) path(el int, rel string) string {
	return filepath.Join(b.dir, fmt.Sprintf("sitelink-%s-%s.el%d.x86_64.rpm", testVersion, rel, el))
}

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "rpm", "sitelink.spec")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return root
}

// buildRPMs builds release 1 for el7, el8 and el9 and release 2 (with a changed default
// config) for el7 and el9, from bin/ (made by `make build` when missing).
func buildRPMs(t *testing.T) *builds {
	t.Helper()
	root := repoRoot(t)
	b := &builds{repo: root, bin: filepath.Join(root, "bin"), dir: t.TempDir()}
	if _, err := os.Stat(filepath.Join(b.bin, "sitelinkd")); err != nil {
		t.Logf("bin/sitelinkd missing: running make build")
		run(t, root, nil, "make", "build")
	}
	ents, err := os.ReadDir(filepath.Join(b.bin, "plugins"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b.plugins = append(b.plugins, e.Name())
	}
	if len(b.plugins) == 0 {
		t.Fatal("no plugins in bin/plugins")
	}
	example, err := os.ReadFile(filepath.Join(root, "daemon/config/testdata/sitelink.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b.config2 = append(slices.Clip(example), "\n# Changed in release 2 (packaging test).\n"...)
	cfg2 := filepath.Join(t.TempDir(), "sitelink.yaml")
	if err := os.WriteFile(cfg2, b.config2, 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "packaging/build-rpm.sh")
	start := time.Now()
	run(t, root, nil, script, "-b", b.bin, "-o", b.dir, "-v", testVersion, "-r", "1", "-e", "7 8 9", "-z", fastPayload)
	run(t, root, nil, script, "-b", b.bin, "-o", b.dir, "-v", testVersion, "-r", "2", "-e", "7 9", "-z", fastPayload, "-c", cfg2)
	t.Logf("built 5 RPMs in %v", time.Since(start).Round(time.Millisecond))
	return b
}

// TestPackage builds the RPMs once and checks them: queries against the spec, rpm 4.11
// compatibility, rpmlint, static binaries; install, upgrade and erase into a Debian
// rootfs; and a booted container that runs the installed unit and install.sh.
func TestPackage(t *testing.T) {
	testenv.Require(t, "rpmbuild", "rpm", "file")
	b := buildRPMs(t)

	t.Run("queries", func(t *testing.T) {
		t.Parallel()
		for _, el := range []int{7, 8, 9} {
			checkQueries(t, b, el, "1")
		}
	})
	t.Run("rpm411", func(t *testing.T) {
		t.Parallel()
		for _, el := range []int{7, 8, 9} {
			checkRPM411(t, b.path(el, "1"))
		}
		out := run(t, b.repo, nil, filepath.Join(b.repo, "packaging/check-rpm.sh"), b.path(7, "1"), b.path(9, "2"))
		if strings.Count(out, "readable by rpm 4.11") != 2 {
			t.Errorf("check-rpm.sh: %s", out)
		}
	})
	t.Run("rpmlint", func(t *testing.T) {
		testenv.RequireTools(t, "rpmlint")
		t.Parallel()
		checkRPMLint(t, b)
	})
	t.Run("static", func(t *testing.T) {
		t.Parallel()
		checkStatic(t, b)
	})
	t.Run("oldkernel", func(t *testing.T) {
		t.Parallel()
		checkOldKernelHost(t, b)
	})
	t.Run("rootfs", func(t *testing.T) {
		testenv.Require(t, "debootstrap")
		t.Parallel()
		checkInstallUpgradeErase(t, b)
	})
	for _, el := range []int{9, 7} {
		t.Run(fmt.Sprintf("boot-el%d", el), func(t *testing.T) {
			testenv.Require(t, "debootstrap", "systemd-nspawn", "nsenter", "dpkg", "ldd", "createrepo_c")
			t.Parallel()
			checkBoot(t, b, el)
		})
	}
}

// run runs name with args in dir (extra environment env) and returns its combined
// output; a failure fails the test with the output.
func run(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(dir, env, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func runErr(dir string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(out.String(), 4000))
	}
	return out.String(), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// rpmQuery runs rpm -qp with args on file and returns the output's non-empty lines.
func rpmQuery(t testing.TB, file string, args ...string) []string {
	t.Helper()
	out := run(t, "", nil, "rpm", append(append([]string{"-qp"}, args...), file)...)
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimRight(l, " "); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// wantFile is what the spec means for one packaged path.
type wantFile struct {
	path        string
	dir         bool
	mode        os.FileMode // permission bits
	user, group string
	config      bool // %config(noreplace)
}

// expectedFiles is the package's file list for EL version el: every path that must be
// there with its type, mode and owner, and the patterns that other paths may match
// (plugins, man pages, docs), which are root:root 0644 files or 0755 directories.
func expectedFiles(b *builds, el int) (exact []wantFile, patterns []*regexp.Regexp) {
	f := func(p string, mode os.FileMode) wantFile {
		return wantFile{path: p, mode: mode, user: "root", group: "root"}
	}
	d := func(p string) wantFile { return wantFile{path: p, dir: true, mode: 0o755, user: "root", group: "root"} }
	exact = []wantFile{
		d("/etc/sitelink"),
		d("/etc/sitelink/plugins.d"),
		{path: "/etc/sitelink/sitelink.yaml", mode: 0o640, user: "root", group: "sitelink", config: true},
		{path: "/etc/sysconfig/sitelinkd", mode: 0o644, user: "root", group: "root", config: true},
		f("/usr/sbin/sitelinkd", 0o755),
		f("/usr/bin/sitelinkctl", 0o755),
		d("/usr/libexec/sitelink"),
		d("/usr/libexec/sitelink/plugins"),
		f("/usr/lib/systemd/system/sitelinkd.service", 0o644),
		f("/usr/lib/tmpfiles.d/sitelink.conf", 0o644),
		{path: "/var/lib/sitelink", dir: true, mode: 0o750, user: "root", group: "sitelink"},
		{path: "/var/log/sitelink", dir: true, mode: 0o750, user: "root", group: "sitelink"},
		{path: "/var/log/sitelink/cache", dir: true, mode: 0o750, user: "sitelink", group: "sitelink"},
		f("/usr/share/bash-completion/completions/sitelinkctl", 0o644),
		f("/usr/share/man/man8/sitelinkd.8.gz", 0o644),
		f("/usr/share/man/man8/sitelinkctl.8.gz", 0o644),
		f("/usr/share/man/man8/sitelinkctl-status.8.gz", 0o644),
		d("/usr/share/doc/sitelink"),
		f("/usr/share/doc/sitelink/README.md", 0o644),
		f("/usr/share/doc/sitelink/config.md", 0o644),
		f("/usr/share/doc/sitelink/cli.md", 0o644),
		f("/usr/share/licenses/sitelink/LICENSE", 0o644),
	}
	for _, p := range b.plugins {
		exact = append(exact, f("/usr/libexec/sitelink/plugins/"+p, 0o755))
	}
	if el >= 8 {
		exact = append(exact,
			d("/usr/lib/systemd/system/sitelinkd.service.d"),
			f("/usr/lib/systemd/system/sitelinkd.service.d/50-hardening.conf", 0o644),
			f("/usr/share/dbus-1/system.d/org.sitelink.Sitelink1.conf", 0o644))
	} else {
		w := f("/etc/dbus-1/system.d/org.sitelink.Sitelink1.conf", 0o644)
		w.config = true
		exact = append(exact, w)
	}
	patterns = []*regexp.Regexp{
		regexp.MustCompile(`^/usr/share/man/man8/sitelinkctl-[a-z-]+\.8\.gz$`),
		regexp.MustCompile(`^/usr/share/doc/sitelink/[A-Za-z0-9_.-]+\.md$`),
		regexp.MustCompile(`^/usr/share/doc/sitelink/plugins$`),
		regexp.MustCompile(`^/usr/share/doc/sitelink/plugins/[A-Za-z0-9_.-]+\.md$`),
	}
	return exact, patterns
}

// checkQueries compares rpm -qp --requires/--provides/--scripts/-l with the spec.
func checkQueries(t *testing.T, b *builds, el int, rel string) {
	t.Helper()
	file := b.path(el, rel)
	evr := fmt.Sprintf("%s-%s.el%d", testVersion, rel, el)

	// Requires, without rpmlib() (checked by checkRPM411).
	var req []string
	for _, r := range rpmQuery(t, file, "--requires") {
		if !strings.HasPrefix(r, "rpmlib(") && !slices.Contains(req, r) {
			req = append(req, r)
		}
	}
	slices.Sort(req)
	wantReq := []string{"/bin/sh", "config(sitelink) = " + evr, "shadow-utils", "systemd"}
	if !slices.Equal(req, wantReq) {
		t.Errorf("el%d requires %q, want %q", el, req, wantReq)
	}
	// The scriptlets' requirements are where the spec puts them.
	for _, want := range []string{"pre: shadow-utils", "post: systemd", "preun: systemd", "postun: systemd"} {
		kind, name, _ := strings.Cut(want, ": ")
		out := rpmQuery(t, file, "--qf", `[%{REQUIRENAME} %{REQUIREFLAGS:deptype}\n]`)
		if !slices.ContainsFunc(out, func(l string) bool { return strings.HasPrefix(l, name+" ") && strings.Contains(l, kind) }) {
			t.Errorf("el%d: no Requires(%s): %s in %q", el, kind, name, out)
		}
	}

	// The built-in plugins are one file under several names (hard links in the payload).
	inodes := map[string]bool{}
	for _, l := range rpmQuery(t, file, "--qf", `[%{FILEINODES} %{FILENAMES}\n]`) {
		ino, name, _ := strings.Cut(l, " ")
		if strings.HasPrefix(name, "/usr/libexec/sitelink/plugins/") {
			inodes[ino] = true
		}
	}
	if len(inodes) != 1 {
		t.Errorf("el%d: the built-in plugins are %d files, want one binary hard-linked under each name", el, len(inodes))
	}

	prov := rpmQuery(t, file, "--provides")
	slices.Sort(prov)
	wantProv := []string{"config(sitelink) = " + evr, "sitelink = " + evr, "sitelink(x86-64) = " + evr}
	if !slices.Equal(prov, wantProv) {
		t.Errorf("el%d provides %q, want %q", el, prov, wantProv)
	}

	scripts := strings.Join(rpmQuery(t, file, "--scripts"), "\n")
	for _, want := range []string{
		"getent group sitelink >/dev/null || groupadd -r sitelink",
		"getent group sitelink-admin >/dev/null || groupadd -r sitelink-admin",
		"useradd -r -g sitelink -d /var/lib/sitelink -s /sbin/nologin",
		// %systemd_post: preset on first install only.
		"if [ $1 -eq 1 ] ; then",
		"systemctl preset sitelinkd.service",
		// %systemd_preun: disable and stop on erase only.
		"systemctl --no-reload disable sitelinkd.service",
		"systemctl stop sitelinkd.service",
		// %systemd_postun_with_restart: restart on upgrade.
		"systemctl daemon-reload",
		"if [ $1 -ge 1 ] ; then",
		"systemctl try-restart sitelinkd.service",
		"systemd-tmpfiles --create /usr/lib/tmpfiles.d/sitelink.conf",
		`if [ "$1" -eq 0 ] && [ "${SITELINK_PURGE:-0}" = 1 ]; then`,
	} {
		if !strings.Contains(scripts, want) {
			t.Errorf("el%d scriptlets lack %q:\n%s", el, want, scripts)
		}
	}
	// Debian's rpm leaves unknown macros as text: none may be left.
	if m := regexp.MustCompile(`%\{?[A-Za-z_]+`).FindString(scripts); m != "" {
		t.Errorf("el%d scriptlets contain the unexpanded macro %q:\n%s", el, m, scripts)
	}

	// Files: the list is exactly what the spec means; modes and owners in the header.
	exact, patterns := expectedFiles(b, el)
	lines := rpmQuery(t, file, "--qf", `[%{FILENAMES}\t%{FILEMODES:perms}\t%{FILEUSERNAME}\t%{FILEGROUPNAME}\t%{FILEFLAGS:fflags}\n]`)
	got := map[string][]string{}
	for _, l := range lines {
		f := strings.Split(l, "\t")
		if len(f) != 5 {
			t.Fatalf("el%d: bad query line %q", el, l)
		}
		got[f[0]] = f[1:]
	}
	for _, w := range exact {
		g, ok := got[w.path]
		if !ok {
			t.Errorf("el%d: %s is not in the package", el, w.path)
			continue
		}
		delete(got, w.path)
		if perms := permString(w.dir, w.mode); g[0] != perms || g[1] != w.user || g[2] != w.group {
			t.Errorf("el%d: %s is %s %s:%s, want %s %s:%s", el, w.path, g[0], g[1], g[2], perms, w.user, w.group)
		}
		if isConfig := strings.Contains(g[3], "c") && strings.Contains(g[3], "n"); isConfig != w.config {
			t.Errorf("el%d: %s has file flags %q; want %%config(noreplace) %v", el, w.path, g[3], w.config)
		}
	}
	for p, g := range got {
		if !slices.ContainsFunc(patterns, func(re *regexp.Regexp) bool { return re.MatchString(p) }) {
			t.Errorf("el%d: unexpected path %s in the package", el, p)
			continue
		}
		if g[0] != "-rw-r--r--" && g[0] != "drwxr-xr-x" || g[1] != "root" || g[2] != "root" {
			t.Errorf("el%d: %s is %s %s:%s, want root:root 0644 or a 0755 directory", el, p, g[0], g[1], g[2])
		}
	}
}

// permString renders a mode like rpm's :perms format.
func permString(dir bool, mode os.FileMode) string {
	s := os.FileMode(mode).Perm().String() // "-rwxr-xr-x"
	if dir {
		s = "d" + s[1:]
	}
	return s
}

// rpm411 are the rpmlib() features rpm 4.11.3 (CentOS 7) provides, with their versions
// (lib/rpmds.c, rpmlibProvides).
var rpm411 = map[string]string{
	"rpmlib(VersionedDependencies)":    "3.0.3-1",
	"rpmlib(CompressedFileNames)":      "3.0.4-1",
	"rpmlib(PayloadIsBzip2)":           "3.0.5-1",
	"rpmlib(PayloadIsXz)":              "5.2-1",
	"rpmlib(PayloadIsLzma)":            "4.4.2-1",
	"rpmlib(PayloadFilesHavePrefix)":   "4.0-1",
	"rpmlib(ExplicitPackageProvide)":   "4.0-1",
	"rpmlib(HeaderLoadSortsTags)":      "4.0.1-1",
	"rpmlib(ScriptletInterpreterArgs)": "4.0.3-1",
	"rpmlib(PartialHardlinkSets)":      "4.0.4-1",
	"rpmlib(ConcurrentAccess)":         "4.1-1",
	"rpmlib(BuiltinLuaScripts)":        "4.2.2-1",
	"rpmlib(FileDigests)":              "4.6.0-1",
	"rpmlib(FileCaps)":                 "4.6.1-1",
	"rpmlib(ScriptletExpansion)":       "4.9.0-1",
	"rpmlib(TildeInVersions)":          "4.10.0-1",
}

// rpm411Problems lists what in file rpm 4.11 could not read or install.
func rpm411Problems(t testing.TB, file string) []string {
	t.Helper()
	var problems []string
	for _, r := range rpmQuery(t, file, "--requires") {
		name, ver, _ := strings.Cut(r, " <= ")
		if !strings.HasPrefix(name, "rpmlib(") {
			continue
		}
		have, ok := rpm411[strings.TrimSpace(name)]
		switch {
		case !ok:
			problems = append(problems, "requires "+r+", which rpm 4.11 lacks")
		case ver != "" && vercmp(ver, have) > 0:
			problems = append(problems, "requires "+r+", rpm 4.11 has "+have)
		}
	}
	info := rpmQuery(t, file, "--qf", `%{PAYLOADCOMPRESSOR} %{FILEDIGESTALGO}\n`)
	if len(info) != 1 {
		return append(problems, fmt.Sprintf("payload query: %q", info))
	}
	comp, algo, _ := strings.Cut(info[0], " ")
	if comp != "gzip" && comp != "xz" {
		problems = append(problems, "payload compressor "+comp+", want gzip or xz")
	}
	if algo != "8" {
		problems = append(problems, "file digest algorithm "+algo+", want 8 (SHA-256)")
	}
	return problems
}

func checkRPM411(t *testing.T, file string) {
	t.Helper()
	for _, p := range rpm411Problems(t, file) {
		t.Errorf("%s: %s", filepath.Base(file), p)
	}
}

// vercmp compares dotted versions with an optional -release (digits only), like rpm for
// the rpmlib() versions above.
func vercmp(a, b string) int {
	split := func(s string) []int {
		var n []int
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' }) {
			v := 0
			fmt.Sscanf(f, "%d", &v)
			n = append(n, v)
		}
		return n
	}
	x, y := split(a), split(b)
	for i := 0; i < max(len(x), len(y)); i++ {
		var p, q int
		if i < len(x) {
			p = x[i]
		}
		if i < len(y) {
			q = y[i]
		}
		if p != q {
			if p < q {
				return -1
			}
			return 1
		}
	}
	return 0
}

// TestRPM411CheckFails makes sure the compatibility checks catch what rpm 4.11 cannot
// read: a zstd payload and a rich dependency, in a tiny package built here.
func TestRPM411CheckFails(t *testing.T) {
	testenv.RequireTools(t, "rpmbuild", "rpm")
	root := repoRoot(t)
	dir := t.TempDir()
	spec := filepath.Join(dir, "bad.spec")
	err := os.WriteFile(spec, []byte(`Name: sltest-bad
Version: 1
Release: 1
Summary: a package rpm 4.11 cannot install
License: Apache-2.0
BuildArch: noarch
Requires: (systemd or initscripts)
%global _binary_payload w3.zstdio
%description
Test package.
%install
mkdir -p %{buildroot}/etc
echo x > %{buildroot}/etc/sltest-bad
%files
/etc/sltest-bad
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	run(t, dir, nil, "rpmbuild", "-bb", "--quiet", "--define", "_topdir "+dir, "--define", "_rpmdir "+dir,
		"--define", "_build_name_fmt bad.rpm", spec)
	bad := filepath.Join(dir, "bad.rpm")
	problems := strings.Join(rpm411Problems(t, bad), "\n")
	for _, want := range []string{"rpmlib(RichDependencies)", "rpmlib(PayloadIsZstd)", "payload compressor zstd"} {
		if !strings.Contains(problems, want) {
			t.Errorf("problems %q lack %q", problems, want)
		}
	}
	out, err := runErr(root, nil, filepath.Join(root, "packaging/check-rpm.sh"), bad)
	if err == nil || !strings.Contains(out, "rpmlib(RichDependencies)") || !strings.Contains(out, "payload compressor zstd") {
		t.Errorf("check-rpm.sh accepted a zstd package with a rich dependency: %v\n%s", err, out)
	}
}

// TestSpecPayloadDefault checks the release payload the spec asks for when no test
// override is given: xz (or gzip), readable by rpm 4.11.
func TestSpecPayloadDefault(t *testing.T) {
	testenv.RequireTools(t, "rpmspec")
	root := repoRoot(t)
	// The spec must parse with the shipped macros.
	out := run(t, root, nil, "rpmspec", "--load", filepath.Join(root, "rpm/macros.sitelink"),
		"--define", "sl_version 0.1.0", "--define", "sl_release 1", "--define", "rhel 7", "--define", "dist .el7",
		"-q", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}\n", filepath.Join(root, "rpm/sitelink.spec"))
	if strings.TrimSpace(out) != "sitelink-0.1.0-1.el7" {
		t.Fatalf("rpmspec -q: %q", out)
	}
	spec, err := os.ReadFile(filepath.Join(root, "rpm/sitelink.spec"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^%\{!\?sl_payload:%global sl_payload (w\d+\.(\w+)dio)\}$`).FindSubmatch(spec)
	if m == nil || (string(m[2]) != "xz" && string(m[2]) != "gz") {
		t.Fatalf("spec's default payload: %q, want wN.xzdio or wN.gzdio", m)
	}
	if !regexp.MustCompile(`(?m)^%global _binary_payload %\{sl_payload\}$`).Match(spec) ||
		!regexp.MustCompile(`(?m)^%global _binary_filedigest_algorithm 8$`).Match(spec) {
		t.Error("spec does not set _binary_payload from sl_payload and SHA-256 file digests")
	}
}

// checkRPMLint runs rpmlint with packaging/rpmlint.toml: no errors. Without the filters,
// every error rpmlint reports must be covered by one of the documented filters, and the
// main ones must still be needed.
func checkRPMLint(t *testing.T, b *builds) {
	t.Helper()
	files := []string{b.path(7, "1"), b.path(8, "1"), b.path(9, "1")}
	cfg := filepath.Join(b.repo, "packaging/rpmlint.toml")
	out, err := runErr(b.repo, nil, "rpmlint", append([]string{"-c", cfg}, files...)...)
	if err != nil || !regexp.MustCompile(`\b0 errors\b`).MatchString(out) {
		t.Errorf("rpmlint: %v\n%s", err, out)
	}
	// Without the filters, exactly the documented errors appear.
	bare := filepath.Join(t.TempDir(), "bare.toml")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte("Filters = ["))
	if i < 0 {
		t.Fatal("rpmlint.toml has no Filters")
	}
	if err := os.WriteFile(bare, data[:i], 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ = runErr(b.repo, nil, "rpmlint", "-c", bare, b.path(7, "1"))
	var filters []string
	for _, m := range regexp.MustCompile(`(?m)^\s+"([^"]+)",`).FindAllSubmatch(data[i:], -1) {
		filters = append(filters, string(m[1]))
	}
	for _, l := range strings.Split(out, "\n") {
		if !strings.Contains(l, ": E: ") {
			continue
		}
		if !slices.ContainsFunc(filters, func(f string) bool { return regexp.MustCompile(f).MatchString(l) }) {
			t.Errorf("rpmlint error not covered by a documented filter: %s", l)
		}
	}
	for _, f := range []string{"statically-linked-binary", "non-readable /etc/sitelink/sitelink.yaml 640", "no-signature"} {
		if !strings.Contains(out, f) {
			t.Errorf("filter %q matched nothing; remove it from rpmlint.toml\n%s", f, out)
		}
	}
}

// checkStatic runs file(1) on the binaries: static, x86-64.
func checkStatic(t *testing.T, b *builds) {
	t.Helper()
	bins := []string{filepath.Join(b.bin, "sitelinkd"), filepath.Join(b.bin, "sitelinkctl")}
	for _, p := range b.plugins {
		bins = append(bins, filepath.Join(b.bin, "plugins", p))
	}
	for _, bin := range bins {
		out := run(t, "", nil, "file", "-b", bin)
		if !strings.Contains(out, "statically linked") || !strings.Contains(out, "x86-64") {
			t.Errorf("%s: file says %q, want a statically linked x86-64 executable", bin, strings.TrimSpace(out))
		}
	}
}

// errExit is the exit code of a failed command, or -1.
func errExit(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
