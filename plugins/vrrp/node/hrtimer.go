package node

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// hrTimer is a one-shot timer on a timerfd. The kernel's high-resolution timer makes
// the fd readable at the deadline and Go's poller wakes at once, where a Go timer can
// fire a millisecond or more late (measured here: 0.6 ms median, 3 ms p90 under load,
// against 0.1 ms); the master-down timer decides the failover time.
type hrTimer struct {
	f *os.File
	// C receives (coalesced) expiries. After Set, an expiry of an earlier deadline may
	// still be pending: the reader must tolerate early wake-ups.
	C    chan struct{}
	done chan struct{}
}

func newHRTimer() (*hrTimer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd_create: %w", err)
	}
	t := &hrTimer{f: os.NewFile(uintptr(fd), "vrrp-timer"), C: make(chan struct{}, 1), done: make(chan struct{})}
	go t.read()
	return t, nil
}

func (t *hrTimer) read() {
	defer close(t.done)
	buf := make([]byte, 8)
	for {
		if _, err := t.f.Read(buf); err != nil {
			return // closed
		}
		select {
		case t.C <- struct{}{}:
		default:
		}
	}
}

// Set arms the timer for deadline (zero disarms it).
func (t *hrTimer) Set(deadline time.Time) error {
	var spec unix.ItimerSpec
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			d = time.Nanosecond
		}
		spec.Value = unix.NsecToTimespec(int64(d))
	}
	rc, err := t.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.TimerfdSettime(int(fd), 0, &spec, nil) }); err != nil {
		return err
	}
	return serr
}

// Close stops the timer and its reader.
func (t *hrTimer) Close() {
	t.f.Close()
	<-t.done
}
