package qcow2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/testenv"
)

// readerQemuIO runs qemu-io commands on an image (a test oracle that writes guest data the way QEMU does).
func readerQemuIO(t testing.TB, path string, cmds ...string) {
	t.Helper()
	bin := testenv.LookPath(t, "qemu-io")
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	args = append(args, path)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	require.NoError(t, err, "qemu-io %v: %s", cmds, out)
	// qemu-io reports command failures on its output but still exits 0.
	require.NotContains(t, string(out), "failed", "qemu-io %v", cmds)
}

// readerWindow is a region compared between Reader and qemu-img's raw conversion.
type readerWindow struct{ off, n int64 }

func TestReaderMatchesQemu(t *testing.T) {
	testenv.LookPath(t, "qemu-img")
	testenv.LookPath(t, "qemu-io")
	tests := []struct {
		name    string
		size    int64
		opts    string // qemu-img create -o
		cmds    []string
		windows []readerWindow
		// wantAllocated: some window must contain non-zero data (guards against a reader that returns zeros).
		wantNonZero bool
	}{
		{
			name:    "unallocated",
			size:    4 * miB,
			windows: []readerWindow{{0, 4096}, {64*kiB - 100, 200}, {4*miB - 512, 512}},
		},
		{
			name:        "written",
			size:        4 * miB,
			cmds:        []string{"write -P 0xab 65536 4096", "write -P 0x5a 3m 1m"},
			windows:     []readerWindow{{65536, 4096}, {65536 - 10, 4200}, {3 * miB, miB}},
			wantNonZero: true,
		},
		{
			name: "zero flagged",
			size: 4 * miB,
			cmds: []string{
				"write -P 0xcd 0 256k",
				"write -z 0 64k",       // allocated cluster turned into a zero cluster
				"write -z 1m 64k",      // unallocated cluster marked zero
				"write -z 131072 4096", // part of a cluster: QEMU writes zeros into the data cluster
			},
			windows:     []readerWindow{{0, 256 * kiB}, {1 * miB, 64 * kiB}, {131072 - 1, 4098}},
			wantNonZero: true,
		},
		{
			name:        "across cluster boundary",
			size:        4 * miB,
			cmds:        []string{"write -P 0x11 65000 2000", "write -P 0x12 131000 70000"},
			windows:     []readerWindow{{64990, 2100}, {130000, 80000}},
			wantNonZero: true,
		},
		{
			name: "across L2 boundary, 512-byte clusters",
			size: 1 * miB,
			opts: "cluster_size=512", // 64 entries per L2 table: one table maps 32 KiB
			cmds: []string{"write -P 0x22 32000 2000", "write -P 0x23 65024 1024", "write -z 65280 256"},
			windows: []readerWindow{
				{32000, 2000}, {32768 - 3, 6}, {65024 - 512, 2048}, {0, 128 * kiB},
			},
			wantNonZero: true,
		},
		{
			name:        "across L2 boundary, 64 KiB clusters",
			size:        1 * giB,
			cmds:        []string{"write -P 0x33 536868864 4096"}, // 512 MiB - 2 KiB: two L2 tables
			windows:     []readerWindow{{512*miB - 4096, 8192}, {512*miB - 1, 2}},
			wantNonZero: true,
		},
		{
			name:        "version 2",
			size:        2 * miB,
			opts:        "compat=0.10",
			cmds:        []string{"write -P 0x44 100000 50000", "write -z 110000 1000"},
			windows:     []readerWindow{{99999, 50002}, {110000, 1000}},
			wantNonZero: true,
		},
		{
			name: "extended L2 (subclusters)",
			size: 4 * miB,
			opts: "extended_l2=on,cluster_size=128k",
			cmds: []string{
				"write -P 0x55 65536 4096", // 4 KiB subclusters: one allocated in the cluster
				"write -P 0x56 0 16k",
				"write -z 8192 4096",
			},
			windows:     []readerWindow{{0, 128 * kiB}, {4095, 2}, {65536 - 4096, 3 * 4096}},
			wantNonZero: true,
		},
		{
			name:        "short read at the end",
			size:        miB + 512,
			cmds:        []string{"write -P 0x66 1048064 1024"},
			windows:     []readerWindow{{miB - 512, 1024}, {miB, 512}},
			wantNonZero: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "img.qcow2")
			raw := filepath.Join(dir, "img.raw")
			args := []string{"create", "-q", "-f", "qcow2"}
			if tc.opts != "" {
				args = append(args, "-o", tc.opts)
			}
			qemuImg(t, append(args, img, fmt.Sprint(tc.size))...)
			if len(tc.cmds) > 0 {
				readerQemuIO(t, img, tc.cmds...)
			}
			qemuImg(t, "convert", "-f", "qcow2", "-O", "raw", img, raw)

			f, err := os.Open(img)
			require.NoError(t, err)
			defer f.Close()
			rf, err := os.Open(raw)
			require.NoError(t, err)
			defer rf.Close()

			rd, err := NewReader(f)
			require.NoError(t, err)
			require.Equal(t, tc.size, rd.Size())

			nonZero := false
			for _, w := range tc.windows {
				got := make([]byte, w.n)
				n, err := rd.ReadAt(got, w.off)
				require.NoError(t, err, "window %+v", w)
				require.EqualValues(t, w.n, n)
				want := make([]byte, w.n)
				_, err = rf.ReadAt(want, w.off)
				require.NoError(t, err)
				requireSameBytes(t, want, got, w.off)
				nonZero = nonZero || bytes.IndexFunc(got, func(r rune) bool { return r != 0 }) >= 0
			}
			assert.Equal(t, tc.wantNonZero, nonZero, "non-zero data in the windows")

			// The whole disk (for large images, 4 MiB around each window), streamed in odd-sized chunks,
			// matches the raw conversion.
			if tc.size <= 64*miB {
				compareStreams(t, io.NewSectionReader(rf, 0, tc.size), io.NewSectionReader(rd, 0, rd.Size()))
			} else {
				for _, w := range tc.windows {
					start := max(0, w.off-2*miB)
					n := min(tc.size-start, 4*miB+w.n)
					compareStreams(t, io.NewSectionReader(rf, start, n), io.NewSectionReader(rd, start, n))
				}
			}

			// A read that crosses the end returns what is there and io.EOF; a read at the end returns io.EOF.
			tail := make([]byte, 4096)
			n, err := rd.ReadAt(tail, tc.size-700)
			require.ErrorIs(t, err, io.EOF)
			require.Equal(t, 700, n)
			want := make([]byte, 700)
			_, err = rf.ReadAt(want, tc.size-700)
			require.NoError(t, err)
			requireSameBytes(t, want, tail[:700], tc.size-700)
			n, err = rd.ReadAt(tail, tc.size)
			require.ErrorIs(t, err, io.EOF)
			require.Zero(t, n)
		})
	}
}

// compareStreams asserts that two readers deliver the same bytes, reading in chunks that do not align with
// clusters.
func compareStreams(t *testing.T, want, got io.Reader) {
	t.Helper()
	const chunk = 1<<20 + 3*512 + 7
	a, b := make([]byte, chunk), make([]byte, chunk)
	var off int64
	for {
		na, ea := io.ReadFull(want, a)
		nb, eb := io.ReadFull(got, b)
		require.Equal(t, na, nb, "chunk at %d", off)
		requireSameBytes(t, a[:na], b[:nb], off)
		if ea != nil || eb != nil {
			require.ErrorIs(t, ea, io.ErrUnexpectedEOF, "raw stream at %d", off)
			require.ErrorIs(t, eb, io.ErrUnexpectedEOF, "reader stream at %d", off)
			return
		}
		off += int64(na)
	}
}

// requireSameBytes compares two buffers and reports the first difference by guest offset.
func requireSameBytes(t *testing.T, want, got []byte, base int64) {
	t.Helper()
	require.Equal(t, len(want), len(got))
	if bytes.Equal(want, got) {
		return
	}
	for i := range want {
		if want[i] != got[i] {
			t.Fatalf("guest offset %d: got %#x, want %#x", base+int64(i), got[i], want[i])
		}
	}
}

func TestReaderCompressedCluster(t *testing.T) {
	testenv.LookPath(t, "qemu-io")
	img := filepath.Join(t.TempDir(), "c.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", img, "1M")
	readerQemuIO(t, img, "write -c -P 0x77 0 64k", "write -P 0x78 64k 4k")
	f, err := os.Open(img)
	require.NoError(t, err)
	defer f.Close()
	rd, err := NewReader(f)
	require.NoError(t, err)

	buf := make([]byte, 512)
	_, err = rd.ReadAt(buf, 100)
	require.ErrorIs(t, err, errkind.Unsupported)
	require.ErrorContains(t, err, "compressed")

	n, err := rd.ReadAt(buf, 64*kiB)
	require.NoError(t, err)
	require.Equal(t, 512, n)
	require.Equal(t, bytes.Repeat([]byte{0x78}, 512), buf)
}

func TestNewReaderRejects(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	overlay := filepath.Join(dir, "overlay.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", base, "1M")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay)
	f, err := os.Open(overlay)
	require.NoError(t, err)
	defer f.Close()
	_, err = NewReader(f)
	require.ErrorIs(t, err, errkind.Unsupported)
	require.ErrorContains(t, err, "backing file")

	_, err = NewReader(bytes.NewReader([]byte("not a qcow2 image at all, just some text")))
	require.ErrorIs(t, err, errkind.Invalid)

	_, err = NewReader(bytes.NewReader([]byte(Magic)))
	require.ErrorIs(t, err, ErrTruncated)
}

func TestReaderCorruptMetadata(t *testing.T) {
	mem := &memFile{}
	_, err := Create(mem, 10*miB, CreateOptions{})
	require.NoError(t, err)
	h, err := ReadHeader(mem)
	require.NoError(t, err)

	rd, err := NewReader(mem)
	require.NoError(t, err)
	buf := make([]byte, 1024)
	n, err := rd.ReadAt(buf, 5*miB)
	require.NoError(t, err)
	require.Equal(t, 1024, n)
	require.Equal(t, make([]byte, 1024), buf, "a fresh image reads as zeros")

	_, err = rd.ReadAt(buf, -1)
	require.ErrorIs(t, err, errkind.Invalid)

	// An L1 entry pointing at an unaligned L2 table is corruption.
	var e [8]byte
	e[7] = 0x01
	e[6] = 0x02 // offset 0x200: not aligned to 64 KiB
	_, err = mem.WriteAt(e[:], h.L1TableOffset)
	require.NoError(t, err)
	rd, err = NewReader(mem)
	require.NoError(t, err)
	_, err = rd.ReadAt(buf, 0)
	require.ErrorIs(t, err, errkind.Invalid)
	require.ErrorContains(t, err, "L2 table offset")

	// An L2 table past the end of the file is a truncated image.
	far := uint64(1) << 40
	for i := range 8 {
		e[i] = byte(far >> (56 - 8*i))
	}
	_, err = mem.WriteAt(e[:], h.L1TableOffset)
	require.NoError(t, err)
	rd, err = NewReader(mem)
	require.NoError(t, err)
	_, err = rd.ReadAt(buf, 0)
	require.ErrorIs(t, err, ErrTruncated)
	require.ErrorIs(t, err, errkind.Invalid)
}

// smallQemuImage returns the bytes of a small image written by QEMU (512-byte clusters, some data, a zero
// cluster), or nil when qemu-img or qemu-io is missing.
func smallQemuImage(f *testing.F, opts string) []byte {
	f.Helper()
	img, err := exec.LookPath("qemu-img")
	if err != nil {
		return nil
	}
	qio, err := exec.LookPath("qemu-io")
	if err != nil {
		return nil
	}
	p := filepath.Join(f.TempDir(), "seed.qcow2")
	if out, err := runCmd(img, "create", "-q", "-f", "qcow2", "-o", opts, p, "64k"); err != nil {
		f.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	if out, err := runCmd(qio, "-f", "qcow2", "-c", "write -P 0xab 1000 3000", "-c", "write -z 0 512", "-c",
		"write -P 0xcd 40000 600", p); err != nil {
		f.Fatalf("qemu-io: %v\n%s", err, out)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzReader feeds arbitrary bytes to NewReader and reads from whatever it accepts: it must never panic, and
// every error must be a value of a known kind.
func FuzzReader(f *testing.F) {
	for _, opts := range []string{"cluster_size=512", "cluster_size=512,compat=0.10", "cluster_size=16k,extended_l2=on"} {
		if b := smallQemuImage(f, opts); b != nil {
			f.Add(b)
		}
	}
	mem := &memFile{}
	if _, err := Create(mem, 1*miB, CreateOptions{ClusterSize: 512}); err != nil {
		f.Fatal(err)
	}
	f.Add(mem.Bytes(mem.Len()))
	f.Add([]byte(Magic))
	for _, s := range overlaySeeds(f) { // NewReader refuses these: backing files are never followed
		f.Add(s)
	}

	known := func(err error) bool {
		return err == nil || errors.Is(err, io.EOF) || errors.Is(err, errkind.Invalid) || errors.Is(err, errkind.Unsupported)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rd, err := NewReader(bytes.NewReader(data))
		if err != nil {
			if !known(err) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			if rd != nil {
				t.Fatal("reader returned with an error")
			}
			return
		}
		size := rd.Size()
		cs := rd.h.ClusterSize
		for _, off := range []int64{0, 1, cs - 1, cs, size / 2, size - 1, size, size + 1, -1} {
			p := make([]byte, min(3*cs/2+1, 4097)) // crosses a cluster boundary for small clusters
			n, err := rd.ReadAt(p, off)
			if !known(err) {
				t.Fatalf("ReadAt(%d): unexpected error kind: %v", off, err)
			}
			if n < 0 || n > len(p) {
				t.Fatalf("ReadAt(%d) = %d bytes for a %d-byte buffer", off, n, len(p))
			}
			if err == nil && n != len(p) {
				t.Fatalf("ReadAt(%d) = %d bytes without an error", off, n)
			}
			if off >= 0 && off < size && errors.Is(err, io.EOF) && int64(n) != min(int64(len(p)), size-off) {
				t.Fatalf("ReadAt(%d) = %d bytes with io.EOF, size %d", off, n, size)
			}
		}
	})
}
