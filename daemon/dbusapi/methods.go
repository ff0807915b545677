package dbusapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/godbus/dbus/v5"

	"github.com/sitelink/sitelink/daemon/admin"
	"github.com/sitelink/sitelink/daemon/api"
)

// methods is the object's org.sitelink.Sitelink1 interface. Every exported method is a
// D-Bus method (godbus exports them by reflection; the introspection is generated from
// them). The bus policy has already admitted the caller: only root and the admin group
// may call these.
type methods struct {
	s *session
}

// callContext bounds the daemon's work for one call. It derives from Serve's context, not
// the connection's, so that a call in progress is not cut short by a lost bus.
func (m *methods) callContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(m.s.ctx, m.s.opts.CallTimeout)
}

// GetStatus returns the daemon's status, api.Status as JSON (the body of the admin
// socket's GET /v1/status).
func (m *methods) GetStatus() (string, *dbus.Error) {
	ctx, cancel := m.callContext()
	defer cancel()
	b, err := json.Marshal(m.s.backend.Status(ctx))
	if err != nil {
		return "", failed(fmt.Errorf("encode status: %w", err))
	}
	return string(b), nil
}

// Reload re-reads the config file and returns api.ReloadResult as JSON. A rejected
// config is an InvalidConfig error and the daemon keeps its running config.
func (m *methods) Reload(sender dbus.Sender) (string, *dbus.Error) {
	ctx, cancel := m.callContext()
	defer cancel()
	m.audit(ctx, sender, "reload")
	res, err := m.s.backend.Reload(ctx)
	m.s.requestRefresh()
	if err != nil {
		return "", dbusError(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		return "", failed(fmt.Errorf("encode reload result: %w", err))
	}
	return string(b), nil
}

// RestartPlugin restarts the plugin name (clearing a failed state).
func (m *methods) RestartPlugin(sender dbus.Sender, name string) *dbus.Error {
	if name == "" {
		return invalidArgument("empty plugin name")
	}
	ctx, cancel := m.callContext()
	defer cancel()
	m.audit(ctx, sender, "restart plugin "+name)
	if err := m.s.backend.RestartPlugin(ctx, name); err != nil {
		return dbusError(err)
	}
	return nil
}

// InvokeAction runs the non-streaming action of plugin with args and returns its JSON
// result. Streaming actions are refused (use sitelinkctl).
func (m *methods) InvokeAction(sender dbus.Sender, plugin, action string, args map[string]string) (string, *dbus.Error) {
	ctx, cancel := m.callContext()
	defer cancel()
	spec, err := m.s.backend.Action(ctx, plugin, action)
	if err != nil {
		return "", dbusError(err)
	}
	if spec.Streaming {
		return "", invalidArgument(fmt.Sprintf("%s %s is a streaming action; D-Bus cannot stream it, use sitelinkctl", plugin, action))
	}
	if err := api.CheckArgs(spec, args); err != nil {
		return "", invalidArgument(fmt.Sprintf("%s %s: %v", plugin, action, err))
	}
	if spec.Mutating {
		m.audit(ctx, sender, api.DescribeAction(plugin, action, args))
	}
	res, err := m.s.backend.InvokeAction(ctx, plugin, action, args)
	if err != nil {
		return "", dbusError(err)
	}
	if len(bytes.TrimSpace(res)) == 0 {
		return "null", nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, res); err != nil {
		return "", failed(fmt.Errorf("%s %s: result is not valid JSON: %w", plugin, action, err))
	}
	return buf.String(), nil
}

// audit reports an accepted changing call to the backend, with the caller's credentials
// as the bus knows them.
func (m *methods) audit(ctx context.Context, sender dbus.Sender, what string) {
	peer, err := m.peer(ctx, string(sender))
	if err != nil {
		m.s.log.Warn("D-Bus caller's credentials unknown", "sender", string(sender), "err", err)
	}
	m.s.backend.Audit(ctx, peer, what+" (D-Bus)")
}

// peer asks the bus for the credentials of the connection sender. GID is -1 when it
// cannot be read from /proc.
func (m *methods) peer(ctx context.Context, sender string) (admin.Peer, error) {
	p := admin.Peer{GID: -1, Access: admin.AccessAdmin, Remote: "dbus:" + sender}
	var creds map[string]dbus.Variant
	err := m.s.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionCredentials", 0, sender).Store(&creds)
	if err != nil {
		return p, fmt.Errorf("GetConnectionCredentials(%s): %w", sender, err)
	}
	uid, okUID := creds["UnixUserID"].Value().(uint32)
	if !okUID {
		return p, fmt.Errorf("GetConnectionCredentials(%s): no UnixUserID", sender)
	}
	p.Credentials = true
	p.UID = int(uid)
	if pid, ok := creds["ProcessID"].Value().(uint32); ok {
		p.PID = int(pid)
	}
	if groups, ok := creds["UnixGroupIDs"].Value().([]uint32); ok { // dbus ≥ 1.11
		for _, g := range groups {
			p.Groups = append(p.Groups, int(g))
		}
	}
	if p.PID > 0 {
		if gid, err := effectiveGID(p.PID, p.UID); err == nil {
			p.GID = gid
		}
	}
	return p, nil
}

// effectiveGID reads the effective GID of process pid from /proc, checking that its
// effective UID is uid (so that a reused PID is not taken for the caller).
func effectiveGID(pid, uid int) (int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read caller's status: %w", err)
	}
	euid, egid := -1, -1
	for line := range strings.SplitSeq(string(data), "\n") {
		key, value, _ := strings.Cut(line, ":")
		fields := strings.Fields(value)
		if len(fields) < 2 || (key != "Uid" && key != "Gid") {
			continue
		}
		id, err := strconv.Atoi(fields[1])
		if err != nil {
			return 0, fmt.Errorf("parse /proc/%d/status %s line %q: %w", pid, key, value, err)
		}
		if key == "Uid" {
			euid = id
		} else {
			egid = id
		}
	}
	if euid != uid || egid < 0 {
		return 0, fmt.Errorf("/proc/%d/status: uid %d, gid %d; caller uid %d", pid, euid, egid, uid)
	}
	return egid, nil
}

// dbusError maps a backend error to a named D-Bus error.
func dbusError(err error) *dbus.Error {
	var ce *admin.ConfigError
	switch {
	case errors.As(err, &ce):
		// One string, as GLib clients show nothing of other bodies: a first line, then
		// one problem per line.
		msg := "invalid config"
		if len(ce.Errors) > 0 {
			msg += ":\n" + strings.Join(ce.Errors, "\n")
		}
		return dbus.NewError(ErrorInvalidConfig, []any{msg})
	case errors.Is(err, admin.ErrNotFound):
		return dbus.NewError(ErrorNotFound, []any{err.Error()})
	case errors.Is(err, admin.ErrInvalidArgument):
		return invalidArgument(err.Error())
	case errors.Is(err, admin.ErrConflict):
		return dbus.NewError(ErrorConflict, []any{err.Error()})
	case errors.Is(err, admin.ErrUnavailable):
		return dbus.NewError(ErrorUnavailable, []any{err.Error()})
	case errors.Is(err, context.DeadlineExceeded):
		return dbus.NewError(ErrorUnavailable, []any{"timed out: " + err.Error()})
	}
	return failed(err)
}

func invalidArgument(msg string) *dbus.Error {
	return dbus.NewError(ErrorInvalidArgument, []any{msg})
}

func failed(err error) *dbus.Error {
	return dbus.NewError(ErrorFailed, []any{err.Error()})
}
