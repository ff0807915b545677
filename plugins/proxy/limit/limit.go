// Package limit owns the proxy's rate limiters: token buckets for bytes (waited on, so
// a connection slows down instead of failing) and for new connections (taken or
// refused). A bucket's rate can change while connections use it; zero means unlimited.
package limit

import (
	"context"
	"math"
	"sync"
	"time"
)

// Bucket is a token bucket. The zero value is not usable; use NewBucket.
type Bucket struct {
	mu     sync.Mutex
	rate   float64 // tokens per second; 0 = unlimited
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
}

// NewBucket returns a bucket of rate tokens per second (0: unlimited) holding at most
// burst tokens (0: a twentieth of a second's worth, at least 1). It starts full.
func NewBucket(rate, burst float64) *Bucket {
	b := &Bucket{now: time.Now}
	b.Set(rate, burst)
	b.tokens = b.burst
	return b
}

// Set changes the rate and burst; callers waiting now see the new rate on their next
// take.
func (b *Bucket) Set(rate, burst float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if rate < 0 {
		rate = 0
	}
	if burst <= 0 {
		burst = math.Max(rate/20, 1)
	}
	b.refill()
	b.rate, b.burst = rate, burst
	if b.tokens > burst {
		b.tokens = burst
	}
}

// Rate is the current rate (0: unlimited).
func (b *Bucket) Rate() float64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rate
}

func (b *Bucket) refill() {
	now := b.now()
	if !b.last.IsZero() && b.rate > 0 {
		b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
}

// Allow takes one token if there is one (always true when unlimited or b is nil).
func (b *Bucket) Allow() bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rate == 0 {
		return true
	}
	b.refill()
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// maxTake is how many of want tokens one take may ask for (the burst).
func (b *Bucket) maxTake(want int) int {
	if b == nil {
		return want
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rate == 0 || float64(want) <= b.burst {
		return want
	}
	return int(math.Max(b.burst, 1))
}

// reserve takes n tokens, going into debt, and says how long the caller must wait
// before using them.
func (b *Bucket) reserve(n int) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rate == 0 {
		return 0
	}
	b.refill()
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// Wait takes up to want tokens from every non-nil bucket given, sleeping as long as
// the slowest requires, and returns how many may be used (at most want, at least 1 when
// want > 0).
func Wait(ctx context.Context, want int, buckets ...*Bucket) (int, error) {
	n := want
	for _, b := range buckets {
		n = min(n, b.maxTake(n))
	}
	var wait time.Duration
	for _, b := range buckets {
		if b != nil {
			wait = max(wait, b.reserve(n))
		}
	}
	if wait <= 0 {
		return n, nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return n, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
