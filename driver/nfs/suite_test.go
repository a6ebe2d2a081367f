package nfs

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/drivertest"
	"github.com/openvair/openvair/internal/testenv/ganesha"
)

// TestConformanceGoNFS runs the storage conformance suite against the in-process go-nfs server.
func TestConformanceGoNFS(t *testing.T) {
	srv := startServer(t)
	b := newBackend(t, nil)
	drivertest.RunStorageSuite(t, drivertest.StorageHarness{
		Backend: b,
		Pool:    func(testing.TB) driver.PoolSpec { return spec(srv.Addr(), srv.Export()) },
		Open:    openBackend,
		Stop:    func(t *testing.T, _ driver.PoolSpec) { srv.Stop() },
		Restart: func(t *testing.T, _ driver.PoolSpec) { require.NoError(t, srv.Restart()) },
	})
}

// TestConformanceGanesha runs the storage conformance suite against nfs-ganesha (in a private network
// namespace: the test re-executes itself there).
func TestConformanceGanesha(t *testing.T) {
	if !ganesha.InNamespace(t) {
		return
	}
	srv := ganesha.Start(t)
	b := newBackend(t, nil)
	drivertest.RunStorageSuite(t, drivertest.StorageHarness{
		Backend: b,
		Pool:    func(testing.TB) driver.PoolSpec { return spec(srv.Addr(), srv.Export()) },
		Open:    openBackend,
		Stop:    func(t *testing.T, _ driver.PoolSpec) { srv.Stop() },
		Restart: func(t *testing.T, _ driver.PoolSpec) { require.NoError(t, srv.Restart(t.Context())) },
	})
}

// openBackend opens another backend with the suites' configuration (the default options).
func openBackend(t testing.TB) driver.StorageBackend { return newBackend(t, nil) }
