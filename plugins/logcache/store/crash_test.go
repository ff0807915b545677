package store

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash helper is this test binary run again with crashHelperEnv set: it appends
// flat out from several goroutines and reports every acknowledged batch on fd 3 as
// "first last writer batch", until it is killed.
const crashHelperEnv = "LOGCACHE_CRASH_HELPER"

func crashOptions(dir string, policy Policy) Options {
	return Options{Dir: dir, Sync: policy, SyncInterval: 20 * time.Millisecond, MaxBytes: 32 << 20, SegmentBytes: 256 << 10}
}

func TestCrashHelper(t *testing.T) {
	spec := os.Getenv(crashHelperEnv)
	if spec == "" {
		t.Skip("helper process for TestKill9")
	}
	dir, pol, _ := strings.Cut(spec, "|")
	policy, err := ParsePolicy(pol)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(crashOptions(dir, policy))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: open:", err)
		os.Exit(3)
	}
	acks := os.NewFile(3, "acks")
	var mu sync.Mutex
	out := bufio.NewWriter(acks)
	for w := range 8 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for b := 0; ; b++ {
				batch := make([]Entry, 1+rng.IntN(64))
				for i := range batch {
					pad := strings.Repeat("x", rng.IntN(2000))
					batch[i] = Entry{Source: "crash", Data: json.RawMessage(fmt.Sprintf(`{"w":%d,"b":%d,"i":%d,"pad":%q}`, w, b, i, pad))}
				}
				first, last, err := s.Append(context.Background(), batch)
				if err != nil {
					fmt.Fprintln(os.Stderr, "helper: append:", err)
					os.Exit(4)
				}
				mu.Lock()
				fmt.Fprintf(out, "%d %d %d %d\n", first, last, w, b)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	select {} // until killed
}

type ackedBatch struct {
	first, last uint64
	w, b        int
}

func TestKill9(t *testing.T) {
	if os.Getenv(crashHelperEnv) != "" {
		t.Skip("in the helper")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	policies := []Policy{PolicyAlways, PolicyAlways, PolicyInterval, PolicyNever}
	iterations := 24
	if testing.Short() {
		iterations = 6
	}
	var totalAcked int
	for it := range iterations {
		policy := policies[it%len(policies)]
		acked := runAndKill(t, dir, policy, time.Duration(rng.IntN(300))*time.Millisecond)
		totalAcked += len(acked)

		s, err := Open(crashOptions(dir, policy))
		if err != nil {
			t.Fatalf("iteration %d: reopen after kill -9: %v", it, err)
		}
		recs, st := readAll(t, s, ReadOptions{})
		stats := s.Stats()
		if st.Damaged != 0 || st.Missed != 0 {
			t.Fatalf("iteration %d (%v): reader saw damage: %+v", it, policy, st)
		}
		if len(recs) == 0 {
			t.Fatalf("iteration %d: no records", it)
		}
		bySeq := make(map[uint64]Record, len(recs))
		for i, r := range recs {
			if i > 0 && r.Seq != recs[i-1].Seq+1 {
				t.Fatalf("iteration %d: seq %d after %d", it, r.Seq, recs[i-1].Seq)
			}
			bySeq[r.Seq] = r
		}
		firstSeq, lastSeq := recs[0].Seq, recs[len(recs)-1].Seq
		if firstSeq != stats.FirstSeq {
			t.Fatalf("iteration %d: first record %d, oldest segment starts at %d", it, firstSeq, stats.FirstSeq)
		}
		// Every acknowledged record is there (unless the ring evicted it since), with the
		// data that was sent.
		for _, a := range acked {
			if a.last > lastSeq {
				t.Fatalf("iteration %d (%v): acknowledged seq %d-%d but the ring ends at %d", it, policy, a.first, a.last, lastSeq)
			}
			for seq := max(a.first, firstSeq); seq <= a.last; seq++ {
				var d struct{ W, B, I int }
				if err := json.Unmarshal(bySeq[seq].Data, &d); err != nil || d.W != a.w || d.B != a.b || d.I != int(seq-a.first) {
					t.Fatalf("iteration %d: seq %d holds %s, want writer %d batch %d item %d", it, seq, bySeq[seq].Data, a.w, a.b, seq-a.first)
				}
			}
		}
		t.Logf("iteration %d (%v): %d batches acknowledged, ring %d-%d, tail cut %d bytes, %d segments",
			it, policy, len(acked), firstSeq, lastSeq, stats.TailRepairedBytes, stats.Segments)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if totalAcked == 0 {
		t.Fatal("nothing was ever acknowledged")
	}
}

// runAndKill starts the helper on dir, lets it write for about d after its first
// acknowledgement, kills it with SIGKILL and returns what it acknowledged.
func runAndKill(t *testing.T, dir string, policy Policy, d time.Duration) []ackedBatch {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+dir+"|"+policy.String())
	cmd.ExtraFiles = []*os.File{pw}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	var (
		mu    sync.Mutex
		acked []ackedBatch
		first = make(chan struct{})
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		once := sync.OnceFunc(func() { close(first) })
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 4 {
				continue // a line cut by the kill
			}
			var a ackedBatch
			a.first, _ = strconv.ParseUint(f[0], 10, 64)
			a.last, _ = strconv.ParseUint(f[1], 10, 64)
			a.w, _ = strconv.Atoi(f[2])
			a.b, _ = strconv.Atoi(f[3])
			mu.Lock()
			acked = append(acked, a)
			mu.Unlock()
			once()
		}
	}()
	select {
	case <-first:
	case <-done:
		cmd.Wait()
		t.Fatalf("helper ended before acknowledging anything: %s", stderr.String())
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper acknowledged nothing in 20s: %s", stderr.String())
	}
	time.Sleep(d) // a random point in the middle of heavy writing
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	<-done
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, not SIGKILL: %s", cmd.ProcessState, stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	return acked
}
