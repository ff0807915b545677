// Command vrrp is Sitelink's VRRP plugin: master/backup connectors sharing virtual IPs
// (VRRPv3, RFC 5798), interoperable with keepalived. sitelinkd runs it; see
// docs/plugins/vrrp.md.
package main

import (
	"syscall"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/vrrp/agent"
)

func main() {
	p := agent.New()
	// Resign (priority 0) on SIGTERM, and when the host disconnects without Stop.
	stop := p.ResignOnSignal(syscall.SIGTERM)
	defer stop()
	defer p.Shutdown()
	sdk.Serve(p)
}
