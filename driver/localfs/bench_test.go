package localfs_test

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/drivertest"
)

// BenchmarkStorage runs the storage benchmarks every backend runs (drivertest.RunBenchmarks) on a directory
// storage in the test's temporary directory.
func BenchmarkStorage(b *testing.B) {
	backend, err := newBenchBackend(b)
	require.NoError(b, err)
	drivertest.RunBenchmarks(b, drivertest.StorageHarness{
		Backend: backend,
		Pool:    func(t testing.TB) driver.PoolSpec { return dirPool(filepath.Join(t.TempDir(), "storage")) },
	})
}

// repeatReader streams a 1 MiB block of deterministic bytes over and over: faster than any disk.
type repeatReader struct {
	block []byte
	off   int
}

func newRepeatReader() *repeatReader {
	b := make([]byte, 1<<20)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return &repeatReader{block: b}
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.block[r.off:])
	r.off = (r.off + n) % len(r.block)
	return n, nil
}

// BenchmarkUpload1GiB compares WriteImage of 1 GiB (SHA-256, format detection, fsync, rename) with a plain
// io.Copy into a file on the same disk followed by fsync, in the same run. It reports both throughputs and
// their ratio (WriteImage / plain copy; the target is >= 0.9).
func BenchmarkUpload1GiB(b *testing.B) {
	const size = 1 << 30
	dir := b.TempDir()
	backend, err := newBenchBackend(b)
	require.NoError(b, err)
	pool := dirPool(filepath.Join(dir, "storage"))
	_, err = backend.Prepare(b.Context(), pool)
	require.NoError(b, err)

	runPlain := func() time.Duration {
		start := time.Now()
		f, err := os.Create(filepath.Join(dir, "plain"))
		require.NoError(b, err)
		_, err = io.Copy(f, io.LimitReader(newRepeatReader(), size))
		require.NoError(b, err)
		require.NoError(b, f.Sync())
		require.NoError(b, f.Close())
		d := time.Since(start)
		require.NoError(b, os.Remove(f.Name()))
		return d
	}
	runUpload := func() time.Duration {
		start := time.Now()
		id := uuid.New()
		info, err := backend.WriteImage(b.Context(), pool, driver.ImageWrite{ID: id}, io.LimitReader(newRepeatReader(), size))
		require.NoError(b, err)
		d := time.Since(start)
		require.Equal(b, int64(size), info.Size)
		require.NoError(b, backend.DeleteImage(b.Context(), pool, id))
		return d
	}

	var plain, upload time.Duration
	b.SetBytes(size)
	i := 0
	for b.Loop() {
		// Alternate the order so neither side always runs right after the other's writeback.
		if i%2 == 0 {
			plain += runPlain()
			upload += runUpload()
		} else {
			upload += runUpload()
			plain += runPlain()
		}
		i++
	}
	n := float64(b.N)
	b.ReportMetric(size*n/plain.Seconds()/1e6, "plain-MB/s")
	b.ReportMetric(size*n/upload.Seconds()/1e6, "upload-MB/s")
	b.ReportMetric(plain.Seconds()/upload.Seconds(), "ratio")
}

func newBenchBackend(b *testing.B) (driver.StorageBackend, error) {
	return driver.OpenStorage("localfs", driver.Config{DataDir: b.TempDir()})
}
