package libvirt_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/libvirt"
	"github.com/openvair/openvair/internal/testenv"
	"github.com/openvair/openvair/internal/testenv/libvirtd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHostFactsQEMUSession reads the facts of a session daemon with real QEMU (TCG: /dev/kvm is not usable
// by the daemon's unprivileged user, so the default domain type is qemu).
func TestHostFactsQEMUSession(t *testing.T) {
	e := startQEMU(t)
	drv := openDriver(t, e.d, golibvirt.QEMUSession, func(o *libvirt.Options) { o.DomainType = "qemu" })
	f, err := drv.HostFacts(ctxT(t, 2*time.Minute))
	require.NoError(t, err)

	assert.NotEmpty(t, f.Hostname)
	assert.Equal(t, "x86_64", f.Arch)
	assert.True(t, strings.HasPrefix(f.LibvirtVersion, "9."), "libvirt version %q", f.LibvirtVersion)
	assert.True(t, strings.HasPrefix(f.HypervisorVersion, "QEMU "), "hypervisor version %q", f.HypervisorVersion)
	assert.Contains(t, f.DomainTypes, "qemu")
	assert.Equal(t, "qemu", f.DefaultDomainType, "the configured domain type")
	assert.Subset(t, f.MachineTypes, []string{"pc", "q35"}, "aliases")
	assert.True(t, slices.ContainsFunc(f.MachineTypes, func(m string) bool { return strings.HasPrefix(m, "pc-i440fx-") }),
		"canonical names: %v", f.MachineTypes)
	assert.Contains(t, f.Firmware, "bios")
	assert.Equal(t, slices.Contains(f.Firmware, "uefi"), drv.Info().Capabilities.UEFI,
		"Info's uefi is what the connected daemon's domain capabilities say, as HostFacts reports it")
	assert.Positive(t, f.Memory)
	assert.Positive(t, f.CPUs)

	modes := map[string]driver.CPUModeFacts{}
	for _, m := range f.CPUModes {
		modes[m.Mode] = m
	}
	require.Len(t, modes, 3, "one entry per mode a CPUSpec may ask for: %+v", f.CPUModes)
	custom := modes["custom"]
	assert.True(t, custom.Supported)
	assert.Contains(t, custom.Models, "qemu64")
	assert.True(t, slices.IsSorted(custom.Models))
	assert.False(t, modes["host-passthrough"].Supported, "TCG cannot pass the host CPU through")
	assert.Empty(t, modes["host-model"].Models, "models are listed for custom only")

	// The daemon is local: the bridges are the host's own.
	want := []string{}
	dirs, _ := filepath.Glob("/sys/class/net/*/bridge")
	for _, d := range dirs {
		want = append(want, filepath.Base(filepath.Dir(d)))
	}
	assert.ElementsMatch(t, want, f.Bridges)
	assert.NotNil(t, f.Networks, "an empty list, not nil")
	nets, bridges, err := drv.Networks(ctxT(t, time.Minute))
	require.NoError(t, err)
	assert.Equal(t, f.Networks, nets, "Networks reports what HostFacts does, in one call")
	assert.ElementsMatch(t, f.Bridges, bridges)
	t.Logf("domain types %v, default %s, %d machine types, %d usable CPU models, firmware %v, %d networks, %s, %s",
		f.DomainTypes, f.DefaultDomainType, len(f.MachineTypes), len(custom.Models), f.Firmware, len(f.Networks),
		f.LibvirtVersion, f.HypervisorVersion)
}

// TestHostFactsDetectedDomainType reports, without a configured domain type, the one the driver detected.
func TestHostFactsDetectedDomainType(t *testing.T) {
	e := startQEMU(t)
	drv := openDriver(t, e.d, golibvirt.QEMUSession)
	f, err := drv.HostFacts(ctxT(t, 2*time.Minute))
	require.NoError(t, err)
	assert.Contains(t, f.DomainTypes, f.DefaultDomainType)
	assert.Equal(t, drv.Info().Capabilities.DomainType, f.DefaultDomainType)
}

// TestHostFactsTestDriver: the test driver has no domain capabilities; the rest is its fixed host.
func TestHostFactsTestDriver(t *testing.T) {
	d := libvirtd.Start(t)
	drv := openDriver(t, d, golibvirt.TestDefault)
	f, err := drv.HostFacts(ctxT(t, time.Minute))
	require.NoError(t, err)
	assert.Equal(t, []string{"test"}, f.DomainTypes)
	assert.Empty(t, f.CPUModes, "no domain capabilities: CPU modes unknown")
	assert.Equal(t, []string{"bios"}, f.Firmware)
	assert.Equal(t, 16, f.CPUs)
	assert.EqualValues(t, 3<<30, f.Memory)
	assert.True(t, strings.HasPrefix(f.HypervisorVersion, "TEST "), f.HypervisorVersion)
	assert.Equal(t, []driver.NetworkFacts{{Name: "default", Active: true, Bridge: "virbr0"}}, f.Networks)
}

// TestHostFactsBridges lists a host bridge for a local daemon, and no bridges through a dialer that may
// reach another host.
func TestHostFactsBridges(t *testing.T) {
	br := tempBridge(t)
	d := libvirtd.Start(t)
	local := openDriver(t, d, golibvirt.TestDefault)
	f, err := local.HostFacts(ctxT(t, time.Minute))
	require.NoError(t, err)
	assert.Contains(t, f.Bridges, br)
	assert.True(t, slices.IsSorted(f.Bridges))

	// Through a dialer that may reach another host, the local bridges mean nothing: none are reported.
	remote := openDriver(t, d, golibvirt.TestDefault, func(o *libvirt.Options) {
		o.Dialer = libvirt.SocketDialer(dialers.NewLocal(dialers.WithSocket(d.Socket())))
	})
	f, err = remote.HostFacts(ctxT(t, time.Minute))
	require.NoError(t, err)
	assert.Empty(t, f.Bridges)
	assert.Len(t, f.Networks, 1, "the rest is read as before")
}

// tempBridge creates a host bridge for the test and removes it afterwards.
func tempBridge(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	ip := testenv.LookPath(t, "ip")
	name := fmt.Sprintf("ovhf%d", os.Getpid()%1000000)
	if out, err := exec.Command(ip, "link", "add", name, "type", "bridge").CombinedOutput(); err != nil {
		testenv.Unavailable(t, "cannot create a bridge: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(ip, "link", "del", name).Run() })
	return name
}

// TestHostFactsUnreachable fails with driver.ErrUnavailable, without partial facts.
func TestHostFactsUnreachable(t *testing.T) {
	drv, err := libvirt.Open(libvirt.Options{URI: "qemu:///system", Socket: filepath.Join(t.TempDir(), "none")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = drv.Close() })
	f, err := drv.HostFacts(ctxT(t, 10*time.Second))
	require.ErrorIs(t, err, driver.ErrUnavailable)
	assert.Zero(t, f)
}
