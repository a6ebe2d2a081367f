package localfs_test

import (
	"path/filepath"
	"testing"

	"github.com/google/uuid"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/drivertest"
	"github.com/openvair/openvair/driver/localfs"
)

// Sizes of BenchmarkCloneQCOW2: a 10 GiB qcow2 volume holding 1 GiB of data, on a loop device of 8 GiB
// (sparse: the source, one clone and one baseline copy at a time take at most 3 GiB of the host's disk).
const (
	benchCloneSize = 10 << 30
	benchCloneData = 1 << 30
	benchLoopSize  = 8 << 30
)

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
			mnt := cloneMount(b, c.fs, benchLoopSize, mkfsArgs[c.fs]...)
			drivertest.BenchmarkClone(b, drivertest.StorageHarness{
				Backend: cloneBackend(b, nil),
				Pool: func(testing.TB) driver.PoolSpec {
					return localfs.Pool(uuid.New(), localfs.Config{Path: filepath.Join(mnt, "storage")}, localfs.State{})
				},
			}, driver.FormatQCOW2, benchCloneSize, benchCloneData, c.baselines...)
		})
	}
}
