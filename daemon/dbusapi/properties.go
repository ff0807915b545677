package dbusapi

import (
	"maps"
	"sync"

	"github.com/godbus/dbus/v5"

	"github.com/sitelink/sitelink/daemon/api"
)

const (
	propertiesInterface     = "org.freedesktop.DBus.Properties"
	introspectableInterface = "org.freedesktop.DBus.Introspectable"
)

// values are the object's properties.
type values struct {
	Version string
	State   string
	Role    string
	Plugins map[string]string // plugin name → state
}

// statusValues extracts the properties from a status.
func statusValues(st api.Status) values {
	v := values{Version: st.Version, State: st.State, Role: st.Role, Plugins: make(map[string]string, len(st.Plugins))}
	for _, p := range st.Plugins {
		v.Plugins[p.Name] = p.State
	}
	return v
}

// propertySpec describes one property for introspection and Get.
type propertySpec struct {
	name string
	// emits is the org.freedesktop.DBus.Property.EmitsChangedSignal annotation.
	emits string
	get   func(values) any
}

// propertySpecs describes the interface's properties, all read-only, in introspection
// order.
func propertySpecs() []propertySpec {
	return []propertySpec{
		{"Version", "const", func(v values) any { return v.Version }},
		{"State", "true", func(v values) any { return v.State }},
		{"Role", "true", func(v values) any { return v.Role }},
		{"Plugins", "true", func(v values) any { return maps.Clone(v.Plugins) }},
	}
}

// properties implements org.freedesktop.DBus.Properties for the object. It replaces the
// godbus prop package, whose SetMust merges a new map into the old one (a removed plugin
// would stay in Plugins) and panics when the PropertiesChanged signal cannot be sent
// (a connection closing); here one PropertiesChanged carries every property that changed.
type properties struct {
	mu sync.RWMutex
	v  values
}

func newProperties(v values) *properties { return &properties{v: v} }

func lookupProperty(name string) (propertySpec, bool) {
	for _, p := range propertySpecs() {
		if p.name == name {
			return p, true
		}
	}
	return propertySpec{}, false
}

// Get implements org.freedesktop.DBus.Properties.Get.
func (p *properties) Get(iface, name string) (dbus.Variant, *dbus.Error) {
	if iface != Interface {
		return dbus.Variant{}, unknownInterface(iface)
	}
	spec, ok := lookupProperty(name)
	if !ok {
		return dbus.Variant{}, unknownProperty(name)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	return dbus.MakeVariant(spec.get(p.v)), nil
}

// GetAll implements org.freedesktop.DBus.Properties.GetAll.
func (p *properties) GetAll(iface string) (map[string]dbus.Variant, *dbus.Error) {
	if iface != Interface {
		return nil, unknownInterface(iface)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	specs := propertySpecs()
	all := make(map[string]dbus.Variant, len(specs))
	for _, spec := range specs {
		all[spec.name] = dbus.MakeVariant(spec.get(p.v))
	}
	return all, nil
}

// Set implements org.freedesktop.DBus.Properties.Set: every property is read-only.
func (p *properties) Set(iface, name string, _ dbus.Variant) *dbus.Error {
	if iface != Interface {
		return unknownInterface(iface)
	}
	if _, ok := lookupProperty(name); !ok {
		return unknownProperty(name)
	}
	return dbus.NewError("org.freedesktop.DBus.Error.PropertyReadOnly", []any{"property " + name + " is read-only"})
}

// update stores v (but not the property named skip) and returns the properties that
// changed, with their new values.
func (p *properties) update(v values, skip string) map[string]dbus.Variant {
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := map[string]dbus.Variant{}
	if skip != "Version" && v.Version != p.v.Version {
		p.v.Version = v.Version
		changed["Version"] = dbus.MakeVariant(v.Version)
	}
	if skip != "State" && v.State != p.v.State {
		p.v.State = v.State
		changed["State"] = dbus.MakeVariant(v.State)
	}
	if skip != "Role" && v.Role != p.v.Role {
		p.v.Role = v.Role
		changed["Role"] = dbus.MakeVariant(v.Role)
	}
	if skip != "Plugins" && !maps.Equal(v.Plugins, p.v.Plugins) {
		p.v.Plugins = maps.Clone(v.Plugins)
		changed["Plugins"] = dbus.MakeVariant(maps.Clone(v.Plugins))
	}
	return changed
}

// role returns the Role property.
func (p *properties) role() string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.v.Role
}

// setRole stores role and returns the previous one and whether it changed.
func (p *properties) setRole(role string) (old string, changed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old = p.v.Role
	p.v.Role = role
	return old, old != role
}

func unknownInterface(iface string) *dbus.Error {
	return dbus.NewError("org.freedesktop.DBus.Error.UnknownInterface", []any{"no such interface: " + iface})
}

func unknownProperty(name string) *dbus.Error {
	return dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", []any{"no such property: " + name})
}
