package drivertest

import (
	"context"
	"io"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
)

// Sizes of the benchmarked objects.
const (
	benchVolumeSize = stGiB      // virtual size of every volume created
	benchExtendStep = 64 * stMiB // growth of each ExtendVolume
	benchImageSize  = 64 * stMiB // bytes of each upload
)

// RunBenchmarks measures the operations of a storage backend, so that every backend is measured the same
// way. It prepares one storage from h.Pool (torn down at the end) on h.Backend and runs, as sub-benchmarks,
// one operation per iteration:
//
//   - CreateDeleteQCOW2: CreateVolume of a 1 GiB qcow2 volume, then DeleteVolume;
//   - CreateRaw: CreateVolume of a 1 GiB raw volume (deleted after the timed loop);
//   - Extend/<format>: ExtendVolume of one volume by 64 MiB more each time (skipped without
//     Capabilities.Extend);
//   - Inspect: InspectVolume of a 1 GiB volume of the first declared format;
//   - Upload64MiB: WriteImage of 64 MiB of generated data (SHA-256, format detection, sync), reported in
//     MB/s; each image is deleted untimed.
//
// A case whose volume format the backend does not declare is skipped. Stop, Restart and Open are not used.
func RunBenchmarks(b *testing.B, h StorageHarness) {
	require.NotNil(b, h.Backend, "harness without a backend")
	require.NotNil(b, h.Pool, "harness without a Pool function")
	be := h.Backend
	pool := stNew(b, be, h)
	stPrepareWith(b, be, &pool)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stTimeout)
		defer cancel()
		if err := be.Teardown(ctx, pool); err != nil {
			b.Errorf("Teardown at cleanup: %v", err)
		}
	})
	caps := be.Info().Capabilities
	ctx := context.Background()
	needFormat := func(b *testing.B, f driver.VolumeFormat) {
		if !slices.Contains(caps.VolumeFormats, f) {
			b.Skipf("the backend does not declare %s volumes", f)
		}
	}
	create := func(b *testing.B, f driver.VolumeFormat, size int64) uuid.UUID {
		id := stNewID()
		_, err := be.CreateVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: f, Size: size})
		require.NoError(b, err)
		return id
	}
	remove := func(b *testing.B, ids ...uuid.UUID) {
		for _, id := range ids {
			require.NoError(b, be.DeleteVolume(ctx, pool, id))
		}
	}

	b.Run("CreateDeleteQCOW2", func(b *testing.B) {
		needFormat(b, driver.FormatQCOW2)
		for b.Loop() {
			remove(b, create(b, driver.FormatQCOW2, benchVolumeSize))
		}
	})

	b.Run("CreateRaw", func(b *testing.B) {
		needFormat(b, driver.FormatRaw)
		var ids []uuid.UUID
		for b.Loop() {
			ids = append(ids, create(b, driver.FormatRaw, benchVolumeSize))
		}
		remove(b, ids...)
	})

	b.Run("Extend", func(b *testing.B) {
		if !caps.Extend {
			b.Skip("the backend cannot extend volumes")
		}
		for _, f := range caps.VolumeFormats {
			b.Run(string(f), func(b *testing.B) {
				id := create(b, f, stMiB)
				size := stMiB
				for b.Loop() {
					size += benchExtendStep
					info, err := be.ExtendVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: f, Size: size})
					require.NoError(b, err)
					require.Equal(b, size, info.VirtualSize)
				}
				remove(b, id)
			})
		}
	})

	b.Run("Inspect", func(b *testing.B) {
		f := caps.VolumeFormats[0]
		id := create(b, f, benchVolumeSize)
		for b.Loop() {
			info, err := be.InspectVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: f})
			require.NoError(b, err)
			require.Equal(b, benchVolumeSize, info.VirtualSize)
		}
		remove(b, id)
	})

	b.Run("Upload64MiB", func(b *testing.B) {
		b.SetBytes(benchImageSize)
		for i := 0; i < b.N; i++ {
			id := stNewID()
			r := io.LimitReader(&stPatternReader{seed: uint64(i)}, benchImageSize)
			info, err := be.WriteImage(ctx, pool, driver.ImageWrite{ID: id}, r)
			require.NoError(b, err)
			require.Equal(b, benchImageSize, info.Size)
			b.StopTimer()
			require.NoError(b, be.DeleteImage(ctx, pool, id))
			b.StartTimer()
		}
	})
}
