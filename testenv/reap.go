package testenv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ReapLeftovers removes the network namespaces and temporary directories
// whose names carry [Prefix] and an owner that is no longer running (its PID
// is gone, or now belongs to a process that started at another time). It
// first kills every process still running inside such a namespace. Objects
// of live runs, including this one, are left alone.
func ReapLeftovers(ctx context.Context) error {
	return reap(ctx, slog.Default())
}

func reap(ctx context.Context, log *slog.Logger) error {
	var errs []error
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list %s: %w", netnsDir, err))
	}
	for _, ent := range entries {
		owner, ok := parseOwner(ent.Name())
		if !ok || ownerAlive(owner) {
			continue
		}
		if err := removeNamespace(ctx, ent.Name()); err != nil {
			errs = append(errs, fmt.Errorf("remove leftover namespace %s: %w", ent.Name(), err))
			continue
		}
		log.Info("testenv: removed leftover namespace", "netns", ent.Name())
	}
	tmp := os.TempDir()
	entries, err = os.ReadDir(tmp)
	if err != nil {
		errs = append(errs, fmt.Errorf("list %s: %w", tmp, err))
	}
	for _, ent := range entries {
		owner, ok := parseOwner(ent.Name())
		if !ok || !ent.IsDir() || ownerAlive(owner) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(tmp, ent.Name())); err != nil {
			errs = append(errs, fmt.Errorf("remove leftover dir: %w", err))
			continue
		}
		log.Info("testenv: removed leftover directory", "dir", filepath.Join(tmp, ent.Name()))
	}
	return errors.Join(errs...)
}

// parseOwner returns the owner token of a name made by this package:
// Prefix + "<pid>[.<start>]-<id>-<rest>".
func parseOwner(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return "", false
	}
	parts := strings.SplitN(rest, "-", 3)
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return "", false
	}
	pid, start, _ := strings.Cut(parts[0], ".")
	if n, err := strconv.Atoi(pid); err != nil || n <= 0 {
		return "", false
	}
	if start != "" {
		if _, err := strconv.ParseUint(start, 36, 64); err != nil {
			return "", false
		}
	}
	return parts[0], true
}

// ownerAlive reports whether the process named by an owner token (as
// returned by parseOwner) is still running.
func ownerAlive(owner string) bool {
	pidStr, start, _ := strings.Cut(owner, ".")
	pid, err := strconv.Atoi(pidStr)
	if err != nil {
		return true // not ours to judge
	}
	got, err := procStartTime(pid)
	if err != nil {
		return false
	}
	return start == "" || strconv.FormatUint(got, 36) == start
}

// removeNamespace kills every process in the named namespace, waits for them
// to be gone, and deletes the namespace. A namespace that does not exist is
// not an error.
func removeNamespace(ctx context.Context, ns string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, ns)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var errs []error
	if err := killNamespaceProcs(ctx, ns); err != nil {
		errs = append(errs, err)
	}
	if _, err := runIP(ctx, "netns", "delete", ns); err != nil {
		if _, serr := os.Stat(filepath.Join(netnsDir, ns)); !errors.Is(serr, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killNamespaceProcs sends SIGKILL to every process in the namespace (as
// listed by `ip netns pids`) until none is left or ctx ends.
func killNamespaceProcs(ctx context.Context, ns string) error {
	return WaitFor(ctx, "processes in namespace "+ns+" to exit", func() (bool, error) {
		out, err := runIP(ctx, "netns", "pids", ns)
		if err != nil {
			return false, err
		}
		left := 0
		for _, s := range strings.Fields(out) {
			if pid, err := strconv.Atoi(s); err == nil && pid != os.Getpid() {
				left++
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		return left == 0, nil
	})
}
