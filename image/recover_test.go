package image_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	openvair "github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/repo/memory"
	"github.com/openvair/openvair/storage"
)

// setStatus stores an image with status, as a crash in the middle of an operation leaves it.
func setStatus(t *testing.T, e *sdktest.Env, id uuid.UUID, status image.Status) {
	t.Helper()
	cur, err := e.Sys.Store.Images().Get(e.Ctx, id)
	require.NoError(t, err)
	cur.Status = status
	require.NoError(t, e.Sys.Store.Images().Update(e.Ctx, cur))
}

// TestRecoverInterruptedDelete: a delete interrupted after the file was removed is completed (no row left
// in error with "file missing"); one interrupted before leaves the image in error, its file there.
func TestRecoverInterruptedDelete(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	gone := e.Image(t, st.ID, "file-gone")
	kept := e.Image(t, st.ID, "file-kept")
	setStatus(t, e, gone.ID, image.StatusDeleting)
	setStatus(t, e, kept.ID, image.StatusDeleting)
	e.FS.RemoveObject(st.ID, gone.ID) // the crash came between removing the file and removing the row

	require.NoError(t, e.Sys.Images.Recover(e.Ctx))
	_, err := e.Sys.Images.Get(e.Ctx, gone.ID)
	assert.ErrorIs(t, err, errkind.NotFound, "the delete is completed")
	got, err := e.Sys.Images.Get(e.Ctx, kept.ID)
	require.NoError(t, err)
	assert.Equal(t, image.StatusError, got.Status)
	assert.Contains(t, got.StatusReason, "interrupted while deleting")
	assert.NotNil(t, e.FS.Object(st.ID, kept.ID), "a file still there is not removed behind the user's back")
}

// TestRecoverSweepsUploadLeftovers: after a crash, opening the system again removes the .part files of
// interrupted uploads on every storage, however recent (the LocalFS driver's own sweep at Prepare keeps
// files younger than a minute), with the row of the interrupted upload; a .part file that a live upload
// holds locked stays.
func TestRecoverSweepsUploadLeftovers(t *testing.T) {
	ctx := t.Context()
	store := memory.New()
	t.Cleanup(func() { _ = store.Close() })
	dir := t.TempDir()
	open := func() *openvair.System {
		sys, err := openvair.Open(ctx, openvair.Config{Store: store, DataDir: filepath.Join(dir, "data")})
		require.NoError(t, err)
		return sys
	}
	sys := open()
	var pools []string
	for _, name := range []string{"a", "b"} {
		st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: name, Type: "localfs",
			Config: localfs.Config{Path: filepath.Join(dir, name)}})
		require.NoError(t, err)
		pools = append(pools, filepath.Join(dir, name))
		_ = st
		if name == "a" {
			now := time.Now().UTC()
			img := &image.Image{ID: uuid.Must(uuid.NewV7()), Name: "crashed", StorageID: st.ID, Status: image.StatusUploading,
				CreatedAt: now, UpdatedAt: now}
			require.NoError(t, store.Images().Create(ctx, img))
			require.NoError(t, os.WriteFile(filepath.Join(pools[0], "image-"+img.ID.String()+".part"), []byte("half"), 0o600))
		}
	}
	require.NoError(t, sys.Close())

	orphan := filepath.Join(pools[1], "image-"+uuid.NewString()+".part") // its row was removed, the file not
	require.NoError(t, os.WriteFile(orphan, []byte("half"), 0o600))
	live := filepath.Join(pools[1], "image-"+uuid.NewString()+".part")
	f, err := os.Create(live)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, unix.Flock(int(f.Fd()), unix.LOCK_EX), "an upload in progress holds its file locked")
	other := filepath.Join(pools[1], "notes.txt")
	require.NoError(t, os.WriteFile(other, []byte("not an upload"), 0o600))

	sys = open()
	defer sys.Close()
	for _, p := range pools {
		parts, err := filepath.Glob(filepath.Join(p, "*.part"))
		require.NoError(t, err)
		if p == pools[1] {
			assert.Equal(t, []string{live}, parts, "only the locked upload file is left on %s", p)
		} else {
			assert.Empty(t, parts, "no upload leftovers on %s", p)
		}
	}
	assert.FileExists(t, other, "only upload files are swept")
	page, err := sys.Images.List(ctx, image.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, page.Items, "the interrupted upload's row is removed")
}

// sweeper is a fake backend that records SweepUploads calls.
type sweeper struct {
	*fake.Storage
	swept []uuid.UUID
}

func (s *sweeper) SweepUploads(_ context.Context, pool driver.PoolSpec) error {
	s.swept = append(s.swept, pool.ID)
	return nil
}

// TestRecoverSweepsEveryStorage: Recover asks an UploadSweeper backend about every storage, with or without
// images, available or in error.
func TestRecoverSweepsEveryStorage(t *testing.T) {
	ctx := t.Context()
	store := memory.New()
	t.Cleanup(func() { _ = store.Close() })
	b := &sweeper{Storage: fake.NewStorage(1 << 30)}
	sys, err := openvair.Open(ctx, openvair.Config{Store: store, StorageBackends: map[storage.Type]driver.StorageBackend{"localfs": b}})
	require.NoError(t, err)
	defer sys.Close()
	var want []uuid.UUID
	for _, name := range []string{"a", "b", "c"} {
		st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: name, Type: "localfs", Config: localfs.Config{Path: "/srv/" + name}})
		require.NoError(t, err)
		want = append(want, st.ID)
	}
	b.SetDown(want[2], true)
	_, err = sys.Storages.Refresh(ctx, want[2])
	require.NoError(t, err)
	b.swept = nil
	require.NoError(t, sys.Images.Recover(ctx))
	assert.ElementsMatch(t, want, b.swept)
}

// TestUploadEmpty: a 0-byte upload is refused with ErrInvalid and leaves neither row nor file.
func TestUploadEmpty(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	_, err := e.Sys.Images.Create(e.Ctx, image.CreateRequest{Name: "empty", StorageID: st.ID}, bytes.NewReader(nil))
	require.ErrorIs(t, err, errkind.Invalid)
	assert.Contains(t, err.Error(), "empty")
	page, err := e.Sys.Images.List(e.Ctx, image.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, page.Items, "no row")
	assert.Zero(t, e.FS.Objects(st.ID), "no file")

	img, err := e.Sys.Images.Create(e.Ctx, image.CreateRequest{Name: "one-byte", StorageID: st.ID}, bytes.NewReader([]byte{1}))
	require.NoError(t, err, "one byte is an image")
	assert.EqualValues(t, 1, img.Size)
}

// TestUploadSpaceMessages: an upload larger than the storage's free space says so, with the free space; one
// larger than the upload size limit names the limit.
func TestUploadSpaceMessages(t *testing.T) {
	ctx := t.Context()
	store := memory.New()
	t.Cleanup(func() { _ = store.Close() })
	sys, err := openvair.Open(ctx, openvair.Config{Store: store,
		StorageBackends: map[storage.Type]driver.StorageBackend{"localfs": fake.NewStorage(4096)}})
	require.NoError(t, err)
	defer sys.Close()
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "small", Type: "localfs", Config: localfs.Config{Path: "/srv/small"}})
	require.NoError(t, err)

	_, err = sys.Images.Create(ctx, image.CreateRequest{Name: "big", StorageID: st.ID}, bytes.NewReader(make([]byte, 5000)))
	require.ErrorIs(t, err, errkind.TooLarge)
	assert.Contains(t, err.Error(), `free space of storage "small"`)
	assert.Contains(t, err.Error(), "has 4096 bytes free")
	assert.NotContains(t, err.Error(), "limit")

	sys.Images.MaxSize = 1000
	_, err = sys.Images.Create(ctx, image.CreateRequest{Name: "big", StorageID: st.ID}, bytes.NewReader(make([]byte, 2000)))
	require.ErrorIs(t, err, errkind.TooLarge)
	assert.Contains(t, err.Error(), "upload size limit of 1000 bytes")
	assert.NotContains(t, err.Error(), "free")

	page, err := sys.Images.List(ctx, image.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, page.Items)
}
