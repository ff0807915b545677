package sysctl

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fakeTree makes a /proc/sys-like tree with forwarding files set to 0.
func fakeTree(t *testing.T, ifaces []string, force bool) string {
	t.Helper()
	root := t.TempDir()
	write := func(rel, v string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("net/ipv6/conf/all/forwarding", "0")
	for _, i := range ifaces {
		write("net/ipv4/conf/"+i+"/forwarding", "0")
		write("net/ipv6/conf/"+i+"/forwarding", "0")
		if force {
			write("net/ipv6/conf/"+i+"/force_forwarding", "0")
		}
	}
	return root
}

func read(t *testing.T, root, rel string) string {
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func keys(cs []Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Key+" "+c.From+"->"+c.To)
	}
	return out
}

func TestEnablePerInterface(t *testing.T) {
	root := fakeTree(t, []string{"wg0", "eth1", "eth1.100"}, true)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := &Forwarding{Root: root, Now: func() time.Time { return now }}
	res, err := f.Enable([]string{"wg0", "eth1.100", "wg9"}, true, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"net.ipv4.conf.wg0.forwarding 0->1", "net.ipv6.conf.wg0.force_forwarding 0->1",
		"net.ipv4.conf.eth1/100.forwarding 0->1", "net.ipv6.conf.eth1/100.force_forwarding 0->1"}
	if got := keys(res.Changed); !reflect.DeepEqual(got, want) {
		t.Fatalf("changed %v\nwant %v", got, want)
	}
	if res.Changed[0].Time != now || !reflect.DeepEqual(res.Missing, []string{"wg9"}) {
		t.Fatalf("result %+v", res)
	}
	if read(t, root, "net/ipv4/conf/eth1/forwarding") != "0" || read(t, root, "net/ipv6/conf/all/forwarding") != "0" {
		t.Fatal("touched an interface or switch it was not asked for")
	}
	// Idempotent: nothing left to change.
	res, err = f.Enable([]string{"wg0", "eth1.100"}, true, true)
	if err != nil || len(res.Changed) != 0 {
		t.Fatalf("second Enable: %+v %v", res, err)
	}
}

func TestEnableIPv6WithoutForceForwarding(t *testing.T) {
	root := fakeTree(t, []string{"wg0", "eth1"}, false)
	f := &Forwarding{Root: root}
	res, err := f.Enable([]string{"wg0", "eth1"}, false, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(res.Changed); !reflect.DeepEqual(got, []string{"net.ipv6.conf.all.forwarding 0->1"}) {
		t.Fatalf("changed %v", got)
	}
	if read(t, root, "net/ipv4/conf/wg0/forwarding") != "0" {
		t.Fatal("IPv4 changed though not asked")
	}
}

func TestEnableErrors(t *testing.T) {
	root := fakeTree(t, []string{"wg0"}, false)
	if err := os.Chmod(filepath.Join(root, "net/ipv4/conf/wg0/forwarding"), 0o444); err != nil {
		t.Fatal(err)
	}
	f := &Forwarding{Root: root}
	if _, err := f.Enable([]string{"../x", "wg0"}, true, false); err == nil || !strings.Contains(err.Error(), "invalid") {
		t.Fatalf("bad name: %v", err)
	}
	if os.Geteuid() != 0 { // root writes read-only files anyway
		if _, err := f.Enable([]string{"wg0"}, true, false); err == nil || !strings.Contains(err.Error(), "net.ipv4.conf.wg0.forwarding") {
			t.Fatalf("read-only sysctl: %v", err)
		}
	}
	ran := false
	f.Do = func(fn func() error) error { ran = true; return fn() }
	if _, err := f.Enable(nil, true, true); err != nil || !ran {
		t.Fatalf("Do not used: %v", err)
	}
}
