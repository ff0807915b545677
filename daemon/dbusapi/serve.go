package dbusapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/sitelink/sitelink/daemon/admin"
)

// The service's well-known name, object path and interface.
const (
	BusName    = "org.sitelink.Sitelink1"
	ObjectPath = dbus.ObjectPath("/org/sitelink/Sitelink1")
	Interface  = "org.sitelink.Sitelink1"
)

// Names of the D-Bus errors the methods return. The body is one string, the message; an
// InvalidConfig message is "invalid config:" followed by one line per problem,
// "FILE:LINE:COL: reason".
const (
	ErrorInvalidConfig   = Interface + ".Error.InvalidConfig"
	ErrorNotFound        = Interface + ".Error.NotFound"
	ErrorInvalidArgument = Interface + ".Error.InvalidArgument"
	ErrorConflict        = Interface + ".Error.Conflict"
	ErrorUnavailable     = Interface + ".Error.Unavailable"
	ErrorFailed          = Interface + ".Error.Failed"
)

// Defaults of Options.
const (
	DefaultMinRetry        = 500 * time.Millisecond
	DefaultMaxRetry        = 30 * time.Second
	DefaultRefreshInterval = 5 * time.Second
	// DefaultCallTimeout bounds one method call's work in the daemon.
	DefaultCallTimeout = admin.DefaultRequestTimeout
)

// Errors Serve returns (wrapped) when it cannot serve at all; anything else is retried.
var (
	// ErrNameTaken: another connection owns org.sitelink.Sitelink1 (another sitelinkd).
	ErrNameTaken = errors.New("bus name already owned")
	// ErrNotAllowed: the bus policy does not let this process own the name (the policy
	// file is not installed, or the daemon does not run as root).
	ErrNotAllowed = errors.New("not allowed to own the bus name")
)

// Options configure Serve. Only Address and Logger are usually set.
type Options struct {
	// Address is the bus address, e.g. "unix:path=/run/dbus/system_bus_socket"; empty
	// means the system bus ($DBUS_SYSTEM_BUS_ADDRESS or the default socket).
	Address string
	// Logger receives the service's logs; nil means slog.Default().
	Logger *slog.Logger
	// MinRetry and MaxRetry bound the wait between connection attempts, which doubles
	// after each failure (defaults DefaultMinRetry and DefaultMaxRetry).
	MinRetry, MaxRetry time.Duration
	// RefreshInterval is how often the properties are reconciled with Backend.Status, to
	// catch changes no event announces, such as the daemon state during a reload
	// (default DefaultRefreshInterval).
	RefreshInterval time.Duration
	// CallTimeout bounds the daemon's work for one method call (default
	// DefaultCallTimeout).
	CallTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MinRetry <= 0 {
		o.MinRetry = DefaultMinRetry
	}
	if o.MaxRetry <= 0 {
		o.MaxRetry = DefaultMaxRetry
	}
	o.MaxRetry = max(o.MaxRetry, o.MinRetry)
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = DefaultRefreshInterval
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	return o
}

// where names the bus in logs.
func (o Options) where() string {
	if o.Address == "" {
		return "system bus"
	}
	return o.Address
}

// Serve runs the D-Bus service until ctx ends, then returns nil. It connects, exports the
// object, requests the name and follows the backend's events. Without a bus it logs one
// warning and retries quietly (debug level) with exponential backoff; when the connection
// is lost it logs one warning and reconnects the same way. It returns an error only when
// serving is impossible: the name is owned by another connection (ErrNameTaken) or the
// policy does not allow owning it (ErrNotAllowed).
func Serve(ctx context.Context, backend admin.Backend, opts Options) error {
	if backend == nil {
		return errors.New("dbusapi.Serve: nil backend")
	}
	opts = opts.withDefaults()
	log := opts.Logger.With("component", "dbus")
	delay := opts.MinRetry
	warned := false // one warning per outage
	for attempt := 1; ; attempt++ {
		connected, err := runSession(ctx, backend, opts, log)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrNameTaken) || errors.Is(err, ErrNotAllowed) {
			return fmt.Errorf("dbusapi: %w", err)
		}
		if connected {
			// The bus went away after we served on it: start over quickly.
			delay, attempt = opts.MinRetry, 1
			log.Warn("D-Bus connection lost; reconnecting in the background", "bus", opts.where(), "err", err)
			warned = true
		} else if !warned {
			log.Warn("D-Bus unavailable; running without it and retrying in the background", "bus", opts.where(), "err", err)
			warned = true
		} else {
			log.Debug("D-Bus connection attempt failed", "bus", opts.where(), "attempt", attempt, "retry_in", delay, "err", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(2*delay, opts.MaxRetry)
	}
}
