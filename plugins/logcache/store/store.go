package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrClosed is returned by a Store (and its followers) after Close.
	ErrClosed = errors.New("store: closed")
	// ErrDropped means some of the records could not be written (full disk, I/O error) or
	// their fdatasync failed: they are not acknowledged. The cause is wrapped alongside.
	ErrDropped = errors.New("store: records not stored")
	// ErrTooLarge is wrapped by Write when an entry would not fit in one line or segment.
	ErrTooLarge = errors.New("record too large")
	// ErrLocked is returned by Open when another Store holds the directory.
	ErrLocked = errors.New("directory in use by another store")
)

const (
	// bufSize is the write buffer: records are written to the file in one write(2) per
	// buffer. It is the store's only large allocation.
	bufSize = 1 << 20
	// writebackChunk: after this many bytes written to a segment, the kernel is asked to
	// start writing them back, so that the periodic fdatasync finds little dirty data.
	writebackChunk = 8 << 20
	// maxFailures is how many failed sequence ranges are remembered for WaitDurable.
	maxFailures = 64
)

// failure is a range of sequence numbers that will never be acknowledged.
type failure struct {
	first, last uint64
	err         error
}

// pendingFile is a rotated segment waiting for its fdatasync before it is closed.
type pendingFile struct {
	seg *segment
	f   *os.File
}

// Store is an open log cache directory. Its methods are safe for concurrent use.
type Store struct {
	dir    string
	lock   *os.File
	cancel context.CancelFunc
	wg     sync.WaitGroup
	reconf chan time.Duration
	wbCh   chan writebackReq
	closed chan struct{} // closed by Close, after the last flush

	// syncSem serializes sync steps (and Close); a channel so that waiting honours ctx.
	syncSem chan struct{}

	// Readers' view, published without locks.
	segsView atomic.Pointer[[]*segment]
	notify   atomic.Pointer[chan struct{}] // closed and replaced after bytes reach a file
	damaged  atomic.Uint64                 // damaged lines skipped by readers

	mu             sync.Mutex
	opts           Options
	logger         *slog.Logger
	enc            encoder
	src            string // the last source and its JSON encoding
	srcJSON        []byte
	buf            []byte // records not yet written; cap bufSize
	bufFirst       uint64 // seq of the first record in buf
	bufRecords     int
	nextSeq        uint64 // next seq to hand out
	written        uint64 // every seq <= written is in a file or failed
	acked          uint64 // every seq <= acked is acknowledged under the policy, or failed
	segs           []*segment
	active         *os.File // the last segment, open for writing
	activeFlushed  int64    // bytes in the active file
	kickedOff      int64    // writeback started up to here in the active file
	writeback      int64    // writebackChunk; 0 disables (benchmarks compare)
	rotateNext     bool     // the active segment must not take more records
	pending        []pendingFile
	total          int64 // sum of segment sizes, buffer included
	syncCh         chan struct{}
	failures       []failure
	closing        bool
	shut           bool // files closed
	writeErr       error
	syncErr        error
	capacityWarn   string
	newest         time.Time
	stats          Stats
	lastDropLogged time.Time

	// afterChange, when set (by tests), runs under mu after every change to the files:
	// a write, a creation, a deletion.
	afterChange func()
}

// Open opens (creating when needed) the store in opts.Dir, repairs the tail of its last
// segment, evicts down to MaxBytes and starts the periodic sync. It fails when the
// options are invalid, the directory cannot be used, or another Store holds it.
func Open(opts Options) (*Store, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	o.Dir = filepath.Clean(o.Dir)
	if err := makeDir(o.Dir); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	lock, err := lockDir(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", o.Dir, err)
	}
	s := &Store{
		dir:       o.Dir,
		lock:      lock,
		reconf:    make(chan time.Duration, 1),
		wbCh:      make(chan writebackReq, 4),
		closed:    make(chan struct{}),
		syncSem:   make(chan struct{}, 1),
		opts:      o,
		logger:    o.Logger,
		buf:       make([]byte, 0, bufSize),
		writeback: writebackChunk,
		syncCh:    make(chan struct{}),
	}
	if err := s.load(); err != nil {
		if s.active != nil {
			s.active.Close()
		}
		lock.Close()
		return nil, fmt.Errorf("store: open %s: %w", o.Dir, err)
	}
	ch := make(chan struct{})
	s.notify.Store(&ch)
	s.mu.Lock()
	s.enforceBoundLocked()
	s.publishSegsLocked()
	s.mu.Unlock()
	s.checkCapacity()
	s.logger.Info("log cache opened", "dir", s.dir, "segments", len(s.segs), "bytes", s.total,
		"next_seq", s.nextSeq, "repaired_bytes", s.stats.TailRepairedBytes,
		"max_bytes", o.MaxBytes, "sync", o.Sync.String())

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go s.run(ctx, o.SyncInterval)
	go s.writebackLoop(ctx)
	return s, nil
}

// writebackReq asks for the writeback of f[off:off+n) to start.
type writebackReq struct {
	f      *os.File
	off, n int64
}

// writebackLoop starts the kernel's writeback of what was written, outside the writer's
// lock: sync_file_range may block while the device queue is full, and that must not stall
// appends. A file closed meanwhile (rotated and synced) is skipped.
func (s *Store) writebackLoop(ctx context.Context) {
	defer s.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-s.wbCh:
			startWriteback(r.f, r.off, r.n)
		}
	}
}

// makeDir creates dir and its missing parents, fsyncing each parent it added an entry to.
func makeDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := makeDir(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create the log cache directory: %w", err)
	}
	return syncDir(parent)
}

// load reads the directory: lists the segments, repairs the last one and opens it.
func (s *Store) load() error {
	segs, err := listSegments(s.dir)
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		seg, f, err := s.createSegment(1)
		if err != nil {
			return err
		}
		s.segs, s.active, s.nextSeq = []*segment{seg}, f, 1
		return nil
	}
	last := segs[len(segs)-1]
	f, err := os.OpenFile(last.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open last segment: %w", err)
	}
	rec, end, found, err := tailScan(f, last.size, last.first, MaxLineBytes)
	switch {
	case err != nil:
		// Unreadable tail: leave the file alone and start a new segment after it, with
		// sequence numbers beyond anything it can hold.
		s.logger.Error("log cache: cannot read the last segment; starting a new one", "segment", last.path, "err", err)
		f.Close()
		s.segs = segs
		s.nextSeq = last.first + uint64(last.size/int64(minLineLength)) + 1
		seg, nf, err := s.createSegment(s.nextSeq)
		if err != nil {
			return err
		}
		s.segs = append(s.segs, seg)
		s.active = nf
		s.written, s.acked = s.nextSeq-1, s.nextSeq-1
		for _, sg := range s.segs {
			s.total += sg.size
		}
		return nil
	case found:
		s.nextSeq = rec.Seq + 1
		s.newest = rec.Time
	default:
		s.nextSeq = last.first
		end = 0
		// The newest time is in an earlier segment, if anywhere.
		for i := len(segs) - 2; i >= 0 && i >= len(segs)-4; i-- {
			if prev, err := os.Open(segs[i].path); err == nil {
				r, _, ok, _ := tailScan(prev, segs[i].size, segs[i].first, MaxLineBytes)
				prev.Close()
				if ok {
					s.newest = r.Time
					break
				}
			}
		}
	}
	if end < last.size {
		cut := last.size - end
		if err := f.Truncate(end); err != nil {
			f.Close()
			return fmt.Errorf("cut damaged tail of %s: %w", last.path, err)
		}
		if err := fdatasync(f); err != nil {
			f.Close()
			return err
		}
		s.stats.TailRepairedBytes = cut
		s.logger.Warn("log cache: cut a damaged tail off the last segment", "segment", last.path,
			"bytes", cut, "kept_bytes", end)
		last.size = end
	}
	s.segs, s.active, s.activeFlushed, s.kickedOff = segs, f, end, end
	s.written, s.acked = s.nextSeq-1, s.nextSeq-1
	for _, sg := range segs {
		s.total += sg.size
	}
	if s.updateCurrentLink(last) {
		return syncDir(s.dir)
	}
	return nil
}

// createSegment creates the (empty) segment file for first, points the current link at it
// and makes both names durable.
func (s *Store) createSegment(first uint64) (*segment, *os.File, error) {
	seg := &segment{first: first, path: filepath.Join(s.dir, segmentName(first))}
	f, err := os.OpenFile(seg.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("create segment: %w", err)
	}
	s.updateCurrentLink(seg)
	if err := syncDir(s.dir); err != nil {
		f.Close()
		os.Remove(seg.path)
		return nil, nil, err
	}
	return seg, f, nil
}

// updateCurrentLink points the "current" symlink at seg, for tail -F, and reports whether
// it changed it. Failures are logged only: the link is a convenience.
func (s *Store) updateCurrentLink(seg *segment) bool {
	link, target := filepath.Join(s.dir, currentLink), filepath.Base(seg.path)
	if old, err := os.Readlink(link); err == nil && old == target {
		return false
	}
	tmp := filepath.Join(s.dir, ".current.tmp")
	os.Remove(tmp)
	err := os.Symlink(target, tmp)
	if err == nil {
		err = os.Rename(tmp, link)
	}
	if err != nil {
		s.logger.Debug("log cache: cannot update the current link", "err", err)
		return false
	}
	return true
}

// checkCapacity warns when the filesystem cannot hold MaxBytes on top of what it holds.
func (s *Store) checkCapacity() {
	avail, fsTotal, err := fsSpace(s.dir)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.logger.Warn("log cache: cannot check free space", "err", err)
		return
	}
	s.capacityWarn = ""
	if room := avail + s.total; room < s.opts.MaxBytes {
		s.capacityWarn = fmt.Sprintf("the filesystem of %s can hold %d bytes of log cache (free %d + used %d, filesystem size %d), less than max_bytes %d: the disk will fill before the ring does",
			s.dir, room, avail, s.total, fsTotal, s.opts.MaxBytes)
		s.logger.Warn("log cache: filesystem smaller than max_bytes", "dir", s.dir, "room", room,
			"free", avail, "used", s.total, "max_bytes", s.opts.MaxBytes)
	}
}

// run owns the periodic flush and sync until ctx ends.
func (s *Store) run(ctx context.Context, interval time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-s.reconf:
			t.Reset(d)
		case <-t.C:
			s.mu.Lock()
			policy := s.opts.Sync
			dirty := len(s.buf) > 0 || s.written > s.acked || len(s.pending) > 0
			if dirty && policy == PolicyNever {
				s.flushLocked(len(s.buf))
			}
			s.mu.Unlock()
			if dirty && policy != PolicyNever {
				if err := s.syncStep(ctx, 0); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed) {
					s.logger.Error("log cache: sync failed", "err", err)
				}
			}
		}
	}
}

// Write encodes entries into the write buffer and hands them sequence numbers first..last,
// without waiting for them to be durable (see WaitDurable). Nothing is written when an
// entry is invalid (data that is not one JSON value, a time outside years 1-9999, a record
// larger than MaxLineBytes or the segment size). Writing to the files may happen in this
// call (when the buffer fills) or later.
func (s *Store) Write(entries []Entry) (first, last uint64, err error) {
	if len(entries) == 0 {
		return 0, 0, nil
	}
	s.mu.Lock()
	lineLimit := int(s.opts.lineLimit())
	s.mu.Unlock()
	compacted, err := checkEntries(entries, lineLimit)
	if err != nil {
		return 0, 0, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return 0, 0, ErrClosed
	}
	if limit := int(s.opts.lineLimit()); limit < lineLimit {
		// Reconfigured meanwhile to smaller segments.
		if _, err := checkEntries(entries, limit); err != nil {
			return 0, 0, err
		}
	}
	now := s.opts.Now()
	first = s.nextSeq
	for i := range entries {
		e := &entries[i]
		t := e.Time
		if t.IsZero() {
			t = now
		}
		data := []byte(e.Data)
		if c, ok := compacted[i]; ok {
			data = c
		} else if len(data) == 0 {
			data = []byte("null")
		}
		s.appendLocked(t, e.Source, data)
	}
	return first, s.nextSeq - 1, nil
}

// appendLocked adds one record to the buffer, rotating and evicting first as needed.
func (s *Store) appendLocked(t time.Time, src string, data []byte) {
	if s.srcJSON == nil || src != s.src {
		s.src, s.srcJSON = src, appendJSONString(s.srcJSON[:0], src)
	}
	if ub := lineUpperBound(len(s.srcJSON), len(data)); len(s.buf)+ub > cap(s.buf) {
		s.flushLocked(len(s.buf))
	}
	start := len(s.buf)
	seq := s.nextSeq
	s.buf = s.enc.appendRecord(s.buf, t, s.srcJSON, seq, data)
	n := int64(len(s.buf) - start)
	act := s.segs[len(s.segs)-1]
	if act.size > 0 && (s.rotateNext || act.size+n > s.opts.segmentLimit()) {
		s.rotateLocked(start)
		act = s.segs[len(s.segs)-1]
	}
	for s.total+n > s.opts.MaxBytes && s.evictOldestLocked("max_bytes") {
	}
	if s.bufRecords == 0 {
		s.bufFirst = seq
	}
	s.bufRecords++
	s.nextSeq++
	if act.size == 0 {
		act.firstTime.Store(t.UnixNano())
	}
	act.size += n
	s.total += n
	s.newest = t
}

// flushLocked writes buf[:upto] (which holds all bufRecords records) to the active
// segment and keeps buf[upto:] (the start of a record not yet counted). On ENOSPC it
// evicts the oldest segments and retries; when that is not enough, or on another error, it
// cuts any partial line and drops the records it could not write.
func (s *Store) flushLocked(upto int) {
	data := s.buf[:upto]
	wrote := false
	for len(data) > 0 {
		n, err := s.active.WriteAt(data, s.activeFlushed)
		s.changed()
		if err == nil {
			s.activeFlushed += int64(n)
			s.settleLocked(s.bufRecords, n)
			wrote = true
			break
		}
		// Keep the complete lines that made it; cut the partial one. The file may hold more
		// than n bytes of data (tmpfs fills a page, then reports nothing written), so it is
		// cut at the boundary whatever its size.
		keep := bytes.LastIndexByte(data[:n], '\n') + 1
		s.activeFlushed += int64(keep)
		if terr := s.active.Truncate(s.activeFlushed); terr != nil {
			s.logger.Error("log cache: cannot cut a partial line; starting a new segment", "err", terr)
			s.rotateNext = true
		}
		s.changed()
		if keep > 0 {
			s.settleLocked(bytes.Count(data[:keep], []byte{'\n'}), keep)
			wrote = true
		}
		data = data[keep:]
		if isNoSpace(err) && s.evictOldestLocked("no space left on device") {
			continue
		}
		s.dropLocked(data, err)
		data = nil
	}
	rest := copy(s.buf, s.buf[upto:])
	s.buf = s.buf[:rest]
	if wrote {
		s.writeErr = nil
		if s.writeback > 0 && s.opts.Sync != PolicyNever && s.activeFlushed-s.kickedOff >= s.writeback {
			select {
			case s.wbCh <- writebackReq{s.active, s.kickedOff, s.activeFlushed - s.kickedOff}:
				s.kickedOff = s.activeFlushed
			default: // the writeback goroutine is busy: ask again after the next write
			}
		}
		ch := make(chan struct{})
		close(*s.notify.Swap(&ch))
	}
	if s.opts.Sync == PolicyNever && s.acked < s.written {
		s.acked = s.written
		s.wakeLocked()
	}
}

func (s *Store) changed() {
	if s.afterChange != nil {
		s.afterChange()
	}
}

// settleLocked records that the first k buffered records (n bytes) are in the file.
func (s *Store) settleLocked(k, n int) {
	s.bufFirst += uint64(k)
	s.bufRecords -= k
	s.written = s.bufFirst - 1
	s.stats.RecordsWritten += uint64(k)
	s.stats.BytesWritten += uint64(n)
}

// dropLocked gives up on the buffered records in data (all bufRecords of them).
func (s *Store) dropLocked(data []byte, cause error) {
	k := s.bufRecords
	first, last := s.bufFirst, s.bufFirst+uint64(k)-1
	s.bufFirst += uint64(k)
	s.bufRecords = 0
	s.written = s.bufFirst - 1
	s.segs[len(s.segs)-1].size -= int64(len(data))
	s.total -= int64(len(data))
	s.stats.RecordsDropped += uint64(k)
	s.writeErr = cause
	if !isNoSpace(cause) {
		s.rotateNext = true // do not append after an I/O error in this file
	}
	s.failLocked(first, last, fmt.Errorf("%w: seq %d-%d: %w", ErrDropped, first, last, cause))
	if now := time.Now(); now.Sub(s.lastDropLogged) >= time.Second {
		s.lastDropLogged = now
		s.logger.Error("log cache: dropped records", "first_seq", first, "last_seq", last,
			"dropped_total", s.stats.RecordsDropped, "err", cause)
	}
}

// failLocked remembers that first..last will never be acknowledged and wakes waiters.
func (s *Store) failLocked(first, last uint64, err error) {
	if first > last {
		return
	}
	if len(s.failures) == maxFailures {
		s.failures = append(s.failures[:0], s.failures[1:]...)
	}
	s.failures = append(s.failures, failure{first, last, err})
	s.wakeLocked()
}

// wakeLocked wakes everything waiting in WaitDurable.
func (s *Store) wakeLocked() {
	close(s.syncCh)
	s.syncCh = make(chan struct{})
}

// rotateLocked writes buf[:upto] to the active segment and starts a new one for the
// records from nextSeq on. When the new file cannot be created it goes on with the old one.
func (s *Store) rotateLocked(upto int) {
	s.flushLocked(upto)
	var (
		seg *segment
		f   *os.File
		err error
	)
	for {
		seg, f, err = s.createSegment(s.nextSeq)
		if err == nil || !isNoSpace(err) || !s.evictOldestLocked("no space left on device") {
			break
		}
	}
	if err != nil {
		s.logger.Error("log cache: cannot start a new segment; going on with the current one", "err", err)
		return
	}
	s.changed()
	old := pendingFile{seg: s.segs[len(s.segs)-1], f: s.active}
	if s.opts.Sync == PolicyNever {
		old.f.Close()
	} else {
		s.pending = append(s.pending, old)
	}
	s.active, s.activeFlushed, s.kickedOff, s.rotateNext = f, 0, 0, false
	s.segs = append(s.segs, seg)
	s.publishSegsLocked()
}

// evictOldestLocked deletes the oldest segment unless it is the active one.
func (s *Store) evictOldestLocked(why string) bool {
	if len(s.segs) < 2 {
		return false
	}
	seg := s.segs[0]
	for i, p := range s.pending {
		if p.seg == seg {
			p.f.Close()
			s.pending = append(s.pending[:i], s.pending[i+1:]...)
			break
		}
	}
	if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.logger.Error("log cache: cannot delete the oldest segment", "segment", seg.path, "err", err)
		return false
	}
	s.changed()
	s.segs[0] = nil
	s.segs = s.segs[1:]
	s.total -= seg.size
	s.stats.SegmentsEvicted++
	s.stats.BytesEvicted += uint64(seg.size)
	s.stats.RecordsEvicted += s.segs[0].first - seg.first
	if err := syncDir(s.dir); err != nil {
		s.logger.Error("log cache: fsync after deleting a segment", "err", err)
	}
	s.publishSegsLocked()
	s.logger.Debug("log cache: evicted segment", "segment", seg.path, "bytes", seg.size, "why", why)
	return true
}

// enforceBoundLocked evicts until the ring fits MaxBytes, starting a new segment when the
// active one alone is too large.
func (s *Store) enforceBoundLocked() {
	for s.total > s.opts.MaxBytes && s.evictOldestLocked("max_bytes") {
	}
	if act := s.segs[len(s.segs)-1]; act.size > s.opts.segmentLimit() {
		s.rotateNext = true
	}
	if s.total > s.opts.MaxBytes && s.segs[len(s.segs)-1].size > 0 {
		s.rotateLocked(len(s.buf))
		for s.total > s.opts.MaxBytes && s.evictOldestLocked("max_bytes") {
		}
	}
}

// publishSegsLocked gives readers the current list of segments.
func (s *Store) publishSegsLocked() {
	v := append([]*segment(nil), s.segs...)
	s.segsView.Store(&v)
}

// syncStep writes the buffer and fdatasyncs every file holding unacknowledged records,
// then acknowledges what it covered. Concurrent callers queue; a caller that only needs
// the records up to need (0: everything) returns at once when the fdatasync of the caller
// before it covered them (group commit).
func (s *Store) syncStep(ctx context.Context, need uint64) error {
	select {
	case s.syncSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.syncSem }()

	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		return ErrClosed
	}
	if need > 0 && s.acked >= need {
		s.mu.Unlock()
		return nil
	}
	s.flushLocked(len(s.buf))
	target := s.written
	if target <= s.acked && len(s.pending) == 0 {
		s.mu.Unlock()
		return nil
	}
	pend := s.pending
	s.pending = nil
	active := s.active
	s.mu.Unlock()

	start := time.Now()
	var errs []error
	for _, p := range pend {
		if err := fdatasync(p.f); err != nil && !errors.Is(err, errFileClosed) {
			errs = append(errs, err)
		}
	}
	if err := fdatasync(active); err != nil && !errors.Is(err, errFileClosed) {
		errs = append(errs, err)
	}
	took := time.Since(start)
	for _, p := range pend {
		p.f.Close()
	}
	err := errors.Join(errs...)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Syncs++
	s.stats.LastSyncDuration = took
	s.stats.MaxSyncDuration = max(s.stats.MaxSyncDuration, took)
	if err != nil {
		// The kernel may have dropped the dirty pages: nothing up to target can be
		// acknowledged, and the active file is not trusted any more.
		s.syncErr = err
		s.rotateNext = true
		s.failLocked(s.acked+1, target, fmt.Errorf("%w: %w", ErrDropped, err))
		s.acked = max(s.acked, target)
		s.logger.Error("log cache: fdatasync failed", "err", err)
		return err
	}
	s.syncErr = nil
	if target > s.acked {
		s.acked = target
		s.wakeLocked()
	}
	return nil
}

// WaitDurable waits until the records first..last (as returned by Write) are as durable
// as the policy says: it fdatasyncs itself under PolicyAlways, waits for the periodic sync
// under PolicyInterval, writes the buffer under PolicyNever. It returns an error wrapping
// ErrDropped when some of them could not be stored, ctx's error when ctx ends first (the
// records may still be stored later), or ErrClosed.
func (s *Store) WaitDurable(ctx context.Context, first, last uint64) error {
	for {
		s.mu.Lock()
		if last >= s.nextSeq {
			s.mu.Unlock()
			return fmt.Errorf("store: wait for seq %d: not written yet (next is %d)", last, s.nextSeq)
		}
		for _, f := range s.failures {
			if f.first <= last && first <= f.last {
				s.mu.Unlock()
				return f.err
			}
		}
		if s.acked >= last {
			s.mu.Unlock()
			return nil
		}
		if s.shut {
			s.mu.Unlock()
			return ErrClosed
		}
		policy, ch := s.opts.Sync, s.syncCh
		if policy == PolicyNever {
			s.flushLocked(len(s.buf))
			s.mu.Unlock()
			continue
		}
		s.mu.Unlock()
		if policy == PolicyAlways {
			// Whatever the outcome, the next round sees it: acknowledged, failed or closed.
			if err := s.syncStep(ctx, last); err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Append writes entries and waits until they are as durable as the policy says (Write,
// then WaitDurable). It returns the sequence numbers given to the first and last entry;
// on an error after the records were numbered, they are returned too.
func (s *Store) Append(ctx context.Context, entries []Entry) (first, last uint64, err error) {
	first, last, err = s.Write(entries)
	if err != nil || len(entries) == 0 {
		return first, last, err
	}
	return first, last, s.WaitDurable(ctx, first, last)
}

// Sync writes the buffer and fdatasyncs the active segment now, whatever the policy.
func (s *Store) Sync(ctx context.Context) error {
	return s.syncStep(ctx, 0)
}

// Reconfigure applies new options live: a smaller MaxBytes evicts at once, a new segment
// size applies to the next rotation, a new policy to the next acknowledgement, a new
// interval to the next tick. Dir cannot change (empty means the same).
func (s *Store) Reconfigure(opts Options) error {
	if opts.Dir == "" {
		opts.Dir = s.dir
	}
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	if filepath.Clean(o.Dir) != s.dir {
		return fmt.Errorf("store: reconfigure: the directory cannot change (%s to %s)", s.dir, o.Dir)
	}
	o.Dir = s.dir
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrClosed
	}
	old := s.opts
	s.opts, s.logger = o, o.Logger
	if old.Sync != PolicyNever && o.Sync == PolicyNever {
		s.flushLocked(len(s.buf))
	}
	s.enforceBoundLocked()
	s.wakeLocked() // waiters re-read the policy
	s.mu.Unlock()
	if o.SyncInterval != old.SyncInterval {
		select {
		case <-s.reconf:
		default:
		}
		s.reconf <- o.SyncInterval
	}
	if o.MaxBytes > old.MaxBytes {
		s.checkCapacity()
	}
	s.logger.Info("log cache reconfigured", "max_bytes", o.MaxBytes, "segment_bytes", o.segmentLimit(),
		"sync", o.Sync.String(), "sync_interval", o.SyncInterval)
	return nil
}

// Close writes and fdatasyncs what is buffered (whatever the policy), closes the files and
// releases the directory. Waiting appends are acknowledged or fail; followers end with
// ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closing = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()

	s.syncSem <- struct{}{}
	defer func() { <-s.syncSem }()
	s.mu.Lock()
	s.flushLocked(len(s.buf))
	var errs []error
	for _, p := range s.pending {
		if err := fdatasync(p.f); err != nil && !errors.Is(err, errFileClosed) {
			errs = append(errs, err)
		}
		p.f.Close()
	}
	s.pending = nil
	if err := fdatasync(s.active); err != nil {
		errs = append(errs, err)
	}
	if err := s.active.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close %s: %w", s.active.Name(), err))
	}
	err := errors.Join(errs...)
	if err != nil {
		s.failLocked(s.acked+1, s.written, fmt.Errorf("%w: %w", ErrDropped, err))
	}
	s.acked = max(s.acked, s.written)
	s.shut = true
	s.wakeLocked()
	s.mu.Unlock()
	close(s.closed)
	if lerr := s.lock.Close(); lerr != nil {
		err = errors.Join(err, fmt.Errorf("release lock: %w", lerr))
	}
	if err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Stats are the store's counters. Counts are since Open unless said otherwise.
type Stats struct {
	// BytesWritten and RecordsWritten count what reached the segment files.
	BytesWritten   uint64
	RecordsWritten uint64
	// Segments is how many segment files there are; Bytes their total size (buffer
	// included), never above MaxBytes.
	Segments int
	Bytes    int64
	MaxBytes int64
	// SegmentsEvicted, BytesEvicted and RecordsEvicted count what was deleted to stay
	// within MaxBytes (or to make room on a full disk).
	SegmentsEvicted uint64
	BytesEvicted    uint64
	RecordsEvicted  uint64
	// RecordsDropped counts records that could not be written at all.
	RecordsDropped uint64
	// RecordsDamaged counts damaged lines readers of this Store skipped.
	RecordsDamaged uint64
	// TailRepairedBytes is how much Open cut off the last segment.
	TailRepairedBytes int64
	// FirstSeq is the lowest sequence number the ring may hold, LastSeq the last handed out
	// (0 when none yet).
	FirstSeq, LastSeq uint64
	// Oldest and Newest are the times of the oldest and newest records (zero if unknown).
	Oldest, Newest time.Time
	// Syncs counts fdatasync rounds; LastSyncDuration is how long the last one took,
	// MaxSyncDuration the longest.
	Syncs            uint64
	LastSyncDuration time.Duration
	MaxSyncDuration  time.Duration
	// CapacityWarning is set when the filesystem cannot hold MaxBytes.
	CapacityWarning string
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	st.Segments = len(s.segs)
	st.Bytes = s.total
	st.MaxBytes = s.opts.MaxBytes
	st.FirstSeq = s.segs[0].first
	st.LastSeq = s.nextSeq - 1
	st.Newest = s.newest
	st.CapacityWarning = s.capacityWarn
	oldest := s.segs[0]
	empty := s.total == 0
	s.mu.Unlock()
	st.RecordsDamaged = s.damaged.Load()
	if !empty {
		if t, ok := oldest.firstRecordTime(); ok {
			st.Oldest = t
		}
	}
	return st
}

// Health reports false and a reason while the store cannot write (its last write or
// fdatasync failed); it recovers by itself with the next one that succeeds.
func (s *Store) Health() (ok bool, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.shut:
		return false, "closed"
	case s.writeErr != nil:
		return false, fmt.Sprintf("cannot write (%d records dropped so far): %v", s.stats.RecordsDropped, s.writeErr)
	case s.syncErr != nil:
		return false, fmt.Sprintf("fdatasync failed: %v", s.syncErr)
	}
	return true, ""
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }
