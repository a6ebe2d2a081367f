package main

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/storage"
)

// Example runs the program.
func Example() {
	if err := run(context.Background(), os.Stdout); err != nil {
		panic(err)
	}
	// Output:
	// storage: local localfs available
	// volume: disk0 qcow2 1073741824 available
}

// TestUnregisteredNamesSayWhatToImport: what this program does not import is refused with the error kind
// of an unknown name, and the message names the package that registers it.
func TestUnregisteredNamesSayWhatToImport(t *testing.T) {
	ctx := context.Background()
	for _, dsn := range []string{"sqlite://" + t.TempDir() + "/x.db", "postgres://u@localhost/db"} {
		_, err := openvair.Open(ctx, openvair.Config{DSN: dsn})
		require.ErrorIs(t, err, openvair.ErrUnsupported, dsn)
		assert.ErrorContains(t, err, "(import github.com/openvair/openvair/repo/sql)", dsn)
	}

	_, err := openvair.Open(ctx, openvair.Config{Hypervisor: "libvirt"})
	require.ErrorIs(t, err, openvair.ErrNotFound)
	assert.ErrorContains(t, err, "(import github.com/openvair/openvair/driver/libvirt)")

	_, err = openvair.Open(ctx, openvair.Config{StorageDrivers: map[storage.Type]string{"nfs": "nfs"}})
	require.ErrorIs(t, err, openvair.ErrNotFound)
	assert.ErrorContains(t, err, "(import github.com/openvair/openvair/driver/nfs)")

	sys, err := openvair.Open(ctx, openvair.Config{})
	require.NoError(t, err)
	defer sys.Close()
	_, err = sys.Storages.Create(ctx, storage.CreateRequest{Name: "remote", Type: "nfs",
		Config: map[string]any{"server": "192.0.2.1", "export": "/export"}})
	require.ErrorIs(t, err, openvair.ErrUnavailable)
	assert.ErrorContains(t, err, "(import github.com/openvair/openvair/driver/nfs)")
}
