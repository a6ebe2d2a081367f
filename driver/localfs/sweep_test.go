package localfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
)

// TestSweepUploads: SweepUploads removes every unlocked .part file, however recent (the leftover of a
// killed upload: its lock died with it), and keeps a locked one (an upload in progress), images and other
// files; a missing directory has nothing to sweep. Deleting a storage after the sweep leaves nothing.
func TestSweepUploads(t *testing.T) {
	b, err := New(driver.Config{})
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "pool")
	pool := Pool(uuid.New(), Config{Path: dir}, State{})
	ctx := t.Context()
	_, err = b.Prepare(ctx, pool)
	require.NoError(t, err)
	partOf := func(id uuid.UUID) string { return b.DiskSource(pool, driver.KindImage, id).Path + partSuffix }

	crashed, live := uuid.New(), uuid.New()
	require.NoError(t, os.WriteFile(partOf(crashed), []byte("half an upload"), 0o600))
	lf, err := createPart(partOf(live), 0o600)
	require.NoError(t, err)
	img, err := b.WriteImage(ctx, pool, driver.ImageWrite{ID: uuid.New()}, strings.NewReader("an image"))
	require.NoError(t, err)
	require.Positive(t, img.Size)

	_, err = b.Prepare(ctx, pool)
	require.NoError(t, err)
	require.FileExists(t, partOf(crashed), "Prepare keeps a recent unlocked file")

	require.NoError(t, b.SweepUploads(ctx, pool))
	assert.NoFileExists(t, partOf(crashed), "the sweep removes it")
	assert.FileExists(t, partOf(live), "a locked upload file is kept")
	files, err := filepath.Glob(filepath.Join(dir, "image-*"))
	require.NoError(t, err)
	assert.Len(t, files, 2, "the live upload and the image")

	require.NoError(t, lf.Close()) // the upload's process died: its lock is gone
	require.NoError(t, b.SweepUploads(ctx, pool))
	assert.NoFileExists(t, partOf(live))

	missing := Pool(uuid.New(), Config{Path: filepath.Join(t.TempDir(), "none")}, State{})
	assert.NoError(t, b.SweepUploads(ctx, missing))
}

// TestCreatePartAfterSweep: an upload file removed and replaced at its path by someone else is noticed
// (isAt), which is how createPart survives a sweep between creating its file and locking it.
func TestCreatePartAfterSweep(t *testing.T) {
	path := filepath.Join(t.TempDir(), "image-x"+partSuffix)
	f, err := createPart(path, 0o600)
	require.NoError(t, err)
	defer f.Close()
	assert.True(t, isAt(f, path))
	require.NoError(t, os.Remove(path))
	assert.False(t, isAt(f, path), "removed")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	assert.False(t, isAt(f, path), "another file at the path")
}
