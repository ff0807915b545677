package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// DefaultSocket is where sitelinkd listens and sitelinkctl connects by default.
const DefaultSocket = "/run/sitelink/admin.sock"

// Defaults of Options.
const (
	DefaultAdminGroup      = "sitelink-admin"
	DefaultReaderGroup     = "sitelink"
	DefaultMaxBodyBytes    = 1 << 20
	DefaultRequestTimeout  = 2 * time.Minute
	DefaultShutdownTimeout = 5 * time.Second
	DefaultGroupCacheTTL   = 2 * time.Second
)

// Options configure a Server. The zero value means the defaults.
type Options struct {
	// SocketPath is the unix socket to listen on (DefaultSocket).
	SocketPath string
	// AdminGroup members may change things (DefaultAdminGroup); ReaderGroup members may
	// read (DefaultReaderGroup). Root is always an admin.
	AdminGroup  string
	ReaderGroup string
	// SocketGroup owns the socket file (default: ReaderGroup if it exists, else
	// AdminGroup). Members of other groups cannot connect at all (EACCES).
	SocketGroup string
	// SocketMode is the socket file's mode; 0 means 0660 when SocketGroup exists and
	// 0600 otherwise. Authorization does not depend on it (SO_PEERCRED does that).
	SocketMode os.FileMode
	// MaxBodyBytes bounds request bodies (DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// RequestTimeout bounds non-streaming requests (DefaultRequestTimeout).
	RequestTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown when Serve's context ends.
	ShutdownTimeout time.Duration
	// GroupCacheTTL is how long group name lookups are cached (DefaultGroupCacheTTL);
	// negative: not cached.
	GroupCacheTTL time.Duration
	// Authorize, when set, replaces the group policy (tests, embedding).
	Authorize func(Peer) Access
	// Logger receives request errors (slog.Default()).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.SocketPath == "" {
		o.SocketPath = DefaultSocket
	}
	if o.AdminGroup == "" {
		o.AdminGroup = DefaultAdminGroup
	}
	if o.ReaderGroup == "" {
		o.ReaderGroup = DefaultReaderGroup
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.GroupCacheTTL == 0 {
		o.GroupCacheTTL = DefaultGroupCacheTTL
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Server is the admin API server. Create it with New, optionally add handlers with
// Handle, then Listen and Serve.
type Server struct {
	backend Backend
	opts    Options
	log     *slog.Logger
	groups  *groupResolver
	mux     *http.ServeMux
	handler http.Handler

	mu       sync.Mutex
	listener net.Listener // the unix socket, once Listen succeeded
}

// New returns a server for backend with the API routes registered.
func New(backend Backend, opts Options) *Server {
	opts = opts.withDefaults()
	s := &Server{
		backend: backend,
		opts:    opts,
		log:     opts.Logger,
		groups:  newGroupResolver(opts.GroupCacheTTL),
		mux:     http.NewServeMux(),
	}
	s.routes()
	s.handler = http.HandlerFunc(s.serveHTTP)
	return s
}

// Handle registers an extra handler (Go 1.22 ServeMux pattern, e.g. "GET /metrics")
// that needs the given access; AccessNone makes it public (/healthz). The request's
// context carries the Peer (PeerFromContext). Like http.ServeMux.Handle it panics on an
// invalid or conflicting pattern; it may be called while serving.
func (s *Server) Handle(pattern string, h http.Handler, access Access) {
	s.mux.Handle(pattern, s.authorize(access, h))
}

// Handler returns the server's whole HTTP handler. Requests need a Peer in their context
// (the Server's listeners put it there); without one, they have no access.
func (s *Server) Handler() http.Handler { return s.handler }

// SocketPath is the socket Listen creates.
func (s *Server) SocketPath() string { return s.opts.SocketPath }

// Listen creates the unix socket: a stale socket left by a crashed daemon is removed, but
// a socket another daemon still answers on is an error. Call it early to fail fast;
// Serve calls it when it was not called.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener != nil {
		return nil
	}
	ln, err := listenSocket(s.opts, s.groups)
	if err != nil {
		return err
	}
	s.listener = ln
	return nil
}

// Close removes the socket created by Listen when Serve was not called (Serve removes it
// itself when it returns).
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener == nil {
		return nil
	}
	err := s.listener.Close()
	s.listener = nil
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close admin socket: %w", err)
	}
	return nil
}

// Serve serves the unix socket until ctx ends, then shuts down gracefully: streams are
// cancelled, other requests get ShutdownTimeout to finish, and the socket file is
// removed. It returns nil after a shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	ln := s.listener
	s.mu.Unlock()
	if ln == nil {
		return errors.New("admin server: closed")
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener serves an extra listener (e.g. TCP for /metrics) until ctx ends. Peers
// on listeners other than unix sockets have no credentials, hence AccessNone: they reach
// only handlers registered with AccessNone. ln is closed when it returns.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	// streams ends when the shutdown starts: streaming responses stop then, while other
	// requests may finish.
	streams, stopStreams := context.WithCancel(context.Background())
	defer stopStreams()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(context.WithoutCancel(ctx), streamsKey{}, streams)
		},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return withPeer(ctx, peerOf(c))
		},
	}
	srv.RegisterOnShutdown(stopStreams)

	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("admin server on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		// Requests still running after the timeout: cut them off.
		_ = srv.Close()
		err = fmt.Errorf("admin server on %s: shutdown: %w", ln.Addr(), err)
	}
	if serveErr := <-done; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("admin server on %s: %w", ln.Addr(), serveErr)
	}
	return err
}

type streamsKey struct{}

// streamContext returns a context that ends with the request or when the server that
// accepted it starts shutting down.
func streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	if streams, ok := r.Context().Value(streamsKey{}).(context.Context); ok {
		stop := context.AfterFunc(streams, cancel)
		return ctx, func() { stop(); cancel() }
	}
	return ctx, cancel
}
