// Command sitelinkd is the Sitelink supervisor daemon: it runs the plugins configured in
// /etc/sitelink/sitelink.yaml and serves the admin socket that sitelinkctl uses.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/sitelink/sitelink/daemon/proc"
	"github.com/sitelink/sitelink/daemon/sitelinkd"
)

// Stamped by the Makefile with -ldflags -X.
var (
	version = "dev"
	commit  = ""
	date    = ""
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == proc.LauncherArg {
		// Launcher mode: drop privileges and exec a plugin (see package proc).
		err := proc.ExecMain(os.Args[2:])
		fmt.Fprintln(os.Stderr, err)
		os.Exit(127)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sitelinkd:", err)
		os.Exit(1)
	}
}

func run() error {
	configPath := flag.String("config", "/etc/sitelink/sitelink.yaml", "config file")
	socket := flag.String("socket", "", "admin socket path (overrides daemon.socket)")
	checkConfig := flag.String("check-config", "", "check this config file (and its plugins' sections) and exit")
	cleanup := flag.Bool("cleanup", false, "remove what kernel-facing plugins left behind (after a crash) and exit")
	logFormat := flag.String("log-format", "", "log format: auto, text or json (overrides daemon.log_format)")
	showVersion := flag.Bool("version", false, "print the version and exit")
	dbusAddr := flag.String("dbus-address", "", "D-Bus bus address to serve on (default: the system bus)")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v (see --help)", flag.Args())
	}
	v := sitelinkd.VersionInfo{Version: version, Commit: commit, Date: date}
	if *showVersion {
		fmt.Printf("sitelinkd %s %s %s\n", version, commit, date)
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	opts := sitelinkd.Options{ConfigPath: *configPath, SocketPath: *socket, LogFormat: *logFormat, Version: v, Self: self, DBusAddress: *dbusAddr}
	ctx := context.Background()
	switch {
	case *checkConfig != "":
		opts.ConfigPath = *checkConfig
		return sitelinkd.CheckConfig(ctx, opts, os.Stdout)
	case *cleanup:
		return sitelinkd.Cleanup(ctx, opts, os.Stdout)
	}
	return sitelinkd.Run(ctx, opts)
}
