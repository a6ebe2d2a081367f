package cli

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/cmd/openvair/internal/exitcode"
	"github.com/openvair/openvair/image"
)

func (a *App) imageCmd() *cobra.Command {
	c := group("image", "Manage images (ISOs and disk images)", "images")
	c.AddCommand(a.imageListCmd(), a.imageShowCmd(), a.imageUploadCmd(), a.imageImportCmd(), a.imageEditCmd(), a.imageDeleteCmd())
	return c
}

func (a *App) imageListCmd() *cobra.Command {
	var st string
	c := &cobra.Command{
		Use: "list [--storage STORAGE]", Short: "List images", Aliases: []string{"ls"}, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				all, err := c.ListImages(ctx)
				if err != nil {
					return err
				}
				if st != "" {
					sid, err := resolveArg(ctx, c, kindStorage, st)
					if err != nil {
						return err
					}
					kept := all[:0]
					for _, i := range all {
						if i.StorageID == sid {
							kept = append(kept, i)
						}
					}
					all = kept
				}
				if a.format != "table" {
					return a.print(nonNil(all), nil)
				}
				return a.print(all, imageTable(all, storageNames(ctx, c)))
			})
		},
	}
	c.Flags().StringVar(&st, "storage", "", "only the images of this storage")
	a.completeFlag(c, "storage", kindStorage)
	return c
}

func (a *App) imageShowCmd() *cobra.Command {
	return &cobra.Command{
		Use: "show IMAGE", Short: "Show an image", Args: cobra.ExactArgs(1),
		ValidArgsFunction: a.complete(kindImage, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				id, err := resolveArg(ctx, c, kindImage, args[0])
				if err != nil {
					return err
				}
				i, err := c.GetImage(ctx, id)
				if err != nil {
					return err
				}
				return a.print(i, imageFields(i))
			})
		},
	}
}

func (a *App) imageUploadCmd() *cobra.Command {
	var st, name, desc, mode string
	var interval time.Duration
	c := &cobra.Command{
		Use:   "upload FILE --storage STORAGE [--name NAME]",
		Short: "Upload an ISO or disk image into a storage",
		Long: `Upload a file ('-' for standard input) into a storage as an image; the server detects its format from
the content. Progress goes to standard error: a bar with bytes, rate and ETA when it is a terminal
(--progress=auto, the default; --progress=always draws it anyway), periodic lines with --progress=plain
(for logs), nothing with --progress=never. An upload is not bounded in time unless --timeout is given.`,
		Example: "  openvair image upload debian-12.iso --storage pool\n" +
			"  openvair image upload disk.qcow2 --storage pool --name base --progress=plain",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if name == "" {
				if path == "-" {
					return exitcode.Usagef("--name is needed when uploading standard input")
				}
				name = filepath.Base(path)
			}
			var in *os.File
			total := int64(-1)
			if path == "-" {
				in = os.Stdin
			} else {
				f, err := os.Open(path)
				if err != nil {
					return notFoundIfMissing(err)
				}
				defer f.Close()
				fi, err := f.Stat()
				if err != nil {
					return err
				}
				in, total = f, fi.Size()
			}
			rep, err := newReporter(mode, a.Err, "upload "+name, total, interval)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var sid uuid.UUID
			{
				ctx, cancel := a.callCtx(cmd)
				sid, err = resolveArg(ctx, c, kindStorage, st)
				cancel()
				if err != nil {
					return err
				}
			}
			ctx, cancel := a.longCtx(cmd)
			defer cancel()
			img, err := c.UploadImage(ctx, image.CreateRequest{Name: name, Description: desc, StorageID: sid}, in, total, rep.Set)
			if err != nil {
				rep.Abort()
				return err
			}
			rep.Done()
			return a.print(img, imageFields(img))
		},
	}
	f := c.Flags()
	f.StringVar(&st, "storage", "", "storage to upload into")
	f.StringVar(&name, "name", "", "image name (default: the file's name)")
	f.StringVar(&desc, "description", "", "description")
	f.StringVar(&mode, "progress", progressAuto, "progress display: auto, always, plain or never")
	f.DurationVar(&interval, "progress-interval", time.Second, "time between two lines of --progress=plain")
	_ = c.MarkFlagRequired("storage")
	a.completeFlag(c, "storage", kindStorage)
	_ = c.RegisterFlagCompletionFunc("progress", cobra.FixedCompletions(progressModes, cobra.ShellCompDirectiveNoFileComp))
	return c
}

// notFoundIfMissing makes a missing local file a not-found error.
func notFoundIfMissing(err error) error {
	if os.IsNotExist(err) {
		return notFound(err)
	}
	return err
}

func (a *App) imageImportCmd() *cobra.Command {
	var st, name, desc, sum string
	var af asyncFlags
	c := &cobra.Command{
		Use:     "import URL --storage STORAGE [--name NAME] [--sha256 HEX]",
		Short:   "Have the server download an image from an http(s) URL",
		Example: "  openvair image import https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-generic-amd64.qcow2 --storage pool",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				sid, err := resolveArg(ctx, c, kindStorage, st)
				if err != nil {
					return err
				}
				req := image.ImportRequest{Name: name, Description: desc, StorageID: sid, URL: args[0], SHA256: sum}
				if af.async {
					op, err := c.ImportImageAsync(ctx, req)
					if err != nil {
						return err
					}
					return a.printOperation(op)
				}
				i, err := c.ImportImage(ctx, req)
				if err != nil {
					return err
				}
				return a.print(i, imageFields(i))
			})
		},
	}
	f := c.Flags()
	f.StringVar(&st, "storage", "", "storage to import into")
	f.StringVar(&name, "name", "", "image name (default: the last segment of the URL's path)")
	f.StringVar(&desc, "description", "", "description")
	f.StringVar(&sum, "sha256", "", "expected SHA-256 of the content (hex)")
	_ = c.MarkFlagRequired("storage")
	a.completeFlag(c, "storage", kindStorage)
	af.add(c)
	return c
}

func (a *App) imageEditCmd() *cobra.Command {
	c := &cobra.Command{
		Use: "edit IMAGE [--name NAME] [--description TEXT]", Short: "Rename or describe an image", Args: cobra.ExactArgs(1),
		ValidArgsFunction: a.complete(kindImage, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := image.EditRequest{Name: optString(cmd, "name"), Description: optString(cmd, "description")}
			if req.Name == nil && req.Description == nil {
				return exitcode.Usagef("nothing to change: give --name or --description")
			}
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				id, err := resolveArg(ctx, c, kindImage, args[0])
				if err != nil {
					return err
				}
				i, err := c.EditImage(ctx, id, req)
				if err != nil {
					return err
				}
				return a.print(i, imageFields(i))
			})
		},
	}
	c.Flags().String("name", "", "new name")
	c.Flags().String("description", "", "new description")
	return c
}

func (a *App) imageDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use: "delete IMAGE...", Short: "Delete images no VM or linked volume uses", Aliases: []string{"rm"},
		Args: cobra.MinimumNArgs(1), ValidArgsFunction: a.complete(kindImage, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.deleteEach(cmd, kindImage, args, func(ctx context.Context, c *client.Client, id uuid.UUID) error {
				return c.DeleteImage(ctx, id)
			})
		},
	}
}
