package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fuzzSeeds are segment contents: valid records, torn, corrupted, zeros.
func fuzzSeeds() [][]byte {
	var enc encoder
	ts := time.Date(2026, 11, 22, 5, 0, 0, 123, time.UTC)
	var good []byte
	for i := range 4 {
		good = enc.appendRecord(good, ts.Add(time.Duration(i)*time.Second), appendJSONString(nil, "src"), uint64(i+1), []byte(`{"k":"v","n":[1,2.5,null,true]}`))
	}
	first := bytes.IndexByte(good, '\n') + 1
	return [][]byte{
		good,
		good[:len(good)-7],
		append(bytes.Clone(good), make([]byte, 300)...),
		append(append(bytes.Clone(good[:first]), "garbage\n"...), good[first:]...),
		bytes.ReplaceAll(bytes.Clone(good), []byte(`"k"`), []byte(`"K"`)),
		[]byte("\n\n\n"),
		nil,
	}
}

// fixCRCs rewrites the crc of every line long enough to have one, so that the fuzzer can
// reach the parsing behind the checksum.
func fixCRCs(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		line := b
		if i >= 0 {
			line = b[:i]
		}
		if len(line) >= crcSuffixLen {
			body := line[:len(line)-crcSuffixLen]
			out = append(out, body...)
			out = append(out, crcKey...)
			out = appendHex8(out, crc32.Checksum(body, castagnoli))
			out = append(out, '"', '}')
		} else {
			out = append(out, line...)
		}
		if i < 0 {
			break
		}
		out = append(out, '\n')
		b = b[i+1:]
	}
	return out
}

// FuzzParseLine: the line parser never panics, and what it accepts re-encodes to a line
// that parses to the same record.
func FuzzParseLine(f *testing.F) {
	for _, s := range fuzzSeeds() {
		for line := range bytes.SplitSeq(s, []byte{'\n'}) {
			f.Add(line)
		}
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var lp lineParser
		for _, in := range [][]byte{line, fixCRCs(line)} {
			p, ok := lp.parse(in)
			if !ok {
				continue
			}
			if !json.Valid(in) {
				t.Fatalf("accepted a line that is not JSON: %q", in)
			}
			var enc encoder
			again := enc.appendRecord(nil, p.time, appendJSONString(nil, p.source()), p.seq, p.data)
			q, ok := lp.parse(again[:len(again)-1])
			if !ok || q.seq != p.seq || !q.time.Equal(p.time) || q.source() != p.source() || !bytes.Equal(q.data, p.data) {
				t.Fatalf("%q re-encoded as %q", in, again)
			}
		}
	})
}

// fuzzDir is a fresh directory, on tmpfs when there is one (fsync there is free).
func fuzzDir(t *testing.T) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "logcache-fuzz-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

// FuzzSegment: whatever an older and the last segment hold, Open succeeds, the last
// segment ends on a line boundary, readers return only valid records in increasing order
// and count the rest, and appending goes on after the last good record.
func FuzzSegment(f *testing.F) {
	seeds := fuzzSeeds()
	for i, s := range seeds {
		f.Add(seeds[(i+1)%len(seeds)], s, i%2 == 0)
	}
	f.Fuzz(func(t *testing.T, older, last []byte, fix bool) {
		if fix {
			older, last = fixCRCs(older), fixCRCs(last)
		}
		dir := fuzzDir(t)
		// The older segment starts at 1, the last at 3: names are lower bounds.
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), older, 0o640); err != nil {
			t.Fatal(err)
		}
		lastPath := filepath.Join(dir, segmentName(3))
		if err := os.WriteFile(lastPath, last, 0o640); err != nil {
			t.Fatal(err)
		}
		s, err := Open(Options{Dir: dir, Sync: PolicyNever, MaxBytes: 64 << 20, SegmentBytes: 16 << 20})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close()
		if b, err := os.ReadFile(lastPath); err != nil || len(b) > 0 && b[len(b)-1] != '\n' {
			t.Fatalf("last segment after repair: %q, %v", b, err)
		}
		ctx := context.Background()
		check := func() (n int, lastSeq uint64) {
			r := s.Reader(ReadOptions{})
			defer r.Close()
			for {
				p, line, err := r.next(ctx)
				if errors.Is(err, io.EOF) {
					return n, lastSeq
				}
				if err != nil {
					t.Fatal(err)
				}
				if p.seq <= lastSeq {
					t.Fatalf("seq %d after %d", p.seq, lastSeq)
				}
				var lp lineParser
				if _, ok := lp.parse(line); !ok || !json.Valid(line) {
					t.Fatalf("reader returned an invalid line %q", line)
				}
				lastSeq = p.seq
				n++
			}
		}
		n, lastSeq := check()
		first, _, err := s.Append(ctx, []Entry{{Source: "after", Data: json.RawMessage(`"x"`)}})
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		if first < 3 {
			t.Fatalf("new record got seq %d, below the last segment's name", first)
		}
		// A new record numbered after everything read is read last. (Fuzzed segments can
		// claim larger numbers than the tail of the last one; readers count those as
		// damage.)
		if n2, last2 := check(); first > lastSeq && (last2 != first || n2 != n+1) {
			t.Fatalf("after appending seq %d: %d records (before %d), last seq %d", first, n2, n, last2)
		}
	})
}
