package drivertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
)

func stNewID() uuid.UUID { return uuid.New() }

func stTestVolumes(t *testing.T, h StorageHarness, pool driver.PoolSpec) {
	b := h.Backend
	formats := b.Info().Capabilities.VolumeFormats

	t.Run("Create", func(t *testing.T) {
		for _, format := range formats {
			for _, size := range []int64{stMiB, stGiB} {
				t.Run(fmt.Sprintf("%s-%d", format, size), func(t *testing.T) {
					ctx := stCtx(t)
					id := stNewID()
					info, err := b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: format, Size: size})
					require.NoError(t, err)
					t.Cleanup(func() { _ = b.DeleteVolume(ctx, pool, id) })
					require.Equal(t, format, info.Format)
					require.Equal(t, size, info.VirtualSize)
					require.GreaterOrEqual(t, info.Allocated, int64(0))

					got, err := b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: format})
					require.NoError(t, err)
					require.Equal(t, format, got.Format)
					require.Equal(t, size, got.VirtualSize)
					if size == stGiB {
						require.Less(t, got.Allocated, size/4, "a new volume must be thin (sparse file / metadata only)")
					}
					stCheckDiskSource(t, b.DiskSource(pool, driver.KindVolume, id), format, size)
				})
			}
		}
	})

	t.Run("CreateTwice", func(t *testing.T) {
		ctx := stCtx(t)
		id := stNewID()
		_, err := b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: formats[0], Size: 2 * stMiB})
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.DeleteVolume(ctx, pool, id) })
		_, err = b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: formats[0], Size: 4 * stMiB})
		require.ErrorIs(t, err, driver.ErrAlreadyExists)
		got, err := b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: formats[0]})
		require.NoError(t, err, "the existing volume must survive a refused create")
		require.Equal(t, 2*stMiB, got.VirtualSize)
	})

	t.Run("CreateConcurrently", func(t *testing.T) {
		ctx := stCtx(t)
		id := stNewID()
		errs := stConcurrently(8, func() error {
			_, err := b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: formats[0], Size: 16 * stMiB})
			return err
		})
		t.Cleanup(func() { _ = b.DeleteVolume(ctx, pool, id) })
		stCheckOneWinner(t, errs)
		got, err := b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: formats[0]})
		require.NoError(t, err)
		require.Equal(t, 16*stMiB, got.VirtualSize)
	})

	t.Run("CreateInvalid", func(t *testing.T) {
		ctx := stCtx(t)
		for name, spec := range map[string]driver.VolumeSpec{
			"zero size":      {ID: stNewID(), Format: formats[0], Size: 0},
			"negative size":  {ID: stNewID(), Format: formats[0], Size: -1},
			"unknown format": {ID: stNewID(), Format: "vmdk", Size: stMiB},
		} {
			_, err := b.CreateVolume(ctx, pool, spec)
			require.ErrorIs(t, err, driver.ErrInvalid, name)
			_, err = b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: spec.ID})
			require.ErrorIs(t, err, driver.ErrNotFound, "%s: a refused create leaves no volume", name)
		}
	})

	t.Run("UndeclaredFormats", func(t *testing.T) { stTestUndeclaredFormats(t, b, pool) })

	t.Run("Extend", func(t *testing.T) {
		if !b.Info().Capabilities.Extend {
			stTestExtendRefused(t, b, pool)
			return
		}
		for _, format := range formats {
			t.Run(string(format), func(t *testing.T) {
				ctx := stCtx(t)
				id := stNewID()
				_, err := b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: format, Size: stMiB})
				require.NoError(t, err)
				t.Cleanup(func() { _ = b.DeleteVolume(ctx, pool, id) })

				for _, size := range []int64{64 * stMiB, 3 * stGiB} {
					info, err := b.ExtendVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: format, Size: size})
					require.NoError(t, err, "extend to %d", size)
					require.Equal(t, size, info.VirtualSize)
					require.Equal(t, format, info.Format)
					got, err := b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: format})
					require.NoError(t, err)
					require.Equal(t, size, got.VirtualSize)
					stCheckDiskSource(t, b.DiskSource(pool, driver.KindVolume, id), format, size)
				}

				_, err = b.ExtendVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: format, Size: stMiB})
				require.ErrorIs(t, err, driver.ErrInvalid, "shrinking must be refused")
				got, err := b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: format})
				require.NoError(t, err)
				require.Equal(t, 3*stGiB, got.VirtualSize, "a refused shrink changes nothing")
			})
		}
		t.Run("Missing", func(t *testing.T) {
			_, err := b.ExtendVolume(stCtx(t), pool, driver.VolumeSpec{ID: stNewID(), Format: formats[0], Size: stGiB})
			require.ErrorIs(t, err, driver.ErrNotFound)
		})
	})

	t.Run("Delete", func(t *testing.T) {
		for _, format := range formats {
			ctx := stCtx(t)
			id := stNewID()
			_, err := b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: format, Size: 8 * stMiB})
			require.NoError(t, err)
			require.NoError(t, b.DeleteVolume(ctx, pool, id))
			_, err = b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: format})
			require.ErrorIs(t, err, driver.ErrNotFound, "inspect after delete")
			require.NoError(t, b.DeleteVolume(ctx, pool, id), "deleting a missing volume succeeds")
			stCheckNoFile(t, b.DiskSource(pool, driver.KindVolume, id))
		}
	})

	t.Run("InspectMissing", func(t *testing.T) {
		_, err := b.InspectVolume(stCtx(t), pool, driver.VolumeSpec{ID: stNewID(), Format: formats[0]})
		require.ErrorIs(t, err, driver.ErrNotFound)
	})

	t.Run("CancelledContext", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		id := stNewID()
		_, err := b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: formats[0], Size: stMiB})
		require.Error(t, err, "a cancelled context must stop CreateVolume")
		_, err = b.InspectVolume(stCtx(t), pool, driver.VolumeSpec{ID: id, Format: formats[0]})
		require.ErrorIs(t, err, driver.ErrNotFound, "no volume after a cancelled create")
	})
}

// stTestUndeclaredFormats checks that the volume formats openvair knows but the backend does not declare
// (Capabilities.VolumeFormats) are refused with ErrUnsupported, leaving no volume.
func stTestUndeclaredFormats(t *testing.T, b driver.StorageBackend, pool driver.PoolSpec) {
	declared := b.Info().Capabilities.VolumeFormats
	var undeclared []driver.VolumeFormat
	for _, f := range []driver.VolumeFormat{driver.FormatQCOW2, driver.FormatRaw} {
		if !slices.Contains(declared, f) {
			undeclared = append(undeclared, f)
		}
	}
	if len(undeclared) == 0 {
		// Nothing to refuse. Logged, not skipped: ganesha.InNamespace reports a whole test as skipped when
		// any of its subtests is.
		t.Logf("the backend declares every volume format (%v)", declared)
		return
	}
	ctx := stCtx(t)
	for _, f := range undeclared {
		id := stNewID()
		_, err := b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: f, Size: stMiB})
		require.ErrorIs(t, err, driver.ErrUnsupported, "CreateVolume of the undeclared format %s", f)
		_, err = b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: id})
		require.ErrorIs(t, err, driver.ErrNotFound, "a refused %s volume leaves nothing", f)
	}
}

// stTestExtendRefused checks, for a backend without Capabilities.Extend, that ExtendVolume is refused with
// ErrUnsupported and changes nothing.
func stTestExtendRefused(t *testing.T, b driver.StorageBackend, pool driver.PoolSpec) {
	for _, format := range b.Info().Capabilities.VolumeFormats {
		t.Run(string(format), func(t *testing.T) {
			ctx := stCtx(t)
			id := stNewID()
			_, err := b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: format, Size: stMiB})
			require.NoError(t, err)
			t.Cleanup(func() { _ = b.DeleteVolume(context.Background(), pool, id) })
			_, err = b.ExtendVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: format, Size: 64 * stMiB})
			require.ErrorIs(t, err, driver.ErrUnsupported, "a backend without Extend must refuse ExtendVolume")
			got, err := b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: format})
			require.NoError(t, err)
			require.Equal(t, stMiB, got.VirtualSize, "a refused extend changes nothing")
		})
	}
}

// stCheckDiskSource checks the DiskSource of a volume; for local files it checks the file with qemu-img
// (check and info) where qemu-img is installed.
func stCheckDiskSource(t *testing.T, src driver.DiskSource, format driver.VolumeFormat, size int64) {
	t.Helper()
	switch src.Type {
	case "file":
		require.True(t, filepath.IsAbs(src.Path), "file disk source %q must be absolute", src.Path)
		_, err := os.Stat(src.Path)
		require.NoError(t, err, "the disk source file must exist")
		stQemuImgCheck(t, src.Path, string(format), size)
	case "network":
		require.NotEmpty(t, src.Protocol)
		require.NotEmpty(t, src.Host)
		require.True(t, len(src.Name) > 0 && src.Name[0] == '/', "network disk name %q must start with /", src.Name)
	default:
		t.Fatalf("disk source type %q is neither file nor network", src.Type)
	}
}

// stCheckNoFile checks that nothing is left at a file disk source (nor a partial upload next to it).
func stCheckNoFile(t *testing.T, src driver.DiskSource) {
	t.Helper()
	if src.Type != "file" {
		return
	}
	left, err := filepath.Glob(src.Path + "*")
	require.NoError(t, err)
	require.Empty(t, left, "files left behind")
}

// stConcurrently runs f n times at once and returns the errors.
func stConcurrently(n int, f func() error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = f()
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// stCheckOneWinner checks that exactly one call succeeded and the others failed with ErrAlreadyExists.
func stCheckOneWinner(t *testing.T, errs []error) {
	t.Helper()
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
			continue
		}
		require.ErrorIs(t, err, driver.ErrAlreadyExists)
	}
	require.Equal(t, 1, wins, "exactly one concurrent create must win")
}
