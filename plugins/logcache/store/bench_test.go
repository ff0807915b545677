package store

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gopkg.in/natefinch/lumberjack.v2"
)

// Benchmarks write into LOGCACHE_BENCH_DIR when set (so that testenv/bench/logcache/run.sh
// can put them on the same filesystem as its dd runs), else into a temporary directory.
func benchDir(b *testing.B) string {
	if d := os.Getenv("LOGCACHE_BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

// benchEntry returns an entry whose encoded line is exactly lineLen bytes (for sequence
// numbers of 7 digits, as in these runs).
func benchEntry(lineLen int) Entry {
	probe := Entry{Time: time.Now(), Source: "bench", Data: json.RawMessage(`{"msg":""}`)}
	var enc encoder
	n := len(enc.appendRecord(nil, probe.Time, appendJSONString(nil, probe.Source), 1234567, probe.Data))
	pad := strings.Repeat("x", max(lineLen-n, 0))
	return Entry{Source: "bench", Data: json.RawMessage(`{"msg":"` + pad + `"}`)}
}

// latencies collects per-call durations from many goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d...)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B, prefix string) {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	q := func(p float64) float64 {
		return float64(l.d[min(int(p*float64(len(l.d))), len(l.d)-1)]) / 1e6
	}
	b.ReportMetric(q(0.5), prefix+"-p50-ms")
	b.ReportMetric(q(0.99), prefix+"-p99-ms")
	b.ReportMetric(float64(l.d[len(l.d)-1])/1e6, prefix+"-max-ms")
}

type appendBench struct {
	policy    Policy
	lineLen   int
	batch     int // records per Append
	callers   int // concurrent Append callers
	writeback bool
	maxBytes  int64
}

// BenchmarkAppend: b.N records through Append (each call waits for its acknowledgement)
// from many concurrent callers, as the plugin's gRPC streams would. ns/op and MB/s are per
// record; ack-* is the time from the Append call to its acknowledgement (queueing for the
// writer included: with many callers it follows Little's law, callers x batch / rate);
// lag-* is the time from the records being in the store (Write returned) to their being
// as durable as the policy says (WaitDurable returned); fsync-max-ms is the longest
// fdatasync. Each call is Write then WaitDurable, which is what Append does.
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct {
		name string
		appendBench
	}{
		{"interval/256B", appendBench{PolicyInterval, 256, 256, 1024, true, 1 << 30}},
		{"interval-nowriteback/256B", appendBench{PolicyInterval, 256, 256, 1024, false, 1 << 30}},
		{"always/256B", appendBench{PolicyAlways, 256, 256, 64, true, 1 << 30}},
		{"never/256B", appendBench{PolicyNever, 256, 256, 8, true, 1 << 30}},
		{"interval/64KiB", appendBench{PolicyInterval, 64 << 10, 4, 256, true, 1 << 30}},
		{"interval-nowriteback/64KiB", appendBench{PolicyInterval, 64 << 10, 4, 256, false, 1 << 30}},
		{"never/64KiB", appendBench{PolicyNever, 64 << 10, 4, 8, true, 1 << 30}},
	} {
		b.Run(c.name, func(b *testing.B) { runAppendBench(b, c.appendBench) })
	}
}

func runAppendBench(b *testing.B, c appendBench) {
	s, err := Open(Options{Dir: benchDir(b), Sync: c.policy, MaxBytes: c.maxBytes})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if !c.writeback {
		s.mu.Lock()
		s.writeback = 0
		s.mu.Unlock()
	}
	e := benchEntry(c.lineLen)
	var lat, lag latencies
	var next atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(int64(c.lineLen))
	b.ResetTimer()
	start := time.Now()
	// One batch shared by all callers (the store only reads entries), so that the
	// load generator's own memory stays small next to the store's.
	batch := make([]Entry, c.batch)
	for i := range batch {
		batch[i] = e
	}
	for range c.callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine, mineLag []time.Duration
			for {
				left := int64(b.N) - next.Add(int64(c.batch)) + int64(c.batch)
				if left <= 0 {
					break
				}
				n := min(int64(c.batch), left)
				t0 := time.Now()
				first, last, err := s.Write(batch[:n])
				if err != nil {
					b.Error(err)
					return
				}
				t1 := time.Now()
				if err := s.WaitDurable(context.Background(), first, last); err != nil {
					b.Error(err)
					return
				}
				t2 := time.Now()
				mine = append(mine, t2.Sub(t0))
				mineLag = append(mineLag, t2.Sub(t1))
			}
			lat.add(mine)
			lag.add(mineLag)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	st := s.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rec/s")
	b.ReportMetric(float64(st.MaxSyncDuration)/1e6, "fsync-max-ms")
	b.ReportMetric(float64(st.Syncs), "syncs")
	lat.report(b, "ack")
	lag.report(b, "lag")
	if st.RecordsWritten != uint64(b.N) || st.RecordsDropped != 0 {
		b.Fatalf("stats %+v", st)
	}
}

// BenchmarkWrite: one goroutine Writes b.N records without waiting, then waits once: the
// store's own encoding and writing rate, without the acknowledgement round trips.
func BenchmarkWrite(b *testing.B) {
	for _, lineLen := range []int{256, 64 << 10} {
		b.Run(fmt.Sprintf("interval/%s", sizeName(lineLen)), func(b *testing.B) {
			s, err := Open(Options{Dir: benchDir(b), MaxBytes: 1 << 30})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			batch := make([]Entry, max(1, 65536/lineLen))
			for i := range batch {
				batch[i] = benchEntry(lineLen)
			}
			b.SetBytes(int64(lineLen))
			b.ResetTimer()
			start := time.Now()
			var last uint64
			for done := 0; done < b.N; done += len(batch) {
				n := min(len(batch), b.N-done)
				_, l, err := s.Write(batch[:n])
				if err != nil {
					b.Fatal(err)
				}
				last = l
			}
			if err := s.WaitDurable(context.Background(), last, last); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rec/s")
		})
	}
}

func sizeName(n int) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return strconv.Itoa(n>>u.shift) + u.name
		}
	}
	return strconv.Itoa(n) + "B"
}

// BenchmarkLumberjack: the usual Go rotating writer as a peer, one Write per record (the
// same, already encoded lines; it never fsyncs), 64 MB files.
func BenchmarkLumberjack(b *testing.B) {
	for _, lineLen := range []int{256, 64 << 10} {
		b.Run(sizeName(lineLen), func(b *testing.B) {
			dir := benchDir(b)
			lj := &lumberjack.Logger{Filename: filepath.Join(dir, "lj.log"), MaxSize: 64, MaxBackups: 16}
			defer lj.Close()
			e := benchEntry(lineLen)
			var enc encoder
			line := enc.appendRecord(nil, time.Now(), appendJSONString(nil, e.Source), 1234567, e.Data)
			b.SetBytes(int64(len(line)))
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if _, err := lj.Write(line); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rec/s")
		})
	}
}

// buildFullRing makes a ring of n segments of segBytes each in dir, quickly: every
// segment but the last holds one valid record and is then extended sparsely (truncate)
// to segBytes, the last is filled with real 256-byte records. Open reads only the tail of
// the last one, so this is what a full ring looks like to it.
func buildFullRing(b *testing.B, dir string, n int, segBytes int64) (lastPath string) {
	perSeg := uint64(segBytes / 256)
	var enc encoder
	e := benchEntry(256)
	src := appendJSONString(nil, e.Source)
	ts := time.Now().Add(-time.Hour)
	for i := range n {
		first := 1 + uint64(i)*perSeg
		path := filepath.Join(dir, segmentName(first))
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		if i < n-1 {
			w.Write(enc.appendRecord(nil, ts, src, first, e.Data))
		} else {
			var line []byte
			for seq, size := first, int64(0); ; seq++ {
				line = enc.appendRecord(line[:0], ts, src, seq, e.Data)
				if size += int64(len(line)); size > segBytes-4096 {
					break
				}
				w.Write(line)
			}
			lastPath = path
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		if i < n-1 {
			if err := f.Truncate(segBytes); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
	return lastPath
}

// dropCache asks the kernel to forget the cached pages of path.
func dropCache(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	unix.Fdatasync(int(f.Fd()))
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkOpen: opening a full 10 GiB ring of 160 segments of 64 MiB (ns/op is one Open;
// Close is not timed). "cold" drops the page cache of the last and first segments first.
func BenchmarkOpen(b *testing.B) {
	const segs, segBytes = 160, 64 << 20
	dir := benchDir(b)
	lastPath := buildFullRing(b, dir, segs, segBytes)
	opts := Options{Dir: dir, MaxBytes: segs * segBytes, SegmentBytes: segBytes}
	for _, cold := range []bool{false, true} {
		name := "warm"
		if cold {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				if cold {
					dropCache(b, lastPath)
					dropCache(b, filepath.Join(dir, segmentName(1)))
				}
				b.StartTimer()
				s, err := Open(opts)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				st := s.Stats()
				if st.Segments != segs || st.TailRepairedBytes != 0 || st.SegmentsEvicted != 0 {
					b.Fatalf("stats %+v", st)
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/open")
		})
	}
}

// peakRSS resets the process's peak RSS (VmHWM) and returns a function reading it, in MB.
func peakRSS(b *testing.B) func() float64 {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Skipf("cannot reset the peak RSS: %v", err)
	}
	return func() float64 {
		data, err := os.ReadFile("/proc/self/status")
		if err != nil {
			b.Fatal(err)
		}
		for line := range strings.Lines(string(data)) {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
				return kb / 1024
			}
		}
		b.Fatal("no VmHWM in /proc/self/status")
		return 0
	}
}

// BenchmarkRSS: the peak RSS of the whole test process while 1024 callers append 256-byte
// records flat out under interval, with a small and a large ring. Run it alone (-bench
// 'RSS'), since the peak covers everything the process did since the reset.
func BenchmarkRSS(b *testing.B) {
	for _, maxBytes := range []int64{64 << 20, 10 << 30} {
		b.Run("max="+sizeName(int(maxBytes)), func(b *testing.B) {
			peak := peakRSS(b)
			runAppendBench(b, appendBench{PolicyInterval, 256, 256, 1024, true, maxBytes})
			b.ReportMetric(peak(), "peak-RSS-MB")
		})
	}
}
