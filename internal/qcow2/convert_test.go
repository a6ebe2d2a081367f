package qcow2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/testenv"
)

// rawExtent is a region of a raw test image: random bytes, or zeros written out (not a hole) when zero is set.
type rawExtent struct {
	off, n int64
	zero   bool
}

// rawShape is a raw source image for Convert: a sparse file of size bytes with extents written in order.
type rawShape struct {
	name    string
	size    int64 // length of the raw file
	virtual int64 // virtual size to convert; 0 for size rounded up to 512
	cluster int64 // output cluster size; 0 for the default
	extents []rawExtent
}

func (s rawShape) virtualSize() int64 {
	if s.virtual != 0 {
		return s.virtual
	}
	return (s.size + 511) &^ 511
}

func (s rawShape) clusterSize() int64 {
	if s.cluster != 0 {
		return s.cluster
	}
	return DefaultClusterSize
}

var rawShapes = []rawShape{
	{name: "empty", size: 0},
	{name: "all zero, a hole", size: 64 * miB},
	{name: "all zero, written", size: 8 * miB, extents: []rawExtent{{0, 8 * miB, true}}},
	{name: "dense", size: 20 * miB, extents: []rawExtent{{0, 20 * miB, false}}},
	{name: "data at start", size: 32 * miB, extents: []rawExtent{{0, 100 * kiB, false}}},
	{name: "data at end", size: 32 * miB, extents: []rawExtent{{32*miB - 4*kiB, 4 * kiB, false}}},
	{name: "unaligned tail", size: 10*miB + 1000, extents: []rawExtent{{10*miB + 1000 - 3000, 3000, false}}},
	{name: "virtual size not a multiple of the cluster size", size: 5*miB + 512,
		extents: []rawExtent{{0, 700, false}, {5 * miB, 512, false}}},
	{name: "over 4 GiB, little data", size: 5*giB + 64*kiB,
		extents: []rawExtent{{0, 4 * kiB, false}, {4*giB - 100, 200, false}, {5*giB + 60*kiB, 4 * kiB, false}}},
	{name: "every other cluster", size: 4 * miB, extents: func() []rawExtent {
		var e []rawExtent
		for off := int64(0); off < 4*miB; off += 128 * kiB {
			e = append(e, rawExtent{off, 64 * kiB, false})
		}
		return e
	}()},
	{name: "zero clusters inside a data extent", size: 8 * miB, extents: []rawExtent{
		{0, 8 * miB, false}, {miB, 128 * kiB, true}, {3*miB + 4*kiB, 200 * kiB, true}, {8*miB - 64*kiB, 64 * kiB, true},
	}},
	{name: "one byte on each side of an L2 boundary", size: giB,
		extents: []rawExtent{{512*miB - 1, 1, false}, {512 * miB, 1, false}}},
	{name: "source shorter than the virtual size", size: 3*miB + 512, virtual: 8 * miB,
		extents: []rawExtent{{3 * miB, 512, false}}},
	{name: "cluster 512, many L2 tables and refcount blocks", size: 3 * miB, cluster: 512,
		extents: []rawExtent{{0, 3 * miB, false}, {miB, 4 * kiB, true}}},
	{name: "cluster 4 KiB, sparse", size: 64*miB + 512, cluster: 4 * kiB,
		extents: []rawExtent{{7, 10000, false}, {33 * miB, 2 * miB, false}, {64 * miB, 512, false}}},
	{name: "cluster 2 MiB", size: 9*miB + 512, cluster: 2 * miB,
		extents: []rawExtent{{100, 100, false}, {6 * miB, 3*miB + 512, false}}},
}

// makeRaw writes the raw image of a shape into dir and returns its path.
func makeRaw(t testing.TB, dir string, s rawShape) string {
	t.Helper()
	p := filepath.Join(dir, "src.raw")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Truncate(s.size))
	rng := rand.New(rand.NewChaCha8([32]byte([]byte(fmt.Sprintf("%-32.32s", s.name)))))
	for _, e := range s.extents {
		for done := int64(0); done < e.n; {
			b := make([]byte, min(e.n-done, 4*miB))
			if !e.zero {
				fillRandom(rng, b)
			}
			_, err := f.WriteAt(b, e.off+done)
			require.NoError(t, err)
			done += int64(len(b))
		}
	}
	return p
}

// fillRandom fills b with random bytes that are never zero, so that every cluster they touch holds data.
func fillRandom(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.IntN(255) + 1)
	}
}

// nonZeroClusters counts the clusters of the first virtual bytes of the raw file that hold a non-zero byte,
// looking only at clusters the shape's extents touch (everything else is a hole).
func nonZeroClusters(t testing.TB, path string, s rawShape) int64 {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	cs := s.clusterSize()
	touched := map[int64]bool{}
	for _, e := range s.extents {
		for c := e.off / cs; c <= (e.off+e.n-1)/cs && c*cs < s.virtualSize(); c++ {
			touched[c] = true
		}
	}
	var n int64
	buf := make([]byte, cs)
	for c := range touched {
		k, err := f.ReadAt(buf, c*cs)
		if err != nil {
			require.ErrorIs(t, err, io.EOF)
		}
		if bytes.ContainsFunc(buf[:k], func(r rune) bool { return r != 0 }) {
			n++
		}
	}
	return n
}

// readerOnly hides every method of a source but ReadAt, so that Convert finds zeros by content alone.
type readerOnly struct{ r io.ReaderAt }

func (r readerOnly) ReadAt(p []byte, off int64) (int, error) { return r.r.ReadAt(p, off) }

// qemuCompare asserts that qemu-img compare finds the guest data of two images equal.
func qemuCompare(t testing.TB, fmtA, a, fmtB, b string) {
	t.Helper()
	bin := testenv.LookPath(t, "qemu-img")
	out, err := runCmd(bin, "compare", "-f", fmtA, "-F", fmtB, a, b)
	require.NoError(t, err, "qemu-img compare -f %s -F %s %s %s: %s", fmtA, fmtB, a, b, out)
	require.Contains(t, out, "Images are identical")
}

// progressRecorder checks that progress reports never go backwards and remembers the last.
type progressRecorder struct {
	t     testing.TB
	calls int
	last  int64
}

func (p *progressRecorder) report(done int64) {
	p.t.Helper()
	if done < p.last {
		p.t.Errorf("progress went back from %d to %d", p.last, done)
	}
	p.calls++
	p.last = done
}

// convertFile converts src into a new file dst and checks what Convert returns and reports.
func convertFile(t testing.TB, dst string, src io.ReaderAt, virtual int64, cluster int64) {
	t.Helper()
	f, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	require.NoError(t, err)
	defer f.Close()
	prog := &progressRecorder{t: t}
	n, err := Convert(context.Background(), f, src, virtual, ConvertOptions{ClusterSize: cluster, Progress: prog.report})
	require.NoError(t, err)
	require.NoError(t, f.Close())
	assert.Equal(t, fileSize(t, dst), n, "returned file size")
	assert.Equal(t, virtual, prog.last, "last progress report")
}

func TestConvertRawMatchesQemu(t *testing.T) {
	testenv.LookPath(t, "qemu-img")
	for _, s := range rawShapes {
		t.Run(s.name, func(t *testing.T) {
			dir := t.TempDir()
			raw := makeRaw(t, dir, s)
			virtual := s.virtualSize()
			wantClusters := nonZeroClusters(t, raw, s)
			src, err := os.Open(raw)
			require.NoError(t, err)
			defer src.Close()

			for _, mode := range []struct {
				name string
				src  io.ReaderAt
			}{{"seek data", src}, {"content only", readerOnly{src}}} {
				t.Run(mode.name, func(t *testing.T) {
					if _, ok := mode.src.(readerOnly); ok && virtual > giB && testing.Short() {
						t.Skip("reading GiBs of holes takes seconds; not in -short mode")
					}
					img := filepath.Join(t.TempDir(), "out.qcow2")
					convertFile(t, img, mode.src, virtual, s.cluster)

					res := qemuCheck(t, img)
					assert.Equal(t, wantClusters, res.AllocatedClust, "only non-zero clusters are allocated")
					info := qemuInfo(t, img)
					assert.Equal(t, virtual, info.VirtualSize)
					assert.Equal(t, s.clusterSize(), info.ClusterSize)
					assert.Equal(t, "1.1", info.FormatSpecific.Data.Compat)
					qemuCompare(t, "raw", raw, "qcow2", img)

					// Our Reader agrees, too (small images only: the whole disk is compared).
					if virtual > 0 && virtual <= 64*miB {
						f, err := os.Open(img)
						require.NoError(t, err)
						defer f.Close()
						rd, err := NewReader(f)
						require.NoError(t, err)
						require.Equal(t, virtual, rd.Size())
						compareStreams(t, io.NewSectionReader(&zeroPadded{src, s.size}, 0, virtual), io.NewSectionReader(rd, 0, virtual))
					}
				})
			}
		})
	}
}

// zeroPadded reads r, and zeros from size on.
type zeroPadded struct {
	r    io.ReaderAt
	size int64
}

func (z *zeroPadded) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	if off < z.size {
		k, err := z.r.ReadAt(p[:min(int64(len(p)), z.size-off)], off)
		if err != nil && !errors.Is(err, io.EOF) {
			return k, err
		}
		n = k
	}
	clear(p[n:])
	return len(p), nil
}

// qemuSource is a qcow2 image made by qemu-img and qemu-io, the source of qcow2 to qcow2 and qcow2 to raw
// conversions.
type qemuSource struct {
	name string
	size int64
	opts string   // qemu-img create -o
	cmds []string // qemu-io commands
	data int64    // bytes of non-zero data the commands write (for the sparseness check)
}

var qemuSources = []qemuSource{
	{name: "unallocated", size: 64 * miB},
	{name: "written and zeroed", size: 64 * miB, data: 3*miB + 4*kiB, cmds: []string{
		"write -P 0xab 0 2m", "write -z 64k 64k", "write -z 1m 4k", "write -P 0x5a 63m 1m", "write -P 0x11 10m 4k",
		"write -z 20m 1m",
	}},
	{name: "version 2", size: 64*miB + 512, opts: "compat=0.10", data: 2*miB + 512, cmds: []string{
		"write -P 0xcd 100000 2m", "write -P 0xce 67108864 512",
	}},
	{name: "cluster 512", size: 16 * miB, opts: "cluster_size=512", data: 1*miB + 1536, cmds: []string{
		"write -P 0x01 0 1m", "write -P 0x02 8m 1536", "write -z 512k 512",
	}},
	{name: "extended L2", size: 64 * miB, opts: "extended_l2=on,cluster_size=128k", data: 1*miB + 8*kiB, cmds: []string{
		"write -P 0x21 4k 4k", "write -P 0x22 1m 1m", "write -z 1m 4k", "write -P 0x23 40m 4k",
	}},
	{name: "over 4 GiB", size: 6 * giB, data: 128 * kiB, cmds: []string{
		"write -P 0x31 4095m 64k", "write -P 0x32 6143m 64k",
	}},
}

func (s qemuSource) make(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "src.qcow2")
	args := []string{"create", "-q", "-f", "qcow2"}
	if s.opts != "" {
		args = append(args, "-o", s.opts)
	}
	qemuImg(t, append(args, p, fmt.Sprint(s.size))...)
	if len(s.cmds) > 0 {
		readerQemuIO(t, p, s.cmds...)
	}
	return p
}

// openReader opens a qcow2 image with NewReader.
func openReader(t testing.TB, path string) *Reader {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	rd, err := NewReader(f)
	require.NoError(t, err)
	return rd
}

func TestConvertQcow2ToQcow2(t *testing.T) {
	testenv.LookPath(t, "qemu-img")
	testenv.LookPath(t, "qemu-io")
	for _, s := range qemuSources {
		t.Run(s.name, func(t *testing.T) {
			src := s.make(t)
			srcCheck := qemuCheck(t, src)
			for _, cluster := range []int64{0, 4 * kiB} {
				t.Run(fmt.Sprintf("cluster %d", cluster), func(t *testing.T) {
					rd := openReader(t, src)
					img := filepath.Join(t.TempDir(), "out.qcow2")
					convertFile(t, img, rd, rd.Size(), cluster)
					res := qemuCheck(t, img)
					if cluster == 0 && !bytes.Contains([]byte(s.opts), []byte("cluster_size")) {
						assert.LessOrEqual(t, res.AllocatedClust, srcCheck.AllocatedClust, "no more clusters than the source")
					}
					assert.LessOrEqual(t, res.AllocatedClust*orDefault(cluster), s.data+64*kiB*int64(len(s.cmds)),
						"zeros are not allocated")
					qemuCompare(t, "qcow2", src, "qcow2", img)
					assert.Equal(t, s.size, qemuInfo(t, img).VirtualSize)
				})
			}
		})
	}
}

// orDefault returns the cluster size an option asks for (the default for 0).
func orDefault(cluster int64) int64 {
	if cluster == 0 {
		return DefaultClusterSize
	}
	return cluster
}

func TestToRawFromQcow2(t *testing.T) {
	testenv.LookPath(t, "qemu-img")
	testenv.LookPath(t, "qemu-io")
	for _, s := range qemuSources {
		t.Run(s.name, func(t *testing.T) {
			src := s.make(t)
			rd := openReader(t, src)
			raw := filepath.Join(t.TempDir(), "out.raw")
			f, err := os.Create(raw)
			require.NoError(t, err)
			defer f.Close()
			// Old content in the destination must not show through.
			_, err = f.WriteAt(bytes.Repeat([]byte{0xee}, 64*1024), 0)
			require.NoError(t, err)
			prog := &progressRecorder{t: t}
			require.NoError(t, ToRaw(context.Background(), f, rd, rd.Size(), prog.report))
			require.NoError(t, f.Close())
			assert.Equal(t, s.size, prog.last)
			assert.Equal(t, s.size, fileSize(t, raw))
			qemuCompare(t, "raw", raw, "qcow2", src)

			var st syscall.Stat_t
			require.NoError(t, syscall.Stat(raw, &st))
			assert.LessOrEqual(t, st.Blocks*512, s.data+64*kiB, "zeros stay holes")
		})
	}
}

func TestToRawFromRaw(t *testing.T) {
	for _, s := range rawShapes {
		if s.size > 64*miB {
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			dir := t.TempDir()
			rawPath := makeRaw(t, dir, s)
			src, err := os.Open(rawPath)
			require.NoError(t, err)
			defer src.Close()
			dst, err := os.Create(filepath.Join(dir, "out.raw"))
			require.NoError(t, err)
			defer dst.Close()
			virtual := s.virtualSize()
			require.NoError(t, ToRaw(context.Background(), dst, src, virtual, nil))
			st, err := dst.Stat()
			require.NoError(t, err)
			require.Equal(t, virtual, st.Size())
			if virtual > 0 {
				compareStreams(t, io.NewSectionReader(&zeroPadded{src, s.size}, 0, virtual), io.NewSectionReader(dst, 0, virtual))
			}
			var data int64
			for _, e := range s.extents {
				if !e.zero {
					data += e.n
				}
			}
			assert.LessOrEqual(t, st.Sys().(*syscall.Stat_t).Blocks*512, data+int64(len(s.extents))*8*kiB, "zeros stay holes")
		})
	}
}

// TestConvertRoundTripMemory converts random sparse data in memory and reads it back, for every cluster size
// (no qemu-img needed).
func TestConvertRoundTripMemory(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, cs := range []int64{512, 4 * kiB, 64 * kiB, 2 * miB} {
		for _, size := range []int64{0, 512, 3*miB + 512, 17 * miB} {
			t.Run(fmt.Sprintf("cluster %d size %d", cs, size), func(t *testing.T) {
				data := make([]byte, size)
				for range 20 {
					if size == 0 {
						break
					}
					off := rng.Int64N(size)
					n := min(rng.Int64N(200*kiB)+1, size-off)
					fillRandomPCG(rng, data[off:off+n])
				}
				mem := &memFile{}
				n, err := Convert(context.Background(), mem, bytes.NewReader(data), size, ConvertOptions{ClusterSize: cs})
				require.NoError(t, err)
				require.Equal(t, mem.Len(), n)
				require.Zero(t, n%cs)
				rd, err := NewReader(mem)
				require.NoError(t, err)
				got := make([]byte, size)
				k, err := rd.ReadAt(got, 0)
				if size > 0 {
					require.NoError(t, err)
				}
				require.Equal(t, int(size), k)
				requireSameBytes(t, data, got, 0)
			})
		}
	}
}

func fillRandomPCG(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
}

// errAt is a source that fails reads that reach offset at.
type errAt struct {
	at  int64
	err error
}

var errSource = errors.New("source broke")

func (e errAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > e.at {
		return 0, e.err
	}
	for i := range p {
		p[i] = byte(off+int64(i)) | 1
	}
	return len(p), nil
}

func TestConvertErrors(t *testing.T) {
	dense := errAt{at: 1 << 62}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()

	tests := []struct {
		name    string
		ctx     context.Context
		file    func() File
		src     io.ReaderAt
		size    int64
		opts    ConvertOptions
		wantIs  []error
		written bool // something may have been written (but never a header)
	}{
		{name: "cancelled", ctx: canceled, src: dense, size: 64 * miB, wantIs: []error{context.Canceled}},
		{name: "deadline", ctx: expired, src: dense, size: 64 * miB, wantIs: []error{context.DeadlineExceeded, errkind.Timeout}},
		{name: "source error", src: errAt{at: 20 * miB, err: errSource}, size: 64 * miB, wantIs: []error{errSource}, written: true},
		{name: "write error", file: func() File { return &failingFile{f: &memFile{}, n: 2} }, src: dense, size: 64 * miB,
			wantIs: []error{errCrash}, written: true},
		{name: "size not a multiple of 512", src: dense, size: miB + 1, wantIs: []error{errkind.Invalid}},
		{name: "negative size", src: dense, size: -512, wantIs: []error{errkind.Invalid}},
		{name: "bad cluster size", src: dense, size: miB, opts: ConvertOptions{ClusterSize: 3000}, wantIs: []error{errkind.Invalid}},
		{name: "cluster size too large", src: dense, size: miB, opts: ConvertOptions{ClusterSize: 4 * miB}, wantIs: []error{errkind.Invalid}},
		{name: "no source", size: miB, wantIs: []error{errkind.Invalid}},
		{name: "too large for the L1 table", src: dense, size: 1 << 50, opts: ConvertOptions{ClusterSize: 512}, wantIs: []error{errkind.Invalid}},
		{name: "not empty", file: func() File {
			m := &memFile{}
			_, _ = m.WriteAt([]byte("old"), 0)
			return m
		}, src: dense, size: miB, wantIs: []error{errkind.Invalid}, written: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			mem := &memFile{}
			var f File = mem
			if tc.file != nil {
				f = tc.file()
			}
			_, err := Convert(ctx, f, tc.src, tc.size, tc.opts)
			require.Error(t, err)
			for _, want := range tc.wantIs {
				require.ErrorIs(t, err, want)
			}
			_, herr := ReadHeader(f)
			require.ErrorIs(t, herr, errkind.Invalid, "no valid header after a failed Convert")
			if !tc.written && tc.file == nil {
				assert.Zero(t, mem.Len(), "nothing written")
			}
		})
	}
}

// TestConvertCancelMidway cancels from the progress callback: Convert and ToRaw stop with an error that
// wraps context.Canceled, and Convert leaves no header.
func TestConvertCancelMidway(t *testing.T) {
	src := errAt{at: 1 << 62}
	for _, which := range []string{"Convert", "ToRaw"} {
		t.Run(which, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			calls := 0
			progress := func(done int64) {
				calls++
				if calls == 2 {
					cancel()
				}
			}
			f, path := tempFile(t, "out")
			var err error
			if which == "Convert" {
				_, err = Convert(ctx, f, src, 256*miB, ConvertOptions{Progress: progress})
			} else {
				err = ToRaw(ctx, f, src, 256*miB, progress)
			}
			require.ErrorIs(t, err, context.Canceled)
			assert.Equal(t, 2, calls, "no chunk is written after the cancellation is seen")
			if which == "Convert" {
				_, err = ReadHeader(f)
				require.ErrorIs(t, err, errkind.Invalid)
				assert.Less(t, fileSize(t, path), 64*miB, "stopped early")
			}
		})
	}
}

// TestConvertTruncates: a non-empty *os.File is truncated first; old content does not show through.
func TestConvertTruncates(t *testing.T) {
	f, path := tempFile(t, "img.qcow2")
	_, err := f.WriteAt(bytes.Repeat([]byte{0xff}, int(4*miB)), 0)
	require.NoError(t, err)
	data := make([]byte, 2*miB)
	copy(data[miB:], "hello")
	n, err := Convert(context.Background(), f, bytes.NewReader(data), 2*miB, ConvertOptions{})
	require.NoError(t, err)
	assert.Equal(t, fileSize(t, path), n)
	rd, err := NewReader(f)
	require.NoError(t, err)
	got := make([]byte, 2*miB)
	_, err = rd.ReadAt(got, 0)
	require.NoError(t, err)
	requireSameBytes(t, data, got, 0)
}

func TestToRawErrors(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	f, _ := tempFile(t, "out.raw")
	require.ErrorIs(t, ToRaw(canceled, f, errAt{at: 1 << 62}, 64*miB, nil), context.Canceled)
	require.ErrorIs(t, ToRaw(context.Background(), f, errAt{at: miB, err: errSource}, 64*miB, nil), errSource)
	require.ErrorIs(t, ToRaw(context.Background(), f, errAt{at: miB}, -1, nil), errkind.Invalid)
	require.ErrorIs(t, ToRaw(context.Background(), f, nil, miB, nil), errkind.Invalid)
}

// countingFile counts the bytes read from a file; it keeps the file's descriptor (SyscallConn), so Convert
// and ToRaw can look for its data with SEEK_DATA.
type countingFile struct {
	*os.File
	read int64
}

func (c *countingFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.File.ReadAt(p, off)
	c.read += int64(n)
	return n, err
}

// TestConvertSkipsHoles: with SEEK_DATA only the data extents of a sparse source are read, and the file
// offset of the source is left where it was.
func TestConvertSkipsHoles(t *testing.T) {
	s := rawShape{name: "holes", size: 4 * giB, extents: []rawExtent{{miB, 100 * kiB, false}, {3 * giB, miB, false}}}
	raw := makeRaw(t, t.TempDir(), s)
	f, err := os.Open(raw)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Seek(12345, io.SeekStart)
	require.NoError(t, err)
	src := &countingFile{File: f}

	out, _ := tempFile(t, "out.qcow2")
	_, err = Convert(context.Background(), out, src, s.size, ConvertOptions{})
	require.NoError(t, err)
	assert.LessOrEqual(t, src.read, int64(2*convertChunk), "only the chunks holding data are read")
	rd, err := NewReader(out)
	require.NoError(t, err)

	dst, _ := tempFile(t, "out.raw")
	src.read = 0
	require.NoError(t, ToRaw(context.Background(), dst, src, s.size, nil))
	assert.LessOrEqual(t, src.read, int64(2*convertChunk))
	// Through the qcow2 image, too: its unallocated clusters are not read.
	dst2, _ := tempFile(t, "out2.raw")
	require.NoError(t, ToRaw(context.Background(), dst2, rd, s.size, nil))
	compareStreams(t, io.NewSectionReader(dst, 3*giB-miB, 4*miB), io.NewSectionReader(dst2, 3*giB-miB, 4*miB))

	// Through an io.SectionReader (at offset 0 and further on), too.
	for _, base := range []int64{0, miB + 4096} {
		src.read = 0
		sec := io.NewSectionReader(src, base, s.size-base)
		out2, _ := tempFile(t, fmt.Sprintf("section%d.qcow2", base))
		_, err = Convert(context.Background(), out2, sec, s.size, ConvertOptions{})
		require.NoError(t, err)
		assert.LessOrEqual(t, src.read, int64(2*convertChunk), "section at %d", base)
		rd2, err := NewReader(out2)
		require.NoError(t, err)
		compareStreams(t, io.NewSectionReader(f, base, 2*miB), io.NewSectionReader(rd2, 0, 2*miB))
		compareStreams(t, io.NewSectionReader(f, 3*giB, 2*miB), io.NewSectionReader(rd2, 3*giB-base, 2*miB))
	}

	pos, err := f.Seek(0, io.SeekCurrent)
	require.NoError(t, err)
	assert.Equal(t, int64(12345), pos, "file offset kept")
	for _, e := range s.extents {
		want := make([]byte, e.n)
		_, err := f.ReadAt(want, e.off)
		require.NoError(t, err)
		got := make([]byte, e.n)
		_, err = rd.ReadAt(got, e.off)
		require.NoError(t, err)
		requireSameBytes(t, want, got, e.off)
	}
}

// cancelOnWrite cancels a context on its first write, and makes every write slow.
type cancelOnWrite struct {
	RawFile
	cancel context.CancelFunc
}

func (c cancelOnWrite) WriteAt(p []byte, off int64) (int, error) {
	c.cancel()
	time.Sleep(20 * time.Millisecond)
	return c.RawFile.WriteAt(p, off)
}

// TestCancelWithWritesQueued: a ctx that ends while the writes of the last chunk are still queued makes ToRaw
// fail; it does not report success over data it left out.
func TestCancelWithWritesQueued(t *testing.T) {
	data := make([]byte, 4*miB) // one chunk, six runs of data: six writes
	for i := range 6 {
		copy(data[int64(i)*64*kiB:], bytes.Repeat([]byte{0xab}, 4096))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, _ := tempFile(t, "out.raw")
	err := ToRaw(ctx, cancelOnWrite{f, cancel}, bytes.NewReader(data), int64(len(data)), nil)
	require.ErrorIs(t, err, context.Canceled)
}
