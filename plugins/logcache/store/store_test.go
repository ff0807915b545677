package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// openTest opens a store in a fresh directory (unless opts.Dir is set) and closes it at
// the end of the test.
func openTest(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testWriter sends log output to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// payload is the data of the record with sequence number seq, n bytes of JSON.
func payload(seq uint64, n int) json.RawMessage {
	head := fmt.Sprintf(`{"seq":%d,"pad":"`, seq)
	pad := max(n-len(head)-2, 0)
	b := make([]byte, 0, len(head)+pad+2)
	b = append(b, head...)
	for i := range pad {
		b = append(b, 'a'+byte((int(seq)+i)%26))
	}
	return append(b, '"', '}')
}

func entries(src string, n, size int) []Entry {
	es := make([]Entry, n)
	for i := range es {
		es[i] = Entry{Source: src, Data: json.RawMessage(fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("x", size)))}
	}
	return es
}

// readAll reads the whole ring without following.
func readAll(t testing.TB, s *Store, opts ReadOptions) ([]Record, ReaderStats) {
	t.Helper()
	r := s.Reader(opts)
	defer r.Close()
	var recs []Record
	for {
		rec, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return recs, r.Stats()
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		recs = append(recs, rec)
	}
}

// dirBytes sums the sizes of the segment files in dir.
func dirBytes(t testing.TB, dir string) int64 {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, s := range segs {
		n += s.size
	}
	return n
}

func TestAppendAndRead(t *testing.T) {
	ctx := context.Background()
	clock := time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)
	s := openTest(t, Options{Sync: PolicyAlways, Now: func() time.Time { return clock }})
	t0 := time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)
	var all []Entry
	for i := range 100 {
		src := "proxy"
		if i%3 == 0 {
			src = "vrrp"
		}
		e := Entry{Time: t0.Add(time.Duration(i) * time.Second), Source: src, Data: payload(uint64(i+1), 60)}
		if i == 99 {
			e.Time = time.Time{} // takes Now
			e.Data = json.RawMessage(`"plain text line"`)
		}
		all = append(all, e)
	}
	first, last, err := s.Append(ctx, all[:40])
	if err != nil || first != 1 || last != 40 {
		t.Fatalf("Append = %d, %d, %v", first, last, err)
	}
	first, last, err = s.Append(ctx, all[40:])
	if err != nil || first != 41 || last != 100 {
		t.Fatalf("Append = %d, %d, %v", first, last, err)
	}

	recs, st := readAll(t, s, ReadOptions{})
	if len(recs) != 100 || st.Damaged != 0 || st.Missed != 0 {
		t.Fatalf("read %d records, stats %+v", len(recs), st)
	}
	for i, r := range recs {
		want := all[i]
		if want.Time.IsZero() {
			want.Time = clock
		}
		if r.Seq != uint64(i+1) || !r.Time.Equal(want.Time) || r.Source != want.Source || !bytes.Equal(r.Data, want.Data) {
			t.Fatalf("record %d = %+v, want %+v", i, r, want)
		}
	}

	// Filters.
	recs, _ = readAll(t, s, ReadOptions{Source: "vrrp"})
	if len(recs) != 34 {
		t.Fatalf("source filter: %d records", len(recs))
	}
	recs, _ = readAll(t, s, ReadOptions{Source: "pro*"})
	if len(recs) != 66 {
		t.Fatalf("source prefix: %d records", len(recs))
	}
	recs, _ = readAll(t, s, ReadOptions{Since: t0.Add(10 * time.Second), Until: t0.Add(20 * time.Second)})
	if len(recs) != 10 || recs[0].Seq != 11 || recs[9].Seq != 20 {
		t.Fatalf("time range: %d records %v", len(recs), recs)
	}
	recs, _ = readAll(t, s, ReadOptions{FromSeq: 95})
	if len(recs) != 6 || recs[0].Seq != 95 {
		t.Fatalf("FromSeq: %d records", len(recs))
	}
	recs, _ = readAll(t, s, ReadOptions{FromEnd: true})
	if len(recs) != 0 {
		t.Fatalf("FromEnd: %d records", len(recs))
	}

	st2 := s.Stats()
	if st2.RecordsWritten != 100 || st2.LastSeq != 100 || st2.FirstSeq != 1 || !st2.Oldest.Equal(t0) || !st2.Newest.Equal(clock) || st2.Syncs == 0 {
		t.Fatalf("stats %+v", st2)
	}
	if ok, why := s.Health(); !ok {
		t.Fatalf("health: %s", why)
	}

	// The files are plain NDJSON: every line decodes with encoding/json.
	f, err := os.Open(filepath.Join(s.Dir(), segmentName(1)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var v map[string]any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		n++
	}
	if n != 100 {
		t.Fatalf("%d lines in the segment", n)
	}
}

func TestWriteRejectsInvalidBatch(t *testing.T) {
	s := openTest(t, Options{Sync: PolicyNever})
	_, _, err := s.Append(context.Background(), []Entry{{Data: json.RawMessage(`{}`)}, {Data: json.RawMessage(`{"a":`)}})
	if err == nil {
		t.Fatal("invalid batch accepted")
	}
	if first, last, err := s.Append(context.Background(), []Entry{{Data: json.RawMessage(` [ 1 ]`)}}); err != nil || first != 1 || last != 1 {
		t.Fatalf("Append after a rejected batch = %d, %d, %v", first, last, err)
	}
	recs, _ := readAll(t, s, ReadOptions{})
	if len(recs) != 1 || string(recs[0].Data) != "[1]" {
		t.Fatalf("records %+v", recs)
	}
}

func TestExclusiveLock(t *testing.T) {
	dir := t.TempDir()
	openTest(t, Options{Dir: dir})
	if _, err := Open(Options{Dir: dir}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

func TestReopenContinuesSequence(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for round := range 3 {
		s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 8 << 10})
		if err != nil {
			t.Fatal(err)
		}
		first, _, err := s.Append(ctx, entries("a", 50, 100))
		if err != nil || first != uint64(round*50+1) {
			t.Fatalf("round %d: first = %d, %v", round, first, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s := openTest(t, Options{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 8 << 10})
	recs, st := readAll(t, s, ReadOptions{})
	if len(recs) != 150 || st.Damaged != 0 || recs[149].Seq != 150 {
		t.Fatalf("%d records, %+v", len(recs), st)
	}
	if st := s.Stats(); st.Segments < 3 || st.TailRepairedBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
	link, err := os.Readlink(filepath.Join(dir, currentLink))
	if segs, _ := listSegments(dir); err != nil || link != filepath.Base(segs[len(segs)-1].path) {
		t.Fatalf("current -> %q, %v", link, err)
	}
}

func TestGroupCommit(t *testing.T) {
	s := openTest(t, Options{Sync: PolicyAlways})
	const writers, rounds = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if _, _, err := s.Append(context.Background(), entries(fmt.Sprint(w), 5, 100)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.RecordsWritten != writers*rounds*5 {
		t.Fatalf("records written %d", st.RecordsWritten)
	}
	// Each Append waited for an fdatasync; concurrent ones shared them.
	if st.Syncs == 0 || st.Syncs >= writers*rounds {
		t.Fatalf("%d fdatasyncs for %d appends", st.Syncs, writers*rounds)
	}
	t.Logf("%d appends, %d fdatasyncs", writers*rounds, st.Syncs)
}

func TestIntervalAckWaitsForSync(t *testing.T) {
	s := openTest(t, Options{Sync: PolicyInterval, SyncInterval: 200 * time.Millisecond})
	ctx := context.Background()
	first, last, err := s.Write(entries("a", 10, 10))
	if err != nil {
		t.Fatal(err)
	}
	// Not acknowledged before a sync round covered it.
	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	err = s.WaitDurable(short, first, last)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitDurable before the tick: %v", err)
	}
	syncsBefore := s.Stats().Syncs
	if err := s.WaitDurable(ctx, first, last); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Syncs <= syncsBefore {
		t.Fatalf("acknowledged without a sync: %+v", st)
	}
	if err := s.WaitDurable(ctx, last+1, last+1); err == nil {
		t.Fatal("WaitDurable for a sequence number not written yet succeeded")
	}
}

func TestNeverAcksAfterWrite(t *testing.T) {
	s := openTest(t, Options{Sync: PolicyNever, SyncInterval: time.Hour})
	if _, _, err := s.Append(context.Background(), entries("a", 3, 10)); err != nil {
		t.Fatal(err)
	}
	// Acknowledged means write(2) happened: another process sees the lines.
	out, err := exec.Command("wc", "-l", filepath.Join(s.Dir(), segmentName(1))).Output()
	if err != nil {
		t.Skipf("wc: %v", err)
	}
	if !strings.HasPrefix(strings.TrimSpace(string(out)), "3 ") {
		t.Fatalf("wc -l: %s", out)
	}
	if st := s.Stats(); st.Syncs != 0 {
		t.Fatalf("fdatasync under never: %+v", st)
	}
}

func TestFollow(t *testing.T) {
	s := openTest(t, Options{Sync: PolicyNever, MaxBytes: 1 << 20, SegmentBytes: 4 << 10})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, _, err := s.Append(ctx, entries("old", 5, 10)); err != nil {
		t.Fatal(err)
	}
	tail := s.Reader(ReadOptions{FromEnd: true, Follow: true})
	all := s.Reader(ReadOptions{Follow: true})
	defer all.Close()
	got := make(chan Record, 1000)
	defer func() {
		// A Reader is used by one goroutine at a time: stop the follower, then close.
		cancel()
		for range got {
		}
		tail.Close()
	}()
	go func() {
		for {
			r, err := tail.Next(ctx)
			if err != nil {
				close(got)
				return
			}
			got <- r
		}
	}()
	// Through several rotations.
	const n = 200
	for i := range n {
		if _, _, err := s.Append(ctx, []Entry{{Source: "new", Data: payload(uint64(i), 100)}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		select {
		case r := <-got:
			if r.Source != "new" || r.Seq != uint64(6+i) {
				t.Fatalf("followed record %d: %+v", i, r)
			}
		case <-ctx.Done():
			t.Fatalf("follower got %d of %d records", i, n)
		}
	}
	for i := range 5 + n {
		r, err := all.Next(ctx)
		if err != nil || r.Seq != uint64(i+1) {
			t.Fatalf("follow from start: %+v, %v", r, err)
		}
	}
	// A follower at the end waits, and ends with its context.
	short, c2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer c2()
	if _, err := all.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next at the end: %v", err)
	}
	if st := tail.Stats(); st.Damaged != 0 || st.Missed != 0 {
		t.Fatalf("tail stats %+v", st)
	}
}

func TestExportAndJQ(t *testing.T) {
	s := openTest(t, Options{Sync: PolicyNever})
	if _, _, err := s.Append(context.Background(), entries("a", 20, 10)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Append(context.Background(), entries("b", 10, 10)); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := s.Export(context.Background(), &buf, ReadOptions{Source: "b"})
	if err != nil || n != 10 {
		t.Fatalf("Export = %d, %v", n, err)
	}
	dec := json.NewDecoder(bytes.NewReader(buf.Bytes()))
	for i := 0; ; i++ {
		var v struct {
			Src string `json:"src"`
			Seq uint64 `json:"seq"`
		}
		if err := dec.Decode(&v); err == io.EOF {
			if i != 10 {
				t.Fatalf("%d exported lines", i)
			}
			break
		} else if err != nil || v.Src != "b" || v.Seq != uint64(21+i) {
			t.Fatalf("line %d: %+v, %v", i, v, err)
		}
	}
	if _, err := exec.LookPath("jq"); err != nil {
		t.Log("jq not installed; not checking with jq")
		return
	}
	out, err := exec.Command("jq", "-r", "select(.src == \"a\") | .seq", filepath.Join(s.Dir(), segmentName(1))).Output()
	if err != nil {
		t.Fatalf("jq: %v", err)
	}
	if lines := strings.Fields(string(out)); len(lines) != 20 || lines[19] != "20" {
		t.Fatalf("jq output %q", out)
	}
}

func TestReconfigureShrinksAtOnce(t *testing.T) {
	s := openTest(t, Options{Sync: PolicyNever, MaxBytes: 1 << 20, SegmentBytes: 16 << 10})
	for range 40 {
		if _, _, err := s.Append(context.Background(), entries("a", 20, 800)); err != nil {
			t.Fatal(err)
		}
	}
	if got := dirBytes(t, s.Dir()); got < 600<<10 {
		t.Fatalf("ring holds %d bytes before shrinking", got)
	}
	if err := s.Reconfigure(Options{Dir: s.Dir(), Sync: PolicyAlways, MaxBytes: 128 << 10, SegmentBytes: 16 << 10}); err != nil {
		t.Fatal(err)
	}
	if got := dirBytes(t, s.Dir()); got > 128<<10 {
		t.Fatalf("ring holds %d bytes right after shrinking to %d", got, 128<<10)
	}
	recs, st := readAll(t, s, ReadOptions{})
	if st.Damaged != 0 || len(recs) == 0 || recs[len(recs)-1].Seq != 800 {
		t.Fatalf("after shrinking: %d records, %+v", len(recs), st)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq != recs[i-1].Seq+1 {
			t.Fatalf("gap after shrinking: %d then %d", recs[i-1].Seq, recs[i].Seq)
		}
	}
	// The new policy applies.
	syncs := s.Stats().Syncs
	if _, _, err := s.Append(context.Background(), entries("a", 1, 10)); err != nil {
		t.Fatal(err)
	}
	if s.Stats().Syncs == syncs {
		t.Fatal("no fdatasync after switching to always")
	}
	if err := s.Reconfigure(Options{Dir: t.TempDir()}); err == nil {
		t.Fatal("Reconfigure changed the directory")
	}
}

func TestCloseAcknowledgesAndRejects(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Sync: PolicyInterval, SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	first, last, err := s.Write(entries("a", 10, 10))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.WaitDurable(context.Background(), first, last) }()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WaitDurable across Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitDurable still waiting after Close")
	}
	if _, _, err := s.Write(entries("a", 1, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	s2 := openTest(t, Options{Dir: dir})
	if recs, _ := readAll(t, s2, ReadOptions{}); len(recs) != 10 {
		t.Fatalf("%d records after reopen", len(recs))
	}
}

func TestVerify(t *testing.T) {
	s := openTest(t, Options{Sync: PolicyNever, MaxBytes: 256 << 10, SegmentBytes: 8 << 10})
	for range 10 {
		if _, _, err := s.Append(context.Background(), entries("a", 30, 200)); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := s.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 300 || rep.Damaged != 0 || rep.Missed != 0 || rep.FirstSeq != 1 || rep.LastSeq != 300 || rep.Segments < 5 || rep.Bytes != dirBytes(t, s.Dir()) {
		t.Fatalf("report %+v", rep)
	}
}

func TestTimeRangeAcrossSegments(t *testing.T) {
	s := openTest(t, Options{Sync: PolicyNever, MaxBytes: 4 << 20, SegmentBytes: 4 << 10})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 1000
	for i := range n {
		e := Entry{Time: t0.Add(time.Duration(i) * time.Second), Source: "t", Data: payload(uint64(i+1), 100)}
		if _, _, err := s.Append(context.Background(), []Entry{e}); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Segments < 20 {
		t.Fatalf("only %d segments", st.Segments)
	}
	for _, c := range []struct{ since, until int }{{0, 10}, {500, 503}, {777, 1000}, {990, 0}, {-5, 3}} {
		opts := ReadOptions{Since: t0.Add(time.Duration(c.since) * time.Second)}
		want := n - max(c.since, 0)
		if c.until > 0 {
			opts.Until = t0.Add(time.Duration(c.until) * time.Second)
			want = c.until - max(c.since, 0)
		}
		recs, st := readAll(t, s, opts)
		if len(recs) != want || recs[0].Seq != uint64(max(c.since, 0)+1) || st.Damaged != 0 {
			t.Fatalf("[%d, %d): %d records from seq %d, want %d", c.since, c.until, len(recs), recs[0].Seq, want)
		}
	}
	// Following from a point in time, then new records.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := s.Reader(ReadOptions{Since: t0.Add((n - 2) * time.Second), Follow: true})
	defer r.Close()
	for _, want := range []uint64{n - 1, n} {
		if rec, err := r.Next(ctx); err != nil || rec.Seq != want {
			t.Fatalf("follow since: %+v, %v", rec, err)
		}
	}
	if _, _, err := s.Append(ctx, []Entry{{Time: t0.Add(n * time.Second), Data: payload(n+1, 10)}}); err != nil {
		t.Fatal(err)
	}
	if rec, err := r.Next(ctx); err != nil || rec.Seq != n+1 {
		t.Fatalf("follow since, new record: %+v, %v", rec, err)
	}
}
