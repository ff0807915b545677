package dbusapi

import (
	"fmt"
	"path"
	"strings"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"
)

// methodArgNames names the arguments of a generated method description, in order
// (in-arguments, then out-arguments).
func methodArgNames(method string) []string {
	switch method {
	case "GetStatus":
		return []string{"status_json"}
	case "Reload":
		return []string{"result_json"}
	case "RestartPlugin":
		return []string{"name"}
	case "InvokeAction":
		return []string{"plugin", "action", "args", "result_json"}
	}
	return nil
}

// signals describes the interface's signals; new values always come last.
func signals() []introspect.Signal {
	return []introspect.Signal{
		{Name: "PluginStateChanged", Args: []introspect.Arg{
			{Name: "name", Type: "s"}, {Name: "old_state", Type: "s"}, {Name: "new_state", Type: "s"}}},
		{Name: "RoleChanged", Args: []introspect.Arg{
			{Name: "old_role", Type: "s"}, {Name: "new_role", Type: "s"}}},
	}
}

// interfaceDescription generates the introspection of org.sitelink.Sitelink1 from the
// methods type and the property table.
func interfaceDescription() (introspect.Interface, error) {
	ms := introspect.Methods(&methods{})
	for i := range ms {
		names := methodArgNames(ms[i].Name)
		if len(names) != len(ms[i].Args) {
			return introspect.Interface{}, fmt.Errorf("method %s has %d arguments, methodArgNames names %d", ms[i].Name, len(ms[i].Args), len(names))
		}
		for j := range ms[i].Args {
			ms[i].Args[j].Name = names[j]
		}
	}
	var zero values
	zero.Plugins = map[string]string{}
	specs := propertySpecs()
	props := make([]introspect.Property, 0, len(specs))
	for _, p := range specs {
		props = append(props, introspect.Property{
			Name:   p.name,
			Type:   dbus.SignatureOf(p.get(zero)).String(),
			Access: "read",
			Annotations: []introspect.Annotation{
				{Name: "org.freedesktop.DBus.Property.EmitsChangedSignal", Value: p.emits},
			},
		})
	}
	return introspect.Interface{Name: Interface, Methods: ms, Signals: signals(), Properties: props}, nil
}

// introspection returns the Introspectable implementation for the object and for each
// of its parent paths (which list their child node, so that tools can walk the tree).
// introspect.NewIntrospectable adds org.freedesktop.DBus.Peer, which godbus answers for
// every path.
func introspection() (map[dbus.ObjectPath]introspect.Introspectable, error) {
	iface, err := interfaceDescription()
	if err != nil {
		return nil, fmt.Errorf("introspection of %s: %w", Interface, err)
	}
	nodes := map[dbus.ObjectPath]introspect.Introspectable{
		ObjectPath: introspect.NewIntrospectable(&introspect.Node{
			Name: string(ObjectPath),
			Interfaces: []introspect.Interface{
				introspect.IntrospectData,
				prop.IntrospectData,
				iface,
			},
		}),
	}
	for p := string(ObjectPath); p != "/"; {
		parent := path.Dir(p)
		nodes[dbus.ObjectPath(parent)] = introspect.NewIntrospectable(&introspect.Node{
			Name:       parent,
			Interfaces: []introspect.Interface{introspect.IntrospectData},
			Children:   []introspect.Node{{Name: strings.TrimPrefix(p[len(parent):], "/")}},
		})
		p = parent
	}
	return nodes, nil
}
