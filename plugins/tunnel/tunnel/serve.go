package tunnel

import (
	"os"
	"runtime/debug"

	"github.com/sitelink/sitelink/plugins/sdk"
)

// memoryLimit bounds the heap of the userspace WireGuard device's queues (a soft limit:
// the GC works harder near it) unless GOMEMLIMIT says otherwise.
const memoryLimit = 256 << 20

// Serve runs the tunnel plugin in this process until sitelinkd stops it: the body of the
// tunnel command and of its entry in the built-in plugins' binary.
func Serve() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	sdk.Serve(New())
}
