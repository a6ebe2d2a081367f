package qcow2

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/openvair/openvair/internal/testenv"
)

// Sizes of the benchmark source: 10 GiB virtual with 2 GiB of data in 64 extents spread over it (with -short,
// 1 GiB with 200 MiB).
func benchSizes() (virtual, data int64, extents int) {
	if testing.Short() {
		return giB, 200 * miB, 20
	}
	return 10 * giB, 2 * giB, 64
}

// makeBenchRaw writes the sparse raw source of the conversion benchmarks: random, incompressible data in
// evenly spaced extents, holes between them.
func makeBenchRaw(b *testing.B, path string) (virtual, data int64) {
	b.Helper()
	virtual, data, extents := benchSizes()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(virtual); err != nil {
		b.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 8*miB)
	per := data / int64(extents)
	stride := virtual / int64(extents)
	for i := range int64(extents) {
		for done := int64(0); done < per; done += int64(len(buf)) {
			p := buf[:min(int64(len(buf)), per-done)]
			_, _ = rng.Read(p)
			if _, err := f.WriteAt(p, i*stride+done); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return virtual, data
}

// noSync hides the Sync method of a file, for a Convert without its write barrier.
type noSync struct{ f *os.File }

func (n noSync) ReadAt(p []byte, off int64) (int, error)  { return n.f.ReadAt(p, off) }
func (n noSync) WriteAt(p []byte, off int64) (int, error) { return n.f.WriteAt(p, off) }
func (n noSync) Truncate(size int64) error                { return n.f.Truncate(size) }

// benchConvert runs one conversion per iteration into dst, removed before each and after the last.
func benchConvert(b *testing.B, data int64, dst string, convert func()) {
	b.Helper()
	b.SetBytes(data)
	b.Cleanup(func() { _ = os.Remove(dst) })
	// One untimed run first: the first large file written after the previous variant's was deleted is much
	// slower here (the kernel reclaims and reallocates), which would penalize whichever variant runs first.
	// Then start with no dirty page cache left (written back meanwhile, it would slow down the timed runs).
	_ = os.Remove(dst)
	convert()
	_ = os.Remove(dst)
	syscall.Sync()
	for b.Loop() {
		b.StopTimer()
		_ = os.Remove(dst)
		b.StartTimer()
		convert()
	}
}

// oursInto converts src into a new file at dst with Convert; sync false hides the file's Sync.
func oursInto(b *testing.B, dst string, src io.ReaderAt, virtual int64, sync bool) {
	f, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var out File = f
	if !sync {
		out = noSync{f}
	}
	if _, err := Convert(context.Background(), out, src, virtual, ConvertOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// qemuConvert runs qemu-img convert.
func qemuConvert(b *testing.B, bin string, args ...string) {
	if out, err := runCmd(bin, append([]string{"convert"}, args...)...); err != nil {
		b.Fatalf("qemu-img convert %v: %v\n%s", args, err, out)
	}
}

// BenchmarkConvert converts a sparse raw file (10 GiB virtual, 2 GiB of data) into qcow2 with Convert and with
// `qemu-img convert -O qcow2` in the same run, then a qcow2 image of that content into another qcow2 image and
// into a raw file. MB/s counts the data bytes. Each variant runs once untimed first. The source stays in the
// page cache; the outputs go through it to the disk. Convert syncs before writing the header (a write barrier);
// "nosync" hides the file's Sync. qemu-img convert writes with cache=unsafe (no flush) by default; "-t
// writeback" flushes at the end, as Convert does.
func BenchmarkConvert(b *testing.B) {
	bin := testenv.LookPath(b, "qemu-img")
	dir := b.TempDir()
	raw := filepath.Join(dir, "src.raw")
	virtual, data := makeBenchRaw(b, raw)
	src, err := os.Open(raw)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(dir, "dst")

	b.Run("raw-to-qcow2", func(b *testing.B) {
		b.Run("openvair", func(b *testing.B) {
			benchConvert(b, data, dst, func() { oursInto(b, dst, src, virtual, true) })
		})
		b.Run("openvair-nosync", func(b *testing.B) {
			benchConvert(b, data, dst, func() { oursInto(b, dst, src, virtual, false) })
		})
		b.Run("openvair-content-only", func(b *testing.B) {
			benchConvert(b, data, dst, func() { oursInto(b, dst, readerOnly{src}, virtual, true) })
		})
		b.Run("qemu-img", func(b *testing.B) {
			benchConvert(b, data, dst, func() { qemuConvert(b, bin, "-f", "raw", "-O", "qcow2", raw, dst) })
		})
		b.Run("qemu-img-t-writeback", func(b *testing.B) {
			benchConvert(b, data, dst, func() { qemuConvert(b, bin, "-t", "writeback", "-f", "raw", "-O", "qcow2", raw, dst) })
		})
	})

	// A qcow2 source with the same content, made once.
	srcQ := filepath.Join(dir, "src.qcow2")
	qemuConvert(b, bin, "-f", "raw", "-O", "qcow2", raw, srcQ)
	q, err := os.Open(srcQ)
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()

	b.Run("qcow2-to-qcow2", func(b *testing.B) {
		b.Run("openvair", func(b *testing.B) {
			benchConvert(b, data, dst, func() {
				rd, err := NewReader(q)
				if err != nil {
					b.Fatal(err)
				}
				oursInto(b, dst, rd, virtual, true)
			})
		})
		b.Run("openvair-nosync", func(b *testing.B) {
			benchConvert(b, data, dst, func() {
				rd, err := NewReader(q)
				if err != nil {
					b.Fatal(err)
				}
				oursInto(b, dst, rd, virtual, false)
			})
		})
		b.Run("qemu-img", func(b *testing.B) {
			benchConvert(b, data, dst, func() { qemuConvert(b, bin, "-f", "qcow2", "-O", "qcow2", srcQ, dst) })
		})
		b.Run("qemu-img-t-writeback", func(b *testing.B) {
			benchConvert(b, data, dst, func() { qemuConvert(b, bin, "-t", "writeback", "-f", "qcow2", "-O", "qcow2", srcQ, dst) })
		})
	})

	b.Run("qcow2-to-raw", func(b *testing.B) {
		b.Run("openvair", func(b *testing.B) {
			benchConvert(b, data, dst, func() {
				rd, err := NewReader(q)
				if err != nil {
					b.Fatal(err)
				}
				f, err := os.Create(dst)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				if err := ToRaw(context.Background(), f, rd, virtual, nil); err != nil {
					b.Fatal(err)
				}
				if err := f.Close(); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run("qemu-img", func(b *testing.B) {
			benchConvert(b, data, dst, func() { qemuConvert(b, bin, "-f", "qcow2", "-O", "raw", srcQ, dst) })
		})
	})
	_ = os.Remove(srcQ)
	_ = os.Remove(raw)
}
