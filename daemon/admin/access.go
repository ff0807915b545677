package admin

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Access is a level of rights: what a peer has, and what a handler requires.
type Access int

// The access levels, in increasing order.
const (
	// AccessNone: a peer with no rights; as a requirement, anyone may call (/healthz).
	AccessNone Access = iota
	// AccessReader may read: GET, non-mutating actions, config check.
	AccessReader
	// AccessAdmin may change things.
	AccessAdmin
)

func (a Access) String() string {
	switch a {
	case AccessNone:
		return "none"
	case AccessReader:
		return "reader"
	case AccessAdmin:
		return "admin"
	}
	return "access(" + strconv.Itoa(int(a)) + ")"
}

// Peer is the process on the other end of a connection.
type Peer struct {
	// Credentials says whether PID, UID, GID and Groups are known (unix socket peers);
	// peers on other listeners (TCP) only have Remote.
	Credentials bool
	PID         int
	UID         int
	GID         int // effective group
	// Groups are the peer's supplementary groups, read from /proc/PID/status when the
	// connection was accepted (empty when that failed).
	Groups []int
	// Remote is the remote address on listeners other than the unix socket.
	Remote string
	// Access is what the peer may do, decided for the current request.
	Access Access
}

// InGroup reports whether gid is the peer's effective or a supplementary group.
func (p Peer) InGroup(gid int) bool {
	return p.Credentials && (p.GID == gid || slices.Contains(p.Groups, gid))
}

func (p Peer) String() string {
	if !p.Credentials {
		if p.Remote != "" {
			return "remote=" + p.Remote
		}
		return "unknown peer"
	}
	return fmt.Sprintf("uid=%d gid=%d pid=%d", p.UID, p.GID, p.PID)
}

type peerKey struct{}

// PeerFromContext returns the peer of a request handled by the Server (for handlers added
// with Server.Handle).
func PeerFromContext(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

func withPeer(ctx context.Context, p Peer) context.Context {
	return context.WithValue(ctx, peerKey{}, p)
}

// peerOf reads the credentials of a connection's peer. It never fails: a peer whose
// credentials cannot be read has none (and so no access).
func peerOf(c net.Conn) Peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		p := Peer{}
		if ra := c.RemoteAddr(); ra != nil {
			p.Remote = ra.String()
		}
		return p
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || credErr != nil || cred == nil {
		return Peer{}
	}
	p := Peer{Credentials: true, PID: int(cred.Pid), UID: int(cred.Uid), GID: int(cred.Gid)}
	if groups, err := procGroups(int(cred.Pid), int(cred.Uid)); err == nil {
		p.Groups = groups
	}
	return p
}

// procGroups returns the supplementary groups of process pid from /proc/PID/status. To
// guard against the peer having exited and its PID being reused, the process's effective
// UID must be uid.
func procGroups(pid, uid int) ([]int, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("no pid")
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, fmt.Errorf("read peer groups: %w", err)
	}
	return parseProcStatus(data, uid)
}

// parseProcStatus extracts the Groups: line of a /proc/PID/status file, checking that
// the effective UID (second field of Uid:) is uid.
func parseProcStatus(data []byte, uid int) ([]int, error) {
	var groups []int
	var sawUID, sawGroups bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		switch key {
		case "Uid":
			if len(fields) < 2 {
				return nil, fmt.Errorf("parse /proc status: bad Uid line %q", value)
			}
			euid, err := strconv.Atoi(fields[1])
			if err != nil {
				return nil, fmt.Errorf("parse /proc status: bad Uid line %q", value)
			}
			if euid != uid {
				return nil, fmt.Errorf("peer process changed: uid %d, expected %d", euid, uid)
			}
			sawUID = true
		case "Groups":
			for _, f := range fields {
				g, err := strconv.Atoi(f)
				if err != nil {
					return nil, fmt.Errorf("parse /proc status: bad Groups line %q", value)
				}
				groups = append(groups, g)
			}
			sawGroups = true
		}
	}
	if !sawUID || !sawGroups {
		return nil, errors.New("parse /proc status: no Uid or Groups line")
	}
	return groups, nil
}

// groupResolver looks up group IDs by name, caching answers (also "no such group") for a
// short time so that groups created after the daemon started are noticed.
type groupResolver struct {
	ttl    time.Duration
	lookup func(name string) (int, error)
	now    func() time.Time

	mu    sync.Mutex
	cache map[string]groupEntry
}

type groupEntry struct {
	gid     int
	found   bool
	expires time.Time
}

func newGroupResolver(ttl time.Duration) *groupResolver {
	return &groupResolver{ttl: ttl, lookup: lookupGroup, now: time.Now, cache: map[string]groupEntry{}}
}

func lookupGroup(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("group %s: bad gid %q", name, g.Gid)
	}
	return gid, nil
}

// gid returns the ID of group name; found is false when there is no such group (or it
// could not be looked up).
func (r *groupResolver) gid(name string) (gid int, found bool) {
	if name == "" {
		return 0, false
	}
	now := r.now()
	r.mu.Lock()
	e, ok := r.cache[name]
	r.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.gid, e.found
	}
	g, err := r.lookup(name)
	e = groupEntry{gid: g, found: err == nil, expires: now.Add(r.ttl)}
	if r.ttl > 0 {
		r.mu.Lock()
		r.cache[name] = e
		r.mu.Unlock()
	}
	return e.gid, e.found
}

// groupPolicy is the default authorization: root and the admin group are admins, the
// reader group reads.
func (s *Server) groupPolicy(p Peer) Access {
	if !p.Credentials {
		return AccessNone
	}
	if p.UID == 0 {
		return AccessAdmin
	}
	if gid, ok := s.groups.gid(s.opts.AdminGroup); ok && p.InGroup(gid) {
		return AccessAdmin
	}
	if gid, ok := s.groups.gid(s.opts.ReaderGroup); ok && p.InGroup(gid) {
		return AccessReader
	}
	return AccessNone
}

// forbidden is the message of a 403: what the peer lacks.
func (s *Server) forbidden(p Peer, need Access) string {
	who := "this client"
	if p.Credentials {
		who = "uid " + strconv.Itoa(p.UID)
	}
	switch need {
	case AccessAdmin:
		return fmt.Sprintf("permission denied: %s may not change sitelinkd; be root or a member of group %s", who, s.opts.AdminGroup)
	default:
		return fmt.Sprintf("permission denied: %s may not use sitelinkd; be root or a member of group %s (read only) or %s", who, s.opts.ReaderGroup, s.opts.AdminGroup)
	}
}
