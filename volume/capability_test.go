package volume_test

import (
	"context"
	"testing"
	"time"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/volume"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// noExtend is a backend that does not declare the extend capability.
type noExtend struct{ *fake.Storage }

func (n noExtend) Info() driver.StorageInfo {
	info := n.Storage.Info()
	info.Capabilities.Extend = false
	return info
}

// TestExtendNeedsTheCapability: a backend that does not declare extend is never asked to: the call fails
// with ErrUnsupported naming the capability, and the volume stays as it was.
func TestExtendNeedsTheCapability(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	be := noExtend{fake.NewStorage(1 << 40)}
	sys, err := openvair.Open(ctx, openvair.Config{StorageBackends: map[storage.Type]driver.StorageBackend{"localfs": be}})
	require.NoError(t, err)
	defer sys.Close()
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "pool", Type: "localfs", Config: localfs.Config{Path: "/srv/pool"}})
	require.NoError(t, err)
	vol, err := sys.Volumes.Create(ctx, volume.CreateRequest{Name: "v", StorageID: st.ID, Format: volume.FormatRaw, Size: 1 << 20})
	require.NoError(t, err)

	_, err = sys.Volumes.Extend(ctx, vol.ID, 2<<20)
	require.ErrorIs(t, err, openvair.ErrUnsupported)
	assert.Contains(t, err.Error(), "capability extend")
	got, err := sys.Volumes.Get(ctx, vol.ID)
	require.NoError(t, err)
	assert.Equal(t, volume.StatusAvailable, got.Status)
	assert.Equal(t, vol.Size, got.Size)
	assert.Equal(t, vol.Version, got.Version, "nothing was written")
	assert.Zero(t, be.Calls("ExtendVolume"), "the backend was never asked")
}
