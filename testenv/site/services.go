package site

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sitelink/sitelink/testenv"
)

// AppServer is the site's application: HTTP, a TCP line echo and a UDP echo, each
// telling the peer which address it sees.
type AppServer struct {
	http  *http.Server
	lns   []net.Listener
	udp   net.PacketConn
	mu    sync.Mutex
	conns map[net.Conn]bool
	done  sync.WaitGroup
}

// Center is the management center: it reads lines "AGENT SEQ" on TCP, answers each
// with "ok", and counts lines per agent.
type Center struct {
	ln    net.Listener
	mu    sync.Mutex
	lines map[string]int
	conns map[net.Conn]bool
	done  sync.WaitGroup
}

func (s *Site) startServices() error {
	app := &AppServer{conns: map[net.Conn]bool{}}
	var httpLn, echoLn net.Listener
	if err := s.App.Do(func() error {
		var err error
		if httpLn, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", AppAddr, HTTPPort)); err != nil {
			return err
		}
		if echoLn, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", AppAddr, EchoPort)); err != nil {
			return err
		}
		app.udp, err = net.ListenPacket("udp4", fmt.Sprintf("%s:%d", AppAddr, FlowPort))
		return err
	}); err != nil {
		return fmt.Errorf("site: app server: %w", err)
	}
	app.lns = []net.Listener{httpLn, echoLn}
	app.http = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "peer=%s\n", host)
	})}
	app.done.Add(3)
	go func() { defer app.done.Done(); _ = app.http.Serve(httpLn) }()
	go func() { defer app.done.Done(); app.serveEcho(echoLn) }()
	go func() { defer app.done.Done(); app.serveUDP() }()
	s.AppServer = app
	s.onClose(app.Close)

	mc := &Center{lines: map[string]int{}, conns: map[net.Conn]bool{}}
	if err := s.MC.Do(func() error {
		var err error
		mc.ln, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", MCAddr, MCPort))
		return err
	}); err != nil {
		return fmt.Errorf("site: management center: %w", err)
	}
	mc.done.Add(1)
	go func() { defer mc.done.Done(); mc.serve() }()
	s.Center = mc
	s.onClose(mc.Close)
	return nil
}

func peerIP(a net.Addr) string {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

func (a *AppServer) track(c net.Conn, on bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if on {
		if a.conns == nil {
			return false
		}
		a.conns[c] = true
	} else {
		delete(a.conns, c)
	}
	return true
}

func (a *AppServer) serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if !a.track(c, true) {
			c.Close()
			return
		}
		go func() {
			defer a.track(c, false)
			defer c.Close()
			peer := peerIP(c.RemoteAddr())
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				if _, err := fmt.Fprintf(c, "%s %s\n", peer, sc.Text()); err != nil {
					return
				}
			}
		}()
	}
}

func (a *AppServer) serveUDP() {
	buf := make([]byte, 2048)
	for {
		n, from, err := a.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = a.udp.WriteTo(append([]byte(peerIP(from)+" "), buf[:n]...), from)
	}
}

// Close stops the servers and closes their sockets (which hold the namespace).
func (a *AppServer) Close() {
	_ = a.http.Close()
	for _, ln := range a.lns {
		_ = ln.Close()
	}
	_ = a.udp.Close()
	a.mu.Lock()
	for c := range a.conns {
		c.Close()
	}
	a.conns = nil
	a.mu.Unlock()
	a.done.Wait()
}

func (m *Center) serve() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		m.mu.Lock()
		if m.conns == nil {
			m.mu.Unlock()
			c.Close()
			return
		}
		m.conns[c] = true
		m.mu.Unlock()
		go func() {
			defer func() { m.mu.Lock(); delete(m.conns, c); m.mu.Unlock(); c.Close() }()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				agent, _, _ := strings.Cut(sc.Text(), " ")
				m.mu.Lock()
				m.lines[agent]++
				m.mu.Unlock()
				if _, err := io.WriteString(c, "ok\n"); err != nil {
					return
				}
			}
		}()
	}
}

// Lines returns the lines received per agent so far.
func (m *Center) Lines() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int, len(m.lines))
	for k, v := range m.lines {
		out[k] = v
	}
	return out
}

// Close stops the management center.
func (m *Center) Close() {
	_ = m.ln.Close()
	m.mu.Lock()
	for c := range m.conns {
		c.Close()
	}
	m.conns = nil
	m.mu.Unlock()
	m.done.Wait()
}

// HTTPGet fetches http://AppAddr/ from host h and returns the peer address the app saw.
func HTTPGet(ctx context.Context, h *testenv.Host, timeout time.Duration) (string, error) {
	c, err := dial(h, fmt.Sprintf("%s:%d", AppAddr, HTTPPort), timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: app\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", fmt.Errorf("site: HTTP from %s: %w", h.Name(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	peer, ok := strings.CutPrefix(strings.TrimSpace(string(body)), "peer=")
	if !ok {
		return "", fmt.Errorf("site: HTTP answer %q", body)
	}
	return peer, nil
}

// dial opens a TCP connection from inside h.
func dial(h *testenv.Host, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	})
	return c, err
}

// Dial opens a TCP connection from inside h to addr.
func Dial(h *testenv.Host, addr string, timeout time.Duration) (net.Conn, error) {
	return dial(h, addr, timeout)
}

// AskUDP sends one datagram from h to addr:port's UDP echo and returns the peer address
// the server saw.
func AskUDP(h *testenv.Host, addr string, port int, timeout time.Duration) (string, error) {
	var pc net.PacketConn
	if err := h.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", ":0")
		return err
	}); err != nil {
		return "", err
	}
	defer pc.Close()
	if _, err := pc.WriteTo([]byte("?"), &net.UDPAddr{IP: net.ParseIP(addr), Port: port}); err != nil {
		return "", err
	}
	_ = pc.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1500)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		return "", fmt.Errorf("site: no UDP answer from %s:%d within %s: %w", addr, port, timeout, err)
	}
	peer, _, _ := strings.Cut(string(buf[:n]), " ")
	return peer, nil
}

// Delivery is one answered message of a flow.
type Delivery struct {
	At   time.Time
	Peer string // the address the far end saw
}

// Recorder keeps a flow's deliveries and errors.
type Recorder struct {
	mu         sync.Mutex
	deliveries []Delivery
	sent       int
	errs       []string
	connects   int
}

func (r *Recorder) deliver(peer string) {
	r.mu.Lock()
	r.deliveries = append(r.deliveries, Delivery{At: time.Now(), Peer: peer})
	r.mu.Unlock()
}

func (r *Recorder) fail(err error) {
	r.mu.Lock()
	if len(r.errs) < 1000 {
		r.errs = append(r.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
	}
	r.mu.Unlock()
}

// Deliveries returns the deliveries so far.
func (r *Recorder) Deliveries() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.deliveries...)
}

// Errors returns the errors so far (at most 1000).
func (r *Recorder) Errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

// Connects is how many connections the flow opened.
func (r *Recorder) Connects() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.connects
}

// Sent is how many messages the flow sent.
func (r *Recorder) Sent() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent
}

// DeliveredSince counts deliveries at or after t.
func (r *Recorder) DeliveredSince(t time.Time) int {
	n := 0
	for _, d := range r.Deliveries() {
		if !d.At.Before(t) {
			n++
		}
	}
	return n
}

// Gap is the longest time without a delivery that overlaps [from, to]: from the last
// delivery before from (or from) to the first one after it, and so on up to to. It
// also returns when that gap ended (zero if it had not ended by to).
func (r *Recorder) Gap(from, to time.Time) (time.Duration, time.Time) {
	prev := from
	var longest time.Duration
	var end time.Time
	for _, d := range r.Deliveries() {
		if d.At.Before(from) {
			prev = d.At
			continue
		}
		if d.At.After(to) {
			break
		}
		if g := d.At.Sub(prev); g > longest {
			longest, end = g, d.At
		}
		prev = d.At
	}
	if g := to.Sub(prev); g > longest {
		longest, end = g, time.Time{}
	}
	return longest, end
}

// Flow is a long-running exchange whose deliveries are recorded until Stop.
type Flow struct {
	*Recorder
	cancel context.CancelFunc
	done   chan struct{}
}

// Stop ends the flow and waits for it.
func (f *Flow) Stop() {
	f.cancel()
	<-f.done
}

// StartUDPFlow sends a datagram from h to the app's UDP echo every interval and
// records each answer (the remote user's long-running flow).
func StartUDPFlow(h *testenv.Host, interval time.Duration) (*Flow, error) {
	var pc net.PacketConn
	if err := h.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", ":0")
		return err
	}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Flow{Recorder: &Recorder{}, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			peer, _, _ := strings.Cut(string(buf[:n]), " ")
			f.deliver(peer)
		}
	}()
	go func() {
		defer wg.Done()
		dst := &net.UDPAddr{IP: net.ParseIP(AppAddr), Port: FlowPort}
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for i := 0; ; i++ {
			if _, err := pc.WriteTo([]byte(strconv.Itoa(i)), dst); err != nil {
				f.fail(err)
			}
			f.mu.Lock()
			f.sent++
			f.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
		}
	}()
	go func() {
		<-ctx.Done()
		pc.Close()
		wg.Wait()
		close(f.done)
	}()
	return f, nil
}

// StartLineFlow keeps a TCP connection from h to addr and sends "name SEQ" lines every
// interval, counting each answered line as a delivery. With reconnect, a broken
// connection is replaced (after 50 ms) and counted in Connects; without, the flow
// records the error and ends. The answer's first word is the delivery's Peer.
func StartLineFlow(h *testenv.Host, addr, name string, interval time.Duration, reconnect bool) *Flow {
	ctx, cancel := context.WithCancel(context.Background())
	f := &Flow{Recorder: &Recorder{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		seq := 0
		for ctx.Err() == nil {
			err := f.runLines(ctx, h, addr, name, interval, &seq)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				f.fail(err)
			}
			if !reconnect {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return f
}

func (f *Flow) runLines(ctx context.Context, h *testenv.Host, addr, name string, interval time.Duration, seq *int) error {
	c, err := dial(h, addr, 2*time.Second)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.connects++
	f.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	rd := bufio.NewReader(c)
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		*seq++
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := fmt.Fprintf(c, "%s %d\n", name, *seq); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		f.mu.Lock()
		f.sent++
		f.mu.Unlock()
		line, err := rd.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("connection closed by the far end")
			}
			return fmt.Errorf("receive: %w", err)
		}
		peer, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		f.deliver(peer)
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
		}
	}
}
