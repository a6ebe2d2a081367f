package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/openvair/openvair/client"
)

func (a *App) hostCmd() *cobra.Command {
	c := group("host", "What the server's host can run")
	c.AddCommand(&cobra.Command{
		Use: "show", Short: "Show the host: CPUs, memory, hypervisor, CPU modes, firmware, networks", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				h, err := c.Host(ctx)
				if err != nil {
					return err
				}
				return a.print(h, hostFields(h))
			})
		},
	})
	return c
}

func (a *App) networkCmd() *cobra.Command {
	c := group("network", "The networks and bridges NICs can use", "networks", "net")
	c.AddCommand(&cobra.Command{
		Use: "list", Short: "List the hypervisor's networks and the host's bridges", Aliases: []string{"ls"}, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(cmd, func(ctx context.Context, c *client.Client) error {
				all, err := c.Networks(ctx)
				if err != nil {
					return err
				}
				return a.print(nonNil(all), networkTable(all))
			})
		},
	})
	return c
}
