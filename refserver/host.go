package refserver

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/openvair/openvair/driver"
)

// Host is what the hypervisor's host offers to VMs: the values a VM create or edit may use for its domain,
// CPU mode and model, machine type, firmware and network interfaces, and the host's size.
type Host struct {
	Hostname          string        `json:"hostname" doc:"The host's name as the hypervisor reports it."`
	Arch              string        `json:"arch" doc:"The host's CPU architecture, for example x86_64."`
	LibvirtVersion    string        `json:"libvirt_version" doc:"libvirt's version, for example 9.0.0."`
	HypervisorVersion string        `json:"hypervisor_version" doc:"The hypervisor and its version, for example QEMU 7.2.0."`
	DomainTypes       []string      `json:"domain_types" nullable:"false" doc:"Domain types offered for the host's architecture: kvm (hardware virtualization) and/or qemu (emulation)."`
	DefaultDomainType string        `json:"default_domain_type" doc:"The domain type VMs are defined with (configured, or kvm when the host offers it, else qemu)."`
	CPUModes          []HostCPUMode `json:"cpu_modes" nullable:"false" doc:"The CPU modes of cpu.mode and whether this host supports them; empty when the hypervisor cannot tell."`
	MachineTypes      []string      `json:"machine_types" nullable:"false" doc:"Machine types of the default domain type, canonical names and aliases (pc, q35, pc-i440fx-7.2, ...)."`
	Firmware          []string      `json:"firmware" nullable:"false" doc:"Values of firmware VMs may use: bios, and uefi when a UEFI loader (OVMF) is installed."`
	Networks          []HostNetwork `json:"networks" nullable:"false" doc:"The hypervisor's virtual networks, the sources of interfaces of type network."`
	Bridges           []string      `json:"bridges" nullable:"false" doc:"The host's bridges, the sources of interfaces of type bridge; empty when the hypervisor is remote."`
	Memory            int64         `json:"memory" doc:"The host's memory in bytes."`
	CPUs              int           `json:"cpus" doc:"The host's logical CPUs."`
}

// HostCPUMode says whether VMs may use one CPU mode.
type HostCPUMode struct {
	Mode      string   `json:"mode" enum:"host-passthrough,host-model,custom" doc:"A value of cpu.mode."`
	Supported bool     `json:"supported" doc:"The hypervisor accepts this mode on this host."`
	Models    []string `json:"models,omitempty" doc:"For mode custom: the CPU models usable on this host (values of cpu.model)."`
}

// HostNetwork is one virtual network of the hypervisor.
type HostNetwork struct {
	Name   string `json:"name" doc:"The source of an interface of type network."`
	Active bool   `json:"active" doc:"The network runs; a VM using an inactive network does not start."`
	Bridge string `json:"bridge,omitempty" doc:"The host bridge the network uses."`
}

type hostOutput struct{ Body *Host }

func (s *server) registerHost(api huma.API) {
	o := s.op(http.MethodGet, "/api/v1/host", "getHost", "What the hypervisor's host can run", "host",
		http.StatusUnprocessableEntity, http.StatusServiceUnavailable, http.StatusGatewayTimeout)
	o.Description = "Reports what the hypervisor's host offers to VMs: domain types, CPU modes and usable CPU models, " +
		"machine types, firmware, virtual networks and bridges, memory and CPUs. Every answer is read from the " +
		"hypervisor now. 503 when no hypervisor is configured or it cannot be reached; 422 (unsupported) when " +
		"the hypervisor driver cannot report its host."
	huma.Register(api, o, func(ctx context.Context, _ *struct{}) (*hostOutput, error) {
		f, err := s.sys.VMs.Host(ctx)
		if err != nil {
			return nil, s.problemOf(ctx, err)
		}
		return &hostOutput{Body: hostOut(f)}, nil
	})

	n := s.op(http.MethodGet, "/api/v1/networks", "listNetworks", "What NICs can be connected to", "host",
		http.StatusUnprocessableEntity, http.StatusServiceUnavailable, http.StatusGatewayTimeout)
	n.Description = "Lists what the hypervisor offers to network interfaces, so that clients do not guess names: its " +
		"virtual networks, active or not (interface type network), and the host's bridges (interface type bridge; " +
		"listed when the hypervisor runs on this host). A VM whose interface names something absent from this list " +
		"is refused with 422 at create or edit."
	huma.Register(api, n, func(ctx context.Context, _ *struct{}) (*networksOutput, error) {
		nets, err := s.sys.VMs.Networks(ctx)
		if err != nil {
			return nil, s.problemOf(ctx, err)
		}
		out := &networksOutput{}
		out.Body.Items = make([]Network, 0, len(nets))
		for _, x := range nets {
			out.Body.Items = append(out.Body.Items, Network{Name: x.Name, Type: x.Type, Active: x.Active, Bridge: x.Bridge})
		}
		return out, nil
	})
}

// Network is something a network interface can be connected to.
type Network struct {
	Name   string `json:"name" doc:"The source of an interface of this type."`
	Type   string `json:"type" enum:"network,bridge" doc:"The interface type that uses it."`
	Active bool   `json:"active" doc:"A network runs (a VM using an inactive network does not start); bridges are always active."`
	Bridge string `json:"bridge,omitempty" doc:"The host bridge a network uses."`
}

type networksOutput struct {
	Body struct {
		Items []Network `json:"items" nullable:"false"`
	}
}

// hostOut copies the facts; absent lists become empty arrays (never null).
func hostOut(f driver.HostFacts) *Host {
	out := &Host{Hostname: f.Hostname, Arch: f.Arch, LibvirtVersion: f.LibvirtVersion,
		HypervisorVersion: f.HypervisorVersion, DomainTypes: append([]string{}, f.DomainTypes...),
		DefaultDomainType: f.DefaultDomainType, CPUModes: make([]HostCPUMode, 0, len(f.CPUModes)),
		MachineTypes: append([]string{}, f.MachineTypes...), Firmware: append([]string{}, f.Firmware...),
		Networks: make([]HostNetwork, 0, len(f.Networks)), Bridges: append([]string{}, f.Bridges...),
		Memory: f.Memory, CPUs: f.CPUs}
	for _, m := range f.CPUModes {
		out.CPUModes = append(out.CPUModes, HostCPUMode(m))
	}
	for _, n := range f.Networks {
		out.Networks = append(out.Networks, HostNetwork(n))
	}
	return out
}
