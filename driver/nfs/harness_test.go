package nfs

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
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
	return driver.PoolSpec{ID: uuid.New(), Type: driver.TypeNFS, NFS: &driver.NFSSpec{Server: server, Export: export, Version: 3}}
}

// startServer starts an in-process NFS server on a temp dir.
func startServer(t *testing.T) *nfsserver.Server {
	t.Helper()
	return nfsserver.Start(t, t.TempDir())
}
