package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"
)

const (
	firstPoll = 5 * time.Millisecond
	maxPoll   = 200 * time.Millisecond
)

// WaitFor calls cond until it reports true without an error, backing off from
// 5 ms to 200 ms between calls, or until ctx is done. An error from cond does
// not stop the wait; the last one is named in the error returned when ctx
// ends, which also names what was awaited and wraps ctx.Err().
func WaitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	delay := firstPoll
	var last error
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		ok, err := cond()
		if err == nil && ok {
			return nil
		}
		if err != nil {
			last = err
		}
		timer.Reset(delay)
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-timer.C:
		}
		delay = min(2*delay, maxPoll)
	}
}

// Eventually is [WaitFor] with a timeout for tests: it fails the test with
// t.Fatal when cond has not become true within timeout. It must be called
// from the test's goroutine.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := WaitFor(ctx, what, cond); err != nil {
		t.Fatal(err)
	}
}
