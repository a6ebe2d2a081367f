package nfs

import (
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/testenv"
	"github.com/openvair/openvair/internal/testenv/nfsserver"
)

// newBackend returns a backend that drops its connections when the test ends.
func newBackend(t testing.TB, opts map[string]string) *Backend {
	t.Helper()
	b, err := New(driver.Config{Options: opts})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// spec returns a fresh pool spec on the server.
func spec(server, export string) driver.PoolSpec {
	return driver.PoolSpec{ID: uuid.New(), Type: "nfs", Config: driver.MustJSON(Config{Server: server, Export: export, Version: 3})}
}

// privateDir returns a directory on a tmpfs of its own, so that the space figures a server reports for it
// do not move with what other processes write to the disk.
func privateDir(t testing.TB) string {
	t.Helper()
	testenv.RequireRoot(t)
	dir := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "size=8g,mode=0755"))
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// startServer starts an in-process NFS server on a private tmpfs.
func startServer(t testing.TB) *nfsserver.Server {
	t.Helper()
	return nfsserver.Start(t, privateDir(t))
}

// partFiles lists the .part files of a pool's directory on the server's disk.
func partFiles(t *testing.T, exportDir string, pool driver.PoolSpec) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(exportDir, "openvair-"+pool.ID.String(), "*.part"))
	require.NoError(t, err)
	return m
}

// poolFile is the path of an object on the server's disk.
func poolFile(exportDir string, pool driver.PoolSpec, name string) string {
	return filepath.Join(exportDir, "openvair-"+pool.ID.String(), name)
}
