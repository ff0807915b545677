// Command proxy is Sitelink's proxy plugin: it relays security agents to the management
// center (TCP, TLS passthrough by SNI, HTTP CONNECT), with limits, a live clients list and
// access control, or caches their data in the log cache.
package main

import "github.com/sitelink/sitelink/plugins/proxy/plugin"

func main() { plugin.Serve() }
