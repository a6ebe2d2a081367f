package drivertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/qcow2"
)

// stCloneSize is the virtual size of the volumes the Clone case clones.
const stCloneSize = 64 * stMiB

// stCloneRegions are the guest ranges the Clone case writes: the first sector, a range crossing cluster
// boundaries in the middle, and the last 4 KiB.
var stCloneRegions = []struct{ off, n int64 }{
	{0, 4096},
	{stCloneSize/2 - 1000, stMiB + 3000},
	{stCloneSize - 4096, 4096},
}

// stTestClone checks driver.VolumeCloner. A backend that does not implement it must not declare
// InstantClone, and the case is skipped. Otherwise, for every declared format, a clone has the format,
// virtual size and content of its source; writing to one leaves the other unchanged byte for byte;
// cloning onto an existing volume is ErrAlreadyExists, cloning a missing volume ErrNotFound (leaving
// nothing); and the clone outlives its source. Content is read and written through file disk sources (raw
// volumes directly, qcow2 volumes through their mapping tables, see stVolumeIO); a network disk source
// only gets the checks through the backend's API.
func stTestClone(t *testing.T, h StorageHarness, pool driver.PoolSpec) {
	b := h.Backend
	caps := b.Info().Capabilities
	cl, ok := b.(driver.VolumeCloner)
	if !ok {
		require.False(t, caps.InstantClone, "a backend that declares InstantClone must implement driver.VolumeCloner")
		t.Skip("the backend does not implement driver.VolumeCloner")
	}

	for _, format := range caps.VolumeFormats {
		t.Run(string(format), func(t *testing.T) { stTestCloneFormat(t, b, cl, pool, format) })
	}

	t.Run("Concurrently", func(t *testing.T) {
		ctx := stCtx(t)
		format := caps.VolumeFormats[0]
		src, dst := stNewID(), stNewID()
		_, err := b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: src, Format: format, Size: 8 * stMiB})
		require.NoError(t, err)
		t.Cleanup(func() { stDeleteVolumes(t, b, pool, src, dst) })
		errs := stConcurrently(6, func() error {
			_, err := cl.CloneVolume(ctx, pool, driver.VolumeSpec{ID: src, Format: format}, dst)
			return err
		})
		stCheckOneWinner(t, errs)
		got, err := b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: dst, Format: format})
		require.NoError(t, err)
		require.Equal(t, 8*stMiB, got.VirtualSize)
		stCheckNoPartial(t, b.DiskSource(pool, driver.KindVolume, dst))
	})

	t.Run("CancelledContext", func(t *testing.T) {
		format := caps.VolumeFormats[0]
		src, dst := stNewID(), stNewID()
		_, err := b.CreateVolume(stCtx(t), pool, driver.VolumeSpec{ID: src, Format: format, Size: 8 * stMiB})
		require.NoError(t, err)
		t.Cleanup(func() { stDeleteVolumes(t, b, pool, src, dst) })
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err = cl.CloneVolume(ctx, pool, driver.VolumeSpec{ID: src, Format: format}, dst)
		require.Error(t, err, "a cancelled context must stop CloneVolume")
		_, err = b.InspectVolume(stCtx(t), pool, driver.VolumeSpec{ID: dst, Format: format})
		require.ErrorIs(t, err, driver.ErrNotFound, "no volume after a cancelled clone")
		stCheckNoFile(t, b.DiskSource(pool, driver.KindVolume, dst))
	})
}

// stTestCloneFormat is the Clone case for one volume format.
func stTestCloneFormat(t *testing.T, b driver.StorageBackend, cl driver.VolumeCloner, pool driver.PoolSpec, format driver.VolumeFormat) {
	ctx := stCtx(t)
	src, dst := stNewID(), stNewID()
	srcSpec := driver.VolumeSpec{ID: src, Format: format}
	_, err := b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: src, Format: format, Size: stCloneSize})
	require.NoError(t, err)
	t.Cleanup(func() { stDeleteVolumes(t, b, pool, src, dst) })

	srcDisk := b.DiskSource(pool, driver.KindVolume, src)
	local := srcDisk.Type == "file"
	writable := false
	if local {
		v := stOpenVolume(t, srcDisk.Path, format)
		writable = v.writable(stCloneRegions)
		if writable {
			v.writeRegions(t, 1)
		} else {
			t.Logf("%s volume: the clusters of the test ranges are not allocated; comparing whole files only", format)
		}
		v.close(t)
	} else {
		t.Logf("%s disk source: content checks skipped, the suite reads and writes only local files", srcDisk.Type)
	}
	var srcFile, srcGuest [sha256.Size]byte
	if local {
		srcFile, srcGuest = stFileSum(t, srcDisk.Path), stGuestSum(t, srcDisk.Path, format)
	}

	info, err := cl.CloneVolume(ctx, pool, srcSpec, dst)
	require.NoError(t, err, "CloneVolume")
	require.Equal(t, format, info.Format, "the clone has the source's format")
	require.Equal(t, stCloneSize, info.VirtualSize, "the clone has the source's virtual size")
	got, err := b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: dst, Format: format})
	require.NoError(t, err, "InspectVolume of the clone")
	require.Equal(t, format, got.Format)
	require.Equal(t, stCloneSize, got.VirtualSize)
	require.Less(t, got.Allocated, stCloneSize/2, "a clone of a thin volume stays thin")
	dstDisk := b.DiskSource(pool, driver.KindVolume, dst)
	stCheckDiskSource(t, dstDisk, format, stCloneSize)
	stCheckNoPartial(t, dstDisk)

	var dstGuest [sha256.Size]byte
	if local {
		require.Equal(t, "file", dstDisk.Type)
		require.NotEqual(t, srcDisk.Path, dstDisk.Path)
		require.Equal(t, srcFile, stFileSum(t, dstDisk.Path), "the clone's file is the source's, byte for byte")
		require.Equal(t, srcGuest, stGuestSum(t, dstDisk.Path, format), "the clone's guest data is the source's")
		if writable {
			d := stOpenVolume(t, dstDisk.Path, format)
			d.checkRegions(t, 1, "the clone holds the source's data")
			d.writeRegions(t, 2)
			d.close(t)
			require.Equal(t, srcFile, stFileSum(t, srcDisk.Path), "writing to the clone leaves the source unchanged")
			require.Equal(t, srcGuest, stGuestSum(t, srcDisk.Path, format))
			dstGuest = stGuestSum(t, dstDisk.Path, format)
			require.NotEqual(t, srcGuest, dstGuest)

			s := stOpenVolume(t, srcDisk.Path, format)
			s.writeRegions(t, 3)
			s.close(t)
			require.Equal(t, dstGuest, stGuestSum(t, dstDisk.Path, format), "writing to the source leaves the clone unchanged")
			d = stOpenVolume(t, dstDisk.Path, format)
			d.checkRegions(t, 2, "the clone keeps what was written to it")
			d.close(t)
		} else {
			dstGuest = srcGuest
		}
	}
	var dstFile [sha256.Size]byte
	if local {
		dstFile = stFileSum(t, dstDisk.Path)
	}

	t.Run("OntoExisting", func(t *testing.T) {
		ctx := stCtx(t)
		_, err := cl.CloneVolume(ctx, pool, srcSpec, dst)
		require.ErrorIs(t, err, driver.ErrAlreadyExists, "cloning onto an existing volume")
		_, err = cl.CloneVolume(ctx, pool, srcSpec, src)
		require.ErrorIs(t, err, driver.ErrAlreadyExists, "cloning a volume onto itself")
		if local {
			require.Equal(t, dstFile, stFileSum(t, dstDisk.Path), "a refused clone leaves the existing volume as it was")
		}
		got, err := b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: dst, Format: format})
		require.NoError(t, err)
		require.Equal(t, stCloneSize, got.VirtualSize)
		stCheckNoPartial(t, dstDisk)
	})

	t.Run("MissingSource", func(t *testing.T) {
		ctx := stCtx(t)
		other := stNewID()
		_, err := cl.CloneVolume(ctx, pool, driver.VolumeSpec{ID: stNewID(), Format: format}, other)
		require.ErrorIs(t, err, driver.ErrNotFound)
		_, err = b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: other, Format: format})
		require.ErrorIs(t, err, driver.ErrNotFound, "a failed clone leaves no volume")
		stCheckNoFile(t, b.DiskSource(pool, driver.KindVolume, other))
	})

	t.Run("SourceDeleted", func(t *testing.T) {
		ctx := stCtx(t)
		require.NoError(t, b.DeleteVolume(ctx, pool, src))
		got, err := b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: dst, Format: format})
		require.NoError(t, err, "the clone outlives its source")
		require.Equal(t, format, got.Format)
		require.Equal(t, stCloneSize, got.VirtualSize)
		if local {
			require.Equal(t, dstFile, stFileSum(t, dstDisk.Path), "the clone is intact once its source is deleted")
			require.Equal(t, dstGuest, stGuestSum(t, dstDisk.Path, format))
		}
		stCheckDiskSource(t, dstDisk, format, stCloneSize)
	})
}

// stDeleteVolumes deletes volumes at the end of a test, reporting failures.
func stDeleteVolumes(t *testing.T, b driver.StorageBackend, pool driver.PoolSpec, ids ...uuid.UUID) {
	ctx, cancel := context.WithTimeout(context.Background(), stTimeout)
	defer cancel()
	for _, id := range ids {
		if err := b.DeleteVolume(ctx, pool, id); err != nil {
			t.Errorf("DeleteVolume %s at cleanup: %v", id, err)
		}
	}
}

// stCheckNoPartial checks that no partial file is left next to the file of an existing object (a name that
// starts with the object's file name and a dot).
func stCheckNoPartial(t *testing.T, src driver.DiskSource) {
	t.Helper()
	if src.Type != "file" {
		return
	}
	left, err := filepath.Glob(src.Path + ".*")
	require.NoError(t, err)
	require.Empty(t, left, "partial files left next to %s", src.Path)
}

// stFileSum is the SHA-256 of a whole file.
func stFileSum(t testing.TB, path string) [sha256.Size]byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return [sha256.Size]byte(h.Sum(nil))
}

// stGuestSum is the SHA-256 of the guest data of a volume file.
func stGuestSum(t testing.TB, path string, format driver.VolumeFormat) [sha256.Size]byte {
	t.Helper()
	v := stOpenVolume(t, path, format)
	defer v.close(t)
	h := sha256.New()
	_, err := io.Copy(h, io.NewSectionReader(v, 0, v.size))
	require.NoError(t, err)
	return [sha256.Size]byte(h.Sum(nil))
}

// stRegionData is the content written to a region in round seed.
func stRegionData(i int, n int64, seed uint64) []byte {
	return stPattern(n, seed*16+uint64(i))
}

// stVolumeIO reads and writes the guest data of a local volume file: a raw file directly, a qcow2 image
// through internal/qcow2's Reader and its L1 and L2 tables. internal/qcow2 has no writer, so writes into a
// qcow2 image go only into data clusters the image already maps (metadata preallocation maps them all);
// writable reports whether a range can be written.
type stVolumeIO struct {
	f      *os.File
	format driver.VolumeFormat
	size   int64
	h      *qcow2.Header // qcow2 only
	r      *qcow2.Reader // qcow2 only
}

// stOpenVolume opens a volume file for reading and writing.
func stOpenVolume(t testing.TB, path string, format driver.VolumeFormat) *stVolumeIO {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	v := &stVolumeIO{f: f, format: format}
	if format != driver.FormatQCOW2 {
		fi, err := f.Stat()
		require.NoError(t, err)
		v.size = fi.Size()
		return v
	}
	v.h, err = qcow2.ReadHeader(f)
	require.NoError(t, err)
	v.r, err = qcow2.NewReader(f)
	require.NoError(t, err)
	v.size = v.h.VirtualSize
	return v
}

func (v *stVolumeIO) close(t testing.TB) {
	t.Helper()
	require.NoError(t, v.f.Sync())
	require.NoError(t, v.f.Close())
}

// ReadAt reads guest data.
func (v *stVolumeIO) ReadAt(p []byte, off int64) (int, error) {
	if v.r != nil {
		return v.r.ReadAt(p, off)
	}
	return v.f.ReadAt(p, off)
}

// errNotMapped is returned by hostOffset for a guest cluster the qcow2 image does not map to a data cluster.
var errNotMapped = errors.New("guest cluster not mapped to a data cluster")

// hostOffset returns where the guest byte off of a qcow2 image lives in the file.
func (v *stVolumeIO) hostOffset(off int64) (int64, error) {
	h := v.h
	if h.IncompatibleFeatures&qcow2.IncompatExtendedL2 != 0 {
		return 0, errNotMapped // subclusters: not handled here
	}
	cs := h.ClusterSize
	cluster := off / cs
	l1Index, l2Index := cluster/h.L2Entries(), cluster%h.L2Entries()
	if l1Index >= int64(h.L1Size) {
		return 0, fmt.Errorf("guest offset %d beyond the L1 table", off)
	}
	const offsetMask = 0x00fffffffffffe00
	var e [8]byte
	if _, err := v.f.ReadAt(e[:], h.L1TableOffset+8*l1Index); err != nil {
		return 0, err
	}
	l2 := int64(binary.BigEndian.Uint64(e[:]) & offsetMask)
	if l2 == 0 {
		return 0, errNotMapped
	}
	if _, err := v.f.ReadAt(e[:], l2+8*l2Index); err != nil {
		return 0, err
	}
	entry := binary.BigEndian.Uint64(e[:])
	const compressed, zero = uint64(1) << 62, uint64(1)
	host := int64(entry & offsetMask)
	if entry&compressed != 0 || entry&zero != 0 || host == 0 {
		return 0, errNotMapped
	}
	return host + off%cs, nil
}

// writable reports whether every byte of the regions can be written.
func (v *stVolumeIO) writable(regions []struct{ off, n int64 }) bool {
	if v.h == nil {
		return true
	}
	for _, r := range regions {
		for off := r.off; off < r.off+r.n; off = (off/v.h.ClusterSize + 1) * v.h.ClusterSize {
			if _, err := v.hostOffset(off); err != nil {
				return false
			}
		}
	}
	return true
}

// WriteAt writes guest data.
func (v *stVolumeIO) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > v.size {
		return 0, fmt.Errorf("write of %d bytes at %d outside the volume (%d bytes)", len(p), off, v.size)
	}
	if v.h == nil {
		return v.f.WriteAt(p, off)
	}
	n := 0
	for n < len(p) {
		cur := off + int64(n)
		k := min(int64(len(p)-n), v.h.ClusterSize-cur%v.h.ClusterSize)
		host, err := v.hostOffset(cur)
		if err != nil {
			return n, fmt.Errorf("guest offset %d: %w", cur, err)
		}
		if _, err := v.f.WriteAt(p[n:n+int(k)], host); err != nil {
			return n, err
		}
		n += int(k)
	}
	return n, nil
}

// writeRegions writes the data of round seed into stCloneRegions.
func (v *stVolumeIO) writeRegions(t testing.TB, seed uint64) {
	t.Helper()
	for i, r := range stCloneRegions {
		_, err := v.WriteAt(stRegionData(i, r.n, seed), r.off)
		require.NoError(t, err)
	}
}

// checkRegions checks that stCloneRegions hold the data of round seed.
func (v *stVolumeIO) checkRegions(t testing.TB, seed uint64, msg string) {
	t.Helper()
	for i, r := range stCloneRegions {
		got := make([]byte, r.n)
		_, err := v.ReadAt(got, r.off)
		require.NoError(t, err)
		require.True(t, bytes.Equal(stRegionData(i, r.n, seed), got), "%s: region %d (%d bytes at %d)", msg, i, r.n, r.off)
	}
}
