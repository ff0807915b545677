// Command vrrp is Sitelink's VRRP plugin: master/backup connectors sharing virtual IPs
// (VRRPv3, RFC 5798), interoperable with keepalived. sitelinkd runs it; see
// docs/plugins/vrrp.md.
package main

import "github.com/sitelink/sitelink/plugins/vrrp/agent"

func main() { agent.Serve() }
