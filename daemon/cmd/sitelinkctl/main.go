// Command sitelinkctl controls sitelinkd through its admin socket; see package ctl.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sitelink/sitelink/daemon/ctl"
)

// Set at link time: go build -ldflags "-X main.version=1.2.3 -X main.commit=… -X main.date=…".
var (
	version = "dev"
	commit  = ""
	date    = ""
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := ctl.Main(ctx, os.Args[1:], ctl.BuildInfo{Version: version, Commit: commit, Date: date}, ctl.StdIO())
	stop()
	os.Exit(code)
}
