package packaging

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sitelink/sitelink/plugins/sdk"
)

// oldKernelName is the name under which the test binary acts as the old-kernel wrapper:
//
//	sitelink-oldkernel COMMAND [ARG...]   run COMMAND under Linux 3.10's system calls
//	sitelink-oldkernel --probe            check that the filter works
//
// CentOS 7 runs Linux 3.10. The wrapper installs a seccomp filter that fails every
// system call newer than 3.10 with ENOSYS, as that kernel would, then execs COMMAND,
// which keeps the filter (and passes it to its children). A binary with a hard
// dependency on a newer call fails under it; one with a fallback keeps working.
const oldKernelName = "sitelink-oldkernel"

// lastSyscall310 is the highest x86-64 system call number in Linux 3.10: finit_module
// (313, Linux 3.8). 314 (sched_setattr) arrived in 3.14, getrandom (318) in 3.17,
// memfd_create (319) in 3.17, statx (332) in 4.11, pidfd_open (434) in 5.3, clone3 (435)
// in 5.3, epoll_pwait2 (441) in 5.11.
const lastSyscall310 = 313

func oldKernelMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: sitelink-oldkernel --probe | COMMAND [ARG...]")
		return 2
	}
	runtime.LockOSThread() // the filter is per thread: set it on the one that execs
	if err := installOldKernelFilter(); err != nil {
		fmt.Fprintln(os.Stderr, "sitelink-oldkernel:", err)
		return 126
	}
	if args[0] == "--probe" {
		// getrandom (318) must fail with ENOSYS; getppid (110) must work.
		var b [8]byte
		_, _, e := unix.Syscall(unix.SYS_GETRANDOM, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0)
		_, _, e2 := unix.Syscall(unix.SYS_GETPPID, 0, 0, 0)
		fmt.Printf("getrandom: %v; getppid: %v\n", e, e2)
		if e != unix.ENOSYS || e2 != 0 {
			return 1
		}
		return 0
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "sitelink-oldkernel:", err)
		return 127
	}
	err = syscall.Exec(path, args, os.Environ())
	fmt.Fprintln(os.Stderr, "sitelink-oldkernel: exec:", err)
	return 126
}

// installOldKernelFilter sets no_new_privs (needed without CAP_SYS_ADMIN, e.g. inside a
// unit's capability bounding set) and a seccomp filter: x86-64 system calls numbered
// above lastSyscall310 (and x32 ones) return ENOSYS, everything else is allowed.
func installOldKernelFilter() error {
	const (
		ld  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jgt = unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K
		ret = unix.BPF_RET | unix.BPF_K
	)
	filter := []unix.SockFilter{
		{Code: ld, K: 4}, // seccomp_data.arch
		{Code: jeq, Jt: 1, Jf: 0, K: unix.AUDIT_ARCH_X86_64},
		{Code: ret, K: unix.SECCOMP_RET_ALLOW},
		{Code: ld, K: 0}, // seccomp_data.nr
		{Code: jgt, Jt: 0, Jf: 1, K: lastSyscall310},
		{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{Code: ret, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	// prctl, not seccomp(2): the latter is itself newer than 3.10 (3.17).
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_SECCOMP): %w", err)
	}
	runtime.KeepAlive(filter)
	return nil
}

// oldKernelWrapper links the test binary as sitelink-oldkernel in a temporary directory.
func oldKernelWrapper(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	w := filepath.Join(t.TempDir(), oldKernelName)
	if err := os.Symlink(self, w); err != nil {
		t.Fatal(err)
	}
	return w
}

// checkOldKernelHost runs the binaries under Linux 3.10's system calls on the host:
// sitelinkd --version, sitelinkctl --help, and each plugin up to its go-plugin
// handshake (runtime start, gRPC server, unix listener). The daemon itself with a
// plugin runs under the filter in the booted container (checkBoot).
func checkOldKernelHost(t *testing.T, b *builds) {
	t.Helper()
	w := oldKernelWrapper(t)
	out, err := runErr("", nil, w, "--probe")
	if err != nil || !strings.Contains(out, "getrandom: function not implemented") {
		t.Fatalf("the old-kernel filter does not work: %v\n%s", err, out)
	}
	out = run(t, "", nil, w, filepath.Join(b.bin, "sitelinkd"), "--version")
	if !strings.HasPrefix(out, "sitelinkd ") {
		t.Errorf("sitelinkd --version under Linux 3.10 system calls: %q", out)
	}
	out = run(t, "", nil, w, filepath.Join(b.bin, "sitelinkctl"), "--help")
	if !strings.Contains(out, "sitelinkctl") {
		t.Errorf("sitelinkctl --help under Linux 3.10 system calls: %q", out)
	}
	for _, p := range b.plugins {
		if err := pluginHandshake(w, filepath.Join(b.bin, "plugins", p)); err != nil {
			t.Errorf("plugin %s under Linux 3.10 system calls: %v", p, err)
		}
	}
}

var handshakeLine = regexp.MustCompile(`^1\|1\|unix\|[^|]+\|grpc\|`)

// pluginHandshake starts a plugin as sitelinkd would (go-plugin's magic cookie) under
// wrapper and waits for its handshake line on stdout, then stops it.
func pluginHandshake(wrapper, plugin string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wrapper, plugin)
	cmd.Env = append(os.Environ(), sdk.Handshake.MagicCookieKey+"="+sdk.Handshake.MagicCookieValue,
		"PLUGIN_PROTOCOL_VERSIONS=1", "PLUGIN_MIN_PORT=0", "PLUGIN_MAX_PORT=0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-line:
		if !handshakeLine.MatchString(l) {
			return fmt.Errorf("handshake line %q, want 1|1|unix|ADDR|grpc|…; stderr: %s", l, tail(stderr.String(), 2000))
		}
		return nil
	case <-ctx.Done():
		return errors.New("no handshake within 20 s; stderr: " + tail(stderr.String(), 2000))
	}
}
