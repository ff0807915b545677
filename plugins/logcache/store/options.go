package store

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by Open and Reconfigure to zero fields of Options.
const (
	DefaultDir          = "/var/log/sitelink/cache"
	DefaultMaxBytes     = 10_000_000_000 // 10 GB
	DefaultSegmentBytes = 64 << 20       // 64 MiB
	DefaultSyncInterval = 100 * time.Millisecond
)

// Limits on the configuration and on single records.
const (
	// MinMaxBytes is the smallest ring accepted.
	MinMaxBytes = 64 << 10
	// MinSegmentBytes is the smallest segment accepted.
	MinSegmentBytes = 4 << 10
	// MaxLineBytes bounds one encoded record (its line, newline included). A record is
	// also refused when it would not fit in one segment.
	MaxLineBytes = 1 << 20
)

// Policy says when a record counts as durable, and so when Append returns.
type Policy int

const (
	// PolicyInterval (the default) acknowledges records at the next periodic fdatasync,
	// every Options.SyncInterval.
	PolicyInterval Policy = iota
	// PolicyAlways acknowledges records after an fdatasync that covers them; concurrent
	// appends share one fdatasync.
	PolicyAlways
	// PolicyNever acknowledges records once write(2) returned; the kernel writes them back
	// when it likes.
	PolicyNever
)

// String returns the policy's configuration name.
func (p Policy) String() string {
	switch p {
	case PolicyInterval:
		return "interval"
	case PolicyAlways:
		return "always"
	case PolicyNever:
		return "never"
	}
	return "Policy(" + strconv.Itoa(int(p)) + ")"
}

// MarshalText implements encoding.TextMarshaler.
func (p Policy) MarshalText() ([]byte, error) {
	if p < PolicyInterval || p > PolicyNever {
		return nil, fmt.Errorf("store: unknown sync policy %d", int(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParsePolicy.
func (p *Policy) UnmarshalText(b []byte) error {
	v, err := ParsePolicy(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// ParsePolicy parses "always", "interval" or "never" (any case). The empty string is the
// default, interval.
func ParsePolicy(s string) (Policy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "interval":
		return PolicyInterval, nil
	case "always":
		return PolicyAlways, nil
	case "never":
		return PolicyNever, nil
	}
	return 0, fmt.Errorf("store: sync policy %q: want always, interval or never", s)
}

// sizeUnits maps a lowercase unit suffix to its multiplier.
var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "kib": 1 << 10,
	"m": 1e6, "mb": 1e6, "mib": 1 << 20,
	"g": 1e9, "gb": 1e9, "gib": 1 << 30,
	"t": 1e12, "tb": 1e12, "tib": 1 << 40,
}

// ParseSize parses a byte size: a number (decimals allowed) and an optional unit, SI
// ("10GB" = 10×10^9) or binary ("10GiB" = 10×2^30), case-insensitive, with or without a
// space: "10GB", "10GiB", "512MiB", "1.5 GiB", "4096".
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		return 0, fmt.Errorf("store: size %q: no number", s)
	}
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("store: size %q: unknown unit %q (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)", s, t[i:])
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("store: size %q: %w", s, err)
	}
	b := math.Round(v * mult)
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("store: size %q: too large", s)
	}
	return int64(b), nil
}

// Options configure a Store. Zero fields take the defaults.
type Options struct {
	// Dir is the directory of segment files (DefaultDir). It is created when missing.
	Dir string
	// MaxBytes bounds the sum of the segment files' sizes (DefaultMaxBytes).
	MaxBytes int64
	// SegmentBytes is the size at which a new segment is started (DefaultSegmentBytes);
	// it is lowered to MaxBytes/4 when larger.
	SegmentBytes int64
	// Sync is the durability policy (PolicyInterval).
	Sync Policy
	// SyncInterval is the period of the background flush and fdatasync
	// (DefaultSyncInterval). Under PolicyAlways and PolicyNever it only bounds how long
	// records written with Write stay in the buffer.
	SyncInterval time.Duration
	// Logger receives the store's events (discarded when nil).
	Logger *slog.Logger
	// Now gives the time for entries without one (time.Now when nil).
	Now func() time.Time
}

// withDefaults returns o with defaults filled in, or an error naming the bad field.
func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	var errs []error
	if o.MaxBytes < MinMaxBytes {
		errs = append(errs, fmt.Errorf("max_bytes %d is below the minimum %d", o.MaxBytes, MinMaxBytes))
	}
	if o.SegmentBytes < MinSegmentBytes {
		errs = append(errs, fmt.Errorf("segment_bytes %d is below the minimum %d", o.SegmentBytes, MinSegmentBytes))
	}
	if o.Sync < PolicyInterval || o.Sync > PolicyNever {
		errs = append(errs, fmt.Errorf("unknown sync policy %d", int(o.Sync)))
	}
	if o.SyncInterval < time.Millisecond {
		errs = append(errs, fmt.Errorf("sync interval %v is below 1ms", o.SyncInterval))
	}
	if err := errors.Join(errs...); err != nil {
		return o, fmt.Errorf("store: options: %w", err)
	}
	return o, nil
}

// segmentLimit is the size at which the active segment is rotated.
func (o Options) segmentLimit() int64 {
	return min(o.SegmentBytes, o.MaxBytes/4)
}

// lineLimit is the largest encoded record accepted.
func (o Options) lineLimit() int64 {
	return min(MaxLineBytes, o.segmentLimit())
}
