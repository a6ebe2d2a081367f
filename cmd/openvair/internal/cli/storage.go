package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/cmd/openvair/internal/exitcode"
	"github.com/openvair/openvair/storage"
)

func (a *App) storageCmd() *cobra.Command {
	c := group("storage", "Manage storages (where volumes and images live)", "storages")
	c.AddCommand(a.storageListCmd(), a.storageShowCmd(), a.storageCreateCmd(), a.storageEditCmd(), a.storageDeleteCmd(),
		a.storageTypesCmd())
	return c
}

func (a *App) storageListCmd() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List storages", Aliases: []string{"ls"}, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				all, err := c.ListStorages(ctx)
				if err != nil {
					return err
				}
				return a.print(nonNil(all), storageTable(all))
			})
		},
	}
}

func (a *App) storageShowCmd() *cobra.Command {
	return &cobra.Command{
		Use: "show STORAGE", Short: "Show a storage", Args: cobra.ExactArgs(1),
		ValidArgsFunction: a.complete(kindStorage, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				id, err := resolveArg(ctx, c, kindStorage, args[0])
				if err != nil {
					return err
				}
				s, err := c.GetStorage(ctx, id)
				if err != nil {
					return err
				}
				return a.print(s, storageFields(s))
			})
		},
	}
}

// parseConfig builds a storage configuration from --config key=value flags or --config-json.
func parseConfig(kv []string, js string) (any, error) {
	if js != "" {
		if len(kv) > 0 {
			return nil, exitcode.Usagef("give either --config or --config-json")
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(js), &obj); err != nil {
			return nil, exitcode.Usagef("--config-json: not a JSON object: %v", err)
		}
		return json.RawMessage(js), nil
	}
	cfg := map[string]any{}
	for _, p := range kv {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, exitcode.Usagef("--config %q: want key=value", p)
		}
		cfg[k] = configValue(v)
	}
	return cfg, nil
}

// numberRE is a JSON number without leading zeros ("0755" stays a string).
var numberRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?$`)

// configValue reads a --config value: true, false and numbers as such, anything else as a string.
func configValue(v string) any {
	switch {
	case v == "true":
		return true
	case v == "false":
		return false
	case numberRE.MatchString(v):
		return json.Number(v)
	}
	return v
}

func (a *App) storageCreateCmd() *cobra.Command {
	var typ, desc, js string
	var kv []string
	var af asyncFlags
	c := &cobra.Command{
		Use:   "create NAME --type TYPE [--config key=value ...]",
		Short: "Create a storage",
		Long: `Create a storage of a type the server offers ('openvair storage types' lists them with their
configuration keys). The configuration is given as key=value pairs (--config path=/srv/vm; true, false and
numbers are typed) or as a JSON object (--config-json).`,
		Example: "  openvair storage create pool --type localfs --config path=/srv/openvair\n" +
			"  openvair storage create nas --type nfs --config server=10.0.0.5 --config export=/srv/vm\n" +
			"  openvair storage create fast --type btrfs --config-json '{\"device\":\"/dev/vdb\",\"format\":true}'",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := parseConfig(kv, js)
			if err != nil {
				return err
			}
			req := storage.CreateRequest{Name: args[0], Description: desc, Type: storage.Type(typ), Config: cfg}
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				if af.async {
					op, err := c.CreateStorageAsync(ctx, req)
					if err != nil {
						return err
					}
					return a.printOperation(op)
				}
				s, err := c.CreateStorage(ctx, req)
				if err != nil {
					return err
				}
				return a.print(s, storageFields(s))
			})
		},
	}
	c.Flags().StringVar(&typ, "type", "", "storage type (localfs, nfs, btrfs, ...)")
	c.Flags().StringArrayVar(&kv, "config", nil, "configuration key=value (repeatable)")
	c.Flags().StringVar(&js, "config-json", "", "configuration as a JSON object")
	c.Flags().StringVar(&desc, "description", "", "description")
	_ = c.MarkFlagRequired("type")
	_ = c.RegisterFlagCompletionFunc("type", a.completeStorageTypes)
	af.add(c)
	return c
}

func (a *App) completeStorageTypes(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	c, err := a.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	ctx, cancel := context.WithTimeout(a.baseCtx(cmd), completeTimeout)
	defer cancel()
	ts, err := c.StorageTypes(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	out := make([]cobra.Completion, 0, len(ts))
	for _, t := range ts {
		out = append(out, string(t.Type))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func (a *App) storageEditCmd() *cobra.Command {
	c := &cobra.Command{
		Use: "edit STORAGE [--name NAME] [--description TEXT]", Short: "Rename or describe a storage", Args: cobra.ExactArgs(1),
		ValidArgsFunction: a.complete(kindStorage, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := storage.EditRequest{Name: optString(cmd, "name"), Description: optString(cmd, "description")}
			if req.Name == nil && req.Description == nil {
				return exitcode.Usagef("nothing to change: give --name or --description")
			}
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				id, err := resolveArg(ctx, c, kindStorage, args[0])
				if err != nil {
					return err
				}
				s, err := c.EditStorage(ctx, id, req)
				if err != nil {
					return err
				}
				return a.print(s, storageFields(s))
			})
		},
	}
	c.Flags().String("name", "", "new name")
	c.Flags().String("description", "", "new description")
	return c
}

func (a *App) storageDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use: "delete STORAGE...", Short: "Delete storages that hold no volumes or images", Aliases: []string{"rm"},
		Args: cobra.MinimumNArgs(1), ValidArgsFunction: a.complete(kindStorage, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.deleteEach(cmd, kindStorage, args, func(ctx context.Context, c *client.Client, id uuid.UUID) error {
				return c.DeleteStorage(ctx, id)
			})
		},
	}
}

// deleteEach resolves and deletes each argument in turn, stopping at the first failure.
func (a *App) deleteEach(cmd *cobra.Command, kind string, args []string, del func(context.Context, *client.Client, uuid.UUID) error) error {
	return a.run(cmd, func(ctx context.Context, c *client.Client) error {
		for _, arg := range args {
			id, err := resolveArg(ctx, c, kind, arg)
			if err != nil {
				return err
			}
			if err := del(ctx, c, id); err != nil {
				return err
			}
			if a.format == "table" {
				fmt.Fprintf(a.Out, "Deleted %s %s\n", kind, arg)
			}
		}
		return nil
	})
}

func (a *App) storageTypesCmd() *cobra.Command {
	return &cobra.Command{
		Use: "types", Short: "List the storage types the server can create", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				ts, err := c.StorageTypes(ctx)
				if err != nil {
					return err
				}
				return a.print(nonNil(ts), storageTypeTable(ts))
			})
		},
	}
}

// nonNil makes an empty list print as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
