package libvirt

import (
	"fmt"
	"net"
	"path"
	"strings"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
)

// Limits the driver enforces on a DomainSpec before any XML is built.
const (
	minMemoryBytes = 1 << 20 // 1 MiB
	maxVCPUs       = 4096
	maxDisks       = 26 * 27 // sda..szz
)

var (
	cpuModes    = map[string]bool{"": true, "host-passthrough": true, "host-model": true, "custom": true}
	diskBuses   = map[string]bool{"": true, "virtio": true, "sata": true, "scsi": true}
	nicModels   = map[string]bool{"": true, "virtio": true, "e1000": true, "rtl8139": true}
	bootDevices = map[string]bool{"hd": true, "cdrom": true, "network": true}
)

// validateSpec checks every field of spec and reports all problems at once as a *errkind.ValidationError
// (errors.Is(err, driver.ErrInvalid)).
func validateSpec(spec driver.DomainSpec) error {
	v := &errkind.Validator{Entity: "domain"}
	v.Check(spec.ID != uuid.Nil, "id", "must be set")
	v.Check(!strings.ContainsAny(spec.Name, "\r\n"), "name", "must not contain line breaks")
	v.Check(spec.MemoryBytes >= minMemoryBytes, "memory", "must be at least %d bytes, got %d", minMemoryBytes, spec.MemoryBytes)

	c := spec.CPU
	v.Check(c.Sockets >= 0 && c.Cores >= 0 && c.Threads >= 0, "cpu", "sockets, cores and threads must not be negative")
	if c.Sockets >= 0 && c.Cores >= 0 && c.Threads >= 0 {
		small := c.Sockets <= maxVCPUs && c.Cores <= maxVCPUs && c.Threads <= maxVCPUs
		v.Check(small && vcpus(c) <= maxVCPUs, "cpu", "at most %d vCPUs", maxVCPUs)
	}
	v.Check(cpuModes[c.Mode], "cpu.mode", "unknown mode %q", c.Mode)
	v.Check(c.Mode != "custom" || c.Model != "", "cpu.model", "required for mode custom")
	v.Check(c.Mode == "custom" || c.Model == "", "cpu.model", "only allowed with mode custom")
	v.Check(validToken(c.Model), "cpu.model", "invalid model name %q", c.Model)

	v.Check(spec.Firmware == "" || spec.Firmware == "bios" || spec.Firmware == "uefi", "firmware", "must be bios or uefi, got %q", spec.Firmware)
	v.Check(validToken(spec.MachineType), "machine_type", "invalid machine type %q", spec.MachineType)

	seenBoot := map[string]bool{}
	for i, b := range spec.Boot {
		v.Check(bootDevices[b], fmt.Sprintf("boot[%d]", i), "unknown boot device %q", b)
		v.Check(!seenBoot[b], fmt.Sprintf("boot[%d]", i), "duplicate boot device %q", b)
		seenBoot[b] = true
	}

	v.Check(len(spec.Disks) <= maxDisks, "disks", "at most %d disks", maxDisks)
	orders := map[int]bool{}
	for i, d := range spec.Disks {
		validateDisk(v, fmt.Sprintf("disks[%d]", i), d)
		if d.BootOrder != 0 {
			v.Check(d.BootOrder > 0, fmt.Sprintf("disks[%d].boot_order", i), "must be positive")
			v.Check(!orders[d.BootOrder], fmt.Sprintf("disks[%d].boot_order", i), "duplicate boot order %d", d.BootOrder)
			orders[d.BootOrder] = true
		}
	}
	v.Check(len(orders) == 0 || len(spec.Boot) == 0, "boot", "per-disk boot order and a boot device list cannot be combined")

	macs := map[string]bool{}
	for i, n := range spec.Interfaces {
		f := fmt.Sprintf("interfaces[%d]", i)
		v.Check(n.Type == "bridge" || n.Type == "network", f+".type", "must be bridge or network, got %q", n.Type)
		v.Check(n.Source != "" && validToken(n.Source), f+".source", "invalid source %q", n.Source)
		v.Check(nicModels[n.Model], f+".model", "unknown model %q", n.Model)
		if n.MAC != "" {
			hw, err := net.ParseMAC(n.MAC)
			ok := err == nil && len(hw) == 6 && hw[0]&1 == 0
			v.Check(ok, f+".mac", "invalid unicast MAC address %q", n.MAC)
			if ok {
				v.Check(!macs[hw.String()], f+".mac", "duplicate MAC address %q", n.MAC)
				macs[hw.String()] = true
			}
		}
	}

	g := spec.Graphics
	v.Check(g.Type == "" || g.Type == "vnc" || g.Type == "spice", "graphics.type", "must be vnc, spice or empty, got %q", g.Type)
	v.Check(g.Listen == "" || net.ParseIP(g.Listen) != nil, "graphics.listen", "must be an IP address, got %q", g.Listen)
	v.Check(g.Type != "" || (g.Listen == "" && g.Password == ""), "graphics", "listen and password need a graphics type")
	v.Check(!strings.ContainsAny(g.Password, "\x00\r\n"), "graphics.password", "must not contain control characters")
	return v.Err()
}

func validateDisk(v *errkind.Validator, f string, d driver.DiskSpec) {
	v.Check(d.Device == "" || d.Device == "disk" || d.Device == "cdrom", f+".device", "must be disk or cdrom, got %q", d.Device)
	v.Check(diskBuses[d.Bus], f+".bus", "unknown bus %q", d.Bus)
	if d.Device == "cdrom" {
		v.Check(d.Bus == "" || d.Bus == "sata", f+".bus", "a cdrom is attached to sata, got %q", d.Bus)
		v.Check(d.Format == "" || d.Format == driver.FormatRaw || d.Format == driver.FormatQCOW2, f+".format", "unknown format %q", d.Format)
	} else {
		v.Check(d.Format == driver.FormatRaw || d.Format == driver.FormatQCOW2, f+".format", "must be qcow2 or raw, got %q", d.Format)
	}
	v.Check(d.ReadIOPS >= 0 && d.WriteIOPS >= 0 && d.ReadBytes >= 0 && d.WriteBytes >= 0, f+".iotune", "limits must not be negative")

	s := d.Source
	switch s.Type {
	case "file":
		v.Check(s.Path != "" && path.IsAbs(s.Path) && path.Clean(s.Path) == s.Path, f+".source.path", "must be a clean absolute path, got %q", s.Path)
		v.Check(s.Protocol == "" && s.Host == "" && s.Name == "", f+".source", "file source takes only a path")
	case "network":
		v.Check(s.Protocol == "nfs", f+".source.protocol", "only nfs is supported, got %q", s.Protocol)
		v.Check(validHost(s.Host), f+".source.host", "invalid host %q", s.Host)
		// QEMU mounts everything before the last "/" as the export: the file must sit below it.
		ok := strings.HasPrefix(s.Name, "/") && path.Clean(s.Name) == s.Name && strings.LastIndex(s.Name, "/") > 0
		v.Check(ok, f+".source.name", "must be a clean absolute path /export/.../file, got %q", s.Name)
		v.Check(s.Path == "", f+".source.path", "network source takes no path")
	default:
		v.Add(f+".source.type", "must be file or network, got %q", s.Type)
	}
	v.Check(!strings.ContainsAny(s.Path+s.Name, "\x00\r\n"), f+".source", "must not contain control characters")
}

// validToken accepts the characters libvirt allows in model, machine, bridge and network names.
func validToken(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("-_.+:", r):
		default:
			return false
		}
	}
	return len(s) <= 255
}

// validHost accepts an IP address or a DNS name.
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// vcpus is the vCPU count of a topology; zero fields count as 1.
func vcpus(c driver.CPUSpec) int {
	return atLeast1(c.Sockets) * atLeast1(c.Cores) * atLeast1(c.Threads)
}

func atLeast1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}
