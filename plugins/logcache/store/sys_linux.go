package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// errFileClosed is wrapped by fdatasync when the file was closed meanwhile (a segment
// evicted while its sync was pending): there is nothing left to make durable.
var errFileClosed = errors.New("file closed")

// fdatasync flushes f's data and the metadata needed to read it (its size). It holds a
// reference on the descriptor, so a concurrent Close cannot hand the number to another file.
func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("fdatasync %s: %w", f.Name(), err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = unix.Fdatasync(int(fd))
			if serr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return fmt.Errorf("fdatasync %s: %w: %w", f.Name(), errFileClosed, err)
	}
	if serr != nil {
		return fmt.Errorf("fdatasync %s: %w", f.Name(), serr)
	}
	return nil
}

// startWriteback asks the kernel to start writing f[off:off+n) to disk without waiting, so
// that the next fdatasync has little left to do. Errors are ignored: it is only a hint.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}

// syncDir fsyncs a directory so that creations, renames and deletions in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// lockDir takes an exclusive flock on dir/.lock, failing at once when another process (or
// another Store in this one) holds it.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) {
		lerr = unix.Flock(int(fd), unix.LOCK_EX|unix.LOCK_NB)
	}); err != nil {
		lerr = err
	}
	if lerr != nil {
		f.Close()
		if errors.Is(lerr, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (flock on %s is held)", ErrLocked, path)
		}
		return nil, fmt.Errorf("flock %s: %w", path, lerr)
	}
	return f, nil
}

// fsSpace returns the bytes available to unprivileged writers on dir's filesystem and
// the filesystem's total size.
func fsSpace(dir string) (avail, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	bs := st.Frsize
	if bs == 0 {
		bs = st.Bsize
	}
	return int64(st.Bavail) * bs, int64(st.Blocks) * bs, nil
}

// isNoSpace reports whether err means the filesystem is full (or the quota is).
func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}
