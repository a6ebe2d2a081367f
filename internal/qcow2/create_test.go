package qcow2

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/errkind"
)

type createCase struct {
	name     string
	size     int64
	cluster  int64
	prealloc string
}

var createCases = []createCase{
	{"empty", 0, 0, ""},
	{"1MiB", miB, 0, ""},
	{"1MiB+512", miB + 512, 0, ""},
	{"10GiB", 10 * giB, 0, ""},
	{"10GiB+4KiB", 10*giB + 4*kiB, 0, "off"},
	{"1TiB", tiB, 0, ""},
	{"64TiB", 64 * tiB, 0, ""},
	{"cluster512-100MiB", 100 * miB, 512, ""},
	{"cluster4KiB-1GiB+512", giB + 512, 4096, ""},
	{"cluster2MiB-1TiB", tiB, 2 * miB, ""},
	{"metadata-1MiB", miB, 0, "metadata"},
	{"metadata-1GiB+512", giB + 512, 0, "metadata"},
	{"metadata-10GiB", 10 * giB, 0, "metadata"},
	{"metadata-cluster512-20MiB+512", 20*miB + 512, 512, "metadata"},
	{"metadata-cluster2MiB-3GiB", 3 * giB, 2 * miB, "metadata"},
}

func TestCreateRoundTrip(t *testing.T) {
	for _, c := range createCases {
		t.Run(c.name, func(t *testing.T) {
			f := &memFile{}
			n, err := Create(f, c.size, CreateOptions{ClusterSize: c.cluster, Preallocation: c.prealloc})
			require.NoError(t, err)
			assert.Equal(t, f.Len(), n, "returned file size is the written length")
			h, err := ReadHeader(f)
			require.NoError(t, err)
			cs := c.cluster
			if cs == 0 {
				cs = DefaultClusterSize
			}
			assert.Equal(t, uint32(3), h.Version)
			assert.Equal(t, c.size, h.VirtualSize)
			assert.Equal(t, cs, h.ClusterSize)
			assert.Equal(t, uint32(4), h.RefcountOrder)
			assert.Equal(t, l1Needed(c.size, cs, cs/8), int64(h.L1Size))
			assert.Zero(t, h.IncompatibleFeatures)
			assert.Empty(t, h.BackingFile)
			assert.False(t, h.HasDataFile())
			assert.Zero(t, n%cs, "file ends on a cluster boundary")
			if c.prealloc == PreallocMetadata {
				assert.GreaterOrEqual(t, n, c.size, "preallocated data clusters lie inside the file")
			} else {
				assert.Less(t, n, 10*cs+int64(h.L1Size)*8, "only metadata is allocated")
			}
		})
	}
}

func TestCreateQemuCheck(t *testing.T) {
	for _, c := range createCases {
		t.Run(c.name, func(t *testing.T) {
			f, path := tempFile(t, "img.qcow2")
			n, err := Create(f, c.size, CreateOptions{ClusterSize: c.cluster, Preallocation: c.prealloc})
			require.NoError(t, err)
			require.NoError(t, f.Close())
			assert.Equal(t, fileSize(t, path), n)

			res := qemuCheck(t, path)
			cs := c.cluster
			if cs == 0 {
				cs = DefaultClusterSize
			}
			assert.Equal(t, n, res.ImageEndOffset)
			if c.prealloc == PreallocMetadata {
				assert.Equal(t, ceilDiv(c.size, cs), res.AllocatedClust, "every data cluster is allocated")
			} else {
				assert.Zero(t, res.AllocatedClust)
			}
			info := qemuInfo(t, path)
			assert.Equal(t, c.size, info.VirtualSize)
			assert.Equal(t, cs, info.ClusterSize)
			assert.Equal(t, "1.1", info.FormatSpecific.Data.Compat)
		})
	}
}

func TestCreateInvalid(t *testing.T) {
	cases := []struct {
		name string
		size int64
		opts CreateOptions
	}{
		{"negative size", -512, CreateOptions{}},
		{"size not multiple of 512", miB + 1, CreateOptions{}},
		{"cluster not power of two", miB, CreateOptions{ClusterSize: 65535}},
		{"cluster too small", miB, CreateOptions{ClusterSize: 256}},
		{"cluster too large", miB, CreateOptions{ClusterSize: 4 * miB}},
		{"negative cluster", miB, CreateOptions{ClusterSize: -65536}},
		{"unknown preallocation", miB, CreateOptions{Preallocation: "full"}},
		{"too large for L1", 1 << 62, CreateOptions{ClusterSize: 512}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &memFile{}
			_, err := Create(f, c.size, c.opts)
			require.ErrorIs(t, err, errkind.Invalid)
			assert.Zero(t, f.Len(), "nothing written on refusal")
		})
	}
}

// TestCreateHeaderWrittenLast: a Create cut short by a failed write leaves no valid header behind.
func TestCreateHeaderWrittenLast(t *testing.T) {
	for n := 0; ; n++ {
		mem := &memFile{}
		ff := &failingFile{f: mem, n: n}
		_, err := Create(ff, 10*giB, CreateOptions{Preallocation: PreallocMetadata})
		if err == nil {
			require.Greater(t, n, 1)
			_, err := ReadHeader(mem)
			require.NoError(t, err)
			return
		}
		require.ErrorIs(t, err, errCrash)
		_, err = ReadHeader(mem)
		require.ErrorIs(t, err, errkind.Invalid, "after %d writes", n)
	}
}

func TestCreateRefusesNonEmptyFile(t *testing.T) {
	f := &memFile{}
	_, _ = f.WriteAt([]byte("old data"), 0)
	_, err := Create(f, miB, CreateOptions{})
	require.ErrorIs(t, err, errkind.Invalid)
	assert.Equal(t, []byte("old data"), f.Bytes(100))
}
