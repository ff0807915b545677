// Package sdk is the Sitelink plugin SDK: everything a plugin author needs to write a
// plugin that sitelinkd can load, and the one public Go API of Sitelink.
//
// A plugin is a separate process that sitelinkd starts, talks to over gRPC through
// hashicorp/go-plugin (AutoMTLS, magic-cookie handshake, negotiated API version), restarts
// when it dies and stops with the daemon. A plugin implements Plugin (embed Base for the
// parts it does not need) and its main is one call:
//
//	func main() { sdk.Serve(&myPlugin{}) }
//
// The host offers services to the plugin through Host: publishing and subscribing to
// events, appending records to the appliance's log cache, its state and runtime
// directories, a structured logger and a metrics registry (package metrics; the daemon
// exports it in the Prometheus format).
//
// The host side of the contract (Client, PluginSets, Handshake) lives here too, so that
// both ends of the wire are defined in one place; plugin authors do not need it.
// Package sdktest runs a plugin in-process for tests.
package sdk
