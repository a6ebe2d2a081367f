package nfs

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	gonfs "github.com/vmware/go-nfs-client/nfs"
	"github.com/vmware/go-nfs-client/nfs/rpc"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/drivertest"
	"github.com/openvair/openvair/internal/testenv/nfsserver"
)

// BenchmarkStorage runs the storage benchmarks every backend runs (drivertest.RunBenchmarks) against the
// in-process NFS server, backed by the disk like the LocalFS directory benchmarks.
func BenchmarkStorage(b *testing.B) {
	srv := nfsserver.Start(b, b.TempDir())
	drivertest.RunBenchmarks(b, drivertest.StorageHarness{
		Backend: newBackend(b, nil),
		Pool:    func(testing.TB) driver.PoolSpec { return spec(srv.Addr(), srv.Export()) },
	})
}

// patternReader yields n bytes of a repeating 1 MiB pattern.
type patternReader struct {
	pat  []byte
	left int64
}

func newPattern(n int64) *patternReader {
	p := make([]byte, 1<<20)
	for i := range p {
		p[i] = byte(i*7 + i>>9)
	}
	return &patternReader{pat: p, left: n}
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && r.left > 0 {
		c := copy(p[n:min(len(p), n+int(r.left))], r.pat)
		n += c
		r.left -= int64(c)
	}
	return n, nil
}

// BenchmarkUpload1GiB uploads 1 GiB to the in-process NFS server (backed by the disk) through WriteImage
// and, as the baseline in the same run, with a plain go-nfs-client write loop (1 MiB File.Write calls) of the
// same data; it reports both throughputs and driver/baseline.
func BenchmarkUpload1GiB(b *testing.B) {
	const size = int64(1) << 30
	srv := nfsserver.Start(b, b.TempDir())
	be := newBackend(b, nil)
	pool := spec(srv.Addr(), srv.Export())
	_, err := be.Prepare(context.Background(), pool)
	require.NoError(b, err)

	m, err := gonfs.DialMount(srv.Addr())
	require.NoError(b, err)
	defer m.Close()
	target, err := m.Mount(srv.Export(), rpc.NewAuthUnix("bench", 0, 0).Auth())
	require.NoError(b, err)
	defer target.Close()

	var rawDur, drvDur time.Duration
	buf := make([]byte, 1<<20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Baseline: the library's own write loop.
		start := time.Now()
		f, err := target.OpenFile("raw.bin", 0o644)
		require.NoError(b, err)
		r := newPattern(size)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				_, werr := f.Write(buf[:n])
				require.NoError(b, werr)
			}
			if err == io.EOF {
				break
			}
		}
		require.NoError(b, f.Close())
		rawDur += time.Since(start)
		require.NoError(b, target.Remove("raw.bin"))

		// The driver: WriteImage (hashing, format detection, UNSTABLE writes + COMMIT + RENAME).
		start = time.Now()
		id := uuid.New()
		info, err := be.WriteImage(context.Background(), pool, driver.ImageWrite{ID: id}, newPattern(size))
		require.NoError(b, err)
		drvDur += time.Since(start)
		require.Equal(b, size, info.Size)
		st, err := os.Stat(poolFile(srv.Dir(), pool, imageName(id)))
		require.NoError(b, err)
		require.Equal(b, size, st.Size())
		require.NoError(b, be.DeleteImage(context.Background(), pool, id))
	}
	b.StopTimer()
	mb := float64(size) / (1 << 20) * float64(b.N)
	b.ReportMetric(mb/rawDur.Seconds(), "raw_MB/s")
	b.ReportMetric(mb/drvDur.Seconds(), "driver_MB/s")
	b.ReportMetric(rawDur.Seconds()/drvDur.Seconds(), "driver/raw")
}
