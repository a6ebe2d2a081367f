package cli

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/cmd/openvair/internal/exitcode"
	"github.com/openvair/openvair/volume"
)

func (a *App) volumeCmd() *cobra.Command {
	c := group("volume", "Manage volumes (virtual disks) and their snapshots", "volumes", "vol")
	c.AddCommand(a.volumeListCmd(), a.volumeShowCmd(), a.volumeCreateCmd(), a.volumeEditCmd(), a.volumeExtendCmd(),
		a.volumeDeleteCmd(), a.snapshotCmd())
	return c
}

// storageNames maps storage ids to names for tables; a failure leaves ids.
func storageNames(ctx context.Context, c *client.Client) map[uuid.UUID]string {
	all, err := c.ListStorages(ctx)
	if err != nil {
		return nil
	}
	m := make(map[uuid.UUID]string, len(all))
	for _, s := range all {
		m[s.ID] = s.Name
	}
	return m
}

func (a *App) volumeListCmd() *cobra.Command {
	var st string
	c := &cobra.Command{
		Use: "list [--storage STORAGE]", Short: "List volumes", Aliases: []string{"ls"}, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				sid := uuid.Nil
				if st != "" {
					id, err := resolveArg(ctx, c, kindStorage, st)
					if err != nil {
						return err
					}
					sid = id
				}
				all, err := c.ListVolumes(ctx, sid)
				if err != nil {
					return err
				}
				if a.format != "table" {
					return a.print(nonNil(all), nil)
				}
				return a.print(all, volumeTable(all, storageNames(ctx, c)))
			})
		},
	}
	c.Flags().StringVar(&st, "storage", "", "only the volumes of this storage")
	a.completeFlag(c, "storage", kindStorage)
	return c
}

func (a *App) volumeShowCmd() *cobra.Command {
	return &cobra.Command{
		Use: "show VOLUME", Short: "Show a volume", Args: cobra.ExactArgs(1),
		ValidArgsFunction: a.complete(kindVolume, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				id, err := resolveArg(ctx, c, kindVolume, args[0])
				if err != nil {
					return err
				}
				v, err := c.GetVolume(ctx, id)
				if err != nil {
					return err
				}
				return a.print(v, volumeFields(v))
			})
		},
	}
}

func (a *App) volumeCreateCmd() *cobra.Command {
	var st, sz, format, desc, fromImage, fromVolume, fromSnapshot, mode string
	var ro, share bool
	var af asyncFlags
	c := &cobra.Command{
		Use:   "create NAME --storage STORAGE --size SIZE [--format qcow2|raw]",
		Short: "Create a volume, blank or from an image, a volume or a snapshot",
		Long: `Create a volume. A blank volume needs --storage and --size. A volume made from --from-image,
--from-volume or --from-snapshot takes the source's storage, format and size unless given (a larger size is
allowed), with --mode copy (an independent copy, the default), linked (a qcow2 overlay on the source) or
instant (a reflink, on storages that offer it).`,
		Example: "  openvair volume create disk0 --storage pool --size 10GiB\n" +
			"  openvair volume create web-root --from-image debian-12 --mode linked",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := sizeFlag("size", sz)
			if err != nil {
				return err
			}
			req := volume.CreateRequest{Name: args[0], Description: desc, Format: volume.Format(format), Size: n,
				ReadOnly: ro, Shareable: share}
			sources := 0
			for _, s := range []string{fromImage, fromVolume, fromSnapshot} {
				if s != "" {
					sources++
				}
			}
			if sources > 1 {
				return exitcode.Usagef("give at most one of --from-image, --from-volume, --from-snapshot")
			}
			if sources == 0 && mode != "" {
				return exitcode.Usagef("--mode needs a source (--from-image, --from-volume or --from-snapshot)")
			}
			if sources == 0 && (st == "" || n == 0) {
				return exitcode.Usagef("a blank volume needs --storage and --size")
			}
			if sources == 0 && req.Format == "" {
				req.Format = volume.FormatQCOW2
			}
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				if st != "" {
					id, err := resolveArg(ctx, c, kindStorage, st)
					if err != nil {
						return err
					}
					req.StorageID = id
				}
				if sources == 1 {
					src := &volume.Source{Mode: volume.CloneMode(mode)}
					var err error
					switch {
					case fromImage != "":
						src.ImageID, err = resolveArg(ctx, c, kindImage, fromImage)
					case fromVolume != "":
						src.VolumeID, err = resolveArg(ctx, c, kindVolume, fromVolume)
					default:
						src.SnapshotID, err = parseID("snapshot", fromSnapshot)
					}
					if err != nil {
						return err
					}
					req.Source = src
				}
				if af.async {
					op, err := c.CreateVolumeAsync(ctx, req)
					if err != nil {
						return err
					}
					return a.printOperation(op)
				}
				v, err := c.CreateVolume(ctx, req)
				if err != nil {
					return err
				}
				return a.print(v, volumeFields(v))
			})
		},
	}
	f := c.Flags()
	f.StringVar(&st, "storage", "", "storage of the volume (default with a source: the source's)")
	f.StringVar(&sz, "size", "", "virtual size, such as 10GiB or 512MiB")
	f.StringVar(&format, "format", "", "qcow2 or raw (default qcow2; with a source, the source's)")
	f.StringVar(&desc, "description", "", "description")
	f.StringVar(&fromImage, "from-image", "", "make the volume from this image (qcow2 or raw)")
	f.StringVar(&fromVolume, "from-volume", "", "make the volume from this volume")
	f.StringVar(&fromSnapshot, "from-snapshot", "", "make the volume from this snapshot (id)")
	f.StringVar(&mode, "mode", "", "with a source: copy (default), linked or instant")
	f.BoolVar(&ro, "read-only", false, "attach the volume read-only")
	f.BoolVar(&share, "shareable", false, "the volume may be attached to several VMs")
	a.completeFlag(c, "storage", kindStorage)
	a.completeFlag(c, "from-image", kindImage)
	a.completeFlag(c, "from-volume", kindVolume)
	_ = c.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"qcow2", "raw"}, cobra.ShellCompDirectiveNoFileComp))
	_ = c.RegisterFlagCompletionFunc("mode", cobra.FixedCompletions([]string{"copy", "linked", "instant"}, cobra.ShellCompDirectiveNoFileComp))
	af.add(c)
	return c
}

func (a *App) volumeEditCmd() *cobra.Command {
	c := &cobra.Command{
		Use: "edit VOLUME [--name NAME] [--description TEXT] [--read-only] [--shareable]", Short: "Change a volume's name, description or flags",
		Args: cobra.ExactArgs(1), ValidArgsFunction: a.complete(kindVolume, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := volume.EditRequest{Name: optString(cmd, "name"), Description: optString(cmd, "description"),
				ReadOnly: optBool(cmd, "read-only"), Shareable: optBool(cmd, "shareable")}
			if req == (volume.EditRequest{}) {
				return exitcode.Usagef("nothing to change: give --name, --description, --read-only or --shareable")
			}
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				id, err := resolveArg(ctx, c, kindVolume, args[0])
				if err != nil {
					return err
				}
				v, err := c.EditVolume(ctx, id, req)
				if err != nil {
					return err
				}
				return a.print(v, volumeFields(v))
			})
		},
	}
	c.Flags().String("name", "", "new name")
	c.Flags().String("description", "", "new description")
	c.Flags().Bool("read-only", false, "attach read-only (--read-only=false to clear)")
	c.Flags().Bool("shareable", false, "may be attached to several VMs (--shareable=false to clear)")
	return c
}

func (a *App) volumeExtendCmd() *cobra.Command {
	var sz string
	c := &cobra.Command{
		Use: "extend VOLUME --size SIZE", Short: "Grow a volume to a new size", Args: cobra.ExactArgs(1),
		ValidArgsFunction: a.complete(kindVolume, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := sizeFlag("size", sz)
			if err != nil {
				return err
			}
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				id, err := resolveArg(ctx, c, kindVolume, args[0])
				if err != nil {
					return err
				}
				v, err := c.ExtendVolume(ctx, id, n)
				if err != nil {
					return err
				}
				return a.print(v, volumeFields(v))
			})
		},
	}
	c.Flags().StringVar(&sz, "size", "", "the new virtual size, such as 20GiB")
	_ = c.MarkFlagRequired("size")
	return c
}

func (a *App) volumeDeleteCmd() *cobra.Command {
	var snaps bool
	c := &cobra.Command{
		Use: "delete VOLUME...", Short: "Delete volumes no VM uses", Aliases: []string{"rm"},
		Args: cobra.MinimumNArgs(1), ValidArgsFunction: a.complete(kindVolume, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.deleteEach(cmd, kindVolume, args, func(ctx context.Context, c *client.Client, id uuid.UUID) error {
				return c.DeleteVolume(ctx, id, snaps)
			})
		},
	}
	c.Flags().BoolVar(&snaps, "snapshots", false, "delete the volume's snapshots too")
	return c
}

func (a *App) snapshotCmd() *cobra.Command {
	c := group("snapshot", "Manage a volume's snapshots", "snapshots", "snap")
	create := &cobra.Command{
		Use: "create VOLUME NAME", Short: "Take a snapshot of a volume", Args: cobra.ExactArgs(2),
		ValidArgsFunction: a.complete(kindVolume, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			desc, _ := cmd.Flags().GetString("description")
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				id, err := resolveArg(ctx, c, kindVolume, args[0])
				if err != nil {
					return err
				}
				s, err := c.CreateSnapshot(ctx, id, volume.SnapshotRequest{Name: args[1], Description: desc})
				if err != nil {
					return err
				}
				return a.print(s, snapshotFields(s))
			})
		},
	}
	create.Flags().String("description", "", "description")
	list := &cobra.Command{
		Use: "list VOLUME", Short: "List a volume's snapshots", Aliases: []string{"ls"}, Args: cobra.ExactArgs(1),
		ValidArgsFunction: a.complete(kindVolume, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				id, err := resolveArg(ctx, c, kindVolume, args[0])
				if err != nil {
					return err
				}
				all, err := c.ListSnapshots(ctx, id)
				if err != nil {
					return err
				}
				return a.print(nonNil(all), snapshotTable(all))
			})
		},
	}
	show := &cobra.Command{
		Use: "show SNAPSHOT-ID", Short: "Show a snapshot", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("snapshot", args[0])
			if err != nil {
				return err
			}
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				s, err := c.GetSnapshot(ctx, id)
				if err != nil {
					return err
				}
				return a.print(s, snapshotFields(s))
			})
		},
	}
	del := &cobra.Command{
		Use: "delete SNAPSHOT-ID...", Short: "Delete snapshots", Aliases: []string{"rm"}, Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				for _, arg := range args {
					id, err := parseID("snapshot", arg)
					if err != nil {
						return err
					}
					if err := c.DeleteSnapshot(ctx, id); err != nil {
						return err
					}
					if a.format == "table" {
						fmt.Fprintf(a.Out, "Deleted snapshot %s\n", arg)
					}
				}
				return nil
			})
		},
	}
	revert := &cobra.Command{
		Use: "revert SNAPSHOT-ID", Short: "Give a snapshot's volume the snapshot's content", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("snapshot", args[0])
			if err != nil {
				return err
			}
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				v, err := c.RevertSnapshot(ctx, id)
				if err != nil {
					return err
				}
				return a.print(v, volumeFields(v))
			})
		},
	}
	c.AddCommand(create, list, show, del, revert)
	return c
}
