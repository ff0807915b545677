package cache

import "github.com/sitelink/sitelink/plugins/sdk"

// Serve runs the logcache plugin in this process until sitelinkd stops it: the body of
// the logcache command and of its entry in the built-in plugins' binary.
func Serve() { sdk.Serve(New()) }
