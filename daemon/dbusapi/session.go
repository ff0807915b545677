package dbusapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/sitelink/sitelink/daemon/admin"
	"github.com/sitelink/sitelink/daemon/api"
	"github.com/sitelink/sitelink/plugins/sdk"
)

const (
	// eventRetry is the wait before following events again after Backend.Events failed.
	eventRetry = time.Second
	// roleGrace is how long after a role event Status's role is not trusted: the
	// supervisor learns the role from the same event and may not have handled it yet.
	roleGrace = 2 * time.Second
)

// session is the service on one bus connection.
type session struct {
	ctx     context.Context // Serve's: method calls outlive a lost connection
	backend admin.Backend
	opts    Options
	log     *slog.Logger
	conn    *dbus.Conn
	props   *properties
	// kick asks the session loop to refresh the properties (after a Reload call).
	kick chan struct{}
	// roleEventAt is when the loop last took the role from an event.
	roleEventAt time.Time
}

// runSession connects, serves until the connection is lost or ctx ends, and reports
// whether it got as far as owning the name.
func runSession(ctx context.Context, backend admin.Backend, opts Options, log *slog.Logger) (connected bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel() // closes the connection (dbus.WithContext)

	conn, err := connect(sctx, opts.Address)
	if err != nil {
		return false, err
	}
	s := &session{
		ctx:     ctx,
		backend: backend,
		opts:    opts,
		log:     log,
		conn:    conn,
		props:   newProperties(statusValues(backend.Status(sctx))),
		kick:    make(chan struct{}, 1),
	}
	if err := s.export(); err != nil {
		return false, err
	}
	if err := s.requestName(); err != nil {
		return false, err
	}
	log.Info("D-Bus service ready", "bus", opts.where(), "name", BusName, "unique_name", conn.Names()[0])
	return true, s.loop(sctx)
}

// connect opens a private connection that is closed when ctx ends.
func connect(ctx context.Context, address string) (*dbus.Conn, error) {
	var conn *dbus.Conn
	var err error
	if address == "" {
		conn, err = dbus.ConnectSystemBus(dbus.WithContext(ctx))
	} else {
		conn, err = dbus.Connect(address, dbus.WithContext(ctx))
	}
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return conn, nil
}

// export registers the object, its properties and the introspection data.
func (s *session) export() error {
	m := &methods{s: s}
	if err := s.conn.Export(m, ObjectPath, Interface); err != nil {
		return fmt.Errorf("export %s: %w", Interface, err)
	}
	if err := s.conn.Export(s.props, ObjectPath, propertiesInterface); err != nil {
		return fmt.Errorf("export properties: %w", err)
	}
	nodes, err := introspection()
	if err != nil {
		return err
	}
	for path, node := range nodes {
		if err := s.conn.Export(node, path, introspectableInterface); err != nil {
			return fmt.Errorf("export introspection of %s: %w", path, err)
		}
	}
	return nil
}

// requestName asks for BusName without queueing.
func (s *session) requestName() error {
	reply, err := s.conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	if err != nil {
		var de dbus.Error
		if errors.As(err, &de) && de.Name == "org.freedesktop.DBus.Error.AccessDenied" {
			return fmt.Errorf("request name %s: %w: %v", BusName, ErrNotAllowed, err)
		}
		return fmt.Errorf("request name %s: %w", BusName, err)
	}
	switch reply {
	case dbus.RequestNameReplyPrimaryOwner, dbus.RequestNameReplyAlreadyOwner:
		return nil
	case dbus.RequestNameReplyExists:
		var owner string
		_ = s.conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, BusName).Store(&owner)
		return fmt.Errorf("request name %s: %w by %s", BusName, ErrNameTaken, owner)
	}
	return fmt.Errorf("request name %s: unexpected reply %d", BusName, reply)
}

// loop follows the backend's events and refreshes the properties until the connection
// is lost (an error) or ctx ends (nil).
func (s *session) loop(ctx context.Context) error {
	events := make(chan api.Event, 64)
	ectx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	defer func() {
		cancel()
		<-done
	}()
	go func() {
		defer close(done)
		s.followEvents(ectx, events)
	}()

	refresh := time.NewTicker(s.opts.RefreshInterval)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.conn.Context().Done():
			return errors.New("connection closed by the bus")
		case ev := <-events:
			s.handleEvent(ctx, ev)
		case <-s.kick:
			s.refresh(ctx)
		case <-refresh.C:
			s.refresh(ctx)
		}
	}
}

// followEvents sends the backend's plugin and role events to out until ctx ends.
func (s *session) followEvents(ctx context.Context, out chan<- api.Event) {
	for {
		err := s.backend.Events(ctx, []string{sdk.EventPlugin, sdk.EventRole}, func(ev api.Event) error {
			select {
			case out <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("following daemon events failed; retrying", "err", err, "retry_in", eventRetry)
		t := time.NewTimer(eventRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// handleEvent emits the signal for a plugin or role event and updates the properties.
func (s *session) handleEvent(ctx context.Context, ev api.Event) {
	switch ev.Type {
	case sdk.EventPlugin:
		name, state, previous := ev.Attrs["plugin"], ev.Attrs["state"], ev.Attrs["previous"]
		if name == "" || state == "" {
			s.log.Debug("ignoring a plugin event without plugin or state", "attrs", ev.Attrs)
			return
		}
		s.emit("PluginStateChanged", name, previous, state)
		// The supervisor records a state before publishing it, so Status is at least as
		// new as the event.
		s.refresh(ctx)
	case sdk.EventRole:
		// The role comes from the event: the supervisor may not have handled it yet.
		s.roleEventAt = time.Now()
		role := string(sdk.ParseRole(ev.Attrs["role"]))
		old, changed := s.props.setRole(role)
		if !changed {
			return // e.g. the retained event a new subscriber gets first
		}
		s.emit("RoleChanged", old, role)
		s.emitChanged(map[string]dbus.Variant{"Role": dbus.MakeVariant(role)})
		s.refresh(ctx)
	}
}

// refresh reconciles the properties with Backend.Status and announces what changed. A
// role change seen here (its event not handled yet, or lost) is announced with
// RoleChanged too, so that the signal never misses a change of the Role property.
func (s *session) refresh(ctx context.Context) {
	skip := ""
	if time.Since(s.roleEventAt) < roleGrace {
		skip = "Role"
	}
	oldRole := s.props.role()
	changed := s.props.update(statusValues(s.backend.Status(ctx)), skip)
	if v, ok := changed["Role"]; ok {
		s.emit("RoleChanged", oldRole, v.Value())
	}
	s.emitChanged(changed)
}

// emit sends a signal of the interface from the object.
func (s *session) emit(member string, args ...any) {
	if err := s.conn.Emit(ObjectPath, Interface+"."+member, args...); err != nil {
		s.log.Debug("emit signal failed", "signal", member, "err", err)
	}
}

// emitChanged sends PropertiesChanged for changed, if it is not empty.
func (s *session) emitChanged(changed map[string]dbus.Variant) {
	if len(changed) == 0 {
		return
	}
	if err := s.conn.Emit(ObjectPath, propertiesInterface+".PropertiesChanged", Interface, changed, []string{}); err != nil {
		s.log.Debug("emit PropertiesChanged failed", "err", err)
	}
}

// requestRefresh asks the loop to refresh the properties soon.
func (s *session) requestRefresh() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}
