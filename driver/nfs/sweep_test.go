package nfs

import (
	"os"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
)

// TestSweepUploads: SweepUploads removes a crashed upload's .part file however recent (Status keeps it for
// the stale age), keeps the file of an upload this process is writing and the images, and has nothing to do
// on a storage whose directory does not exist.
func TestSweepUploads(t *testing.T) {
	srv := startServer(t)
	b := newBackend(t, nil)
	pool := spec(srv.Addr(), srv.Export())
	prepare(t, b, pool)

	crashed := imageName(uuid.New()) + partSuffix
	busy := imageName(uuid.New()) + partSuffix
	final := imageName(uuid.New())
	for _, name := range []string{crashed, busy, final} {
		require.NoError(t, os.WriteFile(poolFile(srv.Dir(), pool, name), []byte("half"), 0o644))
	}
	p, err := parsePool(pool)
	require.NoError(t, err)
	b.mu.Lock()
	b.uploading[b.partKey(p, busy)]++ // an upload of this process is writing it
	b.mu.Unlock()

	_, err = b.Status(t.Context(), pool)
	require.NoError(t, err)
	require.Len(t, partFiles(t, srv.Dir(), pool), 2, "Status sweeps only files older than the stale age")

	require.NoError(t, b.SweepUploads(t.Context(), pool))
	assert.Equal(t, []string{poolFile(srv.Dir(), pool, busy)}, partFiles(t, srv.Dir(), pool))
	assert.FileExists(t, poolFile(srv.Dir(), pool, final), "images are not uploads")

	assert.NoError(t, b.SweepUploads(t.Context(), spec(srv.Addr(), srv.Export())), "a storage without a directory")
	var _ driver.UploadSweeper = b
}
