package limit

import (
	"context"
	"testing"
	"time"
)

func TestWaitKeepsRate(t *testing.T) {
	b := NewBucket(1_000_000, 0) // 1 MB/s
	ctx := context.Background()
	start := time.Now()
	total := 0
	for total < 500_000 {
		n, err := Wait(ctx, 16<<10, b)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	el := time.Since(start).Seconds()
	got := float64(total) / el
	if got > 1_150_000 || got < 850_000 {
		t.Fatalf("rate %.0f B/s over %.2fs, want about 1,000,000", got, el)
	}
}

func TestUnlimitedAndNil(t *testing.T) {
	var nilBucket *Bucket
	n, err := Wait(context.Background(), 1<<20, nilBucket, NewBucket(0, 0))
	if err != nil || n != 1<<20 {
		t.Fatalf("%d %v", n, err)
	}
	if !nilBucket.Allow() {
		t.Fatal("nil bucket refused")
	}
}

func TestAllowAndLiveChange(t *testing.T) {
	now := time.Unix(1000, 0)
	b := NewBucket(10, 2)
	b.now = func() time.Time { return now }
	b.last = now
	if first, second, third := b.Allow(), b.Allow(), b.Allow(); !first || !second || third {
		t.Fatal("burst of 2 not enforced")
	}
	now = now.Add(100 * time.Millisecond)
	if !b.Allow() || b.Allow() {
		t.Fatal("refill of 1 token in 100ms at 10/s")
	}
	b.Set(0, 0)
	for range 100 {
		if !b.Allow() {
			t.Fatal("unlimited refused")
		}
	}
	b.Set(1, 1)
	now = now.Add(time.Second)
	if !b.Allow() || b.Allow() {
		t.Fatal("new rate of 1/s not applied")
	}
}

func TestWaitCancelled(t *testing.T) {
	b := NewBucket(10, 10)
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := Wait(ctx, 10, b); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := Wait(ctx, 10, b); err == nil {
		t.Fatal("wait in debt returned without error after cancel")
	}
}
