package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

const (
	segmentExt    = ".ndjson"
	segmentDigits = 20
	currentLink   = "current"
	lockName      = ".lock"
)

// segmentName is the file name of the segment whose records start at first.
func segmentName(first uint64) string {
	return fmt.Sprintf("%0*d%s", segmentDigits, first, segmentExt)
}

// parseSegmentName returns the first sequence number a segment file name stands for.
func parseSegmentName(name string) (uint64, bool) {
	if len(name) != segmentDigits+len(segmentExt) || name[segmentDigits:] != segmentExt {
		return 0, false
	}
	for _, c := range []byte(name[:segmentDigits]) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(name[:segmentDigits], 10, 64)
	if err != nil || v == 0 {
		return 0, false
	}
	return v, true
}

// segment is one segment file. first never changes; size is the writer's (kept under the
// store's mutex); firstTime caches the time of its first record for readers.
type segment struct {
	first uint64
	path  string
	size  int64 // bytes in the file plus, for the active segment, bytes in the buffer

	// firstTime is the UnixNano time of the first record, firstTimeUnknown until looked
	// up, firstTimeNone when the segment has no readable record.
	firstTime atomic.Int64
}

const (
	firstTimeUnknown = 0
	firstTimeNone    = -1 << 63
)

// listSegments returns the directory's segments in order, with their sizes.
func listSegments(dir string) ([]*segment, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", dir, err)
	}
	var segs []*segment
	for _, e := range entries {
		first, ok := parseSegmentName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", e.Name(), err)
		}
		segs = append(segs, &segment{first: first, path: filepath.Join(dir, e.Name()), size: info.Size()})
	}
	slices.SortFunc(segs, func(a, b *segment) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})
	return segs, nil
}

// firstRecordTime returns the time of the segment's first readable record, reading at most
// the first lineLimit bytes of the file; ok is false when there is none.
func (sg *segment) firstRecordTime() (t time.Time, ok bool) {
	switch v := sg.firstTime.Load(); v {
	case firstTimeUnknown:
	case firstTimeNone:
		return time.Time{}, false
	default:
		return time.Unix(0, v).UTC(), true
	}
	f, err := os.Open(sg.path)
	if err != nil {
		return time.Time{}, false // evicted or unreadable: do not cache
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	n, _ := io.ReadFull(f, buf)
	var lp lineParser
	for line, rest := []byte(nil), buf[:n]; ; {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		line, rest = rest[:i], rest[i+1:]
		if p, ok := lp.parse(line); ok {
			sg.firstTime.Store(p.time.UnixNano())
			return p.time, true
		}
	}
	if n == len(buf) {
		return time.Time{}, false // maybe further on; do not cache a guess
	}
	sg.firstTime.Store(firstTimeNone)
	return time.Time{}, false
}

// tailScan finds the end of the last valid record of a segment file of the given size,
// reading backwards from the end so that only the tail is read. It returns that record
// (parsed from its own copy) and the offset just past its newline; found is false when the
// file holds no valid record at all. Records whose seq is below minSeq do not count.
func tailScan(f *os.File, size int64, minSeq uint64, lineLimit int) (rec Record, end int64, found bool, err error) {
	const chunk = 64 << 10
	buf := make([]byte, 0, chunk)
	var lp lineParser
	pos := size // every byte at or after pos has been looked at
	for pos > 0 {
		// Find the last newline before pos.
		nl, err := lastIndexBefore(f, pos, '\n', -1, buf[:0])
		if err != nil {
			return rec, 0, false, err
		}
		if nl < 0 {
			return rec, 0, false, nil
		}
		// The line ending at nl starts after the previous newline, at most lineLimit back.
		lower := max(nl-int64(lineLimit), 0)
		prev, err := lastIndexBefore(f, nl, '\n', lower, buf[:0])
		if err != nil {
			return rec, 0, false, err
		}
		start := prev + 1
		if prev < 0 && lower > 0 {
			pos = nl // longer than any record: damage, keep looking before it
			continue
		}
		line := make([]byte, nl-start)
		if _, err := f.ReadAt(line, start); err != nil {
			return rec, 0, false, fmt.Errorf("read %s at %d: %w", f.Name(), start, err)
		}
		if p, ok := lp.parse(line); ok && p.seq >= minSeq {
			return p.record(), nl + 1, true, nil
		}
		pos = nl
	}
	return rec, 0, false, nil
}

// lastIndexBefore returns the offset of the last byte c in f[lower:end) (lower -1 means 0),
// or -1. It reads backwards in chunks into buf's capacity.
func lastIndexBefore(f *os.File, end int64, c byte, lower int64, buf []byte) (int64, error) {
	lower = max(lower, 0)
	chunk := int64(max(cap(buf), 4096))
	buf = buf[:0]
	for end > lower {
		n := min(chunk, end-lower)
		buf = slices.Grow(buf[:0], int(n))[:n]
		if _, err := f.ReadAt(buf, end-n); err != nil {
			return -1, fmt.Errorf("read %s at %d: %w", f.Name(), end-n, err)
		}
		if i := bytes.LastIndexByte(buf, c); i >= 0 {
			return end - n + int64(i), nil
		}
		end -= n
	}
	return -1, nil
}
