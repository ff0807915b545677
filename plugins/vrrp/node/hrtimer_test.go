package node

import (
	"testing"
	"time"
)

func TestHRTimerFiresAndRearms(t *testing.T) {
	tm, err := newHRTimer()
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Close()
	start := time.Now()
	if err := tm.Set(start.Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tm.C:
		if d := time.Since(start); d < 20*time.Millisecond {
			t.Fatalf("fired after %v, before its deadline", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("timer did not fire")
	}
	// Disarmed: nothing fires.
	if err := tm.Set(time.Now().Add(10 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := tm.Set(time.Time{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tm.C:
		t.Fatal("a disarmed timer fired")
	case <-time.After(50 * time.Millisecond):
	}
	// A deadline in the past fires at once.
	if err := tm.Set(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tm.C:
	case <-time.After(5 * time.Second):
		t.Fatal("past deadline did not fire")
	}
}
