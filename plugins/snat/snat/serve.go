package snat

import "github.com/sitelink/sitelink/plugins/sdk"

// Serve runs the snat plugin in this process until sitelinkd stops it: the body of the
// snat command and of its entry in the built-in plugins' binary.
func Serve() { sdk.Serve(New(Options{})) }
