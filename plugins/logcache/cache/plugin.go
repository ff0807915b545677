// Package cache is the logcache plugin: it serves the SDK's log sink (other plugins'
// AppendLogs), ingests Sitelink's own audit events (role changes, tunnel up/down, plugin
// restarts, admin actions), and offers stats, tail, export and verify on top of the
// on-disk ring of package store.
package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sitelink/sitelink/plugins/logcache/store"
	"github.com/sitelink/sitelink/plugins/sdk"
)

// AuditSource is the source of the records made from Sitelink's events.
const AuditSource = "audit"

// auditEvents are the event types kept as the audit trail.
var auditEvents = []string{sdk.EventRole, sdk.EventTunnel, sdk.EventPlugin, sdk.EventAudit}

// config is the plugin's section of sitelink.yaml.
type config struct {
	Dir          string `json:"dir"`
	MaxBytes     size   `json:"max_bytes"`
	SegmentBytes size   `json:"segment_bytes"`
	Sync         string `json:"sync"`
	SyncInterval string `json:"sync_interval"`
	Audit        *bool  `json:"audit"`
}

// size accepts 10GB, 10GiB, 512MiB or a plain number of bytes.
type size int64

func (s *size) UnmarshalJSON(b []byte) error {
	var n int64
	if json.Unmarshal(b, &n) == nil {
		*s = size(n)
		return nil
	}
	var text string
	if err := json.Unmarshal(b, &text); err != nil {
		return fmt.Errorf("expected a size like 10GB, 512MiB or a number of bytes")
	}
	v, err := store.ParseSize(text)
	if err != nil {
		return err
	}
	*s = size(v)
	return nil
}

const schema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "dir": {"type": "string", "description": "directory of the segment files"},
    "max_bytes": {"type": ["string", "integer"], "description": "the most the directory holds: 10GB, 10GiB, 512MiB or bytes"},
    "segment_bytes": {"type": ["string", "integer"], "description": "size of one segment file"},
    "sync": {"enum": ["always", "interval", "never"]},
    "sync_interval": {"type": "string", "description": "period of the interval policy's fdatasync, e.g. 100ms"},
    "audit": {"type": "boolean", "description": "keep Sitelink's own events (role, tunnel, plugin, admin) as records of source audit"}
  }
}`

// Plugin is the logcache plugin.
type Plugin struct {
	sdk.Base
	metrics *collector

	mu      sync.Mutex
	opts    store.Options
	audit   bool
	st      *store.Store
	stopSub context.CancelFunc
	subDone chan struct{}
}

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

// Info describes the plugin.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{
		Name: "logcache", Version: "0.1.0",
		Description:  "capped, crash-safe disk ring of the appliance's logs",
		ConfigSchema: schema,
		Actions: []sdk.Action{
			{Name: "stats", Description: "counters of the ring", Run: p.stats},
			{Name: "tail", Description: "the newest records; --follow keeps printing new ones like journalctl -f",
				Args: []sdk.Arg{
					{Name: "follow", Type: sdk.ArgBool, Description: "keep printing new records"},
					{Name: "lines", Type: sdk.ArgInt, Default: "10", Description: "how many of the newest records first"},
					{Name: "since", Type: sdk.ArgTime, Description: "start at this time (RFC 3339, or a duration ago like 10m)"},
					{Name: "source", Type: sdk.ArgString, Description: "only this source (a trailing * matches a prefix)"},
				},
				Stream: p.tail},
			{Name: "export", Description: "every record in a time range, as NDJSON",
				Args: []sdk.Arg{
					{Name: "from", Type: sdk.ArgTime, Description: "start (RFC 3339 or a duration ago)"},
					{Name: "to", Type: sdk.ArgTime, Description: "end, exclusive"},
					{Name: "source", Type: sdk.ArgString, Description: "only this source"},
				},
				Stream: p.export},
			{Name: "verify", Description: "read the whole ring and report damaged records", Run: p.verify},
		},
	}
}

// Init registers the metrics.
func (p *Plugin) Init(ctx context.Context, h sdk.Host) error {
	if err := p.Base.Init(ctx, h); err != nil {
		return err
	}
	p.metrics = newCollector(p.current)
	return h.Metrics().Register(p.metrics)
}

func (p *Plugin) current() *store.Store {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// Configure checks and applies the config; a running ring is reconfigured live (a
// smaller max_bytes evicts at once) or, for a new directory, reopened there.
func (p *Plugin) Configure(_ context.Context, raw json.RawMessage, validateOnly bool) error {
	c := config{}
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return err
	}
	var errs sdk.FieldErrors
	opts := store.Options{Dir: c.Dir, MaxBytes: int64(c.MaxBytes), SegmentBytes: int64(c.SegmentBytes)}
	pol, err := store.ParsePolicy(c.Sync)
	if err != nil {
		errs.Add("sync", "%v", err)
	}
	opts.Sync = pol
	if c.SyncInterval != "" {
		d, err := time.ParseDuration(c.SyncInterval)
		if err != nil || d <= 0 {
			errs.Add("sync_interval", "expected a positive duration like 100ms, got %q", c.SyncInterval)
		}
		opts.SyncInterval = d
	}
	if c.MaxBytes != 0 && c.MaxBytes < store.MinMaxBytes {
		errs.Add("max_bytes", "must be at least %d bytes", store.MinMaxBytes)
	}
	if c.SegmentBytes != 0 && c.SegmentBytes < store.MinSegmentBytes {
		errs.Add("segment_bytes", "must be at least %d bytes", store.MinSegmentBytes)
	}
	if err := errs.Err(); err != nil || validateOnly {
		return err
	}
	if p.Host() != nil {
		opts.Logger = p.Host().Logger()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.opts
	p.opts = opts
	p.audit = c.Audit == nil || *c.Audit
	if p.st == nil {
		return nil
	}
	if opts.Dir == old.Dir || (opts.Dir == "" && old.Dir == store.DefaultDir) {
		if err := p.st.Reconfigure(opts); err != nil {
			return fmt.Errorf("reconfigure the ring: %w", err)
		}
		return nil
	}
	// A new directory: close the old ring and open the new one.
	if err := p.st.Close(); err != nil {
		p.Host().Logger().Warn("closing the old ring", "error", err)
	}
	st, err := store.Open(opts)
	if err != nil {
		p.st = nil
		return fmt.Errorf("open the ring in %s: %w", opts.Dir, err)
	}
	p.st = st
	return nil
}

// Start opens the ring and starts keeping audit events.
func (p *Plugin) Start(context.Context, sdk.Role) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st == nil {
		st, err := store.Open(p.opts)
		if err != nil {
			return fmt.Errorf("open the ring: %w", err)
		}
		p.st = st
		if w := st.Stats().CapacityWarning; w != "" {
			p.Host().Logger().Warn("the filesystem cannot hold max_bytes", "warning", w)
		}
	}
	if p.audit && p.stopSub == nil {
		ctx, cancel := context.WithCancel(context.Background())
		events, err := p.Host().Subscribe(ctx, auditEvents...)
		if err != nil {
			cancel()
			return err
		}
		p.stopSub, p.subDone = cancel, make(chan struct{})
		go p.keepAudit(ctx, events, p.subDone)
	}
	return nil
}

// keepAudit turns events into audit records, batching what arrives together.
func (p *Plugin) keepAudit(ctx context.Context, events <-chan sdk.Event, done chan struct{}) {
	defer close(done)
	for ev := range events {
		batch := []store.Entry{auditEntry(ev)}
	more:
		for len(batch) < 256 {
			select {
			case ev, ok := <-events:
				if !ok {
					break more
				}
				batch = append(batch, auditEntry(ev))
			default:
				break more
			}
		}
		st := p.current()
		if st == nil {
			continue
		}
		if _, _, err := st.Append(ctx, batch); err != nil && ctx.Err() == nil {
			p.Host().Logger().Warn("audit records not stored", "error", err, "records", len(batch))
		}
	}
}

func auditEntry(ev sdk.Event) store.Entry {
	data, _ := json.Marshal(map[string]any{"type": ev.Type, "source": ev.Source, "attrs": ev.Attrs, "message": ev.Message})
	return store.Entry{Time: ev.Time, Source: AuditSource, Data: data}
}

// Stop stops keeping audit events and closes the ring (acknowledging what it holds).
func (p *Plugin) Stop(context.Context) error {
	p.mu.Lock()
	cancel, done, st := p.stopSub, p.subDone, p.st
	p.stopSub, p.subDone, p.st = nil, nil, nil
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	if st != nil {
		return st.Close()
	}
	return nil
}

// AppendLogs is the log sink: it returns once the records are durable by the policy.
func (p *Plugin) AppendLogs(ctx context.Context, recs []sdk.LogRecord) (uint64, uint64, error) {
	st := p.current()
	if st == nil {
		return 0, 0, errors.New("the log cache is not running")
	}
	entries := make([]store.Entry, len(recs))
	for i, r := range recs {
		entries[i] = store.Entry{Time: r.Time, Source: r.Source, Data: r.Data}
	}
	return st.Append(ctx, entries)
}

// Status reports the ring's health and fill.
func (p *Plugin) Status(context.Context) sdk.Status {
	st := p.current()
	if st == nil {
		return sdk.Status{Health: sdk.HealthOK, Summary: "not running"}
	}
	s := st.Stats()
	status := sdk.Status{Health: sdk.HealthOK,
		Summary: fmt.Sprintf("%s of %s, %d records written", human(s.Bytes), human(s.MaxBytes), s.RecordsWritten),
		Details: s,
		Counters: map[string]uint64{"records_written": s.RecordsWritten, "bytes_written": s.BytesWritten,
			"records_evicted": s.RecordsEvicted, "records_dropped": s.RecordsDropped, "records_damaged": s.RecordsDamaged}}
	if ok, reason := st.Health(); !ok {
		status.Health = sdk.HealthDegraded
		status.Reasons = append(status.Reasons, reason)
	}
	if s.CapacityWarning != "" {
		status.Reasons = append(status.Reasons, s.CapacityWarning)
	}
	return status
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func (p *Plugin) running() (*store.Store, error) {
	st := p.current()
	if st == nil {
		return nil, errors.New("the log cache is not running")
	}
	return st, nil
}

func (p *Plugin) stats(context.Context, sdk.Args) (any, error) {
	st, err := p.running()
	if err != nil {
		return nil, err
	}
	return st.Stats(), nil
}

func (p *Plugin) verify(ctx context.Context, _ sdk.Args) (any, error) {
	st, err := p.running()
	if err != nil {
		return nil, err
	}
	return st.Verify(ctx)
}

// item is one record as actions stream it.
type item struct {
	Time   time.Time       `json:"time"`
	Source string          `json:"source"`
	Seq    uint64          `json:"seq"`
	Data   json.RawMessage `json:"data"`
}

func (p *Plugin) tail(ctx context.Context, a sdk.Args, send func(any) error) error {
	st, err := p.running()
	if err != nil {
		return err
	}
	opts := store.ReadOptions{Source: a.String("source"), Follow: a.Bool("follow"), Since: a.Time("since")}
	if opts.Since.IsZero() {
		last := st.Stats().LastSeq
		n := uint64(max(a.Int("lines"), 0))
		switch {
		case n == 0:
			opts.FromEnd = true
		case last > n:
			opts.FromSeq = last - n + 1
		}
		if opts.Source != "" && n > 0 {
			// The last n records of one source: scan for them first.
			return p.tailSource(ctx, st, opts, int(n), send)
		}
	}
	return stream(ctx, st.Reader(opts), send)
}

// tailSource sends the last n records of a source, then follows when asked.
func (p *Plugin) tailSource(ctx context.Context, st *store.Store, opts store.ReadOptions, n int, send func(any) error) error {
	follow := opts.Follow
	opts.Follow, opts.FromSeq = false, 0
	r := st.Reader(opts)
	ring := make([]store.Record, 0, n)
	var lastSeq uint64
	for {
		rec, err := r.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			r.Close()
			return err
		}
		if len(ring) == n {
			ring = ring[1:]
		}
		ring = append(ring, rec)
		lastSeq = rec.Seq
	}
	r.Close()
	for _, rec := range ring {
		if err := send(item{rec.Time, rec.Source, rec.Seq, rec.Data}); err != nil {
			return err
		}
	}
	if !follow {
		return nil
	}
	return stream(ctx, st.Reader(store.ReadOptions{Source: opts.Source, Follow: true, FromSeq: lastSeq + 1, FromEnd: lastSeq == 0}), send)
}

func stream(ctx context.Context, r *store.Reader, send func(any) error) error {
	defer r.Close()
	for {
		rec, err := r.Next(ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := send(item{rec.Time, rec.Source, rec.Seq, rec.Data}); err != nil {
			return err
		}
	}
}

func (p *Plugin) export(ctx context.Context, a sdk.Args, send func(any) error) error {
	st, err := p.running()
	if err != nil {
		return err
	}
	return stream(ctx, st.Reader(store.ReadOptions{Since: a.Time("from"), Until: a.Time("to"), Source: a.String("source")}), send)
}
