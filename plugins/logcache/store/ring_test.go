package store

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// outsideDirBytes sums the segment sizes the way another process would see them, newest
// first: a segment only grows while it is the newest and only disappears later, so the sum
// never exceeds what the directory held when the newest one was looked at.
func outsideDirBytes(dir string) (int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var names []string
	for _, e := range ents {
		if _, ok := parseSegmentName(e.Name()); ok {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	slices.Reverse(names)
	var n int64
	for _, name := range names {
		fi, err := os.Stat(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		n += fi.Size()
	}
	return n, nil
}

func TestRingBound(t *testing.T) {
	for _, policy := range []Policy{PolicyNever, PolicyInterval, PolicyAlways} {
		t.Run(policy.String(), func(t *testing.T) {
			testRingBound(t, policy)
		})
	}
}

func testRingBound(t *testing.T, policy Policy) {
	const (
		maxBytes = 256 << 10
		segBytes = 16 << 10
		writers  = 4
	)
	rounds := 150
	if policy == PolicyAlways {
		rounds = 40 // an fdatasync per round and writer
	}
	s := openTest(t, Options{Sync: policy, SyncInterval: 5 * time.Millisecond, MaxBytes: maxBytes, SegmentBytes: segBytes})
	dir := s.Dir()

	// Inside: after every change to the files, with the writer stopped.
	var inside, changes atomic.Int64
	s.mu.Lock()
	s.afterChange = func() {
		changes.Add(1)
		if n := dirBytes(t, dir); n > inside.Load() {
			inside.Store(n)
		}
	}
	s.mu.Unlock()

	// Outside: another goroutine looking at the directory all along.
	ctx, cancel := context.WithCancel(context.Background())
	var outside atomic.Int64
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		for ctx.Err() == nil {
			n, err := outsideDirBytes(dir)
			if err != nil {
				t.Error(err)
				return
			}
			if n > outside.Load() {
				outside.Store(n)
			}
		}
	}()

	// Writers with mixed record sizes; every record's data is remembered by its seq.
	var mu sync.Mutex
	want := map[uint64]string{}
	var written atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range rounds {
				batch := make([]Entry, 1+rng.IntN(8))
				for i := range batch {
					size := 20 + rng.IntN(3000)
					if rng.IntN(10) == 0 {
						size = 8000 + rng.IntN(4000)
					}
					batch[i] = Entry{Source: "w", Data: payload(uint64(w*1_000_000+rng.IntN(1_000_000)), size)}
				}
				first, _, err := s.Append(context.Background(), batch)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for i, e := range batch {
					want[first+uint64(i)] = string(e.Data)
					written.Add(int64(len(e.Data)))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	cancel()
	watch.Wait()

	if written.Load() < 4*maxBytes {
		t.Fatalf("wrote only %d bytes of data", written.Load())
	}
	if inside.Load() > maxBytes || outside.Load() > maxBytes {
		t.Fatalf("directory held %d bytes (seen inside) / %d (seen outside), bound %d", inside.Load(), outside.Load(), maxBytes)
	}
	t.Logf("wrote %d bytes of data; peak directory size %d inside over %d changes, %d outside; bound %d",
		written.Load(), inside.Load(), changes.Load(), outside.Load(), maxBytes)

	// What remains is the newest records, in order, without gaps.
	recs, st := readAll(t, s, ReadOptions{})
	if st.Damaged != 0 || st.Missed != 0 {
		t.Fatalf("reader stats %+v", st)
	}
	last := uint64(len(want))
	if len(recs) == 0 || recs[len(recs)-1].Seq != last {
		t.Fatalf("%d records, want the last to be %d", len(recs), last)
	}
	for i, r := range recs {
		if r.Seq != last-uint64(len(recs)-1-i) {
			t.Fatalf("record %d has seq %d: gap or disorder", i, r.Seq)
		}
		if string(r.Data) != want[r.Seq] {
			t.Fatalf("record %d: data differs", r.Seq)
		}
	}
	// And not fewer than the bound allows: eviction frees one segment at a time.
	kept := dirBytes(t, dir)
	if lim := int64(maxBytes) - 2*s.opts.segmentLimit(); kept < lim {
		t.Fatalf("kept %d bytes, want at least %d", kept, lim)
	}
	stats := s.Stats()
	if stats.SegmentsEvicted == 0 || stats.RecordsEvicted+uint64(len(recs)) != last || stats.Bytes != kept {
		t.Fatalf("stats %+v (kept %d records, %d bytes)", stats, len(recs), kept)
	}
}

// A reader left behind by the ring (its segment deleted under it) goes on with the oldest
// segment and counts what it missed.
func TestReaderSurvivesEviction(t *testing.T) {
	s := openTest(t, Options{Sync: PolicyNever, MaxBytes: 64 << 10, SegmentBytes: 4 << 10})
	ctx := context.Background()
	write := func(n int) {
		for range n {
			if _, _, err := s.Append(ctx, entries("a", 4, 200)); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(10)
	r := s.Reader(ReadOptions{})
	defer r.Close()
	first, err := r.Next(ctx)
	if err != nil || first.Seq != 1 {
		t.Fatalf("first record %+v, %v", first, err)
	}
	write(200) // the ring turns over several times
	var prev = first.Seq
	n := 0
	for {
		rec, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Seq <= prev {
			t.Fatalf("seq %d after %d", rec.Seq, prev)
		}
		prev = rec.Seq
		n++
	}
	st := r.Stats()
	if prev != 840 || st.Missed == 0 || st.Damaged != 0 || uint64(n)+st.Missed+1 != 840 {
		t.Fatalf("last seq %d, read %d, stats %+v", prev, n, st)
	}
	t.Logf("read %d records after the first, missed %d", n, st.Missed)
}
