package volume_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/volume"
)

// writeAt writes p at off into a raw volume's file, as a guest would.
func writeAt(t *testing.T, path string, off int64, p []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(p, off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// A snapshot keeps the volume's content: writes after it do not reach it, reverting restores it (and keeps
// the snapshot), a volume made from it holds it; a volume with snapshots is deleted only with them.
func TestSnapshots(t *testing.T) {
	e := newSourceEnv(t)
	content := diskContent()
	img := e.upload(t, "disk.raw", content)
	vol, err := e.sys.Volumes.Create(e.ctx, volume.CreateRequest{Name: "root", Source: &volume.Source{ImageID: img.ID}})
	require.NoError(t, err)
	file := e.path(driver.KindVolume, vol.ID)
	writeAt(t, file, 4096, []byte("marker before the snapshot"))

	snap, err := e.sys.Volumes.CreateSnapshot(e.ctx, vol.ID, volume.SnapshotRequest{Name: "before-upgrade"})
	require.NoError(t, err)
	assert.Equal(t, volume.StatusAvailable, snap.Status)
	assert.Equal(t, vol.ID, snap.VolumeID)
	assert.EqualValues(t, len(content), snap.Size)
	_, err = e.sys.Volumes.CreateSnapshot(e.ctx, vol.ID, volume.SnapshotRequest{Name: "before-upgrade"})
	require.ErrorIs(t, err, errkind.AlreadyExists, "names are unique per volume")

	writeAt(t, file, 4096, []byte("marker AFTER the snapshot!"))
	snapFile := e.path(driver.KindVolume, snap.ID)
	got, err := os.ReadFile(snapFile)
	require.NoError(t, err)
	assert.Equal(t, "marker before the snapshot", string(got[4096:4096+26]), "the snapshot is independent of later writes")

	list, err := e.sys.Volumes.Snapshots(e.ctx, vol.ID)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, "before-upgrade", list[0].Name)

	// A volume from the snapshot holds the content at the snapshot.
	copyVol, err := e.sys.Volumes.Create(e.ctx, volume.CreateRequest{Name: "from-snapshot", Format: volume.FormatQCOW2,
		Source: &volume.Source{SnapshotID: snap.ID}})
	require.NoError(t, err)
	data := guestData(t, e.path(driver.KindVolume, copyVol.ID), volume.FormatQCOW2)
	assert.Equal(t, "marker before the snapshot", string(data[4096:4096+26]))

	reverted, err := e.sys.Volumes.RevertSnapshot(e.ctx, snap.ID)
	require.NoError(t, err)
	assert.Equal(t, volume.StatusAvailable, reverted.Status)
	got, err = os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, "marker before the snapshot", string(got[4096:4096+26]), "reverting restores the marker written before the snapshot")
	assert.True(t, bytes.Equal(content[8192:], got[8192:]))
	_, err = os.Stat(snapFile)
	require.NoError(t, err, "the snapshot stays after a revert")

	err = e.sys.Volumes.Delete(e.ctx, vol.ID)
	require.ErrorIs(t, err, errkind.InUse, "a volume with snapshots")
	var ke *errkind.Error
	require.ErrorAs(t, err, &ke)
	require.Len(t, ke.Refs, 1)
	assert.Equal(t, "snapshot", ke.Refs[0].Kind)

	require.NoError(t, e.sys.Volumes.DeleteWithSnapshots(e.ctx, vol.ID))
	_, err = os.Stat(snapFile)
	assert.ErrorIs(t, err, os.ErrNotExist, "its snapshots go with it")
	_, err = e.sys.Volumes.Snapshot(e.ctx, snap.ID)
	assert.ErrorIs(t, err, errkind.NotFound)

	// Delete of a single snapshot.
	other, err := e.sys.Volumes.Create(e.ctx, volume.CreateRequest{Name: "other", Source: &volume.Source{ImageID: img.ID}})
	require.NoError(t, err)
	s2, err := e.sys.Volumes.CreateSnapshot(e.ctx, other.ID, volume.SnapshotRequest{Name: "s"})
	require.NoError(t, err)
	require.NoError(t, e.sys.Volumes.DeleteSnapshot(e.ctx, s2.ID))
	require.NoError(t, e.sys.Volumes.Delete(e.ctx, other.ID))
}
