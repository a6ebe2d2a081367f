package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/internal/operation"
)

func (a *App) operationCmd() *cobra.Command {
	c := group("operation", "Follow and cancel operations (the work behind every write)", "operations", "op")
	var f client.OperationFilter
	var target, status string
	list := &cobra.Command{
		Use: "list [--target ID] [--kind KIND] [--status STATUS] [--request-id ID]", Short: "List operations, newest first",
		Aliases: []string{"ls"}, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if target != "" {
				id, err := parseID("target", target)
				if err != nil {
					return err
				}
				f.TargetID = id
			}
			f.Status = operation.Status(status)
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				all, err := c.ListOperationsBy(ctx, f)
				if err != nil {
					return err
				}
				return a.print(nonNil(all), operationTable(all))
			})
		},
	}
	list.Flags().StringVar(&target, "target", "", "only operations on this entity (id)")
	list.Flags().StringVar(&f.Kind, "kind", "", "only operations of this kind (volume.create, vm.stop, ...)")
	list.Flags().StringVar(&status, "status", "", "only operations in this status (pending, running, succeeded, failed, cancelled)")
	list.Flags().StringVar(&f.RequestID, "request-id", "", "only operations of this request")
	_ = list.RegisterFlagCompletionFunc("status", cobra.FixedCompletions([]string{"pending", "running", "succeeded", "failed", "cancelled"},
		cobra.ShellCompDirectiveNoFileComp))

	show := &cobra.Command{
		Use: "show ID", Short: "Show an operation", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.opDo(cmd, args[0], func(ctx context.Context, c *client.Client, op *client.Operation) (*client.Operation, error) {
				return op, nil
			})
		},
	}
	wait := &cobra.Command{
		Use: "wait ID", Short: "Wait until an operation ends; fails as the operation failed", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.opDo(cmd, args[0], func(ctx context.Context, c *client.Client, op *client.Operation) (*client.Operation, error) {
				done, err := c.Wait(ctx, op)
				if err != nil && done != nil && done.Status.Final() {
					_ = a.print(done, operationFields(done))
				}
				return done, err
			})
		},
	}
	cancel := &cobra.Command{
		Use: "cancel ID", Short: "Cancel an operation (pending ones always; running ones when their kind allows)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.opDo(cmd, args[0], func(ctx context.Context, c *client.Client, op *client.Operation) (*client.Operation, error) {
				return c.CancelOperation(ctx, op.ID)
			})
		},
	}
	c.AddCommand(list, show, wait, cancel)
	return c
}

// opDo gets an operation, calls fn with it and prints the operation fn returns.
func (a *App) opDo(cmd *cobra.Command, arg string, fn func(context.Context, *client.Client, *client.Operation) (*client.Operation, error)) error {
	id, err := parseID("operation", arg)
	if err != nil {
		return err
	}
	return a.run(cmd, func(ctx context.Context, c *client.Client) error {
		op, err := c.GetOperation(ctx, id)
		if err != nil {
			return err
		}
		op, err = fn(ctx, c, op)
		if err != nil {
			return fmt.Errorf("operation %s: %w", id, err)
		}
		return a.print(op, operationFields(op))
	})
}
