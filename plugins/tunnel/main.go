// Command tunnel is Sitelink's tunnel plugin: an encrypted WireGuard tunnel from the
// site to the platform's security gateways, with gateway failover and routes that
// follow it. sitelinkd starts it; see docs/plugins/tunnel.md.
package main

import "github.com/sitelink/sitelink/plugins/tunnel/tunnel"

func main() { tunnel.Serve() }
