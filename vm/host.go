package vm

import (
	"context"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
)

// Host reports what the hypervisor's host offers to VMs (domain types, CPU modes and models, machine
// types, firmware, networks, bridges, memory and CPUs), bounded by OpTimeout when ctx has no earlier
// deadline. It fails with errkind.Unavailable when no hypervisor is configured or it cannot be reached, and
// with errkind.Unsupported when the hypervisor cannot report its host (it does not implement
// driver.HostInspector).
func (s *Service) Host(ctx context.Context) (driver.HostFacts, error) {
	hv, err := s.hypervisor()
	if err != nil {
		return driver.HostFacts{}, err
	}
	hi, ok := hv.(driver.HostInspector)
	if !ok {
		return driver.HostFacts{}, errkind.New(errkind.Unsupported, "vm", "", "the hypervisor cannot report its host's facts")
	}
	var f driver.HostFacts
	err = s.call(ctx, func(ctx context.Context) error {
		f, err = hi.HostFacts(ctx)
		return err
	})
	if err != nil {
		return driver.HostFacts{}, err
	}
	return f, nil
}
