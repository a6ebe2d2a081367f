package vm

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
)

// Network is something a NIC can be connected to: a hypervisor network (NIC type "network") or a host
// bridge (NIC type "bridge").
type Network struct {
	Name string `json:"name"`
	Type string `json:"type"` // "network" or "bridge"
	// Active reports whether a network runs (a VM on an inactive network does not start); bridges are
	// always active.
	Active bool `json:"active"`
	// Bridge is the host bridge a network uses, if any.
	Bridge string `json:"bridge,omitempty"`
}

// Networks lists what the hypervisor offers to NICs: its networks, active or not, and the host's bridges
// (when the hypervisor can see them: a local libvirtd), sorted by type and name.
func (s *Service) Networks(ctx context.Context) ([]Network, error) {
	nets, bridges, err := s.networkFacts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Network, 0, len(nets)+len(bridges))
	for _, n := range nets {
		out = append(out, Network{Name: n.Name, Type: "network", Active: n.Active, Bridge: n.Bridge})
	}
	for _, b := range bridges {
		out = append(out, Network{Name: b, Type: "bridge", Active: true})
	}
	slices.SortFunc(out, func(a, b Network) int {
		if c := strings.Compare(b.Type, a.Type); c != 0 { // networks first
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// checkNICs refuses, before anything is recorded, NICs whose network or bridge the hypervisor does not
// have (ErrInvalid naming interfaces[i].source), so that a typo is a 422 at create rather than a start
// failure. Hypervisors that cannot report their host's facts are not asked; bridges are checked only when
// the hypervisor lists them (a local libvirtd).
func (s *Service) checkNICs(ctx context.Context, nics []Interface, field string) error {
	if len(nics) == 0 {
		return nil
	}
	hv, err := s.hypervisor()
	if err != nil {
		return err
	}
	_, lists := hv.(driver.NetworkLister)
	if _, inspects := hv.(driver.HostInspector); !lists && !inspects {
		return nil
	}
	nets, bridges, err := s.networkFacts(ctx)
	if err != nil {
		return err
	}
	networks := make([]string, len(nets))
	for i, n := range nets {
		networks[i] = n.Name
	}
	v := &errkind.Validator{Entity: "vm"}
	for i, n := range nics {
		at := fmt.Sprintf("%s[%d].source", field, i)
		switch n.Type {
		case "network":
			v.Check(slices.Contains(networks, n.Source), at, "the hypervisor has no network named %q (networks: %s)", n.Source, list(networks))
		case "bridge":
			v.Check(bridges == nil || slices.Contains(bridges, n.Source), at, "the host has no bridge named %q (bridges: %s)", n.Source, list(bridges))
		}
	}
	return v.Err()
}

// networkFacts asks the hypervisor for its networks and the host's bridges: with one call when it is a
// driver.NetworkLister, else through Host.
func (s *Service) networkFacts(ctx context.Context) ([]driver.NetworkFacts, []string, error) {
	hv, err := s.hypervisor()
	if err != nil {
		return nil, nil, err
	}
	if nl, ok := hv.(driver.NetworkLister); ok {
		var nets []driver.NetworkFacts
		var bridges []string
		err := s.call(ctx, func(ctx context.Context) (err error) { nets, bridges, err = nl.Networks(ctx); return err })
		return nets, bridges, err
	}
	f, err := s.Host(ctx)
	return f.Networks, f.Bridges, err
}

func list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
