package nsenter

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/sitelink/sitelink/testenv"
)

func netnsID(t *testing.T) string {
	t.Helper()
	id, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestDo(t *testing.T) {
	testenv.Require(t, "ip")
	env := testenv.New(t)
	h, err := env.Host("ns")
	if err != nil {
		t.Fatal(err)
	}
	outside := netnsID(t)
	var inside string
	if err := Do(h.NSPath(), func() error {
		id, err := os.Readlink("/proc/thread-self/ns/net")
		inside = id
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside == outside || inside == "" {
		t.Fatalf("inside %q outside %q", inside, outside)
	}
	if netnsID(t) != outside {
		t.Fatal("caller's namespace changed")
	}
	// A sysctl read inside sees the namespace's value.
	if err := Do(h.NSPath(), func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/conf/lo/forwarding")
		if err != nil {
			return err
		}
		if string(b) != "0\n" {
			return fmt.Errorf("lo forwarding %q in a fresh namespace", b)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sentinel := errors.New("x")
	if err := Do(h.NSPath(), func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("error not passed through: %v", err)
	}
	if err := Do("/nonexistent/ns", func() error { return nil }); err == nil {
		t.Fatal("missing namespace accepted")
	}
	ran := false
	if err := Do("", func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatal("empty path does not run fn")
	}
}
