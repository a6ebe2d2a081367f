package cli

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/cmd/openvair/internal/exitcode"
	"github.com/openvair/openvair/cmd/openvair/internal/units"
)

// run runs fn with a client and a context bounded by --timeout.
func (a *App) run(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client) error) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	ctx, cancel := a.callCtx(cmd)
	defer cancel()
	return fn(ctx, c)
}

// asyncFlags are --wait and --async of a write that has an asynchronous form.
type asyncFlags struct{ wait, async bool }

func (f *asyncFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.wait, "wait", true, "wait until the work is done and print the result (the default)")
	cmd.Flags().BoolVar(&f.async, "async", false, "start the work, print its operation and return at once")
	cmd.MarkFlagsMutuallyExclusive("wait", "async")
}

// printOperation prints an operation started by --async.
func (a *App) printOperation(op *client.Operation) error {
	return a.print(op, operationFields(op))
}

// sizeFlag parses a size flag value ("" for none).
func sizeFlag(name, v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := units.ParseSize(v)
	if err != nil {
		return 0, exitcode.Usagef("--%s: %v", name, err)
	}
	return n, nil
}

// optString returns a pointer to the flag's value when the flag was given, else nil (for edit requests).
func optString(cmd *cobra.Command, name string) *string {
	if !cmd.Flags().Changed(name) {
		return nil
	}
	v, _ := cmd.Flags().GetString(name)
	return &v
}

// optBool is optString for a bool flag.
func optBool(cmd *cobra.Command, name string) *bool {
	if !cmd.Flags().Changed(name) {
		return nil
	}
	v, _ := cmd.Flags().GetBool(name)
	return &v
}

// parseID parses an id that cannot be named (operations, snapshots).
func parseID(kind, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, exitcode.Usagef("%s id %q: not a UUID", kind, s)
	}
	return id, nil
}

// yesNo prints a bool for tables.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// plural returns "1 thing" or "n things".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
