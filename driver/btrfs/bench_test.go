package btrfs_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/btrfs"
	"github.com/openvair/openvair/driver/drivertest"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/testenv"
	"github.com/openvair/openvair/internal/testenv/loopdev"
)

// benchLoopSize is the size of every benchmark's loop device, whatever the backend.
const benchLoopSize = 4 << 30

// benchLoop attaches a loop device whose backing file of size bytes is allocated on the host's disk
// (fallocate), so that no backend pays for the host allocating the blocks of a sparse file, and returns
// it; the file is removed and the device detached when tb ends.
func benchLoop(tb testing.TB, size int64) string {
	tb.Helper()
	testenv.RequireRoot(tb)
	f, err := os.Create(filepath.Join(tb.TempDir(), "loop.img"))
	require.NoError(tb, err)
	require.NoError(tb, unix.Fallocate(int(f.Fd()), 0, 0, size), "allocate the loop device's backing file")
	require.NoError(tb, f.Close())
	return loopdev.Attach(tb, f.Name())
}

// BenchmarkStorage runs the storage benchmarks every backend runs (drivertest.RunBenchmarks) on loop
// devices of the same size (4 GiB, allocated on the host), in device mode: the btrfs backend, and localfs formatting the device with
// ext4, xfs and btrfs (localfs/btrfs against btrfs isolates what the btrfs layer costs).
func BenchmarkStorage(b *testing.B) {
	b.Run("btrfs", func(b *testing.B) {
		requireTools(b)
		be, err := btrfs.New(driver.Config{DataDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		drivertest.RunBenchmarks(b, drivertest.StorageHarness{
			Backend: be,
			Pool: func(tb testing.TB) driver.PoolSpec {
				return pool(btrfs.Config{Device: benchLoop(tb, benchLoopSize), Format: true})
			},
		})
	})
	for _, fsType := range []string{"ext4", "xfs", "btrfs"} {
		b.Run("localfs-"+fsType, func(b *testing.B) {
			testenv.RequireRoot(b)
			testenv.LookPath(b, "mkfs."+fsType)
			be, err := localfs.New(driver.Config{DataDir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			drivertest.RunBenchmarks(b, drivertest.StorageHarness{
				Backend: be,
				Pool: func(tb testing.TB) driver.PoolSpec {
					return localfs.Pool(uuid.New(), localfs.Config{Device: benchLoop(tb, benchLoopSize), FSType: fsType, Format: true}, localfs.State{})
				},
			})
		})
	}
}

// BenchmarkCloneQCOW2 clones a 10 GiB qcow2 volume holding 1 GiB of data with the btrfs backend, in device
// mode (drivertest.BenchmarkClone), with cp --reflink=always of the same file as the baseline in the same
// run.
func BenchmarkCloneQCOW2(b *testing.B) {
	requireTools(b)
	be, err := btrfs.New(driver.Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	drivertest.BenchmarkClone(b, drivertest.StorageHarness{
		Backend: be,
		Pool: func(tb testing.TB) driver.PoolSpec {
			return pool(btrfs.Config{Device: benchLoop(tb, benchLoopSize), Format: true})
		},
	}, driver.FormatQCOW2, 10<<30, 1<<30,
		drivertest.CopyCommand("cp-reflink", false, "cp", "--reflink=always"),
		drivertest.CopyCommand("cp-reflink+fsync", true, "cp", "--reflink=always"))
}
