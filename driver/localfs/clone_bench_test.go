package localfs_test

import (
	"os"
	"path/filepath"
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

// Sizes of BenchmarkCloneQCOW2: a 10 GiB qcow2 volume holding 1 GiB of data, on a loop device of 4 GiB
// whose backing file is allocated (fallocate) on the host's disk, so that the host does not allocate blocks
// for the loop device while one case runs and not while another does.
const (
	benchCloneSize = 10 << 30
	benchCloneData = 1 << 30
	benchLoopSize  = 4 << 30
)

// benchLoop attaches a loop device whose backing file of size bytes is allocated on the host's disk and
// returns it; the file is removed and the device detached when b ends.
func benchLoop(b *testing.B, size int64) string {
	b.Helper()
	testenv.RequireRoot(b)
	f, err := os.Create(filepath.Join(b.TempDir(), "loop.img"))
	require.NoError(b, err)
	require.NoError(b, unix.Fallocate(int(f.Fd()), 0, 0, size), "allocate the loop device's backing file")
	require.NoError(b, f.Close())
	return loopdev.Attach(b, f.Name())
}

// reflinkBaselines and copyBaselines are the copies BenchmarkCloneQCOW2 times next to CloneVolume: cp
// with and without an fsync of the copy (CloneVolume syncs its clone).
var (
	reflinkBaselines = []drivertest.CloneBaseline{
		drivertest.CopyCommand("cp-reflink", false, "cp", "--reflink=always"),
		drivertest.CopyCommand("cp-reflink+fsync", true, "cp", "--reflink=always"),
	}
	copyBaselines = []drivertest.CloneBaseline{
		drivertest.CopyCommand("cp", false, "cp", "--reflink=never", "--sparse=auto"),
		drivertest.CopyCommand("cp+fsync", true, "cp", "--reflink=never", "--sparse=auto"),
	}
)

// BenchmarkCloneQCOW2 clones a 10 GiB qcow2 volume holding 1 GiB of data (drivertest.BenchmarkClone) in a
// directory-mode storage on btrfs and on xfs made with reflink=1 (CloneVolume reflinks), and on ext4
// (CloneVolume streams a sparse copy), with cp of the same file as the baseline in the same run. MB/s counts
// the 1 GiB of data.
func BenchmarkCloneQCOW2(b *testing.B) {
	for _, c := range []struct {
		fs        string
		baselines []drivertest.CloneBaseline
	}{
		{"btrfs", reflinkBaselines},
		{"xfs", reflinkBaselines},
		{"ext4", copyBaselines},
	} {
		b.Run(c.fs, func(b *testing.B) {
			mnt := cloneMountDev(b, c.fs, benchLoop(b, benchLoopSize), mkfsArgs[c.fs]...)
			drivertest.BenchmarkClone(b, drivertest.StorageHarness{
				Backend: cloneBackend(b, nil),
				Pool: func(testing.TB) driver.PoolSpec {
					return localfs.Pool(uuid.New(), localfs.Config{Path: filepath.Join(mnt, "storage")}, localfs.State{})
				},
			}, driver.FormatQCOW2, benchCloneSize, benchCloneData, c.baselines...)
		})
	}
}
