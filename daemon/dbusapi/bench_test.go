package dbusapi

import (
	"path/filepath"
	"testing"

	"github.com/godbus/dbus/v5"

	"github.com/sitelink/sitelink/daemon/api"
)

// benchService starts a bus with the shipped policy and the service on it, and returns
// a root client connection.
func benchService(b *testing.B) (*dbus.Conn, *fakeBackend) {
	requireRoot(b)
	bus := startBus(b, b.TempDir())
	client := dial(b, bus.Address())
	backend := newFakeBackend(filepath.Join(b.TempDir(), "none.conf"))
	serving(b, backend, Options{Address: bus.Address(), Logger: testLogger(b, newLogRecorder())})
	waitOwned(b, client, backend)
	return client, backend
}

// BenchmarkGetStatus measures a GetStatus round trip through dbus-daemon.
func BenchmarkGetStatus(b *testing.B) {
	client, _ := benchService(b)
	obj := client.Object(BusName, ObjectPath)
	var s string
	for b.Loop() {
		if err := obj.Call(Interface+".GetStatus", 0).Store(&s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetProperty measures a Properties.Get round trip through dbus-daemon.
func BenchmarkGetProperty(b *testing.B) {
	client, _ := benchService(b)
	obj := client.Object(BusName, ObjectPath)
	var v dbus.Variant
	for b.Loop() {
		if err := obj.Call(propertiesInterface+".Get", 0, Interface, "Plugins").Store(&v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPluginEventToSignal measures from a daemon event to the client receiving
// PluginStateChanged (and the PropertiesChanged that follows it).
func BenchmarkPluginEventToSignal(b *testing.B) {
	client, backend := benchService(b)
	sigs := subscribe(b, client)
	states := []string{api.PluginRunning, api.PluginBackoff}
	i := 0
	for b.Loop() {
		i++
		backend.setPluginState("snat", states[i%2])
		waitSignal(b, sigs, Interface+".PluginStateChanged", nil)
		waitSignal(b, sigs, propertiesInterface+".PropertiesChanged", nil)
	}
}
