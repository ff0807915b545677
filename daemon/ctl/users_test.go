package ctl_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sitelink/sitelink/daemon/admin"
	"github.com/sitelink/sitelink/daemon/admin/admintest"
	"github.com/sitelink/sitelink/daemon/ctl"
)

// TestMain doubles as sitelinkctl for TestPermissionDeniedRealUser: with
// SLTEST_CTL_HELPER=1 the test binary runs ctl.Main with the JSON arguments in
// SLTEST_CTL_ARGS and exits with its code.
func TestMain(m *testing.M) {
	if os.Getenv("SLTEST_CTL_HELPER") == "1" {
		var args []string
		if err := json.Unmarshal([]byte(os.Getenv("SLTEST_CTL_ARGS")), &args); err != nil {
			os.Exit(100)
		}
		os.Exit(ctl.Main(context.Background(), args, build, ctl.StdIO()))
	}
	os.Exit(m.Run())
}

// ctlAs runs sitelinkctl as user against sock.
func ctlAs(t *testing.T, bin, user, sock string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	argsJSON, _ := json.Marshal(args)
	cmd := exec.Command("runuser", "-u", user, "--", bin)
	cmd.Env = append(os.Environ(), "SLTEST_CTL_HELPER=1", "SLTEST_CTL_ARGS="+string(argsJSON), ctl.EnvSocket+"="+sock)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("runuser: %v", err)
	}
	return out.String(), errOut.String(), code
}

func TestPermissionDeniedRealUser(t *testing.T) {
	admintest.RequireRoot(t, "groupadd", "groupdel", "useradd", "userdel", "runuser")
	id := strconv.Itoa(os.Getpid())
	group, userName := "sltest-cg-"+id, "sltest-cu-"+id
	admintest.AddGroup(t, group)
	admintest.AddUser(t, userName, group)
	dir, bin := admintest.ReachableCopy(t)

	// The socket's mode keeps the user out (no socket group exists: 0600).
	closed := admintest.Serve(t, newBackend(), admin.Options{SocketPath: filepath.Join(dir, "closed.sock")})
	_, errOut, code := ctlAs(t, bin, userName, closed.SocketPath(), "status")
	want := "sitelinkctl: permission denied on " + closed.SocketPath() + ": you need to be root or in group sitelink-admin/sitelink\n"
	if code != ctl.ExitDenied || errOut != want {
		t.Errorf("socket not accessible: exit %d, stderr %q, want 4 %q", code, errOut, want)
	}

	// The socket is open, the daemon refuses (SO_PEERCRED).
	open := admintest.Serve(t, newBackend(), admin.Options{SocketPath: filepath.Join(dir, "open.sock"), SocketMode: 0o666,
		AdminGroup: "sltest-noadm-" + id, ReaderGroup: "sltest-nord-" + id})
	_, errOut, code = ctlAs(t, bin, userName, open.SocketPath(), "status")
	if code != ctl.ExitDenied || !strings.Contains(errOut, "be root or a member of group sltest-nord-"+id) {
		t.Errorf("daemon refuses: exit %d, stderr %q", code, errOut)
	}

	// The user's group is the reader group: reading works, changing does not.
	reader := admintest.Serve(t, newBackend(), admin.Options{SocketPath: filepath.Join(dir, "reader.sock"),
		AdminGroup: "sltest-noadm-" + id, ReaderGroup: group})
	out, errOut, code := ctlAs(t, bin, userName, reader.SocketPath(), "status")
	if code != 0 || !strings.Contains(out, "● sitelinkd 1.2.3") {
		t.Errorf("reader status: exit %d %q %q", code, out, errOut)
	}
	if _, errOut, code = ctlAs(t, bin, userName, reader.SocketPath(), "tunnel", "switch", "gw-b"); code != ctl.ExitDenied || !strings.Contains(errOut, "sltest-noadm-"+id) {
		t.Errorf("reader switch: exit %d %q", code, errOut)
	}
}
