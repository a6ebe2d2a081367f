package btrfs_test

import (
	"testing"

	"github.com/google/uuid"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/btrfs"
	"github.com/openvair/openvair/driver/drivertest"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/testenv"
	"github.com/openvair/openvair/internal/testenv/loopdev"
)

// benchLoopSize is the size of every benchmark's loop device (sparse), whatever the backend.
const benchLoopSize = 8 << 30

// BenchmarkStorage runs the storage benchmarks every backend runs (drivertest.RunBenchmarks) on loop
// devices of the same size, in device mode: the btrfs backend, and localfs formatting the device with
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
				return pool(btrfs.Config{Device: loopdev.New(tb, benchLoopSize), Format: true})
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
					return localfs.Pool(uuid.New(), localfs.Config{Device: loopdev.New(tb, benchLoopSize), FSType: fsType, Format: true}, localfs.State{})
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
			return pool(btrfs.Config{Device: loopdev.New(tb, benchLoopSize), Format: true})
		},
	}, driver.FormatQCOW2, 10<<30, 1<<30,
		drivertest.CopyCommand("cp-reflink", false, "cp", "--reflink=always"),
		drivertest.CopyCommand("cp-reflink+fsync", true, "cp", "--reflink=always"))
}
