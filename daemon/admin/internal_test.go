package admin

import (
	"errors"
	"os"
	"slices"
	"testing"
	"time"
)

func TestParseProcStatus(t *testing.T) {
	status := []byte("Name:\tsitelinkctl\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t4 27 1001 \nNgid:\t0\n")
	groups, err := parseProcStatus(status, 1000)
	if err != nil || !slices.Equal(groups, []int{4, 27, 1001}) {
		t.Errorf("groups = %v, %v", groups, err)
	}
	if _, err := parseProcStatus(status, 1001); err == nil {
		t.Error("a process of another user (PID reused) was accepted")
	}
	groups, err = parseProcStatus([]byte("Uid:\t0\t0\t0\t0\nGroups:\t\n"), 0)
	if err != nil || len(groups) != 0 {
		t.Errorf("no groups: %v, %v", groups, err)
	}
	for _, bad := range []string{"Uid:\t0\t0\n", "Groups:\t1\n", "Uid:\tx\tx\nGroups:\n", "Uid:\t0\t0\nGroups:\t1 z\n"} {
		if _, err := parseProcStatus([]byte(bad), 0); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestProcGroupsOfSelf(t *testing.T) {
	groups, err := procGroups(os.Getpid(), os.Geteuid())
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(groups)
	slices.Sort(want)
	if !slices.Equal(groups, want) {
		t.Errorf("groups = %v, want %v", groups, want)
	}
}

func TestGroupResolverCache(t *testing.T) {
	now := time.Unix(1000, 0)
	lookups := 0
	exists := false
	r := newGroupResolver(2 * time.Second)
	r.now = func() time.Time { return now }
	r.lookup = func(name string) (int, error) {
		lookups++
		if !exists {
			return 0, errors.New("no such group")
		}
		return 1234, nil
	}
	if _, ok := r.gid("sitelink"); ok {
		t.Fatal("missing group found")
	}
	exists = true // created after the daemon started
	if _, ok := r.gid("sitelink"); ok || lookups != 1 {
		t.Fatalf("negative answer not cached (%d lookups)", lookups)
	}
	now = now.Add(3 * time.Second)
	if gid, ok := r.gid("sitelink"); !ok || gid != 1234 || lookups != 2 {
		t.Fatalf("new group not seen after the TTL: %d %v (%d lookups)", gid, ok, lookups)
	}
	if _, ok := r.gid(""); ok {
		t.Error("empty group name resolved")
	}
}

func TestGroupPolicy(t *testing.T) {
	s := New(nil, Options{AdminGroup: "adm", ReaderGroup: "rd", GroupCacheTTL: -1})
	s.groups.lookup = func(name string) (int, error) {
		switch name {
		case "adm":
			return 500, nil
		case "rd":
			return 501, nil
		}
		return 0, errors.New("no such group")
	}
	cases := []struct {
		p    Peer
		want Access
	}{
		{Peer{}, AccessNone},
		{Peer{Remote: "127.0.0.1:1"}, AccessNone},
		{Peer{Credentials: true, UID: 0, GID: 0}, AccessAdmin},
		{Peer{Credentials: true, UID: 1000, GID: 500}, AccessAdmin},
		{Peer{Credentials: true, UID: 1000, GID: 100, Groups: []int{7, 500}}, AccessAdmin},
		{Peer{Credentials: true, UID: 1000, GID: 501}, AccessReader},
		{Peer{Credentials: true, UID: 1000, GID: 100, Groups: []int{501}}, AccessReader},
		{Peer{Credentials: true, UID: 1000, GID: 100, Groups: []int{7}}, AccessNone},
	}
	for _, c := range cases {
		if got := s.groupPolicy(c.p); got != c.want {
			t.Errorf("%+v: %v, want %v", c.p, got, c.want)
		}
	}
}

func TestAsciiOnly(t *testing.T) {
	if got := asciiOnly(`{"m":"grüß 🙂"}`); got != `{"m":"gr\u00fc\u00df \ud83d\ude42"}` {
		t.Errorf("asciiOnly = %s", got)
	}
}
