package cache

import (
	"github.com/sitelink/sitelink/plugins/logcache/store"
	"github.com/sitelink/sitelink/plugins/sdk/metrics"
)

// collector exports the ring's counters at scrape time.
type collector struct {
	store func() *store.Store
}

func newCollector(s func() *store.Store) *collector { return &collector{store: s} }

func counter(name, help string) *metrics.Desc {
	return metrics.NewDesc("logcache_"+name, help, metrics.CounterType)
}

func gauge(name, help string) *metrics.Desc {
	return metrics.NewDesc("logcache_"+name, help, metrics.GaugeType)
}

var (
	dBytesWritten   = counter("written_bytes_total", "Bytes written to segment files.")
	dRecordsWritten = counter("written_records_total", "Records written.")
	dSegments       = gauge("segments", "Segment files in the ring.")
	dBytes          = gauge("bytes", "Bytes the ring holds.")
	dMaxBytes       = gauge("max_bytes", "The ring's bound (max_bytes).")
	dEvictedBytes   = counter("evicted_bytes_total", "Bytes of oldest segments deleted to stay within max_bytes (overwritten).")
	dEvictedRecords = counter("evicted_records_total", "Records deleted to stay within max_bytes (overwritten).")
	dDropped        = counter("dropped_records_total", "Records that could not be written (full disk).")
	dDamaged        = counter("damaged_records_total", "Damaged lines readers skipped.")
	dOldest         = gauge("oldest_record_timestamp_seconds", "Time of the oldest record (Unix seconds).")
	dNewest         = gauge("newest_record_timestamp_seconds", "Time of the newest record (Unix seconds).")
	dLastSync       = gauge("last_sync_duration_seconds", "How long the last fdatasync took.")
	dSyncs          = counter("syncs_total", "fdatasync rounds.")
	dHealthy        = gauge("healthy", "1 while the ring can write.")
)

// Collect implements metrics.Collector.
func (c *collector) Collect(sc *metrics.Scrape) {
	st := c.store()
	if st == nil {
		return
	}
	s := st.Stats()
	sc.Add(dBytesWritten, float64(s.BytesWritten))
	sc.Add(dRecordsWritten, float64(s.RecordsWritten))
	sc.Add(dSegments, float64(s.Segments))
	sc.Add(dBytes, float64(s.Bytes))
	sc.Add(dMaxBytes, float64(s.MaxBytes))
	sc.Add(dEvictedBytes, float64(s.BytesEvicted))
	sc.Add(dEvictedRecords, float64(s.RecordsEvicted))
	sc.Add(dDropped, float64(s.RecordsDropped))
	sc.Add(dDamaged, float64(s.RecordsDamaged))
	if !s.Oldest.IsZero() {
		sc.Add(dOldest, float64(s.Oldest.UnixNano())/1e9)
	}
	if !s.Newest.IsZero() {
		sc.Add(dNewest, float64(s.Newest.UnixNano())/1e9)
	}
	sc.Add(dLastSync, s.LastSyncDuration.Seconds())
	sc.Add(dSyncs, float64(s.Syncs))
	ok, _ := st.Health()
	if ok {
		sc.Add(dHealthy, 1)
	} else {
		sc.Add(dHealthy, 0)
	}
}
