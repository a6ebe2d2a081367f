package volume_test

import (
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	openvair "github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/repo/memory"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/volume"
)

// TestRecoverInterruptedDelete: a delete interrupted after the file was removed is completed (the row is
// removed, not left in error "file missing"); one interrupted before leaves the volume in error with its
// file.
func TestRecoverInterruptedDelete(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	gone := e.Volume(t, st.ID, "file-gone", 1<<20)
	kept := e.Volume(t, st.ID, "file-kept", 1<<20)
	for _, id := range []uuid.UUID{gone.ID, kept.ID} {
		cur, err := e.Sys.Store.Volumes().Get(e.Ctx, id)
		require.NoError(t, err)
		cur.Status = volume.StatusDeleting // what a crash in the middle of a delete leaves
		require.NoError(t, e.Sys.Store.Volumes().Update(e.Ctx, cur))
	}
	e.FS.RemoveObject(st.ID, gone.ID)

	require.NoError(t, e.Sys.Volumes.Recover(e.Ctx))
	_, err := e.Sys.Volumes.Get(e.Ctx, gone.ID)
	assert.ErrorIs(t, err, errkind.NotFound, "the delete is completed")
	got, err := e.Sys.Volumes.Get(e.Ctx, kept.ID)
	require.NoError(t, err)
	assert.Equal(t, volume.StatusError, got.Status)
	assert.Contains(t, got.StatusReason, "interrupted while deleting")
	assert.NotNil(t, e.FS.Object(st.ID, kept.ID))
}

// TestSizeIsWhatTheFormatStores: on the LocalFS driver, a volume asked for 1000 bytes is 1024 bytes (a
// multiple of 512) and reports so at once, for create and extend, and a refresh does not change it.
func TestSizeIsWhatTheFormatStores(t *testing.T) {
	ctx := t.Context()
	store := memory.New()
	t.Cleanup(func() { _ = store.Close() })
	dir := t.TempDir()
	sys, err := openvair.Open(ctx, openvair.Config{Store: store, DataDir: filepath.Join(dir, "data")})
	require.NoError(t, err)
	defer sys.Close()
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "pool", Type: "localfs",
		Config: localfs.Config{Path: filepath.Join(dir, "pool")}})
	require.NoError(t, err)
	for _, f := range []volume.Format{volume.FormatQCOW2, volume.FormatRaw} {
		t.Run(string(f), func(t *testing.T) {
			v, err := sys.Volumes.Create(ctx, volume.CreateRequest{Name: "v-" + string(f), StorageID: st.ID, Format: f, Size: 1000})
			require.NoError(t, err)
			assert.EqualValues(t, 1024, v.Size, "create reports the virtual size the format stores")
			got, err := sys.Volumes.Refresh(ctx, v.ID)
			require.NoError(t, err)
			assert.EqualValues(t, 1024, got.Size, "and the monitor agrees")

			v, err = sys.Volumes.Extend(ctx, v.ID, 2000)
			require.NoError(t, err)
			assert.EqualValues(t, 2048, v.Size, "extend too")
			got, err = sys.Volumes.Refresh(ctx, v.ID)
			require.NoError(t, err)
			assert.EqualValues(t, 2048, got.Size)
		})
	}
}

// TestSpaceMessages: a volume that does not fit says how many bytes it needs and how many the storage
// has free.
func TestSpaceMessages(t *testing.T) {
	ctx := t.Context()
	store := memory.New()
	t.Cleanup(func() { _ = store.Close() })
	sys, err := openvair.Open(ctx, openvair.Config{Store: store,
		StorageBackends: map[storage.Type]driver.StorageBackend{"localfs": fake.NewStorage(4096)}})
	require.NoError(t, err)
	defer sys.Close()
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "small", Type: "localfs", Config: localfs.Config{Path: "/srv/small"}})
	require.NoError(t, err)

	_, err = sys.Volumes.Create(ctx, volume.CreateRequest{Name: "big", StorageID: st.ID, Format: volume.FormatRaw, Size: 8192})
	require.ErrorIs(t, err, errkind.TooLarge)
	assert.Contains(t, err.Error(), "needs 8192 bytes")
	assert.Contains(t, err.Error(), `storage "small" has 4096 bytes free`)

	v, err := sys.Volumes.Create(ctx, volume.CreateRequest{Name: "v", StorageID: st.ID, Format: volume.FormatRaw, Size: 1024})
	require.NoError(t, err)
	_, err = sys.Volumes.Extend(ctx, v.ID, 1024+8192)
	require.ErrorIs(t, err, errkind.TooLarge)
	assert.Contains(t, err.Error(), "needs 8192 bytes")
	assert.Contains(t, err.Error(), "bytes free")
}
