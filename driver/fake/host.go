package fake

import (
	"context"

	"github.com/openvair/openvair/driver"
)

var _ driver.HostInspector = (*Hypervisor)(nil)

// DefaultHostFacts returns (a fresh copy of) the facts the fake hypervisor reports: a small x86_64 TCG host
// with one network.
func DefaultHostFacts() driver.HostFacts {
	return driver.HostFacts{
		Hostname: "fake-host", Arch: "x86_64", LibvirtVersion: "9.0.0", HypervisorVersion: "QEMU 7.2.0",
		DomainTypes: []string{"qemu"}, DefaultDomainType: "qemu",
		CPUModes: []driver.CPUModeFacts{
			{Mode: "custom", Supported: true, Models: []string{"qemu64", "Westmere"}},
			{Mode: "host-model", Supported: true},
			{Mode: "host-passthrough", Supported: false},
		},
		MachineTypes: []string{"pc", "pc-i440fx-7.2", "pc-q35-7.2", "q35"},
		Firmware:     []string{"bios", "uefi"},
		Networks:     []driver.NetworkFacts{{Name: "default", Active: true, Bridge: "virbr0"}},
		Bridges:      []string{"br0", "virbr0"},
		Memory:       16 << 30, CPUs: 8,
	}
}

// HostFacts reports DefaultHostFacts; FailNext("HostFacts", ...) makes it fail.
func (h *Hypervisor) HostFacts(ctx context.Context) (driver.HostFacts, error) {
	if err := h.begin(ctx, "HostFacts"); err != nil {
		return driver.HostFacts{}, err
	}
	return DefaultHostFacts(), nil
}
