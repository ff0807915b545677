package testenv

import (
	"fmt"
	"os"
	"path/filepath"
)

// maxSocketPath is the longest unix socket path that fits sun_path (108
// bytes with the terminating NUL), with a little room to spare.
const maxSocketPath = 100

// socketPath returns dir/file if that fits in a unix socket address;
// otherwise it creates a short directory under the system temp dir (named
// so that [ReapLeftovers] finds it) and returns a path there together with
// that directory, which the caller must remove.
func socketPath(dir, file string) (path, created string, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", "", fmt.Errorf("socket dir %s: %w", dir, err)
	}
	path = filepath.Join(abs, file)
	if len(path) <= maxSocketPath {
		return path, "", nil
	}
	owner, err := selfOwner()
	if err != nil {
		return "", "", fmt.Errorf("identify this process: %w", err)
	}
	created, err = os.MkdirTemp("", Prefix+owner+"-sock-")
	if err != nil {
		return "", "", fmt.Errorf("short socket dir: %w", err)
	}
	return filepath.Join(created, file), created, nil
}
