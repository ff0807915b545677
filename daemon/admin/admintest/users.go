package admintest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RequireRoot fails the test when CI=true and the process is not root or one of tools is
// missing from PATH, and skips it otherwise.
func RequireRoot(t testing.TB, tools ...string) {
	t.Helper()
	missing := ""
	if os.Geteuid() != 0 {
		missing = "root"
	}
	for _, tool := range tools {
		if missing == "" {
			if _, err := exec.LookPath(tool); err != nil {
				missing = tool
			}
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("this test needs %s (CI=true)", missing)
	}
	t.Skipf("this test needs %s", missing)
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// AddGroup creates a system group (groupadd) that is deleted when the test ends.
func AddGroup(t testing.TB, name string) {
	t.Helper()
	run(t, "groupadd", name)
	t.Cleanup(func() { _ = exec.Command("groupdel", name).Run() })
}

// AddUser creates a user without home directory or login shell whose primary group is
// primary and supplementary groups are extra; it is deleted when the test ends.
func AddUser(t testing.TB, name, primary string, extra ...string) {
	t.Helper()
	args := []string{"-M", "-N", "-s", "/usr/sbin/nologin", "-g", primary}
	if len(extra) > 0 {
		args = append(args, "-G", strings.Join(extra, ","))
	}
	run(t, "useradd", append(args, name)...)
	t.Cleanup(func() { _ = exec.Command("userdel", name).Run() })
}

// ReachableCopy copies the running test binary into a new temporary directory that
// every user can enter, so that it can be run as another user (runuser -u USER -- BIN).
// Sockets for such tests can go into dir too.
func ReachableCopy(t testing.TB) (dir, bin string) {
	t.Helper()
	dir = t.TempDir()
	tmp := filepath.Clean(os.TempDir())
	for d := dir; strings.HasPrefix(d, tmp+"/"); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, filepath.Base(exe))
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, bin
}
