package store

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// damageOptions make segments of about 4 KiB holding 14 records each.
func damageOptions(dir string) Options {
	return Options{Dir: dir, Sync: PolicyNever, MaxBytes: 16 << 20, SegmentBytes: 4 << 10}
}

// buildRing writes n records of about 280 bytes and closes the store; it returns the
// segments.
func buildRing(t *testing.T, dir string, n int) []*segment {
	t.Helper()
	s, err := Open(damageOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, _, err := s.Append(context.Background(), []Entry{{Source: "d", Data: payload(uint64(i+1), 200)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := listSegments(dir)
	if err != nil || len(segs) < 4 {
		t.Fatalf("%d segments, %v", len(segs), err)
	}
	return segs
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// lineStart returns the offset of the k-th line of b.
func lineStart(b []byte, k int) int {
	off := 0
	for range k {
		off += bytes.IndexByte(b[off:], '\n') + 1
	}
	return off
}

func TestDamagedSegments(t *testing.T) {
	const n = 80
	cases := []struct {
		name   string
		damage func(t *testing.T, segs []*segment)
		// wantCut: Open cuts the last segment; wantLost: records gone (missed or cut);
		// wantDamaged: damaged lines readers skip.
		wantCut     bool
		wantLost    int
		wantDamaged uint64
	}{
		{
			name: "last segment cut mid-line",
			damage: func(t *testing.T, segs []*segment) {
				last := segs[len(segs)-1]
				if err := os.Truncate(last.path, last.size-37); err != nil {
					t.Fatal(err)
				}
			},
			wantCut: true, wantLost: 1,
		},
		{
			name: "zero-filled tail of the last segment",
			damage: func(t *testing.T, segs []*segment) {
				last := segs[len(segs)-1]
				b := readFile(t, last.path)
				start := lineStart(b, 2)
				clear(b[start:])
				writeFile(t, last.path, append(b, make([]byte, 8192)...))
			},
			wantCut: true, wantLost: -1, // all but the first two records of the last segment
		},
		{
			name: "last segment all garbage",
			damage: func(t *testing.T, segs []*segment) {
				last := segs[len(segs)-1]
				writeFile(t, last.path, bytes.Repeat([]byte("garbage\n"), 100))
			},
			wantCut: true, wantLost: -1,
		},
		{
			name: "empty last segment",
			damage: func(t *testing.T, segs []*segment) {
				writeFile(t, segs[len(segs)-1].path, nil)
			},
			wantLost: -1,
		},
		{
			name: "garbage line in the middle of the last segment",
			damage: func(t *testing.T, segs []*segment) {
				last := segs[len(segs)-1]
				b := readFile(t, last.path)
				at := lineStart(b, 1)
				writeFile(t, last.path, append(append(b[:at:at], "this is not a record\n"...), b[at:]...))
			},
			wantDamaged: 1,
		},
		{
			name: "garbage over two lines of an older segment",
			damage: func(t *testing.T, segs []*segment) {
				b := readFile(t, segs[1].path)
				at := lineStart(b, 3) + 100
				copy(b[at:], strings.Repeat("#", 400)) // runs into the next line
				writeFile(t, segs[1].path, b)
			},
			wantLost: 2, wantDamaged: 1, // lines 3 and 4 run into one
		},
		{
			name: "flipped bit inside valid JSON",
			damage: func(t *testing.T, segs []*segment) {
				b := readFile(t, segs[0].path)
				at := lineStart(b, 5) + bytes.Index(b[lineStart(b, 5):], []byte(`"pad":"`)) + 10
				b[at] ^= 1 // still a letter: the line parses, the CRC does not match
				writeFile(t, segs[0].path, b)
			},
			wantLost: 1, wantDamaged: 1,
		},
		{
			name: "zero-filled tail of an older segment",
			damage: func(t *testing.T, segs []*segment) {
				b := readFile(t, segs[2].path)
				at := lineStart(b, 10) + 50
				clear(b[at:])
				writeFile(t, segs[2].path, append(b, make([]byte, 4096)...))
			},
			wantLost:    -2, // from line 10 on
			wantDamaged: 1,
		},
		{
			name: "older segment cut mid-line",
			damage: func(t *testing.T, segs []*segment) {
				if err := os.Truncate(segs[1].path, segs[1].size-10); err != nil {
					t.Fatal(err)
				}
			},
			wantLost: 1, wantDamaged: 1,
		},
		{
			name: "line longer than any record",
			damage: func(t *testing.T, segs []*segment) {
				b := readFile(t, segs[1].path)
				at := lineStart(b, 4)
				long := bytes.Repeat([]byte("x"), 3*MaxLineBytes)
				writeFile(t, segs[1].path, append(append(b[:at:at], long...), b[at:]...))
			},
			wantDamaged: 1, // the long run and the record it ran into are one line
			wantLost:    1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			segs := buildRing(t, dir, n)
			lastRecs := segs[len(segs)-1].first
			tc.damage(t, segs)

			s, err := Open(damageOptions(dir))
			if err != nil {
				t.Fatalf("Open refused a damaged ring: %v", err)
			}
			defer s.Close()
			st := s.Stats()
			if (st.TailRepairedBytes > 0) != tc.wantCut {
				t.Fatalf("tail repaired %d bytes, want a cut: %v", st.TailRepairedBytes, tc.wantCut)
			}
			// After repair the last segment is empty or ends with a newline.
			if b := readFile(t, segs[len(segs)-1].path); len(b) > 0 && b[len(b)-1] != '\n' {
				t.Fatalf("last segment ends with %q", b[max(len(b)-20, 0):])
			}
			recs, rst := readAll(t, s, ReadOptions{})
			if rst.Damaged != tc.wantDamaged {
				t.Fatalf("damaged %d, want %d (stats %+v)", rst.Damaged, tc.wantDamaged, rst)
			}
			lost := n - len(recs)
			switch tc.wantLost {
			case -1: // part of the last segment
				if lost < 1 || lost > n-int(lastRecs)+1 {
					t.Fatalf("lost %d records", lost)
				}
			case -2: // part of an older segment
				if lost < 1 || rst.Missed != uint64(lost) {
					t.Fatalf("lost %d records, missed %d", lost, rst.Missed)
				}
			default:
				if lost != tc.wantLost {
					t.Fatalf("lost %d records, want %d", lost, tc.wantLost)
				}
			}
			for i, r := range recs {
				if !bytes.Equal(r.Data, payload(r.Seq, 200)) || i > 0 && r.Seq <= recs[i-1].Seq {
					t.Fatalf("record %d (seq %d) is wrong", i, r.Seq)
				}
			}
			// The store goes on: a new record follows the last good one.
			first, _, err := s.Append(context.Background(), []Entry{{Source: "d", Data: payload(999, 200)}})
			if err != nil {
				t.Fatal(err)
			}
			if want := recs[len(recs)-1].Seq + 1; tc.wantLost != -1 && first != want {
				t.Fatalf("new record got seq %d, want %d", first, want)
			}
			after, _ := readAll(t, s, ReadOptions{})
			if len(after) != len(recs)+1 || after[len(after)-1].Seq != first {
				t.Fatalf("after appending: %d records, last %+v", len(after), after[len(after)-1])
			}
			rep, err := s.Verify(context.Background())
			if err != nil || rep.Damaged != tc.wantDamaged || rep.Records != uint64(len(after)) {
				t.Fatalf("Verify = %+v, %v", rep, err)
			}
			if s.Stats().RecordsDamaged < tc.wantDamaged {
				t.Fatalf("store counted %d damaged lines", s.Stats().RecordsDamaged)
			}
		})
	}
}
