package testenv

import (
	"context"
	"testing"
	"time"
)

// BenchmarkTwoHostsLinked measures building and removing the smallest
// topology: two hosts, one veth link, an address on each end.
func BenchmarkTwoHostsLinked(b *testing.B) {
	Require(b, "ip")
	for b.Loop() {
		e, err := NewEnv("bench")
		if err != nil {
			b.Fatal(err)
		}
		x, err := e.Host("x")
		if err != nil {
			b.Fatal(err)
		}
		y, err := e.Host("y")
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Link(x, "eth0", y, "eth0"); err != nil {
			b.Fatal(err)
		}
		if err := x.AddAddr("eth0", "10.6.0.1/24"); err != nil {
			b.Fatal(err)
		}
		if err := y.AddAddr("eth0", "10.6.0.2/24"); err != nil {
			b.Fatal(err)
		}
		if err := e.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDo measures one Host.Do round trip (enter and leave the namespace).
func BenchmarkDo(b *testing.B) {
	Require(b, "ip")
	e, err := NewEnv("bench")
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	h, err := e.Host("x")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := h.Do(func() error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRun measures running a trivial command inside a namespace.
func BenchmarkRun(b *testing.B) {
	Require(b, "ip", "true")
	e, err := NewEnv("bench")
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	h, err := e.Host("x")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for b.Loop() {
		if _, err := h.Run(ctx, "true"); err != nil {
			b.Fatal(err)
		}
	}
}
