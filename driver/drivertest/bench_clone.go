package drivertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
)

// benchCloneExtent is the size of each range of data BenchmarkClone writes into the source volume.
const benchCloneExtent = 64 * stMiB

// CloneBaseline is a copy of a file timed next to CloneVolume by BenchmarkClone, on the same source file
// in the same run: for example cp --reflink=always.
type CloneBaseline struct {
	// Name names the sub-benchmark.
	Name string
	// Copy copies the file src to dst, a new file in the same directory; BenchmarkClone removes dst, untimed.
	Copy func(ctx context.Context, src, dst string) error
}

// CopyCommand returns a baseline that runs the program argv[0] with the arguments argv[1:], src and dst (no
// shell), for example CopyCommand("cp-reflink", false, "cp", "--reflink=always"). With sync, the time
// includes an fsync of dst once the program is done, as CloneVolume makes its clone durable.
func CopyCommand(name string, sync bool, argv ...string) CloneBaseline {
	return CloneBaseline{Name: name, Copy: func(ctx context.Context, src, dst string) error {
		out, err := exec.CommandContext(ctx, argv[0], append(argv[1:len(argv):len(argv)], src, dst)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, out)
		}
		if !sync {
			return nil
		}
		f, err := os.OpenFile(dst, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}}
}

// BenchmarkClone measures driver.VolumeCloner.CloneVolume on h.Backend. It prepares one storage from h.Pool
// (torn down at the end), creates one volume of the given format and virtual size, and writes data bytes of
// generated content into it, in 64 MiB ranges spread evenly over the volume with holes between them, so
// the volume looks like a guest disk partly filled. Writing needs a file disk source (and, for qcow2, data
// clusters the image already maps, as metadata preallocation does): a backend with network disk sources
// is skipped unless data is 0.
//
// Two untimed rounds of every case come first (warm-up: whichever case runs first must not pay alone for
// the first writes to a new filesystem). Then the sub-benchmarks run one clone per iteration; each clone is
// deleted untimed and the host's dirty data written back (sync) before the next iteration, so that no
// iteration pays for the writeback of another:
//
//   - CloneVolume: CloneVolume of the volume to a new id; MB/s counts the data bytes;
//   - one per baseline: baseline.Copy of the volume's file to a new file next to it.
//
// It skips when the backend does not implement driver.VolumeCloner or does not declare the format. Every
// call gets a context with a deadline. Stop, Restart and Open are not used.
func BenchmarkClone(b *testing.B, h StorageHarness, format driver.VolumeFormat, size, data int64, baselines ...CloneBaseline) {
	require.NotNil(b, h.Backend, "harness without a backend")
	require.NotNil(b, h.Pool, "harness without a Pool function")
	require.LessOrEqual(b, data, size, "more data than the volume holds")
	be := h.Backend
	cl, ok := be.(driver.VolumeCloner)
	if !ok {
		b.Skip("the backend does not implement driver.VolumeCloner")
	}
	if !slices.Contains(be.Info().Capabilities.VolumeFormats, format) {
		b.Skipf("the backend does not declare %s volumes", format)
	}
	// ctx is the context of the setup and cleanup calls; each clone gets its own (benchCall).
	ctx, cancel := context.WithTimeout(context.Background(), stTimeout)
	defer cancel()

	pool := stNew(b, be, h)
	stPrepareWith(b, be, &pool)
	b.Cleanup(func() {
		benchCall(func(ctx context.Context) {
			if err := be.Teardown(ctx, pool); err != nil {
				b.Errorf("Teardown at cleanup: %v", err)
			}
		})
	})

	src := stNewID()
	_, err := be.CreateVolume(ctx, pool, driver.VolumeSpec{ID: src, Format: format, Size: size})
	require.NoError(b, err)
	defer benchCall(func(ctx context.Context) {
		if err := be.DeleteVolume(ctx, pool, src); err != nil {
			b.Errorf("DeleteVolume at cleanup: %v", err)
		}
	})
	disk := be.DiskSource(pool, driver.KindVolume, src)
	if data > 0 {
		if disk.Type != "file" {
			b.Skipf("cannot write data into a %s disk source", disk.Type)
		}
		benchFill(b, disk.Path, format, size, data)
	}
	// Warm up, untimed: clones and copies by each baseline, so that whichever case runs first does not pay
	// alone for what the first writes to a new filesystem cost (allocation in a fresh loop device).
	for range 2 {
		warm := stNewID()
		benchCall(func(ctx context.Context) {
			_, err = cl.CloneVolume(ctx, pool, driver.VolumeSpec{ID: src, Format: format}, warm)
		})
		require.NoError(b, err, "warm-up clone")
		benchCall(func(ctx context.Context) { err = be.DeleteVolume(ctx, pool, warm) })
		require.NoError(b, err)
		for _, base := range baselines {
			if disk.Type != "file" {
				break
			}
			dst := filepath.Join(filepath.Dir(disk.Path), "bench-baseline-"+uuid.NewString())
			benchCall(func(ctx context.Context) { err = base.Copy(ctx, disk.Path, dst) })
			require.NoError(b, err, "warm-up %s", base.Name)
			require.NoError(b, os.Remove(dst))
		}
	}
	syscall.Sync()

	b.Run("CloneVolume", func(b *testing.B) {
		b.SetBytes(data)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			dst := stNewID()
			var info driver.VolumeInfo
			var err error
			benchCall(func(ctx context.Context) {
				info, err = cl.CloneVolume(ctx, pool, driver.VolumeSpec{ID: src, Format: format}, dst)
			})
			b.StopTimer()
			require.NoError(b, err)
			require.Equal(b, size, info.VirtualSize)
			benchCall(func(ctx context.Context) { err = be.DeleteVolume(ctx, pool, dst) })
			require.NoError(b, err)
			syscall.Sync()
			b.StartTimer()
		}
	})

	for _, base := range baselines {
		b.Run(base.Name, func(b *testing.B) {
			if disk.Type != "file" {
				b.Skipf("no file to copy: the disk source is %s", disk.Type)
			}
			b.SetBytes(data)
			syscall.Sync()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dst := filepath.Join(filepath.Dir(disk.Path), "bench-baseline-"+uuid.NewString())
				var err error
				benchCall(func(ctx context.Context) { err = base.Copy(ctx, disk.Path, dst) })
				b.StopTimer()
				require.NoError(b, err, base.Name)
				require.NoError(b, os.Remove(dst))
				syscall.Sync()
				b.StartTimer()
			}
		})
	}
}

// benchFill writes data bytes of generated content into the volume file at path, in ranges of
// benchCloneExtent spread evenly over its size bytes, and syncs it.
func benchFill(b *testing.B, path string, format driver.VolumeFormat, size, data int64) {
	v := stOpenVolume(b, path, format)
	defer v.close(b)
	pieces := (data + benchCloneExtent - 1) / benchCloneExtent
	stride := max(size/pieces/stMiB*stMiB, benchCloneExtent)
	r := &stPatternReader{seed: 42}
	buf := make([]byte, 4*stMiB)
	for i := range pieces {
		off := int64(i) * stride
		left := min(benchCloneExtent, data-i*benchCloneExtent)
		for left > 0 {
			p := buf[:min(left, int64(len(buf)))]
			_, _ = r.Read(p)
			_, err := v.WriteAt(p, off)
			require.NoError(b, err, "write data into the %s volume (a qcow2 volume must have its clusters allocated)", format)
			off += int64(len(p))
			left -= int64(len(p))
		}
	}
}

// benchCall runs f with a context bounded by stTimeout.
func benchCall(f func(ctx context.Context)) {
	ctx, cancel := context.WithTimeout(context.Background(), stTimeout)
	defer cancel()
	f(ctx)
}
