package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/cmd/openvair/internal/output"
)

func (a *App) eventCmd() *cobra.Command {
	c := group("event", "Follow the server's change log", "events")
	var since int64
	var resource, resourceID string
	var types []string
	watch := &cobra.Command{
		Use:   "watch [--since ID] [--resource KIND] [--resource-id ID] [--type TYPE ...]",
		Short: "Print changes as they happen, one line per event (JSON lines with -o json)",
		Long: `Follow the change log: one line per event (id, time, type, entity, version and what changed), or one
JSON object per line with -o json (-o yaml prints YAML documents). By default only new events are shown;
--since ID starts after that event (0: every event the server keeps). A broken connection is resumed where
it stopped, without gap or duplicate. It runs until interrupted, or for --timeout when given (then it
exits 0).`,
		Example: "  openvair event watch --resource vm\n  openvair event watch --type vm.updated -o json | jq .data.power_state",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := client.EventOptions{Since: since, Resource: resource, Types: types}
			if resourceID != "" {
				id, err := parseID("resource", resourceID)
				if err != nil {
					return err
				}
				opts.ResourceID = id
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.longCtx(cmd)
			defer cancel()
			for e, err := range c.Events(ctx, opts) {
				if err != nil {
					if ctx.Err() != nil {
						return nil // interrupted, or --timeout passed: the watch is over
					}
					return err
				}
				if err := a.printEvent(e); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f := watch.Flags()
	f.Int64Var(&since, "since", -1, "start after this event id (0: from the oldest kept; default: from now)")
	f.StringVar(&resource, "resource", "", "only events of this kind of entity: storage, volume, image, vm, operation")
	f.StringVar(&resourceID, "resource-id", "", "only events of this entity (id)")
	f.StringArrayVar(&types, "type", nil, "only events of this type, such as vm.updated (repeatable)")
	_ = watch.RegisterFlagCompletionFunc("resource", cobra.FixedCompletions([]string{"storage", "volume", "image", "vm", "operation"},
		cobra.ShellCompDirectiveNoFileComp))
	c.AddCommand(watch)
	return c
}

// printEvent prints one event: a JSON line, a YAML document, or a human line.
func (a *App) printEvent(e openvair.Event) error {
	switch a.format {
	case output.JSON:
		return output.WriteJSONLine(a.Out, e)
	case output.YAML:
		if _, err := fmt.Fprintln(a.Out, "---"); err != nil {
			return err
		}
		return output.WriteYAML(a.Out, e)
	}
	_, err := fmt.Fprintln(a.Out, eventLine(e))
	return err
}

// eventLine is the human line of an event: id, time, type, entity id, version, and the entity's name and
// states when it has them.
func eventLine(e openvair.Event) string {
	parts := []string{fmt.Sprint(e.ID), output.Time(e.Time), e.Type, e.ResourceID.String(), fmt.Sprintf("v%d", e.Version)}
	var data map[string]any
	if len(e.Data) > 0 && json.Unmarshal(e.Data, &data) == nil {
		for _, k := range []string{"name", "kind", "status", "power_state"} {
			if v, ok := data[k].(string); ok && v != "" {
				parts = append(parts, k+"="+quoteIfNeeded(v))
			}
		}
	}
	if e.RequestID != "" {
		parts = append(parts, "request="+e.RequestID)
	}
	return strings.Join(parts, " ")
}

func quoteIfNeeded(s string) string {
	if strings.ContainsAny(s, " \t\"=") {
		return fmt.Sprintf("%q", s)
	}
	return s
}
