// Command tunnel is Sitelink's tunnel plugin: an encrypted WireGuard tunnel from the
// site to the platform's security gateways, with gateway failover and routes that
// follow it. sitelinkd starts it; see docs/plugins/tunnel.md.
package main

import (
	"os"
	"runtime/debug"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/tunnel/tunnel"
)

// memoryLimit is the Go runtime's soft memory limit unless GOMEMLIMIT says otherwise.
// wireguard-go gives every queued packet a 64 KiB buffer, so under a backlog the heap
// grows by hundreds of MiB and the collector, by default, lets it double again before
// it runs; the limit makes it run sooner instead.
const memoryLimit = 256 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	sdk.Serve(tunnel.New())
}
