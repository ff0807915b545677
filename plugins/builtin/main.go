// Command builtin is every built-in plugin in one executable. `make build` and the
// package install it once and hard-link it as plugin_dir/NAME for each plugin; run under
// a name, it is that plugin (the name it was started as picks it), in its own process
// as before. One binary instead of five carries one copy of the Go runtime, gRPC and
// the SDK: the package is a third of the size and the plugins share their code pages in
// the page cache. Each plugin still has its own command in plugins/NAME for building it
// alone.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sitelink/sitelink/plugins/logcache/cache"
	proxy "github.com/sitelink/sitelink/plugins/proxy/plugin"
	"github.com/sitelink/sitelink/plugins/snat/snat"
	"github.com/sitelink/sitelink/plugins/tunnel/tunnel"
	"github.com/sitelink/sitelink/plugins/vrrp/agent"
)

// plugins maps each built-in plugin's name (its file name in plugin_dir) to its body.
func plugins() map[string]func() {
	return map[string]func(){
		"logcache": cache.Serve,
		"proxy":    proxy.Serve,
		"snat":     snat.Serve,
		"tunnel":   tunnel.Serve,
		"vrrp":     agent.Serve,
	}
}

func names() []string {
	var n []string
	for name := range plugins() {
		n = append(n, name)
	}
	sort.Strings(n)
	return n
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--list" {
		fmt.Println(strings.Join(names(), "\n"))
		return
	}
	name := filepath.Base(os.Args[0])
	serve, ok := plugins()[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "%s: not a built-in plugin's name; run this binary as one of %s (a hard link named for the plugin), or with --list\n",
			name, strings.Join(names(), ", "))
		os.Exit(2)
	}
	serve()
}
