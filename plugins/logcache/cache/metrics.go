package cache

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sitelink/sitelink/plugins/logcache/store"
)

// collector exports the ring's counters at scrape time.
type collector struct {
	store func() *store.Store
}

func newCollector(s func() *store.Store) *collector { return &collector{store: s} }

func desc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("logcache_"+name, help, nil, nil)
}

var (
	dBytesWritten   = desc("written_bytes_total", "Bytes written to segment files.")
	dRecordsWritten = desc("written_records_total", "Records written.")
	dSegments       = desc("segments", "Segment files in the ring.")
	dBytes          = desc("bytes", "Bytes the ring holds.")
	dMaxBytes       = desc("max_bytes", "The ring's bound (max_bytes).")
	dEvictedBytes   = desc("evicted_bytes_total", "Bytes of oldest segments deleted to stay within max_bytes (overwritten).")
	dEvictedRecords = desc("evicted_records_total", "Records deleted to stay within max_bytes (overwritten).")
	dDropped        = desc("dropped_records_total", "Records that could not be written (full disk).")
	dDamaged        = desc("damaged_records_total", "Damaged lines readers skipped.")
	dOldest         = desc("oldest_record_timestamp_seconds", "Time of the oldest record (Unix seconds).")
	dNewest         = desc("newest_record_timestamp_seconds", "Time of the newest record (Unix seconds).")
	dLastSync       = desc("last_sync_duration_seconds", "How long the last fdatasync took.")
	dSyncs          = desc("syncs_total", "fdatasync rounds.")
	dHealthy        = desc("healthy", "1 while the ring can write.")
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dBytesWritten, dRecordsWritten, dSegments, dBytes, dMaxBytes, dEvictedBytes,
		dEvictedRecords, dDropped, dDamaged, dOldest, dNewest, dLastSync, dSyncs, dHealthy} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.store()
	if st == nil {
		return
	}
	s := st.Stats()
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter(dBytesWritten, float64(s.BytesWritten))
	counter(dRecordsWritten, float64(s.RecordsWritten))
	gauge(dSegments, float64(s.Segments))
	gauge(dBytes, float64(s.Bytes))
	gauge(dMaxBytes, float64(s.MaxBytes))
	counter(dEvictedBytes, float64(s.BytesEvicted))
	counter(dEvictedRecords, float64(s.RecordsEvicted))
	counter(dDropped, float64(s.RecordsDropped))
	counter(dDamaged, float64(s.RecordsDamaged))
	if !s.Oldest.IsZero() {
		gauge(dOldest, float64(s.Oldest.UnixNano())/1e9)
	}
	if !s.Newest.IsZero() {
		gauge(dNewest, float64(s.Newest.UnixNano())/1e9)
	}
	gauge(dLastSync, s.LastSyncDuration.Seconds())
	counter(dSyncs, float64(s.Syncs))
	ok, _ := st.Health()
	if ok {
		gauge(dHealthy, 1)
	} else {
		gauge(dHealthy, 0)
	}
}
