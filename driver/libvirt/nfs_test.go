package libvirt_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/testenv/ganesha"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"libvirt.org/go/libvirtxml"
)

// TestQEMUDiskOnNFS boots a VM whose qcow2 disk lives on nfs-ganesha and is opened by QEMU's own NFS
// client (network disk, protocol nfs, identity of the QEMU process): no kernel mount involved.
func TestQEMUDiskOnNFS(t *testing.T) {
	if !ganesha.InNamespace(t) {
		return
	}
	srv := ganesha.Start(t)
	onEachDaemon(t, func(t *testing.T, e *qemuEnv) { testQEMUDiskOnNFS(t, srv, e) })
}

func testQEMUDiskOnNFS(t *testing.T, srv *ganesha.Server, e *qemuEnv) {
	drv := e.driver(t)
	require.True(t, drv.Info().Capabilities.NFSDisks, "qemu-block-extra (block-nfs.so) must be installed")
	ctx := ctxT(t, 2*time.Minute)

	id := uuid.New()
	pool := filepath.Join(srv.Dir(), "pool-"+id.String()[:8])
	require.NoError(t, os.Mkdir(pool, 0o755))
	file := filepath.Join(pool, "volume-"+id.String())
	out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", file, "64M").CombinedOutput()
	require.NoError(t, err, "qemu-img: %s", out)
	e.d.Chown(t, file) // libnfs sends QEMU's own uid: the image belongs to it
	name := filepath.Join(srv.Export(), filepath.Base(pool), filepath.Base(file))

	spec := driver.DomainSpec{
		ID: id, Name: "nfs-vm", MemoryBytes: 64 << 20,
		Disks: []driver.DiskSpec{{
			Device: "disk", Bus: "virtio", Format: driver.FormatQCOW2,
			Source: driver.DiskSource{Type: "network", Protocol: "nfs", Host: srv.Addr(), Name: name},
		}},
		Graphics: driver.GraphicsSpec{Type: "vnc", Listen: "127.0.0.1"},
	}
	require.NoError(t, drv.Define(ctx, spec))
	t.Cleanup(func() { _ = drv.Destroy(ctx, id); _ = drv.Undefine(ctx, id) })
	require.NoError(t, drv.Start(ctx, id), "libvirtd log: %s", e.d.Log())
	st, err := drv.State(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, driver.PowerRunning, st.Power)

	raw := e.d.Dial(t, e.uri)
	dom, err := raw.DomainLookupByUUID(golibvirt.UUID(id))
	require.NoError(t, err)
	live, err := raw.DomainGetXMLDesc(dom, 0)
	require.NoError(t, err)
	var ld libvirtxml.Domain
	require.NoError(t, ld.Unmarshal(live))
	require.Len(t, ld.Devices.Disks, 1)
	src := ld.Devices.Disks[0].Source.Network
	require.NotNil(t, src, "network disk")
	assert.Equal(t, "nfs", src.Protocol)
	assert.Equal(t, name, src.Name)
	require.NotNil(t, src.Identity)
	assert.Equal(t, "+"+strconv.Itoa(e.d.UID()), src.Identity.User)
}
