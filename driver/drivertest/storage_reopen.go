package drivertest

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
)

// stTestReopen is a restart: a first instance of the backend prepares a storage, creates volumes (one per
// declared format, one of them extended when the backend can) and an image, and is closed; a second
// instance opened over the same configuration must find the same storage (Status works at once, with the
// same capacity, mount point and filesystem identity, and Prepare again changes none of them), the same
// objects with the same formats and sizes at the same disk sources, and work on them.
func stTestReopen(t *testing.T, h StorageHarness) {
	if h.Open == nil {
		t.Skip("harness cannot open a second instance (StorageHarness.Open)")
	}
	ctx := stCtx(t)

	unused := h.Open(t)
	require.NoError(t, unused.Close(), "Close of a backend that was never used")
	require.NoError(t, unused.Close(), "Close is idempotent")

	first := h.Open(t)
	pool := stNew(t, first, h)
	before := stPrepareWith(t, first, &pool)
	var vols []driver.VolumeSpec
	imgID := stNewID()
	cur := first // the instance that cleans up: the second one once it is open
	t.Cleanup(func() {
		// Before the harness's own cleanups (registered earlier by Pool) remove the server or device.
		ctx, cancel := context.WithTimeout(context.Background(), stTimeout)
		defer cancel()
		for _, v := range vols {
			_ = cur.DeleteVolume(ctx, pool, v.ID)
		}
		_ = cur.DeleteImage(ctx, pool, imgID)
		if err := cur.Teardown(ctx, pool); err != nil {
			t.Errorf("Teardown at cleanup: %v", err)
		}
		_ = cur.Close()
	})
	info := first.Info()
	caps := info.Capabilities

	var srcs []driver.DiskSource
	for i, format := range caps.VolumeFormats {
		spec := driver.VolumeSpec{ID: stNewID(), Format: format, Size: int64(3+i) * stMiB}
		got, err := first.CreateVolume(ctx, pool, spec)
		require.NoError(t, err, "CreateVolume %s", format)
		vols = append(vols, spec)
		require.Equal(t, spec.Size, got.VirtualSize)
		if i == 0 && caps.Extend {
			spec.Size = 2 * stGiB
			got, err = first.ExtendVolume(ctx, pool, spec)
			require.NoError(t, err, "ExtendVolume %s", format)
			require.Equal(t, spec.Size, got.VirtualSize)
			vols[i] = spec
		}
		srcs = append(srcs, first.DiskSource(pool, driver.KindVolume, spec.ID))
	}
	content := stISO(t, 2*stMiB)
	img, err := first.WriteImage(ctx, pool, driver.ImageWrite{ID: imgID}, bytes.NewReader(content))
	require.NoError(t, err, "WriteImage")
	imgSrc := first.DiskSource(pool, driver.KindImage, imgID)
	require.NoError(t, first.Close(), "Close of a backend that was used")
	require.NoError(t, first.Close(), "Close is idempotent")

	second := h.Open(t)
	cur = second
	require.Equal(t, info, second.Info(), "the same configuration gives the same capabilities")

	st, err := second.Status(ctx, pool)
	require.NoError(t, err, "the new instance finds the storage without Prepare")
	stCheckState(t, st)
	require.Equal(t, before.Capacity, st.Capacity, "same storage: capacity")
	require.Equal(t, before.MountPoint, st.MountPoint, "same storage: mount point")

	for i, v := range vols {
		got, err := second.InspectVolume(ctx, pool, driver.VolumeSpec{ID: v.ID, Format: v.Format})
		require.NoError(t, err, "InspectVolume %s after reopening", v.Format)
		require.Equal(t, v.Format, got.Format)
		require.Equal(t, v.Size, got.VirtualSize, "%s volume: same virtual size", v.Format)
		src := second.DiskSource(pool, driver.KindVolume, v.ID)
		require.Equal(t, srcs[i], src, "%s volume: same disk source", v.Format)
		stCheckDiskSource(t, src, v.Format, v.Size)
	}
	gotImg, err := second.InspectImage(ctx, pool, imgID)
	require.NoError(t, err, "InspectImage after reopening")
	require.Equal(t, img.Size, gotImg.Size)
	require.Equal(t, img.Format, gotImg.Format)
	src := second.DiskSource(pool, driver.KindImage, imgID)
	require.Equal(t, imgSrc, src, "image: same disk source")
	stCheckImageFile(t, src, content)

	again := stPrepareWith(t, second, &pool)
	require.Equal(t, before.Capacity, again.Capacity, "Prepare by the new instance: same capacity")
	require.Equal(t, before.MountPoint, again.MountPoint, "Prepare by the new instance: same mount point")
	stEqualState(t, before.State, again.State, "Prepare by the new instance: same state (filesystem identity, ...)")

	// The new instance works on what the first one made.
	if caps.Extend {
		v := vols[len(vols)-1]
		v.Size += 64 * stMiB
		got, err := second.ExtendVolume(ctx, pool, v)
		require.NoError(t, err, "ExtendVolume by the new instance")
		require.Equal(t, v.Size, got.VirtualSize)
	}
	for _, v := range vols {
		require.NoError(t, second.DeleteVolume(ctx, pool, v.ID))
		_, err := second.InspectVolume(ctx, pool, driver.VolumeSpec{ID: v.ID, Format: v.Format})
		require.ErrorIs(t, err, driver.ErrNotFound)
	}
	require.NoError(t, second.DeleteImage(ctx, pool, imgID))
	_, err = second.InspectImage(ctx, pool, imgID)
	require.ErrorIs(t, err, driver.ErrNotFound)
}
