package proc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Record identifies a running plugin process well enough to tell it from a later process
// that reuses its PID: the PID, the kernel's start time of the process (clock ticks after
// boot, /proc/PID/stat field 22) and the boot it belongs to.
type Record struct {
	Plugin    string `json:"plugin"`
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
	BootID    string `json:"boot_id"`
}

// Identify builds the record of a running process.
func Identify(plugin string, pid int) (Record, error) {
	st, err := startTime(pid)
	if err != nil {
		return Record{}, err
	}
	return Record{Plugin: plugin, PID: pid, StartTime: st, BootID: bootID()}, nil
}

func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

func startTime(pid int) (uint64, error) {
	st, _, err := stat(pid)
	return st, err
}

// stat reads the start time and the state letter (R, S, Z …) of a process.
func stat(pid int) (uint64, string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces and parentheses: fields start after the
	// last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, "", fmt.Errorf("parse stat of pid %d", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, "", fmt.Errorf("parse stat of pid %d: %d fields", pid, len(f))
	}
	st, err := strconv.ParseUint(f[19], 10, 64) // field 22 overall
	return st, f[0], err
}

// Alive reports whether the process of the record still runs (the same process, not
// one that reuses its PID). A zombie, dead but not yet reaped, does not run.
func (r Record) Alive() bool {
	if r.BootID != bootID() {
		return false
	}
	st, state, err := stat(r.PID)
	return err == nil && st == r.StartTime && state != "Z" && state != "X"
}

// Save writes the record to path atomically.
func (r Record) Save(path string) error {
	b, _ := json.Marshal(r)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write pid record: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write pid record: %w", err)
	}
	return nil
}

// Reap finds pid records (files named *.pid) in dir, kills the process group of every
// one that is still the very process it names, and removes the records. It returns the
// records it killed.
func Reap(dir string) ([]Record, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.pid"))
	if err != nil {
		return nil, err
	}
	var killed []Record
	var errs []error
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var r Record
		if json.Unmarshal(b, &r) != nil || r.PID <= 1 {
			_ = os.Remove(p)
			continue
		}
		if r.Alive() {
			// The plugin leads its own process group (Setpgid).
			if err := syscall.Kill(-r.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("kill leftover %s (pid %d): %w", r.Plugin, r.PID, err))
				continue
			}
			killed = append(killed, r)
		}
		_ = os.Remove(p)
	}
	return killed, errors.Join(errs...)
}
