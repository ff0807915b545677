package proc

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// LauncherArg is the hidden first argument that puts sitelinkd in launcher mode.
const LauncherArg = "__exec-plugin"

// NoAmbientEnv, set to 1 in the launcher's environment, makes it take the path of
// kernels without ambient capabilities: the plugin stays root with only its capabilities.
const NoAmbientEnv = "SITELINK_LAUNCHER_NO_AMBIENT"

// Privileges say what a plugin process runs with.
type Privileges struct {
	// User is the account to run as ("" keeps the daemon's user).
	User string
	// Caps are the capabilities the plugin keeps; all others are dropped.
	Caps CapSet
}

// Launch describes a plugin process to start.
type Launch struct {
	// Self is the sitelinkd executable used as launcher (os.Executable()).
	Self string
	// Binary and Args are the plugin's program and arguments.
	Binary string
	Args   []string
	Env    []string
	Dir    string
	Priv   Privileges
}

// Resolved credentials of a user.
type creds struct {
	uid, gid uint32
	groups   []uint32
}

func lookupCreds(name string) (creds, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return creds{}, fmt.Errorf("look up plugin user %q: %w", name, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	c := creds{uid: uint32(uid), gid: uint32(gid)}
	gids, err := u.GroupIds()
	if err == nil {
		for _, g := range gids {
			if v, err := strconv.ParseUint(g, 10, 32); err == nil {
				c.groups = append(c.groups, uint32(v))
			}
		}
	}
	return c, nil
}

// UserIDs returns the uid and gid of a user, for chown of the plugin's directories.
func UserIDs(name string) (uid, gid int, err error) {
	c, err := lookupCreds(name)
	return int(c.uid), int(c.gid), err
}

// Command builds the exec.Cmd for a plugin: through the launcher when the daemon is root,
// else the plugin directly with the daemon's own privileges. The process gets its own
// process group and SIGKILL when the daemon dies.
func (l Launch) Command() (*exec.Cmd, error) {
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		args := []string{LauncherArg, "--caps", l.Priv.Caps.String()}
		if l.Priv.User != "" {
			c, err := lookupCreds(l.Priv.User)
			if err != nil {
				return nil, err
			}
			gs := make([]string, len(c.groups))
			for i, g := range c.groups {
				gs[i] = strconv.FormatUint(uint64(g), 10)
			}
			args = append(args, "--uid", strconv.FormatUint(uint64(c.uid), 10),
				"--gid", strconv.FormatUint(uint64(c.gid), 10), "--groups", strings.Join(gs, ","))
		}
		args = append(args, "--ppid", strconv.Itoa(os.Getpid()), "--", l.Binary)
		cmd = exec.Command(l.Self, append(args, l.Args...)...)
	} else {
		cmd = exec.Command(l.Binary, l.Args...)
	}
	cmd.Env = l.Env
	cmd.Dir = l.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd, nil
}

// ExecMain is the launcher: it runs in the child (args after LauncherArg), applies the
// privileges and execs the plugin. It returns only on error.
func ExecMain(args []string) error {
	fs := flag.NewFlagSet(LauncherArg, flag.ContinueOnError)
	capsFlag := fs.String("caps", "", "capabilities to keep")
	uid := fs.Int("uid", -1, "user id")
	gid := fs.Int("gid", -1, "group id")
	groups := fs.String("groups", "", "supplementary group ids")
	ppid := fs.Int("ppid", 0, "the daemon's pid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return errors.New("launcher: no plugin binary")
	}
	keep, err := ParseCaps(strings.Split(*capsFlag, ","))
	if err != nil {
		return fmt.Errorf("launcher: %w", err)
	}
	runtime.LockOSThread() // capabilities and ids below are per thread; exec from this one
	if err := dropBounding(keep); err != nil {
		return err
	}
	// NoAmbientEnv=1 makes the launcher act as on a kernel without ambient capabilities
	// (CentOS 7's 3.10), so that path is tested on newer kernels too.
	if *uid > 0 && AmbientSupported() && os.Getenv(NoAmbientEnv) != "1" {
		var gs []int
		for _, g := range strings.Split(*groups, ",") {
			if v, err := strconv.Atoi(g); err == nil {
				gs = append(gs, v)
			}
		}
		if err := switchUser(*uid, *gid, gs, keep); err != nil {
			return err
		}
	} else if err := setCaps(keep); err != nil {
		return err
	}
	// A credential change clears the parent-death signal: arm it again, then make sure
	// the daemon did not die in between.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("launcher: set parent-death signal: %w", err)
	}
	if *ppid != 0 && os.Getppid() != *ppid {
		return errors.New("launcher: sitelinkd exited before the plugin started")
	}
	bin := rest[0]
	return fmt.Errorf("launcher: exec %s: %w", bin, syscall.Exec(bin, rest, os.Environ()))
}

func dropBounding(keep CapSet) error {
	for c := 0; c <= lastCap(); c++ {
		if keep&(1<<uint(c)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("launcher: drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

func setCaps(keep CapSet) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	lo, hi := uint32(keep), uint32(keep>>32)
	data[0] = unix.CapUserData{Effective: lo, Permitted: lo, Inheritable: lo}
	data[1] = unix.CapUserData{Effective: hi, Permitted: hi, Inheritable: hi}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("launcher: set capabilities %s: %w", keep, err)
	}
	return nil
}

func switchUser(uid, gid int, groups []int, keep CapSet) error {
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("launcher: keep capabilities: %w", err)
	}
	gs := make([]uint32, len(groups))
	for i, g := range groups {
		gs[i] = uint32(g)
	}
	var gp uintptr
	if len(gs) > 0 {
		gp = uintptr(unsafePointer(&gs[0]))
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gs)), gp, 0); e != 0 {
		return fmt.Errorf("launcher: setgroups: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
		return fmt.Errorf("launcher: setresgid %d: %w", gid, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
		return fmt.Errorf("launcher: setresuid %d: %w", uid, e)
	}
	if err := setCaps(keep); err != nil {
		return err
	}
	for c := 0; c <= lastCap(); c++ {
		if keep&(1<<uint(c)) == 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
			return fmt.Errorf("launcher: raise ambient capability %d: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("launcher: no_new_privs: %w", err)
	}
	return nil
}
