package qcow2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/testenv"
)

// dirOpener opens backing files by name in dir, read-only, and counts what it opened and closed.
type dirOpener struct {
	dir            string
	opened, closed int
	names          []string
}

func (o *dirOpener) open(name string) (io.ReaderAt, error) {
	f, err := os.Open(filepath.Join(o.dir, name))
	if err != nil {
		return nil, err
	}
	o.opened++
	o.names = append(o.names, name)
	return &countingCloser{f, o}, nil
}

type countingCloser struct {
	*os.File
	o *dirOpener
}

func (c *countingCloser) Close() error {
	c.o.closed++
	return c.File.Close()
}

// sha256File returns the SHA-256 of a file's content.
func sha256File(t testing.TB, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return [32]byte(h.Sum(nil))
}

// createOverlay makes dir/name an overlay of backing (a name in dir) with our Create.
func createOverlay(t testing.TB, dir, name string, size int64, backing, format string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	require.NoError(t, err)
	defer f.Close()
	n, err := Create(f, size, CreateOptions{BackingFile: backing, BackingFormat: format})
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.Equal(t, fileSize(t, p), n)
	return p
}

// chainInfo is one element of `qemu-img info --backing-chain --output=json`.
type chainInfo struct {
	Filename            string `json:"filename"`
	Format              string `json:"format"`
	VirtualSize         int64  `json:"virtual-size"`
	BackingFilename     string `json:"backing-filename"`
	FullBackingFilename string `json:"full-backing-filename"`
	BackingFormat       string `json:"backing-filename-format"`
}

func qemuChain(t testing.TB, path string) []chainInfo {
	t.Helper()
	out := qemuImg(t, "info", "--backing-chain", "--output=json", path)
	var res []chainInfo
	require.NoError(t, json.Unmarshal(out, &res), "qemu-img info output: %s", out)
	return res
}

// readAll reads the whole guest data of a reader.
func readAll(t testing.TB, r io.ReaderAt, size int64) []byte {
	t.Helper()
	b := make([]byte, size)
	n, err := r.ReadAt(b, 0)
	if err != nil {
		require.ErrorIs(t, err, io.EOF)
	}
	require.EqualValues(t, size, n)
	return b
}

func TestOverlayMatchesQemu(t *testing.T) {
	testenv.LookPath(t, "qemu-img")
	testenv.LookPath(t, "qemu-io")
	tests := []struct {
		name        string
		baseFormat  string
		baseSize    int64
		overlaySize int64
		baseOpts    string // qemu-img create -o for a qcow2 base
	}{
		{name: "raw base", baseFormat: FormatRaw, baseSize: 8 * miB, overlaySize: 8 * miB},
		{name: "qcow2 base", baseFormat: FormatQCOW2, baseSize: 8 * miB, overlaySize: 8 * miB},
		{name: "raw base, larger overlay", baseFormat: FormatRaw, baseSize: 3*miB + 512, overlaySize: 16 * miB},
		{name: "qcow2 base, larger overlay", baseFormat: FormatQCOW2, baseSize: 2 * miB, overlaySize: 10*miB + 512},
		{name: "qcow2 base with 512-byte clusters", baseFormat: FormatQCOW2, baseSize: 4 * miB, overlaySize: 4 * miB,
			baseOpts: "cluster_size=512"},
		{name: "qcow2 base with subclusters", baseFormat: FormatQCOW2, baseSize: 4 * miB, overlaySize: 4 * miB,
			baseOpts: "extended_l2=on,cluster_size=128k"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			baseName := "volume-base"
			base := filepath.Join(dir, baseName)
			// The base: data everywhere in the first MiB and 2 MiB, some at its end.
			if tc.baseFormat == FormatRaw {
				makeRawAt(t, base, tc.baseSize)
			} else {
				args := []string{"create", "-q", "-f", "qcow2"}
				if tc.baseOpts != "" {
					args = append(args, "-o", tc.baseOpts)
				}
				qemuImg(t, append(args, base, fmt.Sprint(tc.baseSize))...)
				readerQemuIO(t, base, "write -P 0x11 0 1m", "write -P 0x12 1m 64k", "write -z 4k 4k",
					fmt.Sprintf("write -P 0x13 %d 512", tc.baseSize-512))
			}
			before := sha256File(t, base)

			overlay := createOverlay(t, dir, "volume-overlay", tc.overlaySize, baseName, tc.baseFormat)
			qemuCheck(t, overlay)
			readerQemuIO(t, overlay, "write -P 0xab 1M 64k", "write -z 8k 4k",
				fmt.Sprintf("write -P 0xac %d 512", tc.overlaySize-512))
			qemuCheck(t, overlay)

			chain := qemuChain(t, overlay)
			require.Len(t, chain, 2)
			assert.Equal(t, baseName, chain[0].BackingFilename, "the backing file name is stored as given")
			assert.Equal(t, base, chain[0].FullBackingFilename)
			assert.Equal(t, tc.baseFormat, chain[0].BackingFormat)
			assert.Equal(t, tc.overlaySize, chain[0].VirtualSize)
			assert.Equal(t, tc.baseFormat, chain[1].Format)
			assert.Equal(t, before, sha256File(t, base), "the base is unchanged")

			want := filepath.Join(dir, "want.raw")
			qemuImg(t, "convert", "-O", "raw", overlay, want)
			wantData, err := os.ReadFile(want)
			require.NoError(t, err)
			require.EqualValues(t, tc.overlaySize, len(wantData))

			f, err := os.Open(overlay)
			require.NoError(t, err)
			defer f.Close()
			o := &dirOpener{dir: dir}
			rd, err := NewReaderWithBacking(f, o.open)
			require.NoError(t, err)
			assert.Equal(t, []string{baseName}, o.names)
			h := rd.Header()
			assert.Equal(t, baseName, h.BackingFile)
			assert.Equal(t, tc.baseFormat, h.BackingFormat)
			requireSameBytes(t, wantData, readAll(t, rd, rd.Size()), 0)
			compareStreams(t, bytes.NewReader(wantData), io.NewSectionReader(rd, 0, rd.Size()))

			// Flattening: Convert and ToRaw through the Reader give the same guest data.
			flat := filepath.Join(dir, "flat.qcow2")
			convertFile(t, flat, rd, rd.Size(), 0)
			qemuCheck(t, flat)
			qemuCompare(t, "qcow2", overlay, "qcow2", flat)
			raw := filepath.Join(dir, "flat.raw")
			rf, err := os.Create(raw)
			require.NoError(t, err)
			defer rf.Close()
			require.NoError(t, ToRaw(context.Background(), rf, rd, rd.Size(), nil))
			qemuCompare(t, "raw", raw, "qcow2", overlay)

			require.NoError(t, rd.Close())
			assert.Equal(t, o.opened, o.closed, "Close closes every backing file opened")
			assert.Equal(t, before, sha256File(t, base), "the base is unchanged")
		})
	}
}

// makeRawAt writes a raw base image: two data areas and a last sector, the rest holes.
func makeRawAt(t testing.TB, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Truncate(size))
	_, err = f.WriteAt(bytes.Repeat([]byte{0x11}, int(miB)), 0)
	require.NoError(t, err)
	_, err = f.WriteAt(bytes.Repeat([]byte{0x12}, int(64*kiB)), miB)
	require.NoError(t, err)
	_, err = f.WriteAt(bytes.Repeat([]byte{0x13}, 512), size-512)
	require.NoError(t, err)
}

// TestOverlayChain reads a chain of three overlays over a raw base, each written by qemu-io.
func TestOverlayChain(t *testing.T) {
	testenv.LookPath(t, "qemu-img")
	testenv.LookPath(t, "qemu-io")
	dir := t.TempDir()
	makeRawAt(t, filepath.Join(dir, "base"), 8*miB)
	prev, prevFormat := "base", FormatRaw
	for i, cmd := range []string{"write -P 0x21 512k 1m", "write -z 768k 64k", "write -P 0x23 7m 4k"} {
		name := fmt.Sprintf("layer%d", i)
		p := createOverlay(t, dir, name, 8*miB, prev, prevFormat)
		readerQemuIO(t, p, cmd)
		qemuCheck(t, p)
		prev, prevFormat = name, FormatQCOW2
	}
	top := filepath.Join(dir, prev)
	chain := qemuChain(t, top)
	require.Len(t, chain, 4)
	assert.Equal(t, "layer1", chain[0].BackingFilename)

	want := filepath.Join(dir, "want.raw")
	qemuImg(t, "convert", "-O", "raw", top, want)
	wantData, err := os.ReadFile(want)
	require.NoError(t, err)

	f, err := os.Open(top)
	require.NoError(t, err)
	defer f.Close()
	o := &dirOpener{dir: dir}
	rd, err := NewReaderWithBacking(f, o.open)
	require.NoError(t, err)
	assert.Equal(t, []string{"layer1", "layer0", "base"}, o.names)
	requireSameBytes(t, wantData, readAll(t, rd, rd.Size()), 0)
	require.NoError(t, rd.Close())
	assert.Equal(t, 3, o.closed)
}

// memOpener serves backing files from memory.
type memOpener map[string]io.ReaderAt

func (m memOpener) open(name string) (io.ReaderAt, error) {
	r, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("open %s: %w", name, fs.ErrNotExist)
	}
	return r, nil
}

// memOverlay returns an image made by Create in memory.
func memOverlay(t testing.TB, size int64, opts CreateOptions) *memFile {
	t.Helper()
	m := &memFile{}
	_, err := Create(m, size, opts)
	require.NoError(t, err)
	return m
}

func TestNewReaderWithBackingRefuses(t *testing.T) {
	overlay := func(backing, format string) *memFile {
		return memOverlay(t, miB, CreateOptions{BackingFile: backing, BackingFormat: format})
	}
	noFormat := overlay("base", FormatRaw)
	var zero [8]byte
	_, _ = noFormat.WriteAt(zero[:], createHeaderLength) // the extension list now ends at once
	vmdk := overlay("base", FormatRaw)
	_, _ = vmdk.WriteAt([]byte("vmdk"), createHeaderLength+8)
	_, _ = vmdk.WriteAt([]byte{0, 0, 0, 4}, createHeaderLength+4)

	// A chain of MaxBackingDepth+1 qcow2 images over a raw one, and a loop.
	deep := memOpener{"raw": bytes.NewReader(make([]byte, miB))}
	prev, prevFormat := "raw", FormatRaw
	for i := range MaxBackingDepth + 1 {
		name := fmt.Sprintf("l%d", i)
		deep[name] = overlay(prev, prevFormat)
		prev, prevFormat = name, FormatQCOW2
	}
	loop := memOpener{"a": overlay("b", FormatQCOW2), "b": overlay("a", FormatQCOW2)}

	tests := []struct {
		name   string
		img    io.ReaderAt
		open   Opener
		wantIs error
		msg    string
	}{
		{"no opener", overlay("base", FormatRaw), nil, errkind.Invalid, "opener"},
		{"missing backing file", overlay("base", FormatRaw), memOpener{}.open, errkind.NotFound, "base"},
		{"no recorded format", noFormat, memOpener{"base": bytes.NewReader(nil)}.open, errkind.Unsupported, "no recorded format"},
		{"unknown format", vmdk, memOpener{"base": bytes.NewReader(nil)}.open, errkind.Unsupported, "vmdk"},
		{"too deep", overlay(prev, FormatQCOW2), deep.open, errkind.Unsupported, "deeper"},
		{"loop", loop["a"], loop.open, errkind.Invalid, "loops"},
		{"opener error kept", overlay("base", FormatRaw), func(string) (io.ReaderAt, error) {
			return nil, errkind.New(errkind.Unavailable, "nfs", "", "server down")
		}, errkind.Unavailable, "server down"},
		{"bad backing image", overlay("base", FormatQCOW2), memOpener{"base": bytes.NewReader([]byte("junk"))}.open,
			errkind.Invalid, "base"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rd, err := NewReaderWithBacking(tc.img, tc.open)
			require.ErrorIs(t, err, tc.wantIs)
			require.ErrorContains(t, err, tc.msg)
			assert.Nil(t, rd)
		})
	}

	// Exactly MaxBackingDepth levels are fine.
	rd, err := NewReaderWithBacking(deep[fmt.Sprintf("l%d", MaxBackingDepth-1)], deep.open)
	require.NoError(t, err)
	require.Equal(t, make([]byte, 4096), readAll(t, io.NewSectionReader(rd, 0, 4096), 4096))

	// NewReader still refuses every image with a backing file, without opening anything.
	_, err = NewReader(overlay("base", FormatRaw))
	require.ErrorIs(t, err, errkind.Unsupported)
}

// TestOverlayInMemory checks the read path through a backing file without qemu: unallocated clusters of the
// overlay come from the base, allocated and zero clusters do not, past the base's end reads zeros.
func TestOverlayInMemory(t *testing.T) {
	for _, format := range []string{FormatRaw, FormatQCOW2} {
		t.Run(format, func(t *testing.T) {
			base := bytes.Repeat([]byte{0x5a}, int(2*miB))
			var baseFile io.ReaderAt = bytes.NewReader(base)
			if format == FormatQCOW2 {
				m := &memFile{}
				_, err := Convert(context.Background(), m, baseFile, 2*miB, ConvertOptions{ClusterSize: 4096})
				require.NoError(t, err)
				baseFile = m
			}
			// The overlay's own data: converted from a view where the first 64 KiB differ, then its L2 entry for
			// cluster 2 made a zero cluster, and clusters 1 and 3.. made unallocated.
			own := make([]byte, 4*miB)
			copy(own, bytes.Repeat([]byte{0xab}, int(64*kiB)))
			img := &memFile{}
			_, err := Create(img, 4*miB, CreateOptions{BackingFile: "base", BackingFormat: format})
			require.NoError(t, err)
			h, err := ReadHeader(img)
			require.NoError(t, err)
			// Hand-build one L2 table: cluster 0 data (a new cluster at the end), cluster 2 zero.
			end := img.Len()
			_, _ = img.WriteAt(own[:64*kiB], end+64*kiB)
			l2 := make([]byte, 64*kiB)
			binary.BigEndian.PutUint64(l2[0:], uint64(end+64*kiB)|oflagCopied)
			binary.BigEndian.PutUint64(l2[16:], l2FlagZero)
			_, _ = img.WriteAt(l2, end)
			var l1 [8]byte
			binary.BigEndian.PutUint64(l1[:], uint64(end)|oflagCopied)
			_, _ = img.WriteAt(l1[:], h.L1TableOffset)

			rd, err := NewReaderWithBacking(img, memOpener{"base": baseFile}.open)
			require.NoError(t, err)
			got := readAll(t, rd, 4*miB)
			want := make([]byte, 4*miB)
			copy(want, base)
			copy(want, own[:64*kiB])
			clear(want[128*kiB : 192*kiB])
			requireSameBytes(t, want, got, 0)

			// DataRange: the data cluster, then the base's data (cluster 1), not the zero cluster, and nothing
			// past the end of the base.
			s, e, err := rd.DataRange(0, rd.Size())
			require.NoError(t, err)
			assert.Equal(t, int64(0), s)
			assert.GreaterOrEqual(t, e, 64*kiB)
			s, _, err = rd.DataRange(128*kiB, 192*kiB)
			require.NoError(t, err)
			assert.Equal(t, 192*kiB, s, "a zero cluster holds no data")
			s, _, err = rd.DataRange(2*miB, rd.Size())
			require.NoError(t, err)
			if format == FormatQCOW2 {
				assert.Equal(t, rd.Size(), s, "nothing past the end of the base")
			}
			require.NoError(t, rd.Close())
		})
	}
}

func TestCreateBacking(t *testing.T) {
	long := strings.Repeat("n", maxBackingName)
	tests := []struct {
		name    string
		opts    CreateOptions
		wantErr string // "" when Create must succeed
	}{
		{name: "raw", opts: CreateOptions{BackingFile: "volume-1234", BackingFormat: FormatRaw}},
		{name: "qcow2", opts: CreateOptions{BackingFile: "volume-1234", BackingFormat: FormatQCOW2}},
		{name: "absolute", opts: CreateOptions{BackingFile: "/var/lib/base.img", BackingFormat: FormatRaw}},
		{name: "colon after a slash", opts: CreateOptions{BackingFile: "./a:b", BackingFormat: FormatRaw}},
		{name: "longest name", opts: CreateOptions{BackingFile: long, BackingFormat: FormatQCOW2}},
		{name: "512-byte clusters", opts: CreateOptions{BackingFile: "base", BackingFormat: FormatRaw, ClusterSize: 512}},
		{name: "no format", opts: CreateOptions{BackingFile: "base"}, wantErr: "backing format"},
		{name: "format without file", opts: CreateOptions{BackingFormat: FormatRaw}, wantErr: "without a backing file"},
		{name: "unknown format", opts: CreateOptions{BackingFile: "base", BackingFormat: "vmdk"}, wantErr: "not supported"},
		{name: "preallocated", opts: CreateOptions{BackingFile: "base", BackingFormat: FormatRaw, Preallocation: PreallocMetadata},
			wantErr: "preallocated"},
		{name: "name too long", opts: CreateOptions{BackingFile: long + "n", BackingFormat: FormatRaw}, wantErr: "exceeds"},
		{name: "NUL", opts: CreateOptions{BackingFile: "a\x00b", BackingFormat: FormatRaw}, wantErr: "NUL"},
		{name: "json", opts: CreateOptions{BackingFile: `json:{"file":"x"}`, BackingFormat: FormatRaw}, wantErr: "protocol"},
		{name: "protocol", opts: CreateOptions{BackingFile: "nbd:host:1234", BackingFormat: FormatRaw}, wantErr: "protocol"},
		{name: "does not fit a 512-byte cluster", opts: CreateOptions{BackingFile: strings.Repeat("x", 400), BackingFormat: FormatRaw,
			ClusterSize: 512}, wantErr: "does not fit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &memFile{}
			_, err := Create(m, 10*miB, tc.opts)
			if tc.wantErr != "" {
				require.ErrorIs(t, err, errkind.Invalid)
				require.ErrorContains(t, err, tc.wantErr)
				assert.Zero(t, m.Len(), "nothing written")
				return
			}
			require.NoError(t, err)
			h, err := ReadHeader(m)
			require.NoError(t, err)
			assert.Equal(t, tc.opts.BackingFile, h.BackingFile)
			assert.Equal(t, tc.opts.BackingFormat, h.BackingFormat)
			assert.Equal(t, backingNameOffset(tc.opts.BackingFormat), h.BackingFileOffset)
			assert.EqualValues(t, len(tc.opts.BackingFile), h.BackingFileSize)
			assert.Equal(t, int64(10*miB), h.VirtualSize)

			// qemu-img reads the same name and format.
			testenv.LookPath(t, "qemu-img")
			dir := t.TempDir()
			p := filepath.Join(dir, "overlay.qcow2")
			require.NoError(t, os.WriteFile(p, m.Bytes(m.Len()), 0o600))
			out := qemuImg(t, "info", "--output=json", p)
			var info struct {
				Backing string `json:"backing-filename"`
				Format  string `json:"backing-filename-format"`
			}
			require.NoError(t, json.Unmarshal(out, &info))
			assert.Equal(t, tc.opts.BackingFile, info.Backing)
			assert.Equal(t, tc.opts.BackingFormat, info.Format)
			// qemu-img check opens the backing file: give it one where the name is one that can be created.
			if name := tc.opts.BackingFile; !filepath.IsAbs(name) && len(name) < 255 {
				base := filepath.Join(dir, name)
				if tc.opts.BackingFormat == FormatRaw {
					require.NoError(t, os.WriteFile(base, make([]byte, 4096), 0o600))
				} else {
					qemuImg(t, "create", "-q", "-f", "qcow2", base, "1M")
				}
				qemuCheck(t, p)
			}
		})
	}
}

// TestReaderCloseError: Close reports the first error of closing the chain.
func TestReaderCloseError(t *testing.T) {
	img := memOverlay(t, miB, CreateOptions{BackingFile: "base", BackingFormat: FormatRaw})
	boom := errors.New("close failed")
	rd, err := NewReaderWithBacking(img, func(string) (io.ReaderAt, error) {
		return failingCloser{bytes.NewReader(nil), boom}, nil
	})
	require.NoError(t, err)
	require.ErrorIs(t, rd.Close(), boom)
	require.NoError(t, rd.Close(), "a second Close does nothing")
}

type failingCloser struct {
	io.ReaderAt
	err error
}

func (f failingCloser) Close() error { return f.err }

// TestGrowOverlay: Grow keeps the backing file of an overlay, and QEMU still reads the base through it.
func TestGrowOverlay(t *testing.T) {
	testenv.LookPath(t, "qemu-img")
	dir := t.TempDir()
	makeRawAt(t, filepath.Join(dir, "base"), 4*miB)
	p := createOverlay(t, dir, "overlay", 4*miB, "base", FormatRaw)
	f := openFile(t, p)
	n, err := Grow(f, fileSize(t, p), 64*giB)
	require.NoError(t, err)
	require.Equal(t, fileSize(t, p), n)
	h, err := ReadHeader(f)
	require.NoError(t, err)
	assert.Equal(t, "base", h.BackingFile)
	assert.Equal(t, FormatRaw, h.BackingFormat)
	qemuCheck(t, p)
	chain := qemuChain(t, p)
	require.Len(t, chain, 2)
	assert.Equal(t, 64*giB, chain[0].VirtualSize)

	rd, err := NewReaderWithBacking(f, (&dirOpener{dir: dir}).open)
	require.NoError(t, err)
	defer rd.Close()
	got := make([]byte, 8*miB)
	_, err = rd.ReadAt(got, 0)
	require.NoError(t, err)
	want := make([]byte, 8*miB)
	copy(want, bytes.Repeat([]byte{0x11}, int(miB)))
	copy(want[miB:], bytes.Repeat([]byte{0x12}, int(64*kiB)))
	copy(want[4*miB-512:], bytes.Repeat([]byte{0x13}, 512))
	requireSameBytes(t, want, got, 0)
}
