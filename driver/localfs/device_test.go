package localfs_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/drivertest"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/testenv"
	"github.com/openvair/openvair/internal/testenv/loopdev"
)

// loopSize is the size of the loop devices (sparse); mkfs.xfs refuses filesystems under 300 MiB.
const loopSize = 512 << 20

// requireDeviceTools skips (or fails in CI) without root, losetup and the mkfs of fsType.
func requireDeviceTools(t *testing.T, fsType string) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.LookPath(t, "losetup")
	testenv.LookPath(t, "mkfs."+fsType)
}

func devicePool(dev, fsType string) driver.PoolSpec {
	return localfs.Pool(uuid.New(), localfs.Config{Device: dev, FSType: fsType, Format: true}, localfs.State{})
}

// TestDeviceSuite runs the conformance suite on loop devices formatted with ext4 and with xfs.
func TestDeviceSuite(t *testing.T) {
	for _, fsType := range []string{"ext4", "xfs"} {
		t.Run(fsType, func(t *testing.T) {
			requireDeviceTools(t, fsType)
			dataDir := t.TempDir()
			open := openAt(dataDir)
			drivertest.RunStorageSuite(t, drivertest.StorageHarness{
				Backend: open(t),
				Open:    open,
				Pool: func(t testing.TB) driver.PoolSpec {
					return devicePool(loopdev.New(t, loopSize), fsType)
				},
				Stop: func(t *testing.T, pool driver.PoolSpec) {
					require.NoError(t, unix.Unmount(filepath.Join(dataDir, "mnt", pool.ID.String()), 0))
				},
				Restart: func(t *testing.T, pool driver.PoolSpec) {}, // Prepare mounts the device again
			})
		})
	}
}

func mkfsExt4(t *testing.T, dev string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "mkfs.ext4", "-q", "-F", dev).CombinedOutput()
	require.NoError(t, err, "mkfs.ext4: %s", out)
}

func blkidUUID(t *testing.T, dev string) string {
	t.Helper()
	bin := testenv.LookPath(t, "blkid")
	out, err := exec.CommandContext(t.Context(), bin, "-p", "-o", "value", "-s", "UUID", dev).Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

func TestDeviceRefused(t *testing.T) {
	requireDeviceTools(t, "ext4")
	b := newBackend(t)
	ctx := t.Context()

	t.Run("Paths", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "disk.img")
		require.NoError(t, os.WriteFile(file, nil, 0o600))
		for name, dev := range map[string]string{
			"relative":       "dev/loop0",
			"outside /dev":   file,
			"unclean":        "/dev/../dev/loop0",
			"char device":    "/dev/null",
			"missing device": "/dev/openvair-no-such-device",
			"directory":      "/dev/disk",
		} {
			_, err := b.Prepare(ctx, devicePool(dev, "ext4"))
			require.ErrorIs(t, err, driver.ErrInvalid, name)
		}
	})

	t.Run("NoFormatFlag", func(t *testing.T) {
		dev := loopdev.New(t, loopSize)
		pool := devicePool(dev, "ext4")
		pool = edit(pool, func(c *localfs.Config) { c.Format = false })
		_, err := b.Prepare(ctx, pool)
		require.ErrorIs(t, err, driver.ErrInvalid)
	})

	t.Run("ReuseWithoutFilesystem", func(t *testing.T) {
		dev := loopdev.New(t, loopSize)
		pool := devicePool(dev, "ext4")
		pool = edit(pool, func(c *localfs.Config) { c.Format, c.ReuseFilesystem = false, true })
		_, err := b.Prepare(ctx, pool)
		require.ErrorIs(t, err, driver.ErrInvalid)
	})

	t.Run("BadFSType", func(t *testing.T) {
		_, err := b.Prepare(ctx, devicePool(loopdev.New(t, loopSize), "zfs"))
		require.ErrorIs(t, err, driver.ErrInvalid)
	})

	t.Run("Mounted", func(t *testing.T) {
		dev := loopdev.New(t, loopSize)
		mkfsExt4(t, dev)
		mnt := t.TempDir()
		require.NoError(t, unix.Mount(dev, mnt, "ext4", 0, ""))
		t.Cleanup(func() { _ = unix.Unmount(mnt, 0) })
		pool := devicePool(dev, "ext4")
		pool = edit(pool, func(c *localfs.Config) { c.ReuseFilesystem = true })
		_, err := b.Prepare(ctx, pool)
		require.ErrorIs(t, err, driver.ErrInUse)
		require.Contains(t, err.Error(), mnt)
	})

	t.Run("ExistingFilesystem", func(t *testing.T) {
		dev := loopdev.New(t, loopSize)
		mkfsExt4(t, dev)
		want := blkidUUID(t, dev)
		_, err := b.Prepare(ctx, devicePool(dev, "ext4"))
		require.ErrorIs(t, err, driver.ErrInUse, "Format must not wipe an existing filesystem")
		require.Equal(t, want, blkidUUID(t, dev), "the filesystem is untouched")

		pool := devicePool(dev, "xfs")
		pool = edit(pool, func(c *localfs.Config) { c.ReuseFilesystem = true })
		_, err = b.Prepare(ctx, pool)
		require.ErrorIs(t, err, driver.ErrInvalid, "reuse with another fs_type")

		pool = devicePool(dev, "")
		pool = edit(pool, func(c *localfs.Config) { c.Format, c.ReuseFilesystem = false, true })
		state, err := b.Prepare(ctx, pool)
		require.NoError(t, err, "ReuseFilesystem mounts it")
		t.Cleanup(func() { _ = b.Teardown(ctx, pool) })
		require.Equal(t, want, stateOf(t, state).FSUUID)
		require.NoError(t, b.Teardown(ctx, pool))
	})

	t.Run("OtherSignature", func(t *testing.T) {
		dev := loopdev.New(t, loopSize)
		f, err := os.OpenFile(dev, os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = f.WriteAt([]byte("EFI PART"), 512) // a GPT header
		require.NoError(t, err)
		require.NoError(t, f.Close())
		pool := devicePool(dev, "ext4")
		pool = edit(pool, func(c *localfs.Config) { c.ReuseFilesystem = true })
		_, err = b.Prepare(ctx, pool)
		require.ErrorIs(t, err, driver.ErrInUse)
	})
}

// TestDeviceBusy: Teardown refuses to unmount a storage with open files (ErrInUse) and succeeds once they
// are closed.
func TestDeviceBusy(t *testing.T) {
	requireDeviceTools(t, "ext4")
	b := newBackend(t)
	ctx := t.Context()
	pool := devicePool(loopdev.New(t, loopSize), "ext4")
	state, err := b.Prepare(ctx, pool)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Teardown(ctx, pool) })
	id := uuid.New()
	_, err = b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: driver.FormatQCOW2, Size: 1 << 30})
	require.NoError(t, err)
	f, err := os.Open(b.DiskSource(pool, driver.KindVolume, id).Path)
	require.NoError(t, err)
	require.ErrorIs(t, b.Teardown(ctx, pool), driver.ErrInUse)
	_, err = b.Status(ctx, pool)
	require.NoError(t, err, "a refused teardown leaves the storage mounted")
	require.NoError(t, f.Close())
	require.NoError(t, b.Teardown(ctx, pool))
	_, err = os.Stat(state.MountPoint)
	require.ErrorIs(t, err, os.ErrNotExist, "Teardown removes the mount point")
	_, err = b.Status(ctx, pool)
	require.ErrorIs(t, err, driver.ErrUnavailable)
	_, err = b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: id})
	require.ErrorIs(t, err, driver.ErrUnavailable, "objects of an unmounted storage are unavailable, not missing")
}

// TestDeviceRenamed: a storage whose device comes back under another name is found by its filesystem UUID,
// and the device now at the old path is not formatted.
func TestDeviceRenamed(t *testing.T) {
	requireDeviceTools(t, "ext4")
	b := newBackend(t)
	ctx := t.Context()

	backing := loopdev.NewBackingFile(t, loopSize)
	first := loopdev.Attach(t, backing)
	pool := devicePool(first, "ext4")
	state, err := b.Prepare(ctx, pool)
	require.NoError(t, err)
	pool = state.Apply(pool)
	vol := uuid.New()
	_, err = b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: vol, Format: driver.FormatRaw, Size: 1 << 20})
	require.NoError(t, err)
	require.NoError(t, b.Teardown(ctx, pool))

	// The storage comes back under another name; a blank device probably takes the old one (losetup picks
	// the lowest free number), else the old name is an unattached loop device.
	moved := loopdev.Attach(t, backing)
	require.NotEqual(t, first, moved)
	loopdev.Detach(t, first)
	blank := loopdev.New(t, loopSize)
	t.Logf("storage was %s, now %s; %s is blank", first, moved, blank)

	state2, err := b.Prepare(ctx, pool)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Teardown(ctx, pool) })
	require.Equal(t, stateOf(t, state).FSUUID, stateOf(t, state2).FSUUID)
	_, err = b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: vol})
	require.NoError(t, err, "the volume is on the device found by UUID")
	for _, dev := range []string{first, blank} {
		sig, err := exec.CommandContext(ctx, "blkid", "-p", dev).CombinedOutput()
		require.Error(t, err, "%s must stay blank: %s", dev, sig)
	}
	require.NoError(t, b.Teardown(ctx, pool))

	// The old name is now an unattached loop device: still found.
	loopdev.Detach(t, blank)
	_, err = b.Prepare(ctx, pool)
	require.NoError(t, err, "device path now unattached")
	require.NoError(t, b.Teardown(ctx, pool))

	// Without a device carrying the UUID, Prepare reports the storage unavailable and formats nothing.
	loopdev.Detach(t, moved)
	_, err = b.Prepare(ctx, pool)
	require.ErrorIs(t, err, driver.ErrUnavailable)
}

// TestFullDisk: an upload that fills the storage fails with a clear "storage is full" error wrapping
// ErrTooLarge and leaves no partial file, on a tmpfs (directory mode) and on a small ext4 device.
func TestFullDisk(t *testing.T) {
	testenv.RequireRoot(t)
	ctx := t.Context()
	check := func(t *testing.T, b *localfs.Backend, pool driver.PoolSpec) {
		id := uuid.New()
		_, err := b.WriteImage(ctx, pool, driver.ImageWrite{ID: id}, zeroReader(64<<20))
		require.ErrorIs(t, err, driver.ErrTooLarge)
		require.Contains(t, err.Error(), "storage is full")
		left, _ := filepath.Glob(b.DiskSource(pool, driver.KindImage, id).Path + "*")
		require.Empty(t, left, "partial upload left behind")
		vol := uuid.New()
		_, err = b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: vol, Format: driver.FormatRaw, Size: 1 << 20})
		require.NoError(t, err, "the storage is usable again after the failed upload")
		require.NoError(t, b.DeleteVolume(ctx, pool, vol))
	}
	t.Run("tmpfs", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "size=8m"))
		t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
		b := newBackend(t)
		pool := dirPool(dir)
		_, err := b.Prepare(ctx, pool)
		require.NoError(t, err)
		check(t, b, pool)
	})
	t.Run("ext4", func(t *testing.T) {
		requireDeviceTools(t, "ext4")
		b := newBackend(t)
		pool := devicePool(loopdev.New(t, 32<<20), "ext4")
		_, err := b.Prepare(ctx, pool)
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Teardown(ctx, pool) })
		check(t, b, pool)
	})
}

// zeroes is an endless stream of zero bytes.
type zeroes struct{}

func (zeroes) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func zeroReader(n int64) io.Reader { return io.LimitReader(zeroes{}, n) }

// writeAt writes data into dev at off.
func writeAt(t *testing.T, dev string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(data, off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// readAt reads n bytes of dev at off.
func readAt(t *testing.T, dev string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(dev)
	require.NoError(t, err)
	defer f.Close()
	b := make([]byte, n)
	_, err = f.ReadAt(b, off)
	require.NoError(t, err)
	return b
}

// noise returns n bytes no probe recognises (deterministic; no boot-sector marker at 510).
func noise(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.IntN(255) + 1)
	}
	return b
}

// TestFormatRequiresBlank: format refuses (ErrInUse, naming what it found) a device holding anything —
// unrecognised data near its start or end, a signature, a filesystem — and leaves it untouched; wipe with
// format destroys it and makes the filesystem.
func TestFormatRequiresBlank(t *testing.T) {
	requireDeviceTools(t, "ext4")
	testenv.LookPath(t, "wipefs")
	b := newBackend(t)
	ctx := t.Context()
	data := noise(64 << 10)
	cases := []struct {
		name  string
		setup func(t *testing.T, dev string) (off int64) // fills the device; returns where data was written
		found string                                     // in the refusal
	}{
		{"data at the start", func(t *testing.T, dev string) int64 { writeAt(t, dev, 0, data); return 0 }, "offset 0"},
		{"data after the probed area", func(t *testing.T, dev string) int64 {
			writeAt(t, dev, 512<<10, data)
			return 512 << 10
		}, fmt.Sprintf("offset %d", 512<<10)},
		{"data at the end", func(t *testing.T, dev string) int64 {
			off := int64(loopSize - len(data))
			writeAt(t, dev, off, data)
			return off
		}, fmt.Sprintf("offset %d", loopSize-len(data))},
		{"GPT header", func(t *testing.T, dev string) int64 { writeAt(t, dev, 512, []byte("EFI PART")); return 512 }, "gpt"},
		{"ext4", func(t *testing.T, dev string) int64 { mkfsExt4(t, dev); return 1024 }, "ext4"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dev := loopdev.New(t, loopSize)
			off := c.setup(t, dev)
			before := readAt(t, dev, off, len(data))

			pool := devicePool(dev, "ext4")
			_, err := b.Prepare(ctx, pool)
			require.ErrorIs(t, err, driver.ErrInUse)
			require.Contains(t, err.Error(), c.found)
			require.Equal(t, before, readAt(t, dev, off, len(data)), "the device is untouched")

			pool = edit(pool, func(c *localfs.Config) { c.Wipe = true })
			state, err := b.Prepare(ctx, pool)
			require.NoError(t, err, "wipe with format destroys it")
			pool = state.Apply(pool)
			require.Equal(t, stateOf(t, state).FSUUID, blkidUUID(t, dev))
			require.NoError(t, b.Teardown(ctx, pool))
			out, err := exec.CommandContext(ctx, "wipefs", "--no-act", "--noheadings", "--output", "TYPE", dev).Output()
			require.NoError(t, err)
			require.Equal(t, "ext4", strings.TrimSpace(string(out)), "only the new filesystem remains")

			// The storage's own filesystem is mounted again, never wiped.
			_, err = b.Prepare(ctx, pool)
			require.NoError(t, err)
			require.Equal(t, stateOf(t, state).FSUUID, blkidUUID(t, dev))
			require.NoError(t, b.Teardown(ctx, pool))
		})
	}

	t.Run("WipeWithoutFormat", func(t *testing.T) {
		pool := devicePool(loopdev.New(t, loopSize), "ext4")
		pool = edit(pool, func(c *localfs.Config) { c.Format, c.ReuseFilesystem, c.Wipe = false, true, true })
		_, err := b.Prepare(ctx, pool)
		requireField(t, err, "config.wipe")
	})
}

// TestLocateDevice: Locate resolves a device's symbolic links (two names of one device are one location)
// and names localfs.device for a device that is missing.
func TestLocateDevice(t *testing.T) {
	requireDeviceTools(t, "ext4")
	b := newBackend(t)
	dev := loopdev.New(t, loopSize)
	link := "/dev/openvair-test-" + uuid.NewString()
	require.NoError(t, os.Symlink(dev, link))
	t.Cleanup(func() { _ = os.Remove(link) })
	got, err := check(t.Context(), b, devicePool(link, "ext4"))
	require.NoError(t, err)
	require.Equal(t, dev, stateIn(t, got).RealPath)
	require.Equal(t, link, configIn(t, got).Device)
}
