package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sitelink/sitelink/plugins/proxy/limit"
)

// spliceMin is the smallest transfer moved with splice; smaller ones are copied through a
// pooled buffer (two syscalls instead of four, and no pipe).
const spliceMin = 16 << 10

// smallBufs are the buffers for small transfers; a connection holds one only while it
// moves bytes, never while idle.
var smallBufs = sync.Pool{New: func() any { b := make([]byte, spliceMin); return &b }}

// direction is one way of a relayed connection.
type direction struct {
	src, dst *net.TCPConn
	rc       syscall.RawConn
	// buckets returns the limiters to wait on (read at every transfer, so changed limits
	// apply to live connections).
	buckets func() []*limit.Bucket
	count   func(n int)
	// activity is shared by both directions: unix nanoseconds of the last transfer.
	activity *atomic.Int64
	idle     time.Duration
}

// waitReadable blocks until src has bytes or EOF without holding a buffer or a pipe, and
// returns how many bytes can be read at once (0 at EOF).
func (d *direction) waitReadable() (int, error) {
	var avail int
	var serr error
	var peek [1]byte
	err := d.rc.Read(func(fd uintptr) bool {
		n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		if err == nil && n > 0 {
			avail = n
			return true
		}
		m, _, err := unix.Recvfrom(int(fd), peek[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
			return false
		case err != nil:
			serr = os.NewSyscallError("recvfrom", err)
		default:
			avail = m // 0: EOF
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	return avail, serr
}

// run moves bytes from src to dst until EOF (then half-closes dst) or an error.
func (d *direction) run(ctx context.Context) error {
	for {
		if d.idle > 0 {
			_ = d.src.SetReadDeadline(time.Now().Add(d.idle))
		}
		avail, err := d.waitReadable()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				last := time.Unix(0, d.activity.Load())
				if time.Since(last) < d.idle {
					continue // the other direction is busy
				}
			}
			return err
		}
		if avail == 0 {
			// EOF: pass the half-close on, keep the other direction going.
			return d.dst.CloseWrite()
		}
		n := avail
		if bs := d.buckets(); len(bs) > 0 {
			if n, err = limit.Wait(ctx, avail, bs...); err != nil {
				return err
			}
		}
		if d.idle > 0 {
			_ = d.dst.SetWriteDeadline(time.Now().Add(d.idle))
		}
		var moved int64
		if n >= spliceMin {
			moved, err = d.dst.ReadFrom(&io.LimitedReader{R: d.src, N: int64(n)})
		} else {
			bp := smallBufs.Get().(*[]byte)
			var r int
			r, err = d.src.Read((*bp)[:n])
			if r > 0 {
				var w int
				w, err = d.dst.Write((*bp)[:r])
				moved = int64(w)
			}
			smallBufs.Put(bp)
		}
		if moved > 0 {
			d.activity.Store(time.Now().UnixNano())
			d.count(int(moved))
		}
		if err != nil {
			return err
		}
	}
}

// relay copies both ways between a and b until both directions ended (or ctx ends),
// then closes both. It returns the first error other than a normal end.
func relay(ctx context.Context, a, b *net.TCPConn, idle time.Duration, buckets func() []*limit.Bucket, countAB, countBA func(int)) error {
	ra, err := a.SyscallConn()
	if err != nil {
		return err
	}
	rb, err := b.SyscallConn()
	if err != nil {
		return err
	}
	var activity atomic.Int64
	activity.Store(time.Now().UnixNano())
	ab := &direction{src: a, dst: b, rc: ra, buckets: buckets, count: countAB, activity: &activity, idle: idle}
	ba := &direction{src: b, dst: a, rc: rb, buckets: buckets, count: countBA, activity: &activity, idle: idle}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		a.Close()
		b.Close()
	})
	defer stop()
	run := func(d *direction) error {
		err := d.run(ctx)
		if err != nil {
			// One way failed: the other cannot finish normally.
			a.Close()
			b.Close()
		}
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- run(ab) }()
	err1 := run(ba)
	err2 := <-errc
	a.Close()
	b.Close()
	for _, e := range []error{err1, err2} {
		if e != nil && !isNormalEnd(e) {
			return e
		}
	}
	return nil
}

func isNormalEnd(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, context.Canceled) || errors.Is(err, syscall.ENOTCONN)
}
