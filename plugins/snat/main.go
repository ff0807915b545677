// Command snat is Sitelink's snat plugin: source NAT and access control for the
// clients' virtual IP ranges with nftables. sitelinkd starts it; see docs/plugins/snat.md.
package main

import "github.com/sitelink/sitelink/plugins/snat/snat"

func main() { snat.Serve() }
