package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// inCI reports whether missing requirements must fail the tests (CI=true) rather than
// skip them.
func inCI() bool {
	v := strings.TrimSpace(os.Getenv("CI"))
	return strings.EqualFold(v, "true") || v == "1"
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if inCI() {
		t.Fatal("this test needs root (to mount a tmpfs); CI=true, so this is a failure")
	}
	t.Skip("this test needs root (to mount a tmpfs)")
}

const enospcHelperEnv = "LOGCACHE_ENOSPC_HELPER"

// TestENOSPC runs TestENOSPCInNamespace in a child process with its own mount namespace,
// so that the small tmpfs it mounts is never seen by the host and disappears with it even
// if the test is killed.
func TestENOSPC(t *testing.T) {
	if os.Getenv(enospcHelperEnv) != "" {
		t.Skip("in the helper")
	}
	requireRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestENOSPCInNamespace$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), enospcHelperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	t.Logf("helper output:\n%s", out)
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestENOSPCInNamespace")) {
		t.Fatal("the helper did not run the test")
	}
}

// mountTmpfs mounts a tmpfs of the given size on a new temporary directory and unmounts it
// at the end of the test.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// fillUp writes a ballast file until the filesystem is full.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !isNoSpace(err) {
				t.Fatalf("fill: %v", err)
			}
			break
		}
	}
	// And the last bytes of a page.
	for {
		if _, err := f.Write(chunk[:1]); err != nil {
			break
		}
	}
}

func TestENOSPCInNamespace(t *testing.T) {
	if os.Getenv(enospcHelperEnv) == "" {
		t.Skip("run by TestENOSPC in its own mount namespace")
	}
	ctx := context.Background()

	t.Run("evicts and goes on", func(t *testing.T) {
		dir := filepath.Join(mountTmpfs(t, "2m"), "cache")
		var logs syncBuffer
		s, err := Open(Options{Dir: dir, Sync: PolicyAlways, MaxBytes: 8 << 20, SegmentBytes: 128 << 10,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if st := s.Stats(); st.CapacityWarning == "" || !strings.Contains(logs.String(), "filesystem smaller than max_bytes") {
			t.Fatalf("no warning about a filesystem smaller than max_bytes: %q / logs %s", st.CapacityWarning, logs.String())
		}
		var last uint64
		for i := range 600 { // about 6 MiB through a 2 MiB filesystem
			batch := make([]Entry, 10)
			for j := range batch {
				batch[j] = Entry{Source: "fill", Data: payload(uint64(i*10+j), 1000)}
			}
			_, l, err := s.Append(ctx, batch)
			if err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
			last = l
		}
		st := s.Stats()
		if ok, why := s.Health(); !ok {
			t.Fatalf("unhealthy: %s", why)
		}
		if st.SegmentsEvicted == 0 || st.RecordsDropped != 0 {
			t.Fatalf("stats %+v", st)
		}
		recs, rst := readAll(t, s, ReadOptions{})
		if rst.Damaged != 0 || rst.Missed != 0 || len(recs) == 0 || recs[len(recs)-1].Seq != last {
			t.Fatalf("read %d records, %+v", len(recs), rst)
		}
		t.Logf("wrote %d records into 2 MiB; %d kept, %d segments evicted, %d bytes", last, len(recs), st.SegmentsEvicted, st.Bytes)
	})

	t.Run("degraded when nothing is left to free", func(t *testing.T) {
		mnt := mountTmpfs(t, "1m")
		dir := filepath.Join(mnt, "cache")
		s, err := Open(Options{Dir: dir, Sync: PolicyAlways, MaxBytes: 8 << 20, SegmentBytes: 64 << 10, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// A few records, so that the active segment ends inside a page.
		if _, _, err := s.Append(ctx, entries("before", 3, 333)); err != nil {
			t.Fatal(err)
		}
		ballast := filepath.Join(mnt, "ballast")
		fillUp(t, ballast)

		var dropped int
		for i := range 5 {
			_, _, err := s.Append(ctx, entries("full", 20, 500))
			if !errors.Is(err, ErrDropped) {
				t.Fatalf("append %d on a full disk: %v, want ErrDropped", i, err)
			}
			dropped += 20
		}
		ok, why := s.Health()
		st := s.Stats()
		if ok || !strings.Contains(why, "no space") || st.RecordsDropped != uint64(dropped) {
			t.Fatalf("health %v %q, stats %+v", ok, why, st)
		}
		t.Logf("degraded: %s", why)
		// No partial line was left behind.
		b, err := os.ReadFile(filepath.Join(dir, segmentName(1)))
		if err != nil || len(b) == 0 || b[len(b)-1] != '\n' {
			t.Fatalf("segment ends with %q, %v", b[max(len(b)-10, 0):], err)
		}

		// Space comes back: so does the store.
		if err := os.Remove(ballast); err != nil {
			t.Fatal(err)
		}
		first, last, err := s.Append(ctx, entries("after", 5, 100))
		if err != nil {
			t.Fatalf("append after freeing space: %v", err)
		}
		if ok, why := s.Health(); !ok {
			t.Fatalf("still unhealthy: %s", why)
		}
		r := s.Reader(ReadOptions{})
		defer r.Close()
		var srcs []string
		for {
			rec, err := r.Next(ctx)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			srcs = append(srcs, rec.Source)
			if rec.Source == "after" && (rec.Seq < first || rec.Seq > last) {
				t.Fatalf("record %+v", rec)
			}
		}
		if rst := r.Stats(); rst.Damaged != 0 || len(srcs) != 8 || rst.Missed != uint64(dropped) {
			t.Fatalf("read %v, %+v", srcs, rst)
		}
	})
}
