package qcow2

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/testenv"
)

// growCase is an image made by our Create (qemu == nil) or by qemu-img create, grown through sizes.
type growCase struct {
	name     string
	qemu     []string // qemu-img create options; nil for our Create
	cluster  int64
	prealloc string
	from     int64
	to       []int64
	// relocates lists what must have moved at some step: "l1", "refcount table".
	relocates []string
}

var growCases = []growCase{
	{name: "1MiB to 10GiB to 1TiB", from: miB, to: []int64{10 * giB, tiB}},
	{name: "across 64KiB L1 cluster", from: tiB, to: []int64{5 * tiB}, relocates: []string{"l1"}},
	{name: "from empty", from: 0, to: []int64{miB, miB + 512, 10*giB + 4096}, relocates: []string{"l1"}},
	{name: "cluster512 across L1 clusters", cluster: 512, from: miB, to: []int64{4 * miB, 64*miB + 512, giB}, relocates: []string{"l1"}},
	{name: "cluster512 metadata refcount growth", cluster: 512, prealloc: PreallocMetadata, from: 7 * miB,
		to: []int64{8 * miB, 16 * miB, 256 * miB, 4 * giB, 64 * giB}, relocates: []string{"l1", "refcount table"}},
	{name: "cluster2MiB", cluster: 2 * miB, from: 3 * giB, to: []int64{tiB, 300 * tiB}},
	{name: "metadata 1GiB", prealloc: PreallocMetadata, from: giB, to: []int64{giB + 512, 20 * giB}},
	{name: "qemu v2", qemu: []string{"-o", "compat=0.10"}, from: giB, to: []int64{5 * tiB}, relocates: []string{"l1"}},
	{name: "qemu refcount bits 1", qemu: []string{"-o", "refcount_bits=1,cluster_size=512,preallocation=metadata"}, from: 120 * miB,
		to: []int64{giB, 64 * giB}, relocates: []string{"l1", "refcount table"}},
	{name: "qemu refcount bits 64", qemu: []string{"-o", "refcount_bits=64,cluster_size=512,preallocation=metadata"}, from: 1536 * kiB,
		to: []int64{100 * miB, 4 * giB}, relocates: []string{"l1", "refcount table"}},
	{name: "qemu extended l2", qemu: []string{"-o", "extended_l2=on"}, from: giB, to: []int64{2 * tiB, 3 * tiB}, relocates: []string{"l1"}},
	{name: "qemu lazy refcounts", qemu: []string{"-o", "lazy_refcounts=on"}, from: giB, to: []int64{5 * tiB}},
	{name: "qemu metadata", qemu: []string{"-o", "preallocation=metadata"}, from: 100 * miB, to: []int64{10 * giB}},
	{name: "qemu zstd", qemu: []string{"-o", "compression_type=zstd"}, from: giB, to: []int64{10 * giB}},
}

// makeImage creates the starting image of a case and returns its path.
func makeImage(t *testing.T, c growCase) string {
	t.Helper()
	if c.qemu != nil {
		path := filepath.Join(t.TempDir(), "img.qcow2")
		args := append(append([]string{"create", "-q", "-f", "qcow2"}, c.qemu...), path, fmt.Sprint(c.from))
		qemuImg(t, args...)
		return path
	}
	f, path := tempFile(t, "img.qcow2")
	_, err := Create(f, c.from, CreateOptions{ClusterSize: c.cluster, Preallocation: c.prealloc})
	require.NoError(t, err)
	return path
}

// qemuIO runs qemu-io commands on an image and fails the test on a verification failure.
func qemuIO(t testing.TB, path string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	bin := testenv.LookPath(t, "qemu-io")
	out, err := runCmd(bin, append(args, path)...)
	require.NoError(t, err, "qemu-io %v: %s", cmds, out)
	require.NotContains(t, out, "fail", "qemu-io %v: %s", cmds, out)
	require.NotContains(t, out, "error", "qemu-io %v: %s", cmds, out)
}

func TestGrowQemuOracle(t *testing.T) {
	for _, c := range growCases {
		t.Run(c.name, func(t *testing.T) {
			path := makeImage(t, c)
			if c.from >= miB {
				// Data written before growing must still be there after.
				qemuIO(t, path, "write -P 0xab 0 64k", fmt.Sprintf("write -P 0xcd %d 512", c.from-512))
			}
			first, err := ReadHeader(openFile(t, path))
			require.NoError(t, err)
			moved := map[string]bool{}
			prev := first
			for _, size := range c.to {
				f := openFile(t, path)
				n, err := Grow(f, fileSize(t, path), size)
				require.NoError(t, err, "grow to %d", size)
				require.NoError(t, f.Close())
				assert.Equal(t, fileSize(t, path), n, "returned file size")

				h, err := ReadHeader(openFile(t, path))
				require.NoError(t, err)
				assert.Equal(t, size, h.VirtualSize)
				assert.Zero(t, h.AutoclearFeatures)
				moved["l1"] = moved["l1"] || h.L1TableOffset != prev.L1TableOffset
				moved["refcount table"] = moved["refcount table"] || h.RefcountTableOffset != prev.RefcountTableOffset
				prev = h

				qemuCheck(t, path)
				assert.Equal(t, size, qemuInfo(t, path).VirtualSize)
			}
			for _, what := range c.relocates {
				assert.True(t, moved[what], "%s was relocated", what)
			}
			last := c.to[len(c.to)-1]
			cmds := []string{fmt.Sprintf("read -P 0 %d 512", last-512)}
			if c.from >= miB {
				cmds = append(cmds, "read -P 0xab 0 64k", fmt.Sprintf("read -P 0xcd %d 512", c.from-512))
			}
			qemuIO(t, path, cmds...)
		})
	}
}

// TestGrowQemuSpecialImages grows images with a backing file and an external data file.
func TestGrowQemuSpecialImages(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", base, "64M")
	cases := []struct {
		name string
		opts []string
	}{
		{"backing file", []string{"-b", base, "-F", "qcow2"}},
		{"data file", []string{"-o", "data_file=" + filepath.Join(dir, "data.raw")}},
		{"data file raw", []string{"-o", "data_file=" + filepath.Join(dir, "data2.raw") + ",data_file_raw=on"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "img.qcow2")
			qemuImg(t, append(append([]string{"create", "-q", "-f", "qcow2"}, c.opts...), path, "64M")...)
			f := openFile(t, path)
			_, err := Grow(f, fileSize(t, path), 5*tiB)
			require.NoError(t, err)
			qemuCheck(t, path)
			info := qemuInfo(t, path)
			assert.Equal(t, 5*tiB, info.VirtualSize)
			h, err := ReadHeader(f)
			require.NoError(t, err)
			assert.Equal(t, info.BackingFile, h.BackingFile)
			assert.Equal(t, info.FormatSpecific.Data.DataFile, h.ExternalDataFile)
		})
	}
}

func TestGrowRefuses(t *testing.T) {
	be := binary.BigEndian
	cases := []struct {
		name    string
		mutate  func(h []byte)
		newSize int64
		kind    error
	}{
		{"shrink", nil, giB - 512, errkind.Invalid},
		{"not multiple of 512", nil, 2*giB + 1, errkind.Invalid},
		{"too large", nil, 1 << 62, errkind.Invalid},
		{"unknown incompatible feature", func(h []byte) { be.PutUint64(h[72:], 1<<5) }, 2 * giB, errkind.Unsupported},
		{"dirty", func(h []byte) { be.PutUint64(h[72:], IncompatDirty) }, 2 * giB, errkind.Invalid},
		{"corrupt", func(h []byte) { be.PutUint64(h[72:], IncompatCorrupt) }, 2 * giB, errkind.Invalid},
		{"not qcow2", func(h []byte) { h[0] = 'X' }, 2 * giB, errkind.Invalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &memFile{}
			n, err := Create(f, giB, CreateOptions{})
			require.NoError(t, err)
			if c.mutate != nil {
				hdr := f.Bytes(512)
				c.mutate(hdr)
				_, _ = f.WriteAt(hdr, 0)
			}
			before := f.Bytes(n)
			_, err = Grow(f, n, c.newSize)
			require.ErrorIs(t, err, c.kind)
			assert.Equal(t, before, f.Bytes(f.Len()), "image unchanged")
		})
	}
	t.Run("file size below metadata", func(t *testing.T) {
		f := &memFile{}
		_, err := Create(f, giB, CreateOptions{})
		require.NoError(t, err)
		_, err = Grow(f, 65536, 2*giB)
		require.ErrorIs(t, err, errkind.Invalid)
	})
	t.Run("same size is a no-op", func(t *testing.T) {
		f := &memFile{}
		n, err := Create(f, giB, CreateOptions{})
		require.NoError(t, err)
		before := f.Bytes(n)
		m, err := Grow(f, n, giB)
		require.NoError(t, err)
		assert.Equal(t, n, m)
		assert.Equal(t, before, f.Bytes(f.Len()))
	})
}

// TestGrowRefusesBitmaps: an image with a persistent dirty bitmap is refused untouched.
func TestGrowRefusesBitmaps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", path, "64M")
	qemuImg(t, "bitmap", "--add", path, "b0")
	before := fileSize(t, path)
	_, err := Grow(openFile(t, path), before, giB)
	require.ErrorIs(t, err, errkind.Unsupported)
	assert.Equal(t, 64*miB, qemuInfo(t, path).VirtualSize)
	qemuCheck(t, path)
}

// TestGrowStaleFileSize: a fileSize smaller than the real end never makes Grow overwrite used clusters.
func TestGrowStaleFileSize(t *testing.T) {
	f, path := tempFile(t, "img.qcow2")
	n, err := Create(f, 64*miB, CreateOptions{ClusterSize: 512, Preallocation: PreallocMetadata})
	require.NoError(t, err)
	qemuIO(t, path, "write -P 0x5a 0 64M")
	m, err := Grow(f, n/2, 8*giB)
	require.NoError(t, err)
	assert.Greater(t, m, n)
	qemuCheck(t, path)
	qemuIO(t, path, "read -P 0x5a 0 64M", "read -P 0 64M 1M")
}

// TestGrowCrashConsistent cuts Grow off after each of its writes in turn and checks that the image is
// still consistent (leaks allowed), keeps its data, has the old or the new size, and can be grown again.
func TestGrowCrashConsistent(t *testing.T) {
	cases := []growCase{
		{name: "L1 in place", from: giB, to: []int64{2 * giB}},
		{name: "L1 and refcount table relocated", cluster: 512, prealloc: PreallocMetadata, from: 7*miB + 512*1024, to: []int64{4 * giB}, relocates: []string{"refcount table"}},
		{name: "qemu refcount bits 1", qemu: []string{"-o", "refcount_bits=1,cluster_size=512,preallocation=metadata"}, from: 2 * miB, to: []int64{giB}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			orig := makeImage(t, c)
			qemuIO(t, orig, "write -P 0x77 0 128k")
			before, err := ReadHeader(openFile(t, orig))
			require.NoError(t, err)
			newSize := c.to[0]
			for n := 0; ; n++ {
				path := filepath.Join(t.TempDir(), "crash.qcow2")
				copyFile(t, orig, path)
				f := openFile(t, path)
				_, err := Grow(&failingFile{f: f, n: n}, fileSize(t, path), newSize)
				if err == nil {
					require.GreaterOrEqual(t, n, 2, "Grow makes several ordered writes")
					qemuCheck(t, path)
					if len(c.relocates) > 0 {
						after, err := ReadHeader(f)
						require.NoError(t, err)
						assert.NotEqual(t, before.RefcountTableOffset, after.RefcountTableOffset)
					}
					return
				}
				require.ErrorIs(t, err, errCrash)

				res := qemuCheckLeaky(t, path)
				assert.Zero(t, res.CheckErrors, "after %d writes", n)
				assert.Zero(t, res.Corruptions, "after %d writes", n)
				size := qemuInfo(t, path).VirtualSize
				assert.Contains(t, []int64{c.from, newSize}, size, "after %d writes", n)
				qemuIO(t, path, "read -P 0x77 0 128k")

				// Retrying on the interrupted image succeeds.
				_, err = Grow(f, fileSize(t, path), newSize)
				require.NoError(t, err, "retry after %d writes", n)
				res = qemuCheckLeaky(t, path)
				assert.Zero(t, res.CheckErrors+res.Corruptions, "retry after %d writes", n)
				assert.Equal(t, newSize, qemuInfo(t, path).VirtualSize)
				qemuIO(t, path, "read -P 0x77 0 128k")
				require.Less(t, n, 100, "Grow never finished")
			}
		})
	}
}
