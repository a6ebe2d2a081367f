// Package cli is the openvair command line: cobra commands over the Go client (package client) of the
// reference server, with remotes kept in a configuration file, human tables or JSON/YAML output, and exit
// codes that tell failures apart (package exitcode).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/cmd/openvair/internal/config"
	"github.com/openvair/openvair/cmd/openvair/internal/exitcode"
	"github.com/openvair/openvair/cmd/openvair/internal/output"
)

// DefaultTimeout bounds every call unless --timeout says otherwise (uploads, event streams and consoles are
// unbounded unless --timeout is given).
const DefaultTimeout = 5 * time.Minute

// App is one run of the CLI: its streams, environment and global flags.
type App struct {
	// In is standard input (tokens given on stdin, console input).
	In io.Reader
	// Out receives results; Err receives errors, progress and console notices.
	Out, Err io.Writer
	// Getenv reads the environment (os.Getenv; tests replace it).
	Getenv func(string) string

	configPath string
	remote     string
	outputFlag string
	timeout    time.Duration
	format     output.Format

	root *cobra.Command
	ran  bool // a command's RunE started: an error before it is a usage error
	ctx  context.Context
}

// Main runs the CLI with args and returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := &App{In: stdin, Out: stdout, Err: stderr, Getenv: os.Getenv, ctx: ctx}
	root := app.Root()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitcode.OK
	}
	if !app.ran {
		err = &exitcode.UsageError{Err: err}
	}
	code := exitcode.Of(err)
	fmt.Fprintln(stderr, "Error: "+oneLine(Message(err)))
	if code == exitcode.Usage {
		path := "openvair"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", path)
	}
	return code
}

// Message is the line the CLI prints for err: the server's problem with its request id.
func Message(err error) string {
	var ce *client.Error
	if errors.As(err, &ce) {
		msg := err.Error()
		if ce.RequestID != "" {
			msg += " (request id " + ce.RequestID + ")"
		}
		return msg
	}
	return err.Error()
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// Root builds the command tree.
func (a *App) Root() *cobra.Command {
	root := &cobra.Command{
		Use:   "openvair",
		Short: "Manage openvair storages, volumes, images and VMs",
		Long: `openvair manages storages, volumes, images and VMs of an openvair server.

Servers are remotes: add one with 'openvair remote add NAME URL --token-file PATH' and pick it with
'openvair remote use NAME' or --remote NAME. For scripts, OPENVAIR_URL with OPENVAIR_TOKEN (or
OPENVAIR_TOKEN_FILE) override the configured remotes; OPENVAIR_REMOTE names one.

Entities can be named by id or by name (an ambiguous name is an error listing the candidates). Output is a
table for people, or with -o json / -o yaml the entities as the API returns them.

` + exitcode.Help,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			f, err := output.ParseFormat(a.outputFlag)
			if err != nil {
				return err
			}
			a.format = f
			return nil
		},
	}
	a.root = root
	pf := root.PersistentFlags()
	pf.StringVar(&a.remote, "remote", "", "the remote to use (default: the current one; see 'openvair remote')")
	pf.StringVarP(&a.outputFlag, "output", "o", "table", "output format: table, json or yaml")
	pf.DurationVar(&a.timeout, "timeout", DefaultTimeout, "deadline of the whole command (uploads, watches and consoles: none unless set)")
	pf.StringVar(&a.configPath, "config", "", "configuration file (default $XDG_CONFIG_HOME/openvair/config.yaml)")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(output.Formats, cobra.ShellCompDirectiveNoFileComp))
	_ = root.RegisterFlagCompletionFunc("remote", a.completeRemotes)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitcode.UsageError{Err: err} })
	root.SetOut(a.Out)
	root.SetErr(a.Err)
	root.SetIn(a.In)

	root.AddGroup(&cobra.Group{ID: "resources", Title: "Resources:"}, &cobra.Group{ID: "setup", Title: "Setup:"})
	for _, c := range []*cobra.Command{a.storageCmd(), a.volumeCmd(), a.imageCmd(), a.vmCmd(), a.operationCmd(),
		a.eventCmd(), a.hostCmd(), a.networkCmd()} {
		c.GroupID = "resources"
		root.AddCommand(c)
	}
	rc := a.remoteCmd()
	rc.GroupID = "setup"
	root.AddCommand(rc)
	root.SetHelpCommandGroupID("setup")
	root.SetCompletionCommandGroupID("setup")
	markRun(root, a)
	return root
}

// markRun wraps every RunE of the tree so that the app knows when the command itself started.
func markRun(c *cobra.Command, a *App) {
	if c.RunE != nil {
		run := c.RunE
		c.RunE = func(cmd *cobra.Command, args []string) error {
			a.ran = true
			return run(cmd, args)
		}
	}
	for _, sub := range c.Commands() {
		markRun(sub, a)
	}
}

// group returns a command that only holds subcommands.
func group(use, short string, aliases ...string) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Aliases: aliases, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() }}
}

// loadConfig reads the configuration file.
func (a *App) loadConfig() (*config.Config, string, error) {
	path := a.configPath
	if path == "" {
		path = a.Getenv("OPENVAIR_CONFIG")
	}
	if path == "" {
		p, err := config.DefaultPath()
		if err != nil {
			return nil, "", err
		}
		path = p
	}
	c, err := config.Load(path)
	return c, path, err
}

// target is the server a command talks to.
type target struct {
	Name   string // the remote's name, or "env" for OPENVAIR_URL
	Remote config.Remote
}

// errNoServer says how to configure a server.
var errNoServer = errors.New("no server configured: add one with 'openvair remote add NAME URL --token-file PATH', or set OPENVAIR_URL and OPENVAIR_TOKEN")

// target resolves the server: --remote, else OPENVAIR_URL (+ OPENVAIR_TOKEN or OPENVAIR_TOKEN_FILE), else
// OPENVAIR_REMOTE, else the current remote.
func (a *App) target() (target, error) {
	if a.remote == "" {
		if u := a.Getenv("OPENVAIR_URL"); u != "" {
			if err := config.CheckURL(u); err != nil {
				return target{}, exitcode.Usagef("OPENVAIR_URL: %v", err)
			}
			return target{Name: "env", Remote: config.Remote{URL: u, Token: a.Getenv("OPENVAIR_TOKEN"),
				TokenFile: a.Getenv("OPENVAIR_TOKEN_FILE")}}, nil
		}
	}
	cfg, _, err := a.loadConfig()
	if err != nil {
		return target{}, err
	}
	name := a.remote
	if name == "" {
		name = a.Getenv("OPENVAIR_REMOTE")
	}
	if name == "" {
		name = cfg.Current
	}
	if name == "" {
		return target{}, exitcode.Usagef("%v", errNoServer)
	}
	r, ok := cfg.Remotes[name]
	if !ok {
		return target{}, exitcode.Usagef("no remote named %q (see 'openvair remote list')", name)
	}
	return target{Name: name, Remote: r}, nil
}

// client returns a client of the target server; the token file is read now.
func (a *App) client() (*client.Client, error) {
	t, err := a.target()
	if err != nil {
		return nil, err
	}
	tok, err := t.Remote.ReadToken()
	if err != nil {
		return nil, fmt.Errorf("remote %s: %w", t.Name, err)
	}
	return client.New(client.Config{URL: t.Remote.URL, Token: tok})
}

// baseCtx is the run's context (cancelled by SIGINT/SIGTERM).
func (a *App) baseCtx(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	if a.ctx != nil {
		return a.ctx
	}
	return context.Background()
}

// callCtx is the context of an ordinary command, bounded by --timeout.
func (a *App) callCtx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(a.baseCtx(cmd), a.timeout)
}

// longCtx is the context of a command that may run as long as it needs (uploads, watches, consoles):
// bounded only when --timeout was given.
func (a *App) longCtx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	if f := a.root.PersistentFlags().Lookup("timeout"); f != nil && f.Changed {
		return context.WithTimeout(a.baseCtx(cmd), a.timeout)
	}
	return context.WithCancel(a.baseCtx(cmd))
}

// print writes v in the chosen format.
func (a *App) print(v any, human output.Renderer) error {
	return output.Print(a.Out, a.format, v, human)
}
