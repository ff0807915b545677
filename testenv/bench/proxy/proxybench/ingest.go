package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sitelink/sitelink/plugins/logcache/store"
)

// padding is sliced for the records' padding.
var padding = strings.Repeat("x", 1<<16)

// appendRecord appends agent i's record n: a JSON object of exactly size bytes (up to
// 64 KiB), newline included.
func appendRecord(b []byte, i, n, size int) []byte {
	start := len(b)
	b = fmt.Appendf(b, `{"agent":%d,"n":%d,"pad":"`, i, n)
	pad := max(size-(len(b)-start)-3, 0) // `"}` and the newline
	b = append(b, padding[:pad]...)
	return append(b, "\"}\n"...)
}

// runIngest is many agents streaming records into a cache-mode listener over raw TCP:
// each keeps at most -window records unacknowledged, writes -write records at a time,
// and counts the records the proxy acknowledged (the proxy acknowledges only after the
// log cache did, under its sync policy). It prints acknowledged records per second
// after a warm-up, and the acknowledgement latency of each write.
func runIngest(args []string) error {
	fs := flag.NewFlagSet("ingest", flag.ExitOnError)
	target := fs.String("target", "", "cache listener address")
	agents := fs.Int("agents", 100, "concurrent agents (one connection each)")
	size := fs.Int("size", 512, "bytes per record, newline included")
	perWrite := fs.Int("write", 16, "records per write")
	window := fs.Int("window", 256, "most unacknowledged records per agent")
	dur := fs.Duration("duration", 10*time.Second, "measuring time after the warm-up")
	warm := fs.Duration("warmup", 2*time.Second, "warm-up before measuring")
	label := fs.String("label", "ingest", "name in the output")
	_ = fs.Parse(args)
	// The listener may still be starting.
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", *target, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cache listener %s: %w", *target, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *warm+*dur)
	defer cancel()
	var acked, failed atomic.Int64
	var lmu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	for i := range *agents {
		c, err := net.Dial("tcp", *target)
		if err != nil {
			return fmt.Errorf("agent %d: %w", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			var mu sync.Mutex
			cond := sync.NewCond(&mu)
			var got int64 // acknowledged so far on this connection
			sentAt := map[int64]time.Time{}
			done := false
			go func() {
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadBytes('\n')
					var a struct {
						Acked int64  `json:"acked"`
						Error string `json:"error"`
					}
					if err == nil && json.Unmarshal(line, &a) == nil && a.Error == "" {
						now := time.Now()
						mu.Lock()
						var ls []time.Duration
						for n, t := range sentAt {
							if n <= a.Acked {
								ls = append(ls, now.Sub(t))
								delete(sentAt, n)
							}
						}
						acked.Add(a.Acked - got)
						got = a.Acked
						cond.Broadcast()
						mu.Unlock()
						lmu.Lock()
						lat = append(lat, ls...)
						lmu.Unlock()
						continue
					}
					if err == nil {
						failed.Add(1)
					}
					mu.Lock()
					done = true
					cond.Broadcast()
					mu.Unlock()
					return
				}
			}()
			var buf []byte
			var sent int64
			for n := 0; ctx.Err() == nil; {
				mu.Lock()
				for !done && sent-got > int64(*window-*perWrite) {
					cond.Wait()
				}
				d := done
				mu.Unlock()
				if d {
					return
				}
				buf = buf[:0]
				for range *perWrite {
					buf = appendRecord(buf, i, n, *size)
					n++
				}
				mu.Lock()
				sent += int64(*perWrite)
				sentAt[sent] = time.Now()
				mu.Unlock()
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(*warm)
	a0, t0 := acked.Load(), time.Now()
	lmu.Lock()
	lat = lat[:0]
	lmu.Unlock()
	<-ctx.Done()
	a1, el := acked.Load(), time.Since(t0)
	wg.Wait()
	rate := float64(a1-a0) / el.Seconds()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	fmt.Printf("%s: agents=%d record=%dB acked=%d in %.1fs: %.0f records/s (%.1f MB/s of records) ack p50=%v p99=%v errors=%d\n",
		*label, *agents, *size, a1-a0, el.Seconds(), rate, rate*float64(*size)/1e6, pct(0.5).Round(time.Microsecond),
		pct(0.99).Round(time.Microsecond), failed.Load())
	if a1 == a0 {
		return errors.New("no record acknowledged")
	}
	return nil
}

// runStoreAppend is the peer of runIngest without the proxy: the same records, wrapped
// as the proxy stores them, appended straight to a logcache store by -callers goroutines
// in batches of -batch, each Append returning once durable under -sync.
func runStoreAppend(args []string) error {
	fs := flag.NewFlagSet("storeappend", flag.ExitOnError)
	dir := fs.String("dir", "", "store directory (created; removed afterwards)")
	syncPolicy := fs.String("sync", "interval", "always, interval or never")
	callers := fs.Int("callers", 100, "concurrent appenders")
	batch := fs.Int("batch", 16, "records per Append")
	size := fs.Int("size", 512, "bytes per agent record, newline included")
	maxBytes := fs.String("max-bytes", "1GiB", "ring size")
	segBytes := fs.String("segment-bytes", "64MiB", "segment size")
	dur := fs.Duration("duration", 10*time.Second, "measuring time after the warm-up")
	warm := fs.Duration("warmup", 2*time.Second, "warm-up before measuring")
	label := fs.String("label", "direct", "name in the output")
	_ = fs.Parse(args)
	pol, err := store.ParsePolicy(*syncPolicy)
	if err != nil {
		return err
	}
	mb, err := store.ParseSize(*maxBytes)
	if err != nil {
		return err
	}
	sb, err := store.ParseSize(*segBytes)
	if err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("-dir is needed")
	}
	defer os.RemoveAll(*dir)
	st, err := store.Open(store.Options{Dir: *dir, MaxBytes: mb, SegmentBytes: sb, Sync: pol})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	type cacheRecord struct { // as package relay stores a cache-mode record
		Client   string          `json:"client"`
		Listener string          `json:"listener"`
		Time     time.Time       `json:"time"`
		Record   json.RawMessage `json:"record"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), *warm+*dur)
	defer cancel()
	var appended atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for i := range *callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; {
				entries := make([]store.Entry, 0, *batch)
				for range *batch {
					rec := appendRecord(nil, i, n, *size)
					n++
					now := time.Now()
					data, _ := json.Marshal(cacheRecord{Client: "127.0.0.1", Listener: "ingest", Time: now,
						Record: json.RawMessage(rec[:len(rec)-1])})
					entries = append(entries, store.Entry{Time: now, Source: "proxy/ingest", Data: data})
				}
				if _, _, err := st.Append(ctx, entries); err != nil {
					if ctx.Err() == nil {
						firstErr.CompareAndSwap(nil, err)
					}
					return
				}
				appended.Add(int64(len(entries)))
			}
		}()
	}
	time.Sleep(*warm)
	a0, t0 := appended.Load(), time.Now()
	<-ctx.Done()
	a1, el := appended.Load(), time.Since(t0)
	wg.Wait()
	if e, _ := firstErr.Load().(error); e != nil {
		return e
	}
	rate := float64(a1-a0) / el.Seconds()
	fmt.Printf("%s: callers=%d batch=%d record=%dB sync=%s appended=%d in %.1fs: %.0f records/s (%.1f MB/s of records)\n",
		*label, *callers, *batch, *size, pol, a1-a0, el.Seconds(), rate, rate*float64(*size)/1e6)
	return nil
}
