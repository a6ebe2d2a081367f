package qcow2

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/testenv"
)

// TestReadHeaderQemuImages reads images made by qemu-img create and compares with qemu-img info.
func TestReadHeaderQemuImages(t *testing.T) {
	testenv.LookPath(t, "qemu-img")
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", base, "64M")

	cases := []struct {
		name    string
		args    []string // options before file name and size
		size    string
		want    Header // fields compared when set (see below)
		incompt uint64
		compat  uint64
		autoclr uint64
		bfmt    string
		comp    uint8
	}{
		{name: "default", size: "1G", want: Header{Version: 3, VirtualSize: giB, ClusterSize: 65536, RefcountOrder: 4}},
		{name: "not cluster multiple", size: "1049088", want: Header{Version: 3, VirtualSize: miB + 512, ClusterSize: 65536, RefcountOrder: 4}},
		{name: "v2 compat 0.10", args: []string{"-o", "compat=0.10"}, size: "10G", want: Header{Version: 2, VirtualSize: 10 * giB, ClusterSize: 65536, RefcountOrder: 4, HeaderLength: 72}},
		{name: "cluster 512", args: []string{"-o", "cluster_size=512"}, size: "100M", want: Header{Version: 3, VirtualSize: 100 * miB, ClusterSize: 512, RefcountOrder: 4}},
		{name: "cluster 4KiB", args: []string{"-o", "cluster_size=4096"}, size: "3G", want: Header{Version: 3, VirtualSize: 3 * giB, ClusterSize: 4096, RefcountOrder: 4}},
		{name: "cluster 2MiB", args: []string{"-o", "cluster_size=2M"}, size: "1T", want: Header{Version: 3, VirtualSize: tiB, ClusterSize: 2 * miB, RefcountOrder: 4}},
		{name: "backing file", args: []string{"-b", base, "-F", "qcow2"}, size: "1G", want: Header{Version: 3, VirtualSize: giB, ClusterSize: 65536, RefcountOrder: 4, BackingFile: base}, bfmt: "qcow2"},
		{name: "backing file v2", args: []string{"-o", "compat=0.10", "-b", base, "-F", "qcow2"}, size: "64M", want: Header{Version: 2, VirtualSize: 64 * miB, ClusterSize: 65536, RefcountOrder: 4, BackingFile: base, HeaderLength: 72}, bfmt: "qcow2"},
		{name: "backing size inherited", args: []string{"-b", base, "-F", "qcow2"}, want: Header{Version: 3, VirtualSize: 64 * miB, ClusterSize: 65536, RefcountOrder: 4, BackingFile: base}, bfmt: "qcow2"},
		{name: "data file", args: []string{"-o", "data_file=" + filepath.Join(dir, "data.raw")}, size: "1G", want: Header{Version: 3, VirtualSize: giB, ClusterSize: 65536, RefcountOrder: 4, ExternalDataFile: filepath.Join(dir, "data.raw")}, incompt: IncompatDataFile},
		{name: "data file raw", args: []string{"-o", "data_file=" + filepath.Join(dir, "data2.raw") + ",data_file_raw=on"}, size: "1G", want: Header{Version: 3, VirtualSize: giB, ClusterSize: 65536, RefcountOrder: 4, ExternalDataFile: filepath.Join(dir, "data2.raw")}, incompt: IncompatDataFile, autoclr: AutoclearRawData},
		{name: "refcount bits 1", args: []string{"-o", "refcount_bits=1"}, size: "1G", want: Header{Version: 3, VirtualSize: giB, ClusterSize: 65536, RefcountOrder: 0}},
		{name: "refcount bits 64", args: []string{"-o", "refcount_bits=64"}, size: "1G", want: Header{Version: 3, VirtualSize: giB, ClusterSize: 65536, RefcountOrder: 6}},
		{name: "lazy refcounts", args: []string{"-o", "lazy_refcounts=on"}, size: "1G", want: Header{Version: 3, VirtualSize: giB, ClusterSize: 65536, RefcountOrder: 4}, compat: CompatLazyRefcounts},
		{name: "extended l2", args: []string{"-o", "extended_l2=on"}, size: "1G", want: Header{Version: 3, VirtualSize: giB, ClusterSize: 65536, RefcountOrder: 4}, incompt: IncompatExtendedL2},
		{name: "zstd", args: []string{"-o", "compression_type=zstd"}, size: "1G", want: Header{Version: 3, VirtualSize: giB, ClusterSize: 65536, RefcountOrder: 4}, incompt: IncompatCompression, comp: 1},
		{name: "metadata preallocation", args: []string{"-o", "preallocation=metadata"}, size: "100M", want: Header{Version: 3, VirtualSize: 100 * miB, ClusterSize: 65536, RefcountOrder: 4}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "img.qcow2")
			args := append(append([]string{"create", "-q", "-f", "qcow2"}, c.args...), path)
			if c.size != "" {
				args = append(args, c.size)
			}
			qemuImg(t, args...)
			h, err := ReadHeader(openFile(t, path))
			require.NoError(t, err)

			assert.Equal(t, c.want.Version, h.Version)
			assert.Equal(t, c.want.VirtualSize, h.VirtualSize)
			assert.Equal(t, c.want.ClusterSize, h.ClusterSize)
			assert.Equal(t, c.want.ClusterSize, int64(1)<<h.ClusterBits)
			assert.Equal(t, c.want.RefcountOrder, h.RefcountOrder)
			assert.Equal(t, c.want.BackingFile, h.BackingFile)
			assert.Equal(t, c.want.ExternalDataFile, h.ExternalDataFile)
			assert.Equal(t, c.bfmt, h.BackingFormat)
			assert.Equal(t, c.incompt, h.IncompatibleFeatures)
			assert.Equal(t, c.compat, h.CompatibleFeatures)
			assert.Equal(t, c.autoclr, h.AutoclearFeatures)
			assert.Equal(t, c.comp, h.CompressionType)
			assert.Equal(t, c.incompt&IncompatDataFile != 0, h.HasDataFile())
			assert.False(t, h.Dirty)
			assert.False(t, h.Corrupt)
			if c.want.HeaderLength != 0 {
				assert.Equal(t, c.want.HeaderLength, h.HeaderLength)
			} else {
				assert.GreaterOrEqual(t, h.HeaderLength, uint32(104))
			}
			assert.GreaterOrEqual(t, int64(h.L1Size), l1Needed(h.VirtualSize, h.ClusterSize, h.L2Entries()))
			assert.NotZero(t, h.RefcountTableOffset)
			assert.NotZero(t, h.RefcountTableClusters)

			info := qemuInfo(t, path)
			assert.Equal(t, info.VirtualSize, h.VirtualSize)
			assert.Equal(t, info.ClusterSize, h.ClusterSize)
			assert.Equal(t, info.BackingFile, h.BackingFile)
			assert.Equal(t, info.FormatSpecific.Data.DataFile, h.ExternalDataFile)
		})
	}
}

// validHeader returns the first cluster of a fresh image made by Create with 512-byte clusters.
func validHeader(t testing.TB) []byte {
	t.Helper()
	f := &memFile{}
	_, err := Create(f, 100*miB, CreateOptions{ClusterSize: 512})
	require.NoError(t, err)
	return f.Bytes(512)
}

// withBacking returns a valid header with a backing file name and a backing format extension.
func withBacking(t testing.TB, name string) []byte {
	t.Helper()
	b := validHeader(t)
	be := binary.BigEndian
	// Extension list at 112: backing format "qcow2", then end; name after it.
	be.PutUint32(b[112:], extBackingFormat)
	be.PutUint32(b[116:], 5)
	copy(b[120:], "qcow2\x00\x00\x00")
	clear(b[128:136])
	be.PutUint64(b[8:], 136)
	be.PutUint32(b[16:], uint32(len(name)))
	copy(b[136:], name)
	return b
}

func TestReadHeaderBacking(t *testing.T) {
	h, err := ReadHeader(bytes.NewReader(withBacking(t, "/images/base.qcow2")))
	require.NoError(t, err)
	assert.Equal(t, "/images/base.qcow2", h.BackingFile)
	assert.Equal(t, "qcow2", h.BackingFormat)
	assert.Equal(t, int64(136), h.BackingFileOffset)
}

func TestReadHeaderInvalid(t *testing.T) {
	be := binary.BigEndian
	cases := []struct {
		name      string
		mutate    func(b []byte) []byte
		truncated bool
	}{
		{"empty", func(b []byte) []byte { return nil }, true},
		{"magic only", func(b []byte) []byte { return b[:4] }, true},
		{"cut inside v2 part", func(b []byte) []byte { return b[:71] }, true},
		{"cut inside v3 part", func(b []byte) []byte { return b[:100] }, true},
		{"cut before extensions", func(b []byte) []byte { return b[:112] }, true},
		{"bad magic", func(b []byte) []byte { b[3] = 0xfa; return b }, false},
		{"raw zeros", func(b []byte) []byte { return make([]byte, 512) }, false},
		{"version 1", func(b []byte) []byte { be.PutUint32(b[4:], 1); return b }, false},
		{"version 4", func(b []byte) []byte { be.PutUint32(b[4:], 4); return b }, false},
		{"cluster bits 8", func(b []byte) []byte { be.PutUint32(b[20:], 8); return b }, false},
		{"cluster bits 22", func(b []byte) []byte { be.PutUint32(b[20:], 22); return b }, false},
		{"size over int64", func(b []byte) []byte { be.PutUint64(b[24:], 1<<63); return b }, false},
		{"unknown encryption", func(b []byte) []byte { be.PutUint32(b[32:], 3); return b }, false},
		{"L1 too small", func(b []byte) []byte { be.PutUint32(b[36:], 1); return b }, false},
		{"L1 too large", func(b []byte) []byte { be.PutUint32(b[36:], 1<<23); return b }, false},
		{"L1 unaligned", func(b []byte) []byte { be.PutUint64(b[40:], 513); return b }, false},
		{"L1 at zero", func(b []byte) []byte { be.PutUint64(b[40:], 0); return b }, false},
		{"refcount table unaligned", func(b []byte) []byte { be.PutUint64(b[48:], 100); return b }, false},
		{"refcount table at zero", func(b []byte) []byte { be.PutUint64(b[48:], 0); return b }, false},
		{"refcount table empty", func(b []byte) []byte { be.PutUint32(b[56:], 0); return b }, false},
		{"refcount table too large", func(b []byte) []byte { be.PutUint32(b[56:], 1<<20); return b }, false},
		{"too many snapshots", func(b []byte) []byte { be.PutUint32(b[60:], 70000); return b }, false},
		{"snapshots unaligned", func(b []byte) []byte { be.PutUint32(b[60:], 1); be.PutUint64(b[64:], 7); return b }, false},
		{"header length short", func(b []byte) []byte { be.PutUint32(b[100:], 100); return b }, false},
		{"header length over cluster", func(b []byte) []byte { be.PutUint32(b[100:], 1024); return b }, false},
		{"refcount order 7", func(b []byte) []byte { be.PutUint32(b[96:], 7); return b }, false},
		{"unknown compression type", func(b []byte) []byte { b[104] = 2; return b }, false},
		{"zstd without feature bit", func(b []byte) []byte { b[104] = 1; return b }, false},
		{"extension overruns cluster", func(b []byte) []byte { be.PutUint32(b[112:], 0x1234); be.PutUint32(b[116:], 1000); return b }, false},
		{"backing name too long", func(b []byte) []byte { be.PutUint64(b[8:], 200); be.PutUint32(b[16:], 400); return b }, false},
		{"backing offset outside cluster", func(b []byte) []byte { be.PutUint64(b[8:], 4096); be.PutUint32(b[16:], 4); return b }, false},
		{"backing size without offset", func(b []byte) []byte { be.PutUint32(b[16:], 4); return b }, false},
		{"data file name without bit", func(b []byte) []byte {
			be.PutUint32(b[112:], extDataFile)
			be.PutUint32(b[116:], 4)
			copy(b[120:], "data")
			return b
		}, false},
		{"raw data bit without data file", func(b []byte) []byte { be.PutUint64(b[88:], AutoclearRawData); return b }, false},
		{"extension cut", func(b []byte) []byte {
			be.PutUint32(b[112:], extDataFile)
			be.PutUint32(b[116:], 16)
			be.PutUint64(b[72:], IncompatDataFile)
			return b[:124]
		}, true},
		{"backing name cut", func(b []byte) []byte { return withBacking(t, "/images/base.qcow2")[:140] }, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.mutate(validHeader(t))
			h, err := ReadHeader(bytes.NewReader(in))
			require.ErrorIs(t, err, errkind.Invalid)
			assert.Nil(t, h)
			assert.Equal(t, c.truncated, errorsIs(err, ErrTruncated), "truncation reported: %v", err)
		})
	}
}

// TestReadHeaderFlags: dirty, corrupt and unknown bits are reported, not refused, by ReadHeader.
func TestReadHeaderFlags(t *testing.T) {
	b := validHeader(t)
	binary.BigEndian.PutUint64(b[72:], IncompatDirty|IncompatCorrupt|1<<40)
	h, err := ReadHeader(bytes.NewReader(b))
	require.NoError(t, err)
	assert.True(t, h.Dirty)
	assert.True(t, h.Corrupt)
	assert.Equal(t, uint64(1<<40), h.IncompatibleFeatures&^IncompatKnown)
}
