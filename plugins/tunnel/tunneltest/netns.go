// Package tunneltest holds what the tunnel plugin's tests and benchmark share: running a
// test binary inside a throwaway network namespace, building the pinned stock
// wireguard-go used as the gateway peer, driving that peer with `wg`, and starting the
// real plugin process the way sitelinkd does (go-plugin handshake, unprivileged user
// with only the declared capabilities) inside a testenv host.
package tunneltest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sitelink/sitelink/testenv"
)

// envInNS is set in the environment of a test binary re-executed inside a namespace.
const envInNS = "SITELINK_TUNNEL_TEST_NETNS"

// RunInNamespace runs a package's tests inside a fresh network namespace (a testenv
// host) by re-executing the test binary there, so that everything the package creates
// (TUN devices, routes, nftables tables, UDP sockets from any goroutine) lives and dies
// with the namespace. Without root it runs the tests as they are (tests that need the
// namespace skip, or fail when CI=true). Use it as TestMain's body:
//
//	func TestMain(m *testing.M) { os.Exit(tunneltest.RunInNamespace(m)) }
//
// With -short (make test-unit) nothing is re-executed and the namespace tests skip.
func RunInNamespace(m *testing.M) int {
	if !flag.Parsed() {
		flag.Parse()
	}
	if InNamespace() || os.Geteuid() != 0 || testing.Short() {
		return m.Run()
	}
	code, err := reexec()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tunneltest:", err)
		return 2
	}
	return code
}

func reexec() (int, error) {
	env, err := testenv.NewEnv("tunneltest-" + filepath.Base(os.Args[0]))
	if err != nil {
		return 0, err
	}
	defer env.Close()
	h, err := env.Host("t")
	if err != nil {
		return 0, err
	}
	cmd := h.Command(context.Background(), os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), envInNS+"="+h.NSName())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("run tests in namespace %s: %w", h.NSName(), err)
	}
	return 0, nil
}

// InNamespace reports whether this test binary runs inside RunInNamespace's namespace.
func InNamespace() bool { return os.Getenv(envInNS) != "" }

// RequireNamespace skips a test that must run inside RunInNamespace's namespace (it
// needs root), or fails it when CI=true.
func RequireNamespace(t testing.TB) {
	t.Helper()
	if InNamespace() {
		return
	}
	if testing.Short() {
		t.Skip("needs its own network namespace: skipped with -short")
	}
	msg := "needs root: the test runs inside its own network namespace"
	if testenv.InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
