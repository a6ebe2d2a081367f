package cli

import (
	"bufio"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/openvair/openvair/cmd/openvair/internal/config"
	"github.com/openvair/openvair/cmd/openvair/internal/exitcode"
	"github.com/openvair/openvair/cmd/openvair/internal/output"
)

// remoteView is a remote as -o json/yaml shows it (never the token itself).
type remoteView struct {
	Name      string `json:"name"`
	URL       string `json:"url"`
	TokenFile string `json:"token_file,omitempty"`
	TokenSet  bool   `json:"token_set"`
	Current   bool   `json:"current"`
}

func viewOf(name string, r config.Remote, current string) remoteView {
	return remoteView{Name: name, URL: r.URL, TokenFile: r.TokenFile, TokenSet: r.Token != "", Current: name == current}
}

func (a *App) remoteCmd() *cobra.Command {
	c := group("remote", "Manage the servers the CLI talks to")
	c.AddCommand(a.remoteAddCmd(), a.remoteListCmd(), a.remoteUseCmd(), a.remoteRemoveCmd(), a.remoteShowCmd())
	return c
}

func (a *App) remoteAddCmd() *cobra.Command {
	var tokenFile, token string
	var tokenStdin bool
	c := &cobra.Command{
		Use:   "add NAME URL",
		Short: "Add a remote (the first one added becomes current)",
		Long: `Add a remote. The token comes from a file read at every call (--token-file; the path is stored, not
the token), or is given directly: --token-stdin (or --token -) reads it from standard input and stores it in
the configuration file (mode 0600).`,
		Example: "  openvair remote add lab http://10.0.0.5:8080 --token-file /etc/openvair/admin.token\n" +
			"  cat admin.token | openvair remote add ci https://ci:8443 --token-stdin",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r := config.Remote{URL: args[1]}
			if token == "-" {
				token, tokenStdin = "", true
			}
			switch {
			case tokenFile != "" && (token != "" || tokenStdin):
				return exitcode.Usagef("give either --token-file or --token/--token-stdin")
			case tokenFile != "":
				p, err := filepath.Abs(tokenFile)
				if err != nil {
					return err
				}
				r.TokenFile = p
			case tokenStdin:
				line, err := bufio.NewReader(a.In).ReadString('\n')
				line = strings.TrimSpace(line)
				if line == "" {
					return exitcode.Usagef("no token on standard input (%v)", err)
				}
				r.Token = line
			case token != "":
				r.Token = token
			}
			cfg, path, err := a.loadConfig()
			if err != nil {
				return err
			}
			if err := cfg.Add(args[0], r); err != nil {
				return exitcode.Usagef("%v", err)
			}
			if err := cfg.Save(path); err != nil {
				return err
			}
			if a.format != output.Table {
				return a.print(viewOf(args[0], cfg.Remotes[args[0]], cfg.Current), nil)
			}
			fmt.Fprintf(a.Out, "Remote %s added (%s)\n", args[0], r.URL)
			return nil
		},
	}
	c.Flags().StringVar(&tokenFile, "token-file", "", "file holding the bearer token (read at every call)")
	c.Flags().StringVar(&token, "token", "", "the bearer token itself; '-' reads it from standard input")
	c.Flags().BoolVar(&tokenStdin, "token-stdin", false, "read the bearer token from standard input")
	return c
}

func (a *App) remoteListCmd() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List remotes", Aliases: []string{"ls"}, Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			cfg, _, err := a.loadConfig()
			if err != nil {
				return err
			}
			views := []remoteView{}
			t := output.NewTable("NAME", "URL", "TOKEN", "CURRENT")
			for _, n := range cfg.Names() {
				v := viewOf(n, cfg.Remotes[n], cfg.Current)
				views = append(views, v)
				tok := "file " + v.TokenFile
				switch {
				case v.TokenSet:
					tok = "stored"
				case v.TokenFile == "":
					tok = "none"
				}
				cur := ""
				if v.Current {
					cur = "*"
				}
				t.Add(n, v.URL, tok, cur)
			}
			return a.print(views, t)
		},
	}
}

func (a *App) remoteUseCmd() *cobra.Command {
	return &cobra.Command{
		Use: "use NAME", Short: "Make a remote current", Args: cobra.ExactArgs(1),
		ValidArgsFunction: a.completeRemotes,
		RunE: func(_ *cobra.Command, args []string) error {
			cfg, path, err := a.loadConfig()
			if err != nil {
				return err
			}
			if err := cfg.Use(args[0]); err != nil {
				return notFound(err)
			}
			if err := cfg.Save(path); err != nil {
				return err
			}
			fmt.Fprintf(a.Out, "Remote %s is current\n", args[0])
			return nil
		},
	}
}

func (a *App) remoteRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use: "remove NAME", Short: "Remove a remote", Aliases: []string{"rm"}, Args: cobra.ExactArgs(1),
		ValidArgsFunction: a.completeRemotes,
		RunE: func(_ *cobra.Command, args []string) error {
			cfg, path, err := a.loadConfig()
			if err != nil {
				return err
			}
			if err := cfg.Remove(args[0]); err != nil {
				return notFound(err)
			}
			if err := cfg.Save(path); err != nil {
				return err
			}
			fmt.Fprintf(a.Out, "Remote %s removed\n", args[0])
			return nil
		},
	}
}

func (a *App) remoteShowCmd() *cobra.Command {
	return &cobra.Command{
		Use: "show [NAME]", Short: "Show a remote (default: the one in use)", Args: cobra.MaximumNArgs(1),
		ValidArgsFunction: a.completeRemotes,
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) == 1 {
				a.remote = args[0]
			}
			t, err := a.target()
			if err != nil {
				return err
			}
			cfg, path, err := a.loadConfig()
			if err != nil {
				return err
			}
			v := viewOf(t.Name, t.Remote, cfg.Current)
			src := "configuration file " + path
			if t.Name == "env" {
				src = "environment (OPENVAIR_URL)"
			}
			tok := "none"
			switch {
			case v.TokenSet:
				tok = "given directly"
			case v.TokenFile != "":
				tok = "file " + v.TokenFile
			}
			return a.print(v, output.FieldsView{{Key: "name", Value: v.Name}, {Key: "url", Value: v.URL},
				{Key: "token", Value: tok}, {Key: "current", Value: fmt.Sprint(v.Current)}, {Key: "from", Value: src}})
		},
	}
}

// completeRemotes completes remote names.
func (a *App) completeRemotes(_ *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	cfg, _, err := a.loadConfig()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	return cfg.Names(), cobra.ShellCompDirectiveNoFileComp
}
