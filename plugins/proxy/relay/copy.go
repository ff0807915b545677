package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
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

// pipeSize is the capacity of the splice pipes (F_SETPIPE_SZ; what Go's own splice asks
// for too): up to this much moves per splice(2) pair.
const pipeSize = 1 << 20

// pipe is a kernel pipe for splice. A direction takes one from pipes only while bytes are
// in it; pooled pipes are empty.
type pipe struct {
	r, w    int
	cleanup runtime.Cleanup
}

// errNoPipe: no pipe could be made (out of file descriptors); the bytes are copied instead.
var errNoPipe = errors.New("no pipe for splice")

// pipes holds the empty pipes; pipes the pool drops are closed by their cleanup.
var pipes = sync.Pool{New: func() any {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil
	}
	_, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, pipeSize) // best effort: the default 64 KiB works too
	p := &pipe{r: fds[0], w: fds[1]}
	p.cleanup = runtime.AddCleanup(p, func(fds [2]int) { unix.Close(fds[0]); unix.Close(fds[1]) }, fds)
	return p
}}

// direction is one way of a relayed connection.
type direction struct {
	src, dst *net.TCPConn
	// rc and wc are src's and dst's raw connections.
	rc, wc syscall.RawConn
	// buckets returns the limiters to wait on (read at every transfer, so changed limits
	// apply to live connections).
	buckets func() []*limit.Bucket
	count   func(n int)
	// activity is shared by both directions: unix nanoseconds of the last transfer.
	activity *atomic.Int64
	// ended is shared by both directions: how many reached EOF.
	ended *atomic.Int32
	idle  time.Duration
}

// readSmall waits until src has bytes or EOF and reads them into a pooled buffer taken
// only once the socket is readable (a parked connection holds none). It returns the
// buffer (nil at EOF or on error) and the bytes read. One read(2) per wake-up, where
// waitReadable needs an ioctl and a peek first. (It cannot wait before the first read
// when the last one drained the socket: RawConn.Read clears the poller's readiness
// before calling f, so a readiness that came meanwhile would be lost.)
func (d *direction) readSmall() (*[]byte, int, error) {
	var bp *[]byte
	var n int
	var serr error
	err := d.rc.Read(func(fd uintptr) bool {
		if bp == nil {
			bp = smallBufs.Get().(*[]byte)
		}
		for {
			m, err := unix.Read(int(fd), *bp)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				smallBufs.Put(bp)
				bp = nil
				return false
			case err != nil:
				serr = os.NewSyscallError("read", err)
			default:
				n = m
			}
			return true
		}
	})
	if err == nil {
		err = serr
	}
	if (err != nil || n == 0) && bp != nil {
		smallBufs.Put(bp)
		bp = nil
	}
	return bp, n, err
}

// spliceIn waits until src has bytes or EOF and splices what it can (up to pipeSize)
// into a pipe taken only once the socket is readable. It returns the pipe (nil at EOF or
// on error) and the bytes in it. No ioctl or peek first: one splice(2) per wake-up, and a
// second one that finds the socket drained before the goroutine parks.
func (d *direction) spliceIn() (*pipe, int, error) {
	var p *pipe
	var n int
	var serr error
	err := d.rc.Read(func(fd uintptr) bool {
		if p == nil {
			if p, _ = pipes.Get().(*pipe); p == nil {
				serr = errNoPipe
				return true
			}
		}
		for {
			m, err := unix.Splice(int(fd), nil, p.w, nil, pipeSize, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				pipes.Put(p)
				p = nil
				return false
			case err != nil:
				serr = os.NewSyscallError("splice", err)
			default:
				n = int(m)
			}
			return true
		}
	})
	if err == nil {
		err = serr
	}
	if (err != nil || n == 0) && p != nil {
		pipes.Put(p) // nothing went in
		p = nil
	}
	return p, n, err
}

// spliceOut moves the n bytes in p to dst, returns p to the pool once empty (closes it
// otherwise) and says how many bytes were moved.
func (d *direction) spliceOut(p *pipe, n int) (int, error) {
	moved := 0
	var serr error
	err := d.wc.Write(func(fd uintptr) bool {
		for moved < n {
			m, err := unix.Splice(p.r, nil, int(fd), nil, n-moved, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false
			case err != nil:
				serr = os.NewSyscallError("splice", err)
				return true
			case m == 0:
				serr = io.ErrShortWrite
				return true
			}
			moved += int(m)
		}
		return true
	})
	if err == nil {
		err = serr
	}
	if moved == n {
		pipes.Put(p)
	} else {
		// Bytes are stuck in it: it cannot be reused.
		p.cleanup.Stop()
		unix.Close(p.r)
		unix.Close(p.w)
	}
	return moved, err
}

// eof passes a half-close on to dst, unless the other direction ended too: then both
// sockets are closed next, which sends the FIN anyway (one shutdown(2) less).
func (d *direction) eof() error {
	if d.ended.Add(1) == 2 {
		return nil
	}
	return d.dst.CloseWrite()
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
// Without bandwidth limits, after a small transfer (the usual case for agents) it reads
// straight into a pooled buffer, and after a large one it splices straight into a pooled
// pipe; with limits, it first learns how much is readable, and moves large amounts with
// splice.
func (d *direction) run(ctx context.Context) error {
	small := true
	for {
		if d.idle > 0 {
			_ = d.src.SetReadDeadline(time.Now().Add(d.idle))
		}
		bs := d.buckets()
		if len(bs) == 0 {
			n, err := d.moveOnce(!small)
			if errors.Is(err, errNoPipe) {
				small = true // copy through a buffer until a pipe can be made
				continue
			}
			if err != nil {
				if n == 0 && d.recentlyActive(err) {
					continue // an idle read deadline; a failed write is never retried
				}
				return err
			}
			if n == 0 {
				return d.eof()
			}
			small = n < spliceMin
			continue
		}
		avail, err := d.waitReadable()
		if err != nil {
			if d.recentlyActive(err) {
				continue
			}
			return err
		}
		if avail == 0 {
			// EOF: pass the half-close on, keep the other direction going.
			return d.eof()
		}
		n, err := limit.Wait(ctx, avail, bs...)
		if err != nil {
			return err
		}
		d.armWrite()
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
		d.moved(int(moved))
		if err != nil {
			return err
		}
		small = moved < spliceMin
	}
}

// moveOnce waits until src has bytes or EOF and passes what it read on to dst: through a
// pooled pipe (splice, after a large transfer) or through a pooled buffer. It returns the
// bytes read: 0 with a nil error is EOF, 0 with an error a failed read (errNoPipe
// included; nothing was written), more than 0 with an error a failed write.
func (d *direction) moveOnce(viaPipe bool) (int, error) {
	var (
		p   *pipe
		bp  *[]byte
		n   int
		err error
	)
	if viaPipe {
		p, n, err = d.spliceIn()
	} else {
		bp, n, err = d.readSmall()
	}
	if err != nil || n == 0 {
		return n, err
	}
	d.armWrite()
	var w int
	if viaPipe {
		w, err = d.spliceOut(p, n)
	} else {
		w, err = d.dst.Write((*bp)[:n])
		smallBufs.Put(bp)
	}
	d.moved(w)
	return n, err
}

// armWrite sets dst's idle deadline before a write.
func (d *direction) armWrite() {
	if d.idle > 0 {
		_ = d.dst.SetWriteDeadline(time.Now().Add(d.idle))
	}
}

// moved records n bytes written to dst.
func (d *direction) moved(n int) {
	if n > 0 {
		d.activity.Store(time.Now().UnixNano())
		d.count(n)
	}
}

// recentlyActive says whether err is the idle deadline while the other direction moved
// bytes within the idle timeout (then the connection is not idle).
func (d *direction) recentlyActive(err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	return time.Since(time.Unix(0, d.activity.Load())) < d.idle
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
	var ended atomic.Int32
	activity.Store(time.Now().UnixNano())
	ab := &direction{src: a, dst: b, rc: ra, wc: rb, buckets: buckets, count: countAB, activity: &activity, ended: &ended, idle: idle}
	ba := &direction{src: b, dst: a, rc: rb, wc: ra, buckets: buckets, count: countBA, activity: &activity, ended: &ended, idle: idle}
	if ctx.Done() != nil {
		// Only a context that can end needs watching (the server's cannot: one
		// allocation and registration less per connection).
		stop := context.AfterFunc(ctx, func() {
			a.Close()
			b.Close()
		})
		defer stop()
	}
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
