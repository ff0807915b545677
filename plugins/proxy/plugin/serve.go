package plugin

import "github.com/sitelink/sitelink/plugins/sdk"

// Serve runs the proxy plugin in this process until sitelinkd stops it: the body of the
// proxy command and of its entry in the built-in plugins' binary.
func Serve() { sdk.Serve(New()) }
