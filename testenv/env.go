package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Prefix starts the name of every network namespace and temporary directory
// this package creates: Prefix + "<ownerPID>.<ownerStartTime>-<envID>-<name>".
// The owner part lets [ReapLeftovers] tell a live run's objects from a dead
// one's.
const Prefix = "sltest-"

// netnsDir is where iproute2 keeps named network namespaces.
const netnsDir = "/run/netns"

const (
	// opTimeout bounds one topology operation (an ip command, a sysctl).
	opTimeout = 20 * time.Second
	// closeTimeout bounds the whole of Close.
	closeTimeout = 30 * time.Second
)

var validName = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}$`)

// Env owns a set of hosts, switches, processes and a temporary directory,
// and removes them all on [Env.Close]. Its methods are safe for concurrent
// use.
type Env struct {
	name string
	tag  string // "<owner>-<envID>", follows Prefix in every name
	dir  string
	log  *slog.Logger

	ctx    context.Context // cancelled by Close, parent of every operation
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	hosts     map[string]*Host
	order     []*Host // creation order, removed in reverse
	procs     []*Process
	portCount int
}

// New returns an Env for a test: it requires root and the ip command (see
// [Require]), removes leftovers of killed runs, and registers Close with
// t.Cleanup, failing the test if cleanup fails.
func New(t testing.TB) *Env {
	t.Helper()
	Require(t, "ip")
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	e, err := newEnv(t.Name(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("testenv: cleanup of %s: %v", e.name, err)
		}
	})
	return e
}

// NewEnv returns an Env for a program such as the demo. The caller must call
// Close (typically deferred, and see [Env.CloseOnSignal]). It needs root and
// removes leftovers of killed runs first.
func NewEnv(name string) (*Env, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("testenv: NewEnv(%q): network namespaces need root (euid %d)", name, os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("testenv: NewEnv(%q): %w", name, err)
	}
	return newEnv(name, slog.Default())
}

func newEnv(name string, log *slog.Logger) (*Env, error) {
	owner, err := selfOwner()
	if err != nil {
		return nil, fmt.Errorf("testenv: identify this process: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if err := reap(ctx, log); err != nil {
		log.Warn("testenv: removing leftovers of earlier runs failed", "err", err)
	}
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("testenv: random env id: %w", err)
	}
	tag := owner + "-" + hex.EncodeToString(id[:])
	dir, err := os.MkdirTemp("", Prefix+tag+"-")
	if err != nil {
		return nil, fmt.Errorf("testenv: create temp dir: %w", err)
	}
	e := &Env{
		name:  name,
		tag:   tag,
		dir:   dir,
		log:   log.With("env", name),
		hosts: make(map[string]*Host),
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

// Name returns the name given to [NewEnv], or the test's name.
func (e *Env) Name() string { return e.name }

// Dir returns a temporary directory owned by the Env (short enough for unix
// socket paths) and removed by Close.
func (e *Env) Dir() string { return e.dir }

// Context returns a context that is cancelled when the Env is closed.
func (e *Env) Context() context.Context { return e.ctx }

// nsName returns the namespace name for a host or switch called name.
func (e *Env) nsName(name string) string { return Prefix + e.tag + "-" + name }

// Close kills every process started through the Env (whole process groups)
// and anything else still running in its namespaces, deletes the namespaces
// (which removes their veths and bridges) and the temporary directory. It is
// idempotent; later calls return nil. Errors of all steps are joined.
func (e *Env) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	procs := slices.Clone(e.procs)
	hosts := slices.Clone(e.order)
	e.mu.Unlock()

	e.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()

	var errs []error
	for _, p := range slices.Backward(procs) {
		if err := p.kill(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, h := range slices.Backward(hosts) {
		if err := removeNamespace(ctx, h.ns); err != nil {
			errs = append(errs, fmt.Errorf("remove host %s: %w", h.name, err))
		}
	}
	if err := os.RemoveAll(e.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove temp dir: %w", err))
	}
	return errors.Join(errs...)
}

// CloseOnSignal closes the Env when the program receives one of sigs
// (default: SIGINT, SIGTERM, SIGHUP), then re-raises the signal with its
// default action so the program ends as it would have without the handler.
// The returned stop function removes the handler; call it (deferred) before
// the deferred Close. A SIGKILL cannot be caught: [ReapLeftovers] at the next
// start removes what such a run left.
func (e *Env) CloseOnSignal(sigs ...os.Signal) (stop func()) {
	if len(sigs) == 0 {
		sigs = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case sig := <-ch:
			signal.Stop(ch)
			if err := e.Close(); err != nil {
				e.log.Error("testenv: cleanup after signal", "signal", sig.String(), "err", err)
			}
			if s, ok := sig.(syscall.Signal); ok {
				signal.Reset(s)
				_ = syscall.Kill(os.Getpid(), s)
			}
		case <-done:
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
			<-finished
		})
	}
}

// register adds a host under name, failing if the Env is closed or the name
// is taken.
func (e *Env) register(h *Host) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return fmt.Errorf("env %s is closed", e.name)
	}
	if _, dup := e.hosts[h.name]; dup {
		return fmt.Errorf("name %q is already used in env %s", h.name, e.name)
	}
	e.hosts[h.name] = h
	e.order = append(e.order, h)
	return nil
}

// addProcess records p so that Close kills it; it fails if the Env is closed.
func (e *Env) addProcess(p *Process) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return fmt.Errorf("env %s is closed", e.name)
	}
	e.procs = append(e.procs, p)
	return nil
}

// nextPort returns a new, Env-wide unique switch port number.
func (e *Env) nextPort() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.portCount++
	return e.portCount
}

// ip runs the ip command with args, bounded by opTimeout and Close.
func (e *Env) ip(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(e.ctx, opTimeout)
	defer cancel()
	return runIP(ctx, args...)
}

// runIP runs `ip args...` and returns its combined output; the error names
// the command and includes the output.
func runIP(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// selfOwner returns this process's owner token "<pid>.<starttime base 36>".
func selfOwner() (string, error) {
	pid := os.Getpid()
	start, err := procStartTime(pid)
	if err != nil {
		return "", err
	}
	return strconv.Itoa(pid) + "." + strconv.FormatUint(start, 36), nil
}

// procStartTime returns the start time of process pid in clock ticks since
// boot (field 22 of /proc/PID/stat), which tells a process from a later one
// that reused its PID.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat: no ')'", pid)
	}
	// After ") " come fields 3 (state) onwards; start time is field 22.
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(fields))
	}
	v, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat start time: %w", pid, err)
	}
	return v, nil
}
