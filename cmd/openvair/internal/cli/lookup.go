package cli

import (
	"context"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// listerFor makes the lister of an entity that may be named: listing them is one call, and cand says how
// one of them is shown among candidates.
func listerFor[T any](list func(context.Context) ([]T, error), cand func(T) candidate) lister {
	return func(ctx context.Context) ([]candidate, error) {
		all, err := list(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]candidate, 0, len(all))
		for _, e := range all {
			out = append(out, cand(e))
		}
		return out, nil
	}
}

// Kinds of nameable entities, with their listers.
const (
	kindStorage = "storage"
	kindVolume  = "volume"
	kindImage   = "image"
	kindVM      = "vm"
)

func listerOf(kind string, c *client.Client) lister {
	switch kind {
	case kindStorage:
		return listerFor(c.ListStorages, func(s *storage.Storage) candidate {
			return candidate{ID: s.ID, Name: s.Name, Where: string(s.Type)}
		})
	case kindVolume:
		return listerFor(func(ctx context.Context) ([]*volume.Volume, error) { return c.ListVolumes(ctx, uuid.Nil) },
			func(v *volume.Volume) candidate {
				return candidate{ID: v.ID, Name: v.Name, Where: "storage " + v.StorageID.String()}
			})
	case kindImage:
		return listerFor(c.ListImages, func(i *image.Image) candidate {
			return candidate{ID: i.ID, Name: i.Name, Where: "storage " + i.StorageID.String()}
		})
	}
	return listerFor(c.ListVMs, func(v *vm.VM) candidate { return candidate{ID: v.ID, Name: v.Name} })
}

// resolveArg resolves an id or name of kind with c.
func resolveArg(ctx context.Context, c *client.Client, kind, arg string) (uuid.UUID, error) {
	return resolve(ctx, kind, arg, listerOf(kind, c))
}

// completeTimeout bounds the listing behind a shell completion.
const completeTimeout = 5 * time.Second

// complete returns a completion function of names and ids of kind, for the first max arguments (0: all).
func (a *App) complete(kind string, max int) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if max > 0 && len(args) >= max {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := a.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		ctx, cancel := context.WithTimeout(a.baseCtx(cmd), completeTimeout)
		defer cancel()
		all, err := listerOf(kind, c)(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var out []cobra.Completion
		for _, e := range all {
			if strings.HasPrefix(e.Name, toComplete) {
				out = append(out, cobra.CompletionWithDesc(e.Name, e.ID.String()))
			}
			if toComplete != "" && strings.HasPrefix(e.ID.String(), toComplete) {
				out = append(out, cobra.CompletionWithDesc(e.ID.String(), e.Name))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeFlag registers the completion of a flag naming an entity.
func (a *App) completeFlag(cmd *cobra.Command, flag, kind string) {
	_ = cmd.RegisterFlagCompletionFunc(flag, a.complete(kind, 0))
}
