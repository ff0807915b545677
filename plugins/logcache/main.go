// Command logcache is Sitelink's log cache plugin: the appliance's capped, crash-safe
// disk ring of logs (see package cache and its store).
package main

import "github.com/sitelink/sitelink/plugins/logcache/cache"

func main() { cache.Serve() }
