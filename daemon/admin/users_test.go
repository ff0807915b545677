package admin_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sitelink/sitelink/daemon/admin"
	"github.com/sitelink/sitelink/daemon/admin/admintest"
)

// TestMain doubles as the client helper of TestAuthorizationRealUsers: run as another
// user with SLTEST_ADMIN_HELPER=1, the test binary makes one request and prints
// "STATUS BODY" or "error: …".
func TestMain(m *testing.M) {
	if os.Getenv("SLTEST_ADMIN_HELPER") == "1" {
		helperRequest()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helperRequest() {
	c := unixClient(os.Getenv("SLTEST_SOCKET"))
	c.Timeout = 20 * time.Second
	var body io.Reader
	if b := os.Getenv("SLTEST_BODY"); b != "" {
		body = strings.NewReader(b)
	}
	req, err := http.NewRequest(os.Getenv("SLTEST_METHOD"), "http://sitelinkd"+os.Getenv("SLTEST_PATH"), body)
	if err != nil {
		fmt.Printf("error: %v\n", err)
		return
	}
	resp, err := c.Do(req)
	if err != nil {
		fmt.Printf("error: %v\n", err)
		return
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d %s", resp.StatusCode, data)
}

func groupName(t *testing.T, gid int) string {
	t.Helper()
	g, err := user.LookupGroupId(strconv.Itoa(gid))
	if err != nil {
		t.Fatalf("group %d: %v", gid, err)
	}
	return g.Name
}

// requestAs makes one request as user (runuser, which sets the user's groups) and
// returns the status ("403") or "error: …" and the body.
func requestAs(t *testing.T, bin, userName, sock, method, path, body string) (string, string) {
	t.Helper()
	cmd := exec.Command("runuser", "-u", userName, "--", bin)
	cmd.Env = append(os.Environ(), "SLTEST_ADMIN_HELPER=1", "SLTEST_SOCKET="+sock,
		"SLTEST_METHOD="+method, "SLTEST_PATH="+path, "SLTEST_BODY="+body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("runuser -u %s: %v: %s", userName, err, out)
	}
	status, rest, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	return status, rest
}

func TestAuthorizationRealUsers(t *testing.T) {
	admintest.RequireRoot(t, "groupadd", "groupdel", "useradd", "userdel", "runuser")
	id := strconv.Itoa(os.Getpid())
	var (
		adminGroup  = "sltest-adm-" + id
		readerGroup = "sltest-rd-" + id
		otherGroup  = "sltest-oth-" + id
		outsider    = "sltest-out-" + id
		reader      = "sltest-rdu-" + id
		adminUser   = "sltest-admu-" + id  // admin by primary group
		adminUser2  = "sltest-adm2u-" + id // admin by supplementary group
	)
	admintest.AddGroup(t, otherGroup)
	admintest.AddUser(t, outsider, otherGroup)
	dir, bin := admintest.ReachableCopy(t)

	b := newBackend()
	// The groups do not exist yet when the daemon starts; the socket is open to all so
	// that outsiders reach the SO_PEERCRED check.
	srv := admintest.Serve(t, b, admin.Options{
		SocketPath: filepath.Join(dir, "open.sock"), SocketMode: 0o666,
		AdminGroup: adminGroup, ReaderGroup: readerGroup,
	})
	sock := srv.SocketPath()
	status, body := requestAs(t, bin, outsider, sock, "GET", "/v1/status", "")
	if status != "403" || !strings.Contains(body, readerGroup) {
		t.Fatalf("outsider GET /v1/status: %s %s", status, body)
	}

	admintest.AddGroup(t, adminGroup)
	admintest.AddGroup(t, readerGroup)
	admintest.AddUser(t, reader, otherGroup, readerGroup)
	admintest.AddUser(t, adminUser, adminGroup)
	admintest.AddUser(t, adminUser2, otherGroup, adminGroup)

	// Groups created after the start are noticed once the short group cache expires.
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, body = requestAs(t, bin, reader, sock, "GET", "/v1/status", "")
		if status == "200" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reader still refused 15s after the groups were created: %s %s", status, body)
		}
		time.Sleep(200 * time.Millisecond)
	}

	type check struct {
		user, method, path, body, want string
	}
	checks := []check{
		{outsider, "GET", "/v1/status", "", "403"},
		{outsider, "GET", "/v1/plugins", "", "403"},
		{outsider, "POST", "/v1/plugins/tunnel/actions/peers", "", "403"},
		{outsider, "POST", "/v1/reload", "", "403"},
		{reader, "GET", "/v1/status", "", "200"},
		{reader, "GET", "/v1/plugins/tunnel", "", "200"},
		{reader, "POST", "/v1/config/check", "a: 1", "200"},
		{reader, "POST", "/v1/plugins/tunnel/actions/peers", "", "200"},
		{reader, "POST", "/v1/reload", "", "403"},
		{reader, "POST", "/v1/plugins/snat/restart", "", "403"},
		{reader, "POST", "/v1/plugins/tunnel/actions/switch", `{"args":{"peer":"gw-b"}}`, "403"},
		{adminUser, "GET", "/v1/status", "", "200"},
		{adminUser, "POST", "/v1/plugins/tunnel/actions/peers", "", "200"},
		{adminUser, "POST", "/v1/reload", "", "200"},
		{adminUser, "POST", "/v1/plugins/snat/restart", "", "200"},
		{adminUser, "POST", "/v1/plugins/tunnel/actions/switch", `{"args":{"peer":"gw-b"}}`, "200"},
		{adminUser2, "POST", "/v1/reload", "", "200"},
		{adminUser2, "POST", "/v1/plugins/snat/disable", "", "200"},
	}
	for _, c := range checks {
		status, body := requestAs(t, bin, c.user, sock, c.method, c.path, c.body)
		if status != c.want {
			t.Errorf("%s: %s %s = %s %s, want %s", c.user, c.method, c.path, status, body, c.want)
		}
		if c.want == "403" && c.method == "POST" && c.user == reader && !strings.Contains(body, adminGroup) {
			t.Errorf("%s: %s %s: 403 message %q does not name group %s", c.user, c.method, c.path, body, adminGroup)
		}
	}
	// Only the admins' changes reached the backend, audited with their UIDs.
	wantCalls := "check 4 bytes|invoke tunnel peers|invoke tunnel peers|reload|restart snat|invoke tunnel switch|reload|disable snat"
	if got := strings.Join(b.Calls(), "|"); got != wantCalls {
		t.Errorf("backend calls = %q, want %q", got, wantCalls)
	}
	adminU, err := user.Lookup(adminUser)
	if err != nil {
		t.Fatal(err)
	}
	audits := b.Audits()
	if len(audits) != 5 || strconv.Itoa(audits[0].Who.UID) != adminU.Uid || audits[0].What != "reload" || audits[0].Who.Access != admin.AccessAdmin {
		t.Errorf("audits = %+v", audits)
	}

	// The default socket mode: 0660 and owned by the reader group, so outsiders cannot
	// even connect, readers and root can.
	srv2 := admintest.Serve(t, b, admin.Options{
		SocketPath: filepath.Join(dir, "default.sock"), AdminGroup: adminGroup, ReaderGroup: readerGroup,
	})
	fi, err := os.Stat(srv2.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	if gid := int(fi.Sys().(*syscall.Stat_t).Gid); fi.Mode().Perm() != 0o660 || groupName(t, gid) != readerGroup {
		t.Errorf("default socket: mode %v group %s, want 0660 %s", fi.Mode().Perm(), groupName(t, gid), readerGroup)
	}
	status, body = requestAs(t, bin, outsider, srv2.SocketPath(), "GET", "/v1/status", "")
	if status != "error:" || !strings.Contains(body, "permission denied") {
		t.Errorf("outsider on a 0660 socket: %s %s, want a permission error", status, body)
	}
	if status, body = requestAs(t, bin, reader, srv2.SocketPath(), "GET", "/v1/status", ""); status != "200" {
		t.Errorf("reader on the 0660 socket: %s %s", status, body)
	}
	if r := do(t, unixClient(srv2.SocketPath()), "GET", "/v1/status", ""); r.status != 200 {
		t.Errorf("root on the 0660 socket: %d", r.status)
	}
}
