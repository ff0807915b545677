// Package dbusapi owns sitelinkd's D-Bus service: the name org.sitelink.Sitelink1 on the
// system bus with one object, /org/sitelink/Sitelink1, that implements the interface
// org.sitelink.Sitelink1.
//
// The object has read-only properties (Version, State, Role, Plugins: plugin name →
// state) announced with org.freedesktop.DBus.Properties.PropertiesChanged; methods
// GetStatus, Reload, RestartPlugin and InvokeAction; and the signals PluginStateChanged
// (name, old, new) and RoleChanged (old, new), which always carry the new state last.
// Introspection data is generated from the Go types. Everything is exported before the
// name is requested, so a client that sees the name can use the object at once.
//
// The daemon plugs in through admin.Backend, the interface its admin socket already uses:
// methods call it, property values come from Backend.Status, and Backend.Events (types
// "plugin" and "role") drives the signals and property changes. Backend errors become
// named D-Bus errors (org.sitelink.Sitelink1.Error.InvalidConfig, NotFound, …).
//
// Who may do what is decided by the bus policy shipped in
// packaging/dbus/org.sitelink.Sitelink1.conf: root and the group sitelink-admin call
// methods and read properties, everyone else may only introspect and ping. Accepted
// changing calls are reported to Backend.Audit with the caller's credentials, which the
// service asks the bus for.
//
// Serve runs the service for the daemon's lifetime: without a bus it logs one warning and
// keeps retrying quietly with backoff, and when the bus goes away (dbus-daemon restarted)
// it reconnects, exports again and takes the name back. docs/dbus.md is the reference for
// clients.
package dbusapi
