package vm_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// plainHypervisor declares no UEFI, VNC only, and no NFS disks.
type plainHypervisor struct{ *fake.Hypervisor }

func (p plainHypervisor) Info() driver.HypervisorInfo {
	info := p.Hypervisor.Info()
	info.Capabilities.UEFI, info.Capabilities.NFSDisks, info.Capabilities.Graphics = false, false, []string{"vnc"}
	return info
}

// nfsLike is a storage backend whose disks are network disks on an NFS server.
type nfsLike struct{ *fake.Storage }

func (n nfsLike) DiskSource(pool driver.PoolSpec, kind driver.ObjectKind, id uuid.UUID) driver.DiskSource {
	return driver.DiskSource{Type: "network", Protocol: "nfs", Host: "198.51.100.7", Name: "/export/" + id.String()}
}

// TestHypervisorCapabilitiesAreConsulted: what the hypervisor does not declare is refused with
// ErrUnsupported naming the capability, before anything is created or changed.
func TestHypervisorCapabilitiesAreConsulted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	local, nfs := fake.NewStorage(1<<40), nfsLike{fake.NewStorage(1 << 40)}
	hv := plainHypervisor{fake.NewHypervisor()}
	sys, err := openvair.Open(ctx, openvair.Config{HypervisorInstance: hv,
		StorageBackends: map[storage.Type]driver.StorageBackend{"localfs": local, "nfs": nfs}})
	require.NoError(t, err)
	defer sys.Close()
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "pool", Type: "localfs", Config: localfs.Config{Path: "/srv/pool"}})
	require.NoError(t, err)
	newDisk := vm.DiskRequest{New: &volume.CreateRequest{Name: "root", StorageID: st.ID, Format: volume.FormatQCOW2, Size: 1 << 20}}

	for _, tc := range []struct {
		name, capability string
		req              vm.CreateRequest
	}{
		{"uefi", "capability uefi", func() vm.CreateRequest { r := sdktest.VMRequest("a", newDisk); r.Firmware = "uefi"; return r }()},
		{"spice", "capability graphics", func() vm.CreateRequest {
			r := sdktest.VMRequest("b", newDisk)
			r.Graphics = vm.Graphics{Type: "spice"}
			return r
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sys.VMs.Create(ctx, tc.req)
			require.ErrorIs(t, err, openvair.ErrUnsupported)
			assert.Contains(t, err.Error(), tc.capability)
			vols, err := sys.Volumes.List(ctx, volume.ListOptions{})
			require.NoError(t, err)
			assert.Empty(t, vols.Items, "no volume was created for a VM that cannot run")
		})
	}

	m, err := sys.VMs.Create(ctx, sdktest.VMRequest("web", newDisk))
	require.NoError(t, err)
	uefi := "uefi"
	_, err = sys.VMs.Edit(ctx, m.ID, vm.EditRequest{Firmware: &uefi})
	require.ErrorIs(t, err, openvair.ErrUnsupported)
	got, err := sys.VMs.Get(ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.StatusAvailable, got.Status)
	assert.Equal(t, "bios", got.Firmware)

	// A volume on NFS storage needs a hypervisor that opens NFS disks.
	nst, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "nas", Type: "nfs",
		Config: map[string]any{"server": "198.51.100.7", "export": "/export"}})
	require.NoError(t, err)
	nvol, err := sys.Volumes.Create(ctx, volume.CreateRequest{Name: "data", StorageID: nst.ID, Format: volume.FormatRaw, Size: 1 << 20})
	require.NoError(t, err)
	_, err = sys.VMs.Create(ctx, sdktest.VMRequest("nfs-vm", vm.DiskRequest{VolumeID: nvol.ID}))
	require.ErrorIs(t, err, openvair.ErrUnsupported)
	assert.Contains(t, err.Error(), "capability nfs_disks")
	vms, err := sys.VMs.List(ctx, vm.ListOptions{})
	require.NoError(t, err)
	require.Len(t, vms.Items, 1, "the refused VM was not kept")
	assert.Equal(t, "web", vms.Items[0].Name)
}
