package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// ReadOptions select where a Reader starts and which records it returns.
type ReadOptions struct {
	// Since and Until keep records with Since <= Time < Until; zero means unbounded.
	// Reading starts in the last segment whose first record is at or before Since. Records
	// are assumed to be stored in about time order: without Follow, reading ends at the
	// first segment that starts at or after Until; with Follow, at the first record at or
	// after Until.
	Since, Until time.Time
	// FromSeq starts at the record with this sequence number (or the oldest one after it
	// when it is gone).
	FromSeq uint64
	// FromEnd starts after the last record written so far, like tail -f.
	FromEnd bool
	// Source keeps only records from this source; a trailing "*" matches a prefix
	// ("proxy*" matches "proxy" and "proxy/agent 10.0.0.5").
	Source string
	// Follow makes Next wait for new records at the end instead of returning io.EOF.
	Follow bool
}

// ReaderStats count what a Reader saw.
type ReaderStats struct {
	// Records is how many records Next returned.
	Records uint64
	// Damaged counts lines that were not valid records (torn, corrupted, zeros), skipped.
	Damaged uint64
	// Missed counts sequence numbers skipped over: records evicted before the reader got
	// to them, dropped, or lost in damaged lines.
	Missed uint64
}

// Reader reads records from the segment files on its own: it takes no lock the writer
// uses, and survives the deletion of the segment it reads. Not safe for concurrent use.
type Reader struct {
	s    *Store
	o    ReadOptions
	lp   lineParser
	srcJ []byte // Source as a JSON string; without the closing quote when a prefix
	pfx  bool

	started bool
	seg     *segment
	f       *os.File
	off     int64 // next file offset to read
	buf     []byte
	r, w    int
	discard bool // dropping the rest of an over-long line
	lastSeq uint64
	minSeq  uint64
	done    bool
	stats   ReaderStats

	endSeg *segment // FromEnd: where the end was when the Reader was made
	endOff int64
}

// Reader returns a reader positioned by opts (FromEnd: at the end as of this call). It
// opens files lazily, at the first Next.
func (s *Store) Reader(opts ReadOptions) *Reader {
	r := &Reader{s: s, o: opts}
	if opts.FromEnd {
		s.mu.Lock()
		r.endSeg, r.endOff, r.lastSeq = s.segs[len(s.segs)-1], s.activeFlushed, s.written
		s.mu.Unlock()
		r.minSeq = r.lastSeq + 1
	}
	if opts.Source != "" {
		src := opts.Source
		if strings.HasSuffix(src, "*") {
			r.pfx = true
			src = strings.TrimSuffix(src, "*")
		}
		r.srcJ = appendJSONString(nil, src)
		if r.pfx {
			r.srcJ = r.srcJ[:len(r.srcJ)-1]
		}
	}
	return r
}

// Stats returns what the reader saw so far.
func (r *Reader) Stats() ReaderStats { return r.stats }

// Close releases the reader's file.
func (r *Reader) Close() error {
	r.done = true
	if r.f != nil {
		err := r.f.Close()
		r.f = nil
		return err
	}
	return nil
}

// Next returns the next matching record. At the end it returns io.EOF, or with Follow
// waits for more until ctx ends (ctx's error) or the store closes (ErrClosed).
func (r *Reader) Next(ctx context.Context) (Record, error) {
	p, _, err := r.next(ctx)
	if err != nil {
		return Record{}, err
	}
	return p.record(), nil
}

// next returns the next matching record and its line; both point into the reader's
// buffer until the following call.
func (r *Reader) next(ctx context.Context) (parsedLine, []byte, error) {
	for {
		p, line, err := r.nextLine(ctx)
		if err != nil {
			return p, nil, err
		}
		if !r.o.Since.IsZero() && p.time.Before(r.o.Since) {
			continue
		}
		if !r.o.Until.IsZero() && !p.time.Before(r.o.Until) {
			if r.o.Follow {
				r.done = true
				return p, nil, io.EOF
			}
			continue
		}
		if r.srcJ != nil {
			if r.pfx && !bytes.HasPrefix(p.src, r.srcJ) || !r.pfx && !bytes.Equal(p.src, r.srcJ) {
				continue
			}
		}
		r.stats.Records++
		return p, line, nil
	}
}

func (r *Reader) damage() {
	r.stats.Damaged++
	r.s.damaged.Add(1)
}

// nextLine returns the next valid record line, in file order, whatever the filters.
func (r *Reader) nextLine(ctx context.Context) (parsedLine, []byte, error) {
	if r.done {
		return parsedLine{}, nil, io.EOF
	}
	if !r.started {
		if err := r.start(); err != nil {
			return parsedLine{}, nil, err
		}
		r.started = true
	}
	for {
		if err := ctx.Err(); err != nil {
			return parsedLine{}, nil, err
		}
		if i := bytes.IndexByte(r.buf[r.r:r.w], '\n'); i >= 0 {
			line := r.buf[r.r : r.r+i]
			r.r += i + 1
			if r.discard {
				r.discard = false
				continue
			}
			p, ok := r.lp.parse(line)
			if !ok || p.seq <= r.lastSeq {
				r.damage()
				continue
			}
			if r.lastSeq > 0 && p.seq > r.lastSeq+1 {
				r.stats.Missed += p.seq - r.lastSeq - 1
			}
			r.lastSeq = p.seq
			if p.seq < r.minSeq {
				continue
			}
			return p, line, nil
		}
		if r.discard {
			r.r, r.w = 0, 0 // still inside an over-long line
		} else if r.w-r.r >= MaxLineBytes {
			// No record is this long: damage up to the next newline.
			r.damage()
			r.discard = true
			r.r, r.w = 0, 0
		}
		r.w = copy(r.buf, r.buf[r.r:r.w])
		r.r = 0
		if r.w == len(r.buf) {
			r.buf = append(r.buf, make([]byte, len(r.buf))...)
		}
		if oldest := r.s.oldestSegment(); oldest != nil && oldest.first > r.seg.first {
			// Our segment was evicted: go on with the oldest one.
			if err := r.open(oldest, 0); err != nil {
				return parsedLine{}, nil, err
			}
			continue
		}
		notify := r.s.notifyChan()
		n, err := r.read()
		if n > 0 {
			continue
		}
		if err != nil {
			return parsedLine{}, nil, err
		}
		if nextSeg := r.s.segmentAfter(r.seg.first); nextSeg != nil {
			// The writer finished this file before starting the next one: read what came
			// after our last read, then move on. A partial line left is a torn tail.
			if n, err := r.read(); n > 0 || err != nil {
				if err != nil {
					return parsedLine{}, nil, err
				}
				continue
			}
			if r.w > r.r && !r.discard {
				r.damage()
			}
			if !r.o.Follow && !r.o.Until.IsZero() {
				if t, ok := nextSeg.firstRecordTime(); ok && !t.Before(r.o.Until) {
					r.done = true
					return parsedLine{}, nil, io.EOF
				}
			}
			if err := r.open(nextSeg, 0); err != nil {
				return parsedLine{}, nil, err
			}
			continue
		}
		if r.w > r.r {
			// A partial line at the end of the newest segment: a write in progress, or a
			// line the writer cut off after a failed write (then the file is shorter).
			if fi, err := r.f.Stat(); err == nil && fi.Size() < r.off {
				r.off -= int64(r.w - r.r)
				r.w = r.r
				continue
			}
		}
		if !r.o.Follow {
			return parsedLine{}, nil, io.EOF
		}
		select {
		case <-notify:
		case <-r.s.closed:
			return parsedLine{}, nil, ErrClosed
		case <-ctx.Done():
			return parsedLine{}, nil, ctx.Err()
		}
	}
}

// read reads more of the current file into the buffer.
func (r *Reader) read() (int, error) {
	n, err := r.f.ReadAt(r.buf[r.w:], r.off)
	r.off += int64(n)
	r.w += n
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("store: read %s: %w", r.seg.path, err)
	}
	return n, nil
}

// start positions the reader according to its options.
func (r *Reader) start() error {
	r.buf = make([]byte, 64<<10)
	segs := r.s.segments()
	switch {
	case r.o.FromEnd:
		return r.open(r.endSeg, r.endOff)
	case r.o.FromSeq > 0:
		r.minSeq = r.o.FromSeq
		i := sort.Search(len(segs), func(i int) bool { return segs[i].first > r.o.FromSeq })
		return r.open(segs[max(i-1, 0)], 0)
	case !r.o.Since.IsZero():
		// The last segment starting at or before Since; unknown start times count as
		// after Since, so that the search errs towards older segments.
		i := sort.Search(len(segs), func(i int) bool {
			t, ok := segs[i].firstRecordTime()
			return !ok || t.After(r.o.Since)
		})
		return r.open(segs[max(i-1, 0)], 0)
	default:
		return r.open(segs[0], 0)
	}
}

// open switches to seg at offset off, or to the next existing segment when seg is gone.
func (r *Reader) open(seg *segment, off int64) error {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	r.r, r.w, r.discard = 0, 0, false
	for {
		f, err := os.Open(seg.path)
		if err == nil {
			r.seg, r.f, r.off = seg, f, off
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("store: open segment: %w", err)
		}
		// Evicted meanwhile: the next one, or the oldest when the ring moved past it.
		next := r.s.segmentAfter(seg.first)
		if oldest := r.s.oldestSegment(); oldest != nil && (next == nil || oldest.first > next.first) {
			next = oldest
		}
		if next == nil || next.first <= seg.first {
			return fmt.Errorf("store: open segment: %w", err)
		}
		seg, off = next, 0
	}
}

// segments returns the readers' view of the segment list.
func (s *Store) segments() []*segment { return *s.segsView.Load() }

// oldestSegment returns the oldest segment in the readers' view.
func (s *Store) oldestSegment() *segment {
	if segs := s.segments(); len(segs) > 0 {
		return segs[0]
	}
	return nil
}

// segmentAfter returns the first segment after the one starting at first, or nil.
func (s *Store) segmentAfter(first uint64) *segment {
	segs := s.segments()
	i := sort.Search(len(segs), func(i int) bool { return segs[i].first > first })
	if i < len(segs) {
		return segs[i]
	}
	return nil
}

// notifyChan returns a channel closed the next time bytes reach a segment file.
func (s *Store) notifyChan() <-chan struct{} { return *s.notify.Load() }

// Export writes the matching records to w as NDJSON, one stored line per record, and
// returns how many it wrote. Without Follow it ends at the end of the ring.
func (s *Store) Export(ctx context.Context, w io.Writer, opts ReadOptions) (records int64, err error) {
	r := s.Reader(opts)
	defer r.Close()
	bw := bufio.NewWriterSize(w, 256<<10)
	for {
		_, line, err := r.next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			bw.Flush()
			return records, err
		}
		bw.Write(line)
		if err := bw.WriteByte('\n'); err != nil {
			return records, fmt.Errorf("store: export: %w", err)
		}
		records++
		if opts.Follow && r.w == r.r {
			// Nothing more buffered: let the consumer see what we have before waiting.
			if err := bw.Flush(); err != nil {
				return records, fmt.Errorf("store: export: %w", err)
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return records, fmt.Errorf("store: export: %w", err)
	}
	return records, nil
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Segments int
	Bytes    int64
	Records  uint64
	// Damaged lines were skipped; Missed sequence numbers were not found (evicted while
	// verifying, dropped, or inside damaged lines).
	Damaged, Missed   uint64
	FirstSeq, LastSeq uint64
	Oldest, Newest    time.Time
}

// Verify reads every record of the ring once and reports what it found. It does not stop
// the writer; it fails only when reading fails or ctx ends.
func (s *Store) Verify(ctx context.Context) (VerifyReport, error) {
	var rep VerifyReport
	for _, sg := range s.segments() {
		if fi, err := os.Stat(sg.path); err == nil {
			rep.Segments++
			rep.Bytes += fi.Size()
		}
	}
	r := s.Reader(ReadOptions{})
	defer r.Close()
	for {
		p, _, err := r.nextLine(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return rep, err
		}
		rep.Records++
		if rep.FirstSeq == 0 {
			rep.FirstSeq = p.seq
		}
		rep.LastSeq = p.seq
		if rep.Oldest.IsZero() || p.time.Before(rep.Oldest) {
			rep.Oldest = p.time
		}
		if p.time.After(rep.Newest) {
			rep.Newest = p.time
		}
	}
	rep.Damaged, rep.Missed = r.stats.Damaged, r.stats.Missed
	return rep, nil
}
