package agent

import (
	"syscall"

	"github.com/sitelink/sitelink/plugins/sdk"
)

// Serve runs the vrrp plugin in this process until sitelinkd stops it: the body of the
// vrrp command and of its entry in the built-in plugins' binary. It resigns mastership
// (priority 0) on SIGTERM and when the host disconnects without Stop.
func Serve() {
	p := New()
	stop := p.ResignOnSignal(syscall.SIGTERM)
	defer stop()
	defer p.Shutdown()
	sdk.Serve(p)
}
