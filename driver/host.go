package driver

import "context"

// HostFacts is what a hypervisor host offers to VMs: which domain types, CPU modes, machine types, firmware
// and networks a DomainSpec may ask for, and the host's size. It answers "what can this host run" before a
// VM is defined, so that a client chooses values the hypervisor accepts.
type HostFacts struct {
	// Hostname is the host's name as the hypervisor reports it.
	Hostname string `json:"hostname"`
	// Arch is the host's CPU architecture ("x86_64").
	Arch string `json:"arch"`
	// LibvirtVersion is the version of the hypervisor's management daemon ("9.0.0"); empty when there is none.
	LibvirtVersion string `json:"libvirt_version"`
	// HypervisorVersion names the hypervisor and its version ("QEMU 7.2.0").
	HypervisorVersion string `json:"hypervisor_version"`
	// DomainTypes are the domain types offered for the host's architecture ("kvm" and/or "qemu").
	DomainTypes []string `json:"domain_types"`
	// DefaultDomainType is the domain type the driver uses when a VM does not say (configured or detected).
	DefaultDomainType string `json:"default_domain_type"`
	// CPUModes says which CPU modes (host-passthrough, host-model, custom) VMs of the default domain type
	// may use; empty when the hypervisor cannot tell.
	CPUModes []CPUModeFacts `json:"cpu_modes"`
	// MachineTypes are the machine types of the default domain type: canonical names and their aliases
	// ("pc", "q35", "pc-i440fx-7.2").
	MachineTypes []string `json:"machine_types"`
	// Firmware lists the firmware VMs may boot with: "bios", and "uefi" when a UEFI loader is installed.
	Firmware []string `json:"firmware"`
	// Networks are the hypervisor's virtual networks, the sources of NICs of type "network".
	Networks []NetworkFacts `json:"networks"`
	// Bridges are the host's bridges, the sources of NICs of type "bridge"; empty when the hypervisor is
	// remote (they cannot be seen from here).
	Bridges []string `json:"bridges"`
	// Memory is the host's memory in bytes.
	Memory int64 `json:"memory"`
	// CPUs is the number of the host's logical CPUs.
	CPUs int `json:"cpus"`
}

// CPUModeFacts says whether VMs may use one CPU mode.
type CPUModeFacts struct {
	// Mode is "host-passthrough", "host-model" or "custom".
	Mode string `json:"mode"`
	// Supported reports whether the hypervisor accepts the mode.
	Supported bool `json:"supported"`
	// Models are the CPU models usable on this host, for Mode "custom" only.
	Models []string `json:"models,omitempty"`
}

// NetworkFacts describes one virtual network of the hypervisor.
type NetworkFacts struct {
	// Name is the network's name, the Source of a NIC of type "network".
	Name string `json:"name"`
	// Active reports whether the network is running (a VM using an inactive network does not start).
	Active bool `json:"active"`
	// Bridge is the host bridge the network uses, if any.
	Bridge string `json:"bridge,omitempty"`
}

// HostInspector is implemented by hypervisors that can report their host's facts.
type HostInspector interface {
	// HostFacts reports what the host offers to VMs.
	HostFacts(ctx context.Context) (HostFacts, error)
}

// NetworkLister is implemented by hypervisors that report what NICs can be connected to in one cheap call,
// without the rest of HostFacts (the VM service asks at every create and edit with NICs).
type NetworkLister interface {
	// Networks reports the hypervisor's networks and the host's bridges; bridges is nil when the
	// hypervisor cannot see them (a remote daemon).
	Networks(ctx context.Context) (networks []NetworkFacts, bridges []string, err error)
}
