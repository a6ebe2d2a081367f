package libvirt_test

import (
	"context"
	"os"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/drivertest"
	"github.com/openvair/openvair/driver/libvirt"
	"github.com/openvair/openvair/internal/testenv/libvirtd"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	code := m.Run()
	libvirtd.CleanupCache()
	os.Exit(code)
}

// openDriver opens the driver on the daemon's socket and closes it when the test ends.
func openDriver(t testing.TB, d *libvirtd.Daemon, uri golibvirt.ConnectURI, tweak ...func(*libvirt.Options)) *libvirt.Driver {
	t.Helper()
	o := libvirt.Options{URI: string(uri), Socket: d.Socket()}
	for _, f := range tweak {
		f(&o)
	}
	drv, err := libvirt.Open(o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = drv.Close() })
	return drv
}

// rawHarness fills the harness fields that go around the driver through a raw go-libvirt connection.
func rawHarness(t *testing.T, d *libvirtd.Daemon, uri golibvirt.ConnectURI, h *drivertest.HypervisorHarness) {
	raw := d.Dial(t, uri)
	h.DefinitionXML = func(ctx context.Context, id uuid.UUID) (string, error) {
		dom, err := raw.DomainLookupByUUID(golibvirt.UUID(id))
		if err != nil {
			return "", err
		}
		return raw.DomainGetXMLDesc(dom, golibvirt.DomainXMLInactive)
	}
	h.DestroyBehind = func(ctx context.Context, id uuid.UUID) error {
		dom, err := raw.DomainLookupByUUID(golibvirt.UUID(id))
		if err != nil {
			return err
		}
		return raw.DomainDestroy(dom)
	}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// testSpec is a spec for the test driver: its disks need not exist.
func testSpec(_ *testing.T, id uuid.UUID) driver.DomainSpec {
	return driver.DomainSpec{
		ID: id, Name: "vm", MemoryBytes: 64 << 20,
		CPU: driver.CPUSpec{Sockets: 1, Cores: 1, Threads: 1},
		Disks: []driver.DiskSpec{{
			Device: "disk", Bus: "virtio", Format: driver.FormatQCOW2,
			Source: driver.DiskSource{Type: "file", Path: "/var/lib/openvair/volume-" + id.String()},
		}},
		Graphics: driver.GraphicsSpec{Type: "vnc", Listen: "127.0.0.1"},
	}
}

func TestConformanceTestDriver(t *testing.T) {
	d := libvirtd.Start(t)
	h := drivertest.HypervisorHarness{
		Hypervisor: openDriver(t, d, golibvirt.TestDefault),
		Spec:       testSpec,
		Open:       func(t testing.TB) driver.Hypervisor { return openDriver(t, d, golibvirt.TestDefault) },
		// The test driver "runs" a UEFI domain although Info reports no UEFI firmware on this host.
		FirmwareIgnored: true,
	}
	rawHarness(t, d, golibvirt.TestDefault, &h)
	drivertest.RunHypervisorSuite(t, h)
}
