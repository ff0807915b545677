package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sitelink/sitelink/daemon/admin"
)

// EnvSocket names the environment variable that overrides the default socket.
const EnvSocket = "SITELINK_SOCKET"

// BuildInfo is sitelinkctl's own version stamp, set by its main package at link time.
type BuildInfo struct {
	Version string
	Commit  string
	Date    string
}

// IO is what the commands read, write and look up.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
	// Getenv looks up environment variables (os.Getenv when nil).
	Getenv func(string) string
}

// StdIO is the process's standard streams and environment.
func StdIO() IO {
	return IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Getenv: os.Getenv}
}

// Main runs sitelinkctl with args (without the program name) and returns the exit code.
// Errors are printed to io.Err. ctx ends streams (Ctrl-C).
func Main(ctx context.Context, args []string, build BuildInfo, stdio IO) int {
	a := newApp(build, stdio)
	root := a.rootCommand()
	if args == nil {
		args = []string{} // cobra would take os.Args
	}
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		a.printError(err)
	}
	return ExitCode(err)
}

// Command returns sitelinkctl's command tree, e.g. to generate documentation.
func Command(build BuildInfo, stdio IO) *cobra.Command {
	return newApp(build, stdio).rootCommand()
}

// app holds the state of one sitelinkctl run: the global flags and where to write.
type app struct {
	build BuildInfo
	io    IO
	now   func() time.Time

	socket    string
	socketSet bool // --socket was given (else $SITELINK_SOCKET, else the default)
	json      bool
	timeout   time.Duration
	root      *cobra.Command
}

func newApp(build BuildInfo, stdio IO) *app {
	if stdio.Getenv == nil {
		stdio.Getenv = os.Getenv
	}
	if stdio.In == nil {
		stdio.In = strings.NewReader("")
	}
	if stdio.Out == nil {
		stdio.Out = io.Discard
	}
	if stdio.Err == nil {
		stdio.Err = io.Discard
	}
	if build.Version == "" {
		build.Version = "dev"
	}
	return &app{build: build, io: stdio, now: time.Now}
}

const rootLong = `sitelinkctl controls sitelinkd, the Sitelink site-connector daemon, through its admin
socket (HTTP/JSON over a unix socket, by default /run/sitelink/admin.sock).

Besides the commands below, every plugin action can be run as

  sitelinkctl PLUGIN ACTION [ARG...] [--NAME VALUE...] [--arg NAME=VALUE...]

for example "sitelinkctl tunnel switch gw-b" or "sitelinkctl logcache tail -f --source proxy".
Positional arguments fill the action's required arguments in order; a boolean argument
named follow also has the short flag -f. "sitelinkctl PLUGIN --help" lists a plugin's
actions, "sitelinkctl PLUGIN ACTION --help" an action's arguments.

Root and members of group sitelink-admin may change things; members of group sitelink
may only read (status, plugins, config, non-mutating actions).

Exit status:
  0  success
  1  the operation failed
  2  usage error (unknown command or flag, missing or bad argument)
  3  sitelinkd is not running or does not answer
  4  permission denied
  5  no such plugin or action
  6  invalid configuration (reload rejected, config check failed)

Environment:
  SITELINK_SOCKET  the admin socket, when --socket is not given`

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "sitelinkctl [PLUGIN ACTION [ARG...]]",
		Short: "Control the Sitelink daemon (sitelinkd)",
		Long:  rootLong,
		Example: `  sitelinkctl status
  sitelinkctl plugins show tunnel
  sitelinkctl plugins restart tunnel
  sitelinkctl reload
  sitelinkctl config check /etc/sitelink/sitelink.yaml
  sitelinkctl tunnel switch gw-b
  sitelinkctl logcache tail -f --source proxy
  sitelinkctl status --json | jq .plugins`,
		// Everything that is not a subcommand is a plugin action: the flags depend on the
		// action, so they are parsed here, after asking the daemon for its spec.
		Args:               cobra.ArbitraryArgs,
		DisableFlagParsing: true,
		RunE:               a.runPluginAction,
		ValidArgsFunction:  a.completePluginAction,
		SilenceErrors:      true,
		SilenceUsage:       true,
		DisableAutoGenTag:  true,
		// Also used for "sitelinkctl stauts": did you mean status?
		SuggestionsMinimumDistance: 2,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.socket, "socket", admin.DefaultSocket, "admin socket of sitelinkd (or set "+EnvSocket+")")
	pf.BoolVar(&a.json, "json", false, "print the API's JSON instead of text")
	pf.DurationVar(&a.timeout, "timeout", time.Minute, "how long to wait for an answer (0: forever; streams never time out)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{msg: err.Error(), cmd: c.CommandPath()}
	})
	root.SetIn(a.io.In)
	root.SetOut(a.io.Out)
	root.SetErr(a.io.Err)

	root.AddCommand(
		a.statusCommand(),
		a.pluginsCommand(),
		a.reloadCommand(),
		a.configCommand(),
		a.versionCommand(),
		a.eventsCommand(),
		a.genManCommand(),
		a.genCompletionCommand(),
	)
	a.root = root
	return root
}

// client returns a client for the chosen socket: --socket, else $SITELINK_SOCKET, else
// the default.
func (a *app) client(cmd *cobra.Command) *Client {
	path := a.socket
	changed := a.socketSet
	if f := cmd.Flags().Lookup("socket"); f != nil && f.Changed {
		changed = true
	}
	if !changed {
		if env := a.io.Getenv(EnvSocket); env != "" {
			path = env
		}
	}
	return NewClient(path)
}

// requestContext bounds a non-streaming request by --timeout.
func (a *app) requestContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if a.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, a.timeout)
}

func (a *app) printError(err error) {
	fmt.Fprintf(a.io.Err, "sitelinkctl: %v\n", err)
	var ae *APIError
	if errors.As(err, &ae) {
		for _, d := range ae.Details {
			fmt.Fprintf(a.io.Err, "  %s\n", d)
		}
	}
	var ue *usageError
	if errors.As(err, &ue) && !ue.hinted {
		cmd := ue.cmd
		if cmd == "" {
			cmd = "sitelinkctl"
		}
		fmt.Fprintf(a.io.Err, "Run '%s --help' for usage.\n", cmd)
	}
}

// Argument validators that report usage errors (exit code 2).

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return &usageError{msg: fmt.Sprintf("unknown command or argument %q for %q", args[0], cmd.CommandPath()), cmd: cmd.CommandPath()}
	}
	return nil
}

func argsBetween(min, max int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < min:
			return &usageError{msg: fmt.Sprintf("%s: missing %s", cmd.CommandPath(), what), cmd: cmd.CommandPath()}
		case max >= 0 && len(args) > max:
			return &usageError{msg: fmt.Sprintf("%s: too many arguments (expected %s)", cmd.CommandPath(), what), cmd: cmd.CommandPath()}
		}
		return nil
	}
}
