package libvirt

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"libvirt.org/go/libvirtxml"
)

var _ driver.HostInspector = (*Driver)(nil)

// sysClassNet is where the kernel lists network interfaces; a bridge has a "bridge" directory.
const sysClassNet = "/sys/class/net"

// HostFacts reports what the host offers to VMs, read from libvirtd in one bounded call: the host and guest
// capabilities, the domain capabilities of the default domain type (CPU modes and models, UEFI), versions,
// node info and networks. A connection driver that cannot report domain capabilities (the test driver)
// leaves CPUModes empty and Firmware "bios"; a daemon without a network driver reports no networks. Host
// bridges are read from /sys only when libvirtd is local.
func (d *Driver) HostFacts(ctx context.Context) (driver.HostFacts, error) {
	var f driver.HostFacts
	err := d.c.call(ctx, "", "host facts", func(s *session) error {
		var err error
		f, err = d.readHostFacts(s)
		return err
	})
	if err != nil {
		return driver.HostFacts{}, err
	}
	if d.local() {
		f.Bridges = hostBridges()
	}
	return f, nil
}

// Networks reports the daemon's networks and, when it is local, the host's bridges (driver.NetworkLister):
// one call, not the whole of HostFacts.
func (d *Driver) Networks(ctx context.Context) ([]driver.NetworkFacts, []string, error) {
	var nets []driver.NetworkFacts
	err := d.c.call(ctx, "", "networks", func(s *session) error {
		var err error
		nets, err = networkFacts(s.l)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	var bridges []string
	if d.local() {
		bridges = hostBridges()
	}
	return nets, bridges, nil
}

// readHostFacts runs the libvirt calls of HostFacts on one session. Errors are wrapped with the step, so
// that the call wrapper still sees (and classifies) the libvirt or transport error underneath.
func (d *Driver) readHostFacts(s *session) (driver.HostFacts, error) {
	f := driver.HostFacts{DefaultDomainType: d.opts.DomainType, Firmware: []string{"bios"}}
	if f.DefaultDomainType == "" {
		f.DefaultDomainType = s.caps.DomainType
	}
	doc, err := s.l.ConnectGetCapabilities()
	if err != nil {
		return f, fmt.Errorf("capabilities: %w", err)
	}
	var caps libvirtxml.Caps
	if err := caps.Unmarshal(doc); err != nil {
		return f, errkind.Wrap(driver.ErrUnavailable, err, entity, "", "host facts: parse capabilities XML")
	}
	if caps.Host.CPU != nil {
		f.Arch = caps.Host.CPU.Arch
	}
	f.DomainTypes, f.MachineTypes = guestFacts(caps, f.Arch, f.DefaultDomainType)

	arch := golibvirt.OptString{}
	if f.Arch != "" {
		arch = golibvirt.OptString{f.Arch}
	}
	doc, err = s.l.ConnectGetDomainCapabilities(nil, arch, nil, golibvirt.OptString{f.DefaultDomainType}, 0)
	switch {
	case isNoSupport(err): // the connection driver has no domain capabilities: CPU modes unknown, BIOS only
	case err != nil:
		return f, fmt.Errorf("domain capabilities of %s: %w", f.DefaultDomainType, err)
	default:
		var dc libvirtxml.DomainCaps
		if err := dc.Unmarshal(doc); err != nil {
			return f, errkind.Wrap(driver.ErrUnavailable, err, entity, "", "host facts: parse domain capabilities XML")
		}
		f.CPUModes = cpuModeFacts(dc)
		if hasEFILoader(dc) {
			f.Firmware = append(f.Firmware, "uefi")
		}
	}

	if f.LibvirtVersion, f.HypervisorVersion, err = versions(s.l); err != nil {
		return f, err
	}
	if f.Hostname, err = s.l.ConnectGetHostname(); err != nil {
		return f, fmt.Errorf("hostname: %w", err)
	}
	_, memKiB, cpus, _, _, _, _, _, err := s.l.NodeGetInfo()
	if err != nil {
		return f, fmt.Errorf("node info: %w", err)
	}
	f.Memory, f.CPUs = int64(memKiB)*1024, int(cpus)
	if f.Networks, err = networkFacts(s.l); err != nil {
		return f, err
	}
	return f, nil
}

// guestFacts reads, from the guests of the host's architecture that run full virtualization, the domain
// types offered and the machine types (canonical names and aliases) of domain type domType. A domain type
// with its own machine list uses it; else the architecture's list applies.
func guestFacts(caps libvirtxml.Caps, arch, domType string) (domainTypes, machines []string) {
	for _, g := range caps.Guests {
		if g.OSType != "hvm" || (arch != "" && g.Arch.Name != arch) {
			continue
		}
		for _, dom := range g.Arch.Domains {
			domainTypes = append(domainTypes, dom.Type)
			if dom.Type != domType {
				continue
			}
			list := dom.Machines
			if len(list) == 0 {
				list = g.Arch.Machines
			}
			for _, m := range list {
				machines = append(machines, m.Name)
				if m.Canonical != "" {
					machines = append(machines, m.Canonical)
				}
			}
		}
	}
	return sortedSet(domainTypes), sortedSet(machines)
}

// cpuModeFacts reports the CPU modes a DomainSpec may ask for (those validateSpec accepts, sorted by
// name), with the usable models of mode custom.
func cpuModeFacts(dc libvirtxml.DomainCaps) []driver.CPUModeFacts {
	out := make([]driver.CPUModeFacts, 0, len(cpuModes))
	for _, name := range slices.Sorted(maps.Keys(cpuModes)) {
		if name == "" { // the hypervisor's default, not a mode of its own
			continue
		}
		f := driver.CPUModeFacts{Mode: name}
		if dc.CPU != nil {
			for _, m := range dc.CPU.Modes {
				if m.Name != name {
					continue
				}
				f.Supported = m.Supported == "yes"
				if name != "custom" {
					continue
				}
				for _, model := range m.Models {
					if model.Usable == "yes" {
						f.Models = append(f.Models, model.Name)
					}
				}
				f.Models = sortedSet(f.Models)
			}
		}
		out = append(out, f)
	}
	return out
}

// hasEFILoader reports whether the domain capabilities offer UEFI: the firmware enum lists "efi" (QEMU
// firmware descriptors installed) or the loader lists firmware images (OVMF installed).
func hasEFILoader(dc libvirtxml.DomainCaps) bool {
	if dc.OS == nil || dc.OS.Supported == "no" {
		return false
	}
	for _, e := range dc.OS.Enums {
		if e.Name == "firmware" && slices.Contains(e.Values, "efi") {
			return true
		}
	}
	return dc.OS.Loader != nil && dc.OS.Loader.Supported == "yes" && len(dc.OS.Loader.Values) > 0
}

// versions reads libvirt's version and the hypervisor's name and version ("QEMU 7.2.0").
func versions(l *golibvirt.Libvirt) (lib, hv string, err error) {
	lv, err := l.ConnectGetLibVersion()
	if err != nil {
		return "", "", fmt.Errorf("libvirt version: %w", err)
	}
	typ, err := l.ConnectGetType()
	if err != nil {
		return "", "", fmt.Errorf("hypervisor type: %w", err)
	}
	hvv, err := l.ConnectGetVersion()
	if err != nil {
		return "", "", fmt.Errorf("hypervisor version: %w", err)
	}
	return versionString(lv), typ + " " + versionString(hvv), nil
}

// versionString formats libvirt's encoding of a version, major*1,000,000 + minor*1,000 + release.
func versionString(v uint64) string {
	return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000)
}

// networkFacts lists libvirt's networks, sorted by name. A daemon without a network driver (only
// libvirt-daemon-driver-qemu installed) answers VIR_ERR_NO_SUPPORT: no networks. A network removed while
// it is read is left out.
func networkFacts(l *golibvirt.Libvirt) ([]driver.NetworkFacts, error) {
	nets, _, err := l.ConnectListAllNetworks(1, 0)
	if isNoSupport(err) {
		return []driver.NetworkFacts{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	active, _, err := l.ConnectListAllNetworks(1, golibvirt.ConnectListNetworksActive)
	if err != nil {
		return nil, fmt.Errorf("list active networks: %w", err)
	}
	out := make([]driver.NetworkFacts, 0, len(nets))
	for _, n := range nets {
		doc, err := l.NetworkGetXMLDesc(n, 0)
		if libvirtCode(err) == golibvirt.ErrNoNetwork {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("network %s: %w", n.Name, err)
		}
		f := driver.NetworkFacts{Name: n.Name, Active: slices.ContainsFunc(active, func(a golibvirt.Network) bool { return a.UUID == n.UUID })}
		var x libvirtxml.Network
		if err := x.Unmarshal(doc); err == nil && x.Bridge != nil {
			f.Bridge = x.Bridge.Name
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b driver.NetworkFacts) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// local reports whether libvirtd runs on this host: a unix socket and a URI without a host name.
func (d *Driver) local() bool {
	if _, ok := d.opts.Dialer.(UnixDialer); !ok {
		return false
	}
	u, err := url.Parse(d.opts.URI)
	return err == nil && u.Host == ""
}

// hostBridges lists the host's bridges (interfaces with a bridge directory in sysfs), sorted.
func hostBridges() []string {
	dirs, _ := filepath.Glob(filepath.Join(sysClassNet, "*", "bridge"))
	out := []string{}
	for _, p := range dirs {
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			out = append(out, filepath.Base(filepath.Dir(p)))
		}
	}
	return sortedSet(out)
}

// isNoSupport reports whether libvirtd answered that the connection driver lacks the function.
func isNoSupport(err error) bool { return libvirtCode(err) == golibvirt.ErrNoSupport }

// libvirtCode is the error number of a libvirt error reply, or -1.
func libvirtCode(err error) golibvirt.ErrorNumber {
	var lerr golibvirt.Error
	if !asLibvirtError(err, &lerr) {
		return -1
	}
	return golibvirt.ErrorNumber(lerr.Code)
}

// sortedSet sorts v and removes duplicates; nil becomes an empty slice (a JSON array, not null).
func sortedSet(v []string) []string {
	if v == nil {
		return []string{}
	}
	slices.Sort(v)
	return slices.Compact(v)
}
