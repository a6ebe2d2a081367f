package libvirt

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"libvirt.org/go/libvirtxml"
)

// DomainPrefix starts the libvirt name of every domain openvair manages; the rest is the VM id.
const DomainPrefix = "openvair-"

// DomainName is the libvirt domain name of the VM with the given id.
func DomainName(id uuid.UUID) string { return DomainPrefix + id.String() }

// Caps is what BuildDomainXML needs to know about the hypervisor host, beyond the spec.
type Caps struct {
	// DomainType is "kvm" when hardware virtualisation is available, "qemu" for TCG ("" means "qemu").
	DomainType string
	// Arch is the guest architecture ("" means x86_64).
	Arch string
	// Emulator is the QEMU binary; "" lets libvirt choose.
	Emulator string
	// QEMUUID and QEMUGID are the uid and gid QEMU runs as, when known (-1 or unset: unknown). They become
	// the <identity> of NFS disks, so that the server sees the owner of the image files.
	QEMUUID, QEMUGID *int
	// UEFI says whether the daemon's domain capabilities offer UEFI firmware; nil when the daemon cannot
	// tell (the test driver).
	UEFI *bool
	// NVRAMDir, when set, holds the UEFI variable stores (<uuid>_VARS.fd); otherwise libvirt chooses.
	NVRAMDir string
	// ConsoleLogDir, when set, keeps what the guest writes on its serial console in
	// ConsoleLogPath(ConsoleLogDir, id) (libvirt's <log> of the serial device, appended across boots).
	ConsoleLogDir string
}

// ConsoleLogPath is the file that keeps the serial console output of the VM id, in dir.
func ConsoleLogPath(dir string, id uuid.UUID) string {
	return filepath.Join(dir, DomainName(id)+"-serial0.log")
}

// BuildDomainXML turns a DomainSpec into a libvirt domain definition. It is a pure function: it validates
// the spec (errors wrap driver.ErrInvalid) and builds the document from libvirtxml structs only.
func BuildDomainXML(spec driver.DomainSpec, caps Caps) (*libvirtxml.Domain, error) {
	if err := validateSpec(spec); err != nil {
		return nil, err
	}
	domType := caps.DomainType
	if domType == "" {
		domType = "qemu"
	}
	arch := caps.Arch
	if arch == "" {
		arch = "x86_64"
	}
	dom := &libvirtxml.Domain{
		Type:        domType,
		Name:        DomainName(spec.ID),
		UUID:        spec.ID.String(),
		Title:       spec.Name,
		Description: spec.Description,
		Memory:      &libvirtxml.DomainMemory{Value: uint((spec.MemoryBytes + 1023) / 1024), Unit: "KiB"},
		VCPU:        &libvirtxml.DomainVCPU{Placement: "static", Value: uint(vcpus(spec.CPU))},
		CPU:         buildCPU(spec.CPU),
		OS:          buildOS(spec, arch, caps),
		Features: &libvirtxml.DomainFeatureList{
			ACPI: &libvirtxml.DomainFeature{},
			APIC: &libvirtxml.DomainFeatureAPIC{},
		},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		PM: &libvirtxml.DomainPM{
			SuspendToMem:  &libvirtxml.DomainPMPolicy{Enabled: "no"},
			SuspendToDisk: &libvirtxml.DomainPMPolicy{Enabled: "no"},
		},
		Devices: &libvirtxml.DomainDeviceList{Emulator: caps.Emulator},
	}
	dev := dom.Devices
	var err error
	if dev.Disks, err = buildDisks(spec.Disks, caps); err != nil {
		return nil, err
	}
	for _, d := range spec.Disks {
		if d.Bus == "scsi" {
			zero := uint(0)
			dev.Controllers = append(dev.Controllers, libvirtxml.DomainController{Type: "scsi", Index: &zero, Model: "virtio-scsi"})
			break
		}
	}
	for _, n := range spec.Interfaces {
		dev.Interfaces = append(dev.Interfaces, buildInterface(n))
	}
	if g := buildGraphics(spec.Graphics); g != nil {
		dev.Graphics = []libvirtxml.DomainGraphic{*g}
	}
	port := uint(0)
	dev.Serials = []libvirtxml.DomainSerial{{
		Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
		Target: &libvirtxml.DomainSerialTarget{Port: &port},
	}}
	if caps.ConsoleLogDir != "" {
		dev.Serials[0].Log = &libvirtxml.DomainChardevLog{File: ConsoleLogPath(caps.ConsoleLogDir, spec.ID), Append: "on"}
	}
	cport := uint(0)
	dev.Consoles = []libvirtxml.DomainConsole{{
		Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
		Target: &libvirtxml.DomainConsoleTarget{Type: "serial", Port: &cport},
	}}
	return dom, nil
}

func buildCPU(c driver.CPUSpec) *libvirtxml.DomainCPU {
	cpu := &libvirtxml.DomainCPU{
		Mode: c.Mode,
		Topology: &libvirtxml.DomainCPUTopology{
			Sockets: atLeast1(c.Sockets), Cores: atLeast1(c.Cores), Threads: atLeast1(c.Threads),
		},
	}
	if c.Mode == "custom" {
		cpu.Match = "exact"
		cpu.Model = &libvirtxml.DomainCPUModel{Value: c.Model, Fallback: "forbid"}
	}
	return cpu
}

func buildOS(spec driver.DomainSpec, arch string, caps Caps) *libvirtxml.DomainOS {
	os := &libvirtxml.DomainOS{
		Type: &libvirtxml.DomainOSType{Type: "hvm", Arch: arch, Machine: spec.MachineType},
	}
	if spec.Firmware == "uefi" {
		os.Firmware = "efi"
		os.NVRam = &libvirtxml.DomainNVRam{}
		if caps.NVRAMDir != "" {
			os.NVRam.NVRam = filepath.Join(caps.NVRAMDir, spec.ID.String()+"_VARS.fd")
		}
	}
	for _, b := range spec.Boot {
		os.BootDevices = append(os.BootDevices, libvirtxml.DomainBootDevice{Dev: b})
	}
	return os
}

// buildDisks names the targets (vdX for virtio, sdX for sata and scsi, in spec order).
func buildDisks(disks []driver.DiskSpec, caps Caps) ([]libvirtxml.DomainDisk, error) {
	var out []libvirtxml.DomainDisk
	next := map[string]int{}
	for _, d := range disks {
		device, bus, format := d.Device, d.Bus, d.Format
		if device == "" {
			device = "disk"
		}
		if device == "cdrom" {
			bus = "sata"
			if format == "" {
				format = driver.FormatRaw
			}
		}
		if bus == "" {
			bus = "virtio"
		}
		prefix := "sd"
		if bus == "virtio" {
			prefix = "vd"
		}
		dev, err := diskName(prefix, next[prefix])
		if err != nil {
			return nil, err
		}
		next[prefix]++
		disk := libvirtxml.DomainDisk{
			Device: device,
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: string(format)},
			Source: buildDiskSource(d.Source, caps),
			Target: &libvirtxml.DomainDiskTarget{Dev: dev, Bus: bus},
		}
		if d.ReadOnly || device == "cdrom" {
			disk.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
		}
		if d.ReadIOPS > 0 || d.WriteIOPS > 0 || d.ReadBytes > 0 || d.WriteBytes > 0 {
			disk.IOTune = &libvirtxml.DomainDiskIOTune{
				ReadIopsSec: uint64(d.ReadIOPS), WriteIopsSec: uint64(d.WriteIOPS),
				ReadBytesSec: uint64(d.ReadBytes), WriteBytesSec: uint64(d.WriteBytes),
			}
		}
		if d.BootOrder > 0 {
			disk.Boot = &libvirtxml.DomainDeviceBoot{Order: uint(d.BootOrder)}
		}
		out = append(out, disk)
	}
	return out, nil
}

func buildDiskSource(s driver.DiskSource, caps Caps) *libvirtxml.DomainDiskSource {
	if s.Type == "file" {
		return &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: s.Path}}
	}
	n := &libvirtxml.DomainDiskSourceNetwork{
		Protocol: s.Protocol,
		Name:     s.Name,
		Hosts:    []libvirtxml.DomainDiskSourceHost{{Name: s.Host}},
	}
	if caps.QEMUUID != nil && caps.QEMUGID != nil && *caps.QEMUUID >= 0 && *caps.QEMUGID >= 0 {
		n.Identity = &libvirtxml.DomainDiskSourceNetworkIdentity{
			User:  fmt.Sprintf("+%d", *caps.QEMUUID),
			Group: fmt.Sprintf("+%d", *caps.QEMUGID),
		}
	}
	return &libvirtxml.DomainDiskSource{Network: n}
}

// diskName returns the i-th disk name with the prefix, as libvirt counts: a..z, aa..az, ba...
func diskName(prefix string, i int) (string, error) {
	if i < 0 || i >= maxDisks {
		return "", fmt.Errorf("too many %s disks", prefix)
	}
	var b strings.Builder
	b.WriteString(prefix)
	if i >= 26 {
		b.WriteByte(byte('a' + i/26 - 1))
	}
	b.WriteByte(byte('a' + i%26))
	return b.String(), nil
}

func buildInterface(n driver.NICSpec) libvirtxml.DomainInterface {
	model := n.Model
	if model == "" {
		model = "virtio"
	}
	iface := libvirtxml.DomainInterface{Model: &libvirtxml.DomainInterfaceModel{Type: model}}
	if n.Type == "bridge" {
		iface.Source = &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: n.Source}}
	} else {
		iface.Source = &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: n.Source}}
	}
	if hw, err := net.ParseMAC(n.MAC); err == nil {
		iface.MAC = &libvirtxml.DomainInterfaceMAC{Address: hw.String()}
	}
	return iface
}

func buildGraphics(g driver.GraphicsSpec) *libvirtxml.DomainGraphic {
	var listeners []libvirtxml.DomainGraphicListener
	if g.Listen != "" {
		listeners = []libvirtxml.DomainGraphicListener{{Address: &libvirtxml.DomainGraphicListenerAddress{Address: g.Listen}}}
	}
	switch g.Type {
	case "vnc":
		return &libvirtxml.DomainGraphic{VNC: &libvirtxml.DomainGraphicVNC{
			AutoPort: "yes", Listen: g.Listen, Passwd: g.Password, Listeners: listeners,
		}}
	case "spice":
		return &libvirtxml.DomainGraphic{Spice: &libvirtxml.DomainGraphicSpice{
			AutoPort: "yes", Listen: g.Listen, Passwd: g.Password, Listeners: listeners,
		}}
	}
	return nil
}
