package repotest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// testLinkedVolumes: a volume's backing file (an image or a volume) round trips; the image and the volume
// it names list the linked volumes by name, in lists too; neither can be deleted while linked volumes use
// it; an update does not change the backing.
func testLinkedVolumes(t *testing.T, open Opener) {
	st, ctx := fresh(t, open)
	pool := NewStorage("pool")
	require.NoError(t, st.Storages().Create(ctx, pool))
	img := NewImage(pool.ID, "base")
	require.NoError(t, st.Images().Create(ctx, img))
	first := NewVolume(pool.ID, "first")
	first.Backing = &volume.Backing{Kind: driver.KindImage, ID: img.ID}
	require.NoError(t, st.Volumes().Create(ctx, first))
	second := NewVolume(pool.ID, "b-second")
	second.Backing = &volume.Backing{Kind: driver.KindVolume, ID: first.ID}
	require.NoError(t, st.Volumes().Create(ctx, second))
	third := NewVolume(pool.ID, "a-third")
	third.Backing = &volume.Backing{Kind: driver.KindVolume, ID: first.ID}
	require.NoError(t, st.Volumes().Create(ctx, third))

	got, err := st.Volumes().Get(ctx, first.ID)
	require.NoError(t, err)
	require.NotNil(t, got.Backing)
	assert.Equal(t, volume.Backing{Kind: driver.KindImage, ID: img.ID}, *got.Backing)
	assert.Equal(t, []volume.LinkedVolume{{VolumeID: third.ID, VolumeName: "a-third"}, {VolumeID: second.ID, VolumeName: "b-second"}},
		got.Linked, "by name")
	gotImg, err := st.Images().Get(ctx, img.ID)
	require.NoError(t, err)
	require.Len(t, gotImg.Linked, 1)
	assert.Equal(t, first.ID, gotImg.Linked[0].VolumeID)

	page, err := st.Volumes().List(ctx, volume.ListOptions{})
	require.NoError(t, err)
	for _, v := range page.Items {
		switch v.ID {
		case first.ID:
			assert.Len(t, v.Linked, 2, "lists fill linked volumes too")
		case second.ID:
			assert.Equal(t, first.ID, v.Backing.ID)
			assert.Empty(t, v.Linked)
		}
	}

	// An update keeps the backing, whatever the value passed in says.
	got.Description = "edited"
	got.Backing = nil
	require.NoError(t, st.Volumes().Update(ctx, got))
	again, err := st.Volumes().Get(ctx, first.ID)
	require.NoError(t, err)
	require.NotNil(t, again.Backing, "the backing is set once, at create")

	assert.ErrorIs(t, st.Images().Delete(ctx, img.ID), errkind.InUse)
	assert.ErrorIs(t, st.Volumes().Delete(ctx, first.ID), errkind.InUse)
	require.NoError(t, st.Volumes().Delete(ctx, second.ID))
	require.NoError(t, st.Volumes().Delete(ctx, third.ID))
	require.NoError(t, st.Volumes().Delete(ctx, first.ID))
	require.NoError(t, st.Images().Delete(ctx, img.ID))
}

// testCloudInit: a VM's cloud-init configuration round trips whole (user data included: only its JSON
// for events and readers is redacted), is replaced by an update, and is absent for VMs without one.
func testCloudInit(t *testing.T, open Opener) {
	st, ctx := fresh(t, open)
	plain := NewVM("plain", nil, nil)
	require.NoError(t, st.VMs().Create(ctx, plain))
	m := NewVM("seeded", nil, nil)
	m.CloudInit = &vm.CloudInit{Config: vm.CloudInitConfig{UserData: "#cloud-config\npassword: secret\n", Hostname: "web-1",
		SSHAuthorizedKeys: []string{"ssh-ed25519 AAAA test"}}, SeedStorageID: newID(), SeedID: newID()}
	require.NoError(t, st.VMs().Create(ctx, m))
	got, err := st.VMs().Get(ctx, m.ID)
	require.NoError(t, err)
	require.NotNil(t, got.CloudInit)
	assert.Equal(t, *m.CloudInit, *got.CloudInit)
	p, err := st.VMs().Get(ctx, plain.ID)
	require.NoError(t, err)
	assert.Nil(t, p.CloudInit)

	got.CloudInit.UserData, got.CloudInit.SeedID = "#!/bin/sh\necho hi\n", newID()
	require.NoError(t, st.VMs().Update(ctx, got))
	again, err := st.VMs().Get(ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, *got.CloudInit, *again.CloudInit)
}
