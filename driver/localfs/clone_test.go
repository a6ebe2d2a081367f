package localfs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/testenv"
	"github.com/openvair/openvair/internal/testenv/loopdev"
)

// cloneLoopSize is the size of the loop devices of the clone tests (sparse); mkfs.xfs wants 300 MiB.
const cloneLoopSize = 1 << 30

// cloneCallTimeout bounds every backend call of the clone tests.
const cloneCallTimeout = 2 * time.Minute

// cloneCtx returns the context of one backend call.
func cloneCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), cloneCallTimeout)
	t.Cleanup(cancel)
	return ctx
}

// cloneMount makes a fsType filesystem (mkfs.<fsType> with mkfsArgs) on a new loop device of size bytes,
// mounts it on a temporary directory and returns the directory; it is unmounted and detached when tb
// ends.
func cloneMount(tb testing.TB, fsType string, size int64, mkfsArgs ...string) string {
	tb.Helper()
	testenv.RequireRoot(tb)
	testenv.LookPath(tb, "mkfs."+fsType)
	return cloneMountDev(tb, fsType, loopdev.New(tb, size), mkfsArgs...)
}

// cloneMountDev is cloneMount on the device dev.
func cloneMountDev(tb testing.TB, fsType, dev string, mkfsArgs ...string) string {
	tb.Helper()
	testenv.RequireRoot(tb)
	mkfs := testenv.LookPath(tb, "mkfs."+fsType)
	ctx, cancel := context.WithTimeout(context.Background(), cloneCallTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, mkfs, append(mkfsArgs, dev)...).CombinedOutput()
	require.NoError(tb, err, "mkfs.%s: %s", fsType, out)
	mnt := tb.TempDir()
	require.NoError(tb, unix.Mount(dev, mnt, fsType, 0, ""), "mount %s", fsType)
	tb.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			tb.Errorf("unmount %s: %v", mnt, err)
		}
	})
	return mnt
}

// mkfsArgs are the options of the filesystems the clone tests make: quiet, forced, reflinks on xfs, and
// ext4's inode tables and journal initialized at once (not by a kernel thread that competes with the
// benchmarks for the device after the mount).
var mkfsArgs = map[string][]string{
	"btrfs": {"-q", "-f"},
	"xfs":   {"-q", "-f", "-m", "reflink=1"},
	"ext4":  {"-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"},
}

// cloneTmpfs mounts a tmpfs of size bytes on a temporary directory and returns the directory.
func cloneTmpfs(tb testing.TB, size int64) string {
	tb.Helper()
	testenv.RequireRoot(tb)
	mnt := tb.TempDir()
	require.NoError(tb, unix.Mount("tmpfs", mnt, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)))
	tb.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}

// cloneBackend returns a localfs backend with a private data directory and options.
func cloneBackend(tb testing.TB, options map[string]string) *localfs.Backend {
	tb.Helper()
	b, err := localfs.New(driver.Config{DataDir: tb.TempDir(), Options: options})
	require.NoError(tb, err)
	return b
}

// clonePrepared checks, as openvair does, and prepares a directory-mode storage at dir, torn down when tb
// ends.
func clonePrepared(tb testing.TB, b *localfs.Backend, dir string) driver.PoolSpec {
	tb.Helper()
	ctx := cloneCtx(tb)
	checked, err := b.CheckConfig(ctx, driver.MustJSON(localfs.Config{Path: dir}))
	require.NoError(tb, err, "CheckConfig")
	pool := driver.PoolSpec{ID: uuid.New(), Type: localfs.Type, Config: checked.Config, State: checked.State}
	state, err := b.Prepare(ctx, pool)
	require.NoError(tb, err, "Prepare")
	pool = state.Apply(pool)
	tb.Cleanup(func() {
		if err := b.Teardown(cloneCtx(tb), pool); err != nil {
			tb.Errorf("Teardown: %v", err)
		}
	})
	return pool
}

// cloneVolumePath is the file of a volume.
func cloneVolumePath(b *localfs.Backend, pool driver.PoolSpec, id uuid.UUID) string {
	return b.DiskSource(pool, driver.KindVolume, id).Path
}

// cloneFill writes n bytes of data, marked with seed, into the file at path at each offset, and syncs it.
func cloneFill(tb testing.TB, path string, seed byte, n int64, offsets ...int64) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(tb, err)
	buf := bytes.Repeat([]byte("openvair clone!\n"), 1<<16) // 1 MiB
	for i, off := range offsets {
		for done := int64(0); done < n; done += int64(len(buf)) {
			buf[0], buf[1], buf[2] = seed, byte(i), byte(done>>20)
			_, err := f.WriteAt(buf[:min(int64(len(buf)), n-done)], off+done)
			require.NoError(tb, err)
		}
	}
	require.NoError(tb, f.Sync())
	require.NoError(tb, f.Close())
}

// allocated is the space a file takes (st_blocks).
func allocated(tb testing.TB, path string) int64 {
	tb.Helper()
	var st unix.Stat_t
	require.NoError(tb, unix.Stat(path, &st))
	return st.Blocks * 512
}

// Linux FIEMAP (linux/fiemap.h), which golang.org/x/sys does not define.
const (
	fsIocFiemap        = 0xC020660B // _IOWR('f', 11, struct fiemap)
	fiemapFlagSync     = 0x1
	fiemapExtentLast   = 0x1
	fiemapExtentShared = 0x2000
	fiemapHeader       = 32 // struct fiemap without its extents
	fiemapExtentSize   = 56 // struct fiemap_extent
	fiemapBatch        = 256
)

// sharedBytes reports how many bytes of the file at path lie in extents the filesystem marks shared
// (FIEMAP_EXTENT_SHARED: reflinked or snapshotted), and how many in extents at all. ok is false when the
// filesystem has no FIEMAP (tmpfs).
func sharedBytes(tb testing.TB, path string) (shared, mapped int64, ok bool) {
	tb.Helper()
	f, err := os.Open(path)
	require.NoError(tb, err)
	defer f.Close()
	words := make([]uint64, (fiemapHeader+fiemapBatch*fiemapExtentSize)/8)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
	le := binary.NativeEndian
	for start := uint64(0); ; {
		clear(buf)
		le.PutUint64(buf[0:], start)      // fm_start
		le.PutUint64(buf[8:], ^uint64(0)) // fm_length
		le.PutUint32(buf[16:], fiemapFlagSync)
		le.PutUint32(buf[24:], fiemapBatch) // fm_extent_count
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&buf[0])))
		if errno == unix.EOPNOTSUPP || errno == unix.ENOTTY {
			return 0, 0, false
		}
		require.Zero(tb, errno, "FIEMAP %s: %v", path, errno)
		n := le.Uint32(buf[20:]) // fm_mapped_extents
		if n == 0 {
			return shared, mapped, true
		}
		var last bool
		for i := range n {
			e := buf[fiemapHeader+int(i)*fiemapExtentSize:]
			logical, length, flags := le.Uint64(e[0:]), le.Uint64(e[16:]), le.Uint32(e[40:])
			mapped += int64(length)
			if flags&fiemapExtentShared != 0 {
				shared += int64(length)
			}
			start = logical + length
			last = flags&fiemapExtentLast != 0
		}
		if last {
			return shared, mapped, true
		}
	}
}

// freeBytes is the space available on the filesystem of dir.
func freeBytes(tb testing.TB, dir string) int64 {
	tb.Helper()
	d, err := os.Open(dir)
	require.NoError(tb, err)
	require.NoError(tb, unix.Syncfs(int(d.Fd())))
	require.NoError(tb, d.Close())
	var st unix.Statfs_t
	require.NoError(tb, unix.Statfs(dir, &st))
	return int64(st.Bavail) * st.Bsize
}

// requireNoClone checks that a refused clone left neither the volume nor a partial file.
func requireNoClone(t *testing.T, b *localfs.Backend, pool driver.PoolSpec, id uuid.UUID) {
	t.Helper()
	_, err := b.InspectVolume(cloneCtx(t), pool, driver.VolumeSpec{ID: id})
	require.ErrorIs(t, err, driver.ErrNotFound)
	left, err := filepath.Glob(cloneVolumePath(b, pool, id) + "*")
	require.NoError(t, err)
	require.Empty(t, left, "files left behind")
}

// TestCloneReflink: on btrfs and on xfs made with reflink=1, CloneVolume and CloneVolumeReflink share
// every block of the source (FIEMAP reports the clone's extents shared) and take next to no space; the
// clone is independent of its source once written.
func TestCloneReflink(t *testing.T) {
	for _, fsType := range []string{"btrfs", "xfs"} {
		t.Run(fsType, func(t *testing.T) {
			mnt := cloneMount(t, fsType, cloneLoopSize, mkfsArgs[fsType]...)
			b := cloneBackend(t, nil)
			pool := clonePrepared(t, b, filepath.Join(mnt, "storage"))
			ctx := cloneCtx(t)
			const size, data = 128 << 20, 32 << 20
			for _, format := range []driver.VolumeFormat{driver.FormatRaw, driver.FormatQCOW2} {
				for name, clone := range map[string]func(context.Context, driver.PoolSpec, driver.VolumeSpec, uuid.UUID) (driver.VolumeInfo, error){
					"CloneVolume":        b.CloneVolume,
					"CloneVolumeReflink": b.CloneVolumeReflink,
				} {
					t.Run(string(format)+"/"+name, func(t *testing.T) {
						src, dst := uuid.New(), uuid.New()
						_, err := b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: src, Format: format, Size: size})
						require.NoError(t, err)
						srcPath := cloneVolumePath(b, pool, src)
						if format == driver.FormatRaw {
							cloneFill(t, srcPath, 1, data/2, 0, size/2)
						} else {
							// Past the qcow2 metadata (a few hundred KiB here): the file itself gets the data.
							cloneFill(t, srcPath, 1, data/2, 16<<20, 64<<20)
						}
						before := freeBytes(t, mnt)

						info, err := clone(ctx, pool, driver.VolumeSpec{ID: src, Format: format}, dst)
						require.NoError(t, err)
						require.Equal(t, format, info.Format)
						require.EqualValues(t, size, info.VirtualSize)
						dstPath := cloneVolumePath(b, pool, dst)

						shared, mapped, ok := sharedBytes(t, dstPath)
						require.True(t, ok, "%s has FIEMAP", fsType)
						t.Logf("%s %s clone: %d of %d mapped bytes shared; free space %d -> %d", fsType, format, shared, mapped, before, freeBytes(t, mnt))
						require.GreaterOrEqual(t, shared, int64(data), "the data extents are shared with the source")
						srcShared, _, _ := sharedBytes(t, srcPath)
						require.GreaterOrEqual(t, srcShared, int64(data), "the source's extents are shared too")
						require.Less(t, before-freeBytes(t, mnt), int64(data/4), "a reflink takes next to no space")
						require.Equal(t, fileSum(t, srcPath), fileSum(t, dstPath), "same content")

						// Writing to the clone unshares only what is written.
						srcContent := fileSum(t, srcPath)
						cloneFill(t, dstPath, 2, 1<<20, 16<<20)
						require.Equal(t, srcContent, fileSum(t, srcPath), "writing to the clone leaves the source unchanged")
						require.NotEqual(t, srcContent, fileSum(t, dstPath))

						require.NoError(t, b.DeleteVolume(ctx, pool, src))
						require.NoError(t, b.DeleteVolume(ctx, pool, dst))
					})
				}
			}
		})
	}
}

// fileSum is the SHA-256 of a file's content.
func fileSum(tb testing.TB, path string) [sha256.Size]byte {
	tb.Helper()
	f, err := os.Open(path)
	require.NoError(tb, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(tb, err)
	return [sha256.Size]byte(h.Sum(nil))
}

// cloneFallbackCases are filesystems without reflinks: a streamed copy must do.
func cloneFallbackCases(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"ext4":  func(t *testing.T) string { return cloneMount(t, "ext4", cloneLoopSize, mkfsArgs["ext4"]...) },
		"tmpfs": func(t *testing.T) string { return cloneTmpfs(t, 1<<30) },
	}
}

// TestCloneFallback: on ext4 and tmpfs, which cannot reflink, CloneVolumeReflink fails with ErrUnsupported
// leaving nothing, and CloneVolume copies the data: same content, nothing shared, and the holes of the
// source stay holes (the clone takes about the space of the data, not of the volume).
func TestCloneFallback(t *testing.T) {
	for fsName, mount := range cloneFallbackCases(t) {
		t.Run(fsName, func(t *testing.T) {
			mnt := mount(t)
			b := cloneBackend(t, nil)
			pool := clonePrepared(t, b, filepath.Join(mnt, "storage"))
			ctx := cloneCtx(t)
			const size, data = 512 << 20, 24 << 20
			for _, format := range []driver.VolumeFormat{driver.FormatRaw, driver.FormatQCOW2} {
				t.Run(string(format), func(t *testing.T) {
					src, dst := uuid.New(), uuid.New()
					_, err := b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: src, Format: format, Size: size})
					require.NoError(t, err)
					srcPath := cloneVolumePath(b, pool, src)
					// Data ranges longer than a copy chunk (16 MiB), and holes between them.
					cloneFill(t, srcPath, 1, data/3, 16<<20, 100<<20, size-data/3)

					_, err = b.CloneVolumeReflink(ctx, pool, driver.VolumeSpec{ID: src, Format: format}, dst)
					require.ErrorIs(t, err, driver.ErrUnsupported, "%s cannot reflink", fsName)
					requireNoClone(t, b, pool, dst)

					info, err := b.CloneVolume(ctx, pool, driver.VolumeSpec{ID: src, Format: format}, dst)
					require.NoError(t, err)
					require.Equal(t, format, info.Format)
					require.EqualValues(t, size, info.VirtualSize)
					dstPath := cloneVolumePath(b, pool, dst)
					require.Equal(t, fileSum(t, srcPath), fileSum(t, dstPath), "same content")
					srcAlloc, dstAlloc := allocated(t, srcPath), allocated(t, dstPath)
					t.Logf("%s %s: source allocates %d bytes, clone %d", fsName, format, srcAlloc, dstAlloc)
					require.GreaterOrEqual(t, dstAlloc, int64(data)-(1<<20), "the data is copied")
					require.LessOrEqual(t, dstAlloc, srcAlloc+(1<<20), "holes stay holes")
					if shared, _, ok := sharedBytes(t, dstPath); ok {
						require.Zero(t, shared, "a copy shares nothing")
					}
					require.Equal(t, info, mustInspect(t, b, pool, dst, format))
				})
			}
		})
	}
}

func mustInspect(t *testing.T, b *localfs.Backend, pool driver.PoolSpec, id uuid.UUID, format driver.VolumeFormat) driver.VolumeInfo {
	t.Helper()
	info, err := b.InspectVolume(cloneCtx(t), pool, driver.VolumeSpec{ID: id, Format: format})
	require.NoError(t, err)
	return info
}

// TestClonePlainDirectory: CloneVolume works in a directory of the test's temporary directory, whatever its
// filesystem, reflinking or copying.
func TestClonePlainDirectory(t *testing.T) {
	b := cloneBackend(t, nil)
	pool := clonePrepared(t, b, filepath.Join(t.TempDir(), "storage"))
	ctx := cloneCtx(t)
	src, dst := uuid.New(), uuid.New()
	_, err := b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: src, Format: driver.FormatRaw, Size: 64 << 20})
	require.NoError(t, err)
	cloneFill(t, cloneVolumePath(b, pool, src), 1, 3<<20, 1<<20, 40<<20)
	_, err = b.CloneVolume(ctx, pool, driver.VolumeSpec{ID: src, Format: driver.FormatRaw}, dst)
	require.NoError(t, err)
	require.Equal(t, fileSum(t, cloneVolumePath(b, pool, src)), fileSum(t, cloneVolumePath(b, pool, dst)))
}

// countdownCtx is a context that reports itself cancelled from the n-th call of Err on: it cancels a clone
// at a chosen point of its progress, deterministically.
type countdownCtx struct {
	context.Context
	left atomic.Int64
	done chan struct{}
	once atomic.Bool
}

func newCountdownCtx(parent context.Context, n int64) *countdownCtx {
	c := &countdownCtx{Context: parent, done: make(chan struct{})}
	c.left.Store(n)
	return c
}

func (c *countdownCtx) Err() error {
	if c.left.Add(-1) < 0 {
		if c.once.CompareAndSwap(false, true) {
			close(c.done)
		}
		return context.Canceled
	}
	return c.Context.Err()
}

func (c *countdownCtx) Done() <-chan struct{} { return c.done }

// TestCloneCancelled cancels a streamed clone at every point of its progress (before it starts, between
// any two chunks, before the rename): a cancelled clone returns an error wrapping context.Canceled and
// leaves neither the volume nor a partial file; a clone that was not cancelled is complete.
func TestCloneCancelled(t *testing.T) {
	mnt := cloneMount(t, "ext4", cloneLoopSize, mkfsArgs["ext4"]...)
	b := cloneBackend(t, nil)
	pool := clonePrepared(t, b, filepath.Join(mnt, "storage"))
	src := uuid.New()
	_, err := b.CreateVolume(cloneCtx(t), pool, driver.VolumeSpec{ID: src, Format: driver.FormatRaw, Size: 256 << 20})
	require.NoError(t, err)
	srcPath := cloneVolumePath(b, pool, src)
	// Eight data ranges separated by holes, two of them longer than a chunk.
	cloneFill(t, srcPath, 1, 1<<20, 0, 20<<20, 40<<20, 60<<20, 80<<20, 100<<20)
	cloneFill(t, srcPath, 2, 40<<20, 120<<20, 200<<20)
	want := fileSum(t, srcPath)

	cancelled, completed := 0, 0
	for n := int64(0); completed == 0; n++ {
		require.Less(t, n, int64(200), "the clone never completes")
		dst := uuid.New()
		ctx := newCountdownCtx(cloneCtx(t), n)
		_, err := b.CloneVolume(ctx, pool, driver.VolumeSpec{ID: src, Format: driver.FormatRaw}, dst)
		if err != nil {
			require.ErrorIs(t, err, context.Canceled, "after %d checks", n)
			requireNoClone(t, b, pool, dst)
			cancelled++
			continue
		}
		completed++
		require.Equal(t, want, fileSum(t, cloneVolumePath(b, pool, dst)))
		t.Logf("cancelled at %d points, completed with %d checks allowed", cancelled, n)
	}
	require.Greater(t, cancelled, 10, "the copy looks at the context between chunks")

	// A deadline that passes before the clone ends is a timeout.
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	dst := uuid.New()
	_, err = b.CloneVolume(ctx, pool, driver.VolumeSpec{ID: src, Format: driver.FormatRaw}, dst)
	require.ErrorIs(t, err, driver.ErrTimeout)
	requireNoClone(t, b, pool, dst)
}

// TestCloneFileAttributes: a clone's file gets what CreateVolume gives a volume file: owner, permission
// (the file_mode option), group (the qemu_group option) and security label (the SELinux label, where there
// is one), whether it was reflinked (btrfs) or copied (ext4).
func TestCloneFileAttributes(t *testing.T) {
	testenv.RequireRoot(t)
	for _, fsType := range []string{"btrfs", "ext4"} {
		t.Run(fsType, func(t *testing.T) {
			mnt := cloneMount(t, fsType, cloneLoopSize, mkfsArgs[fsType]...)
			b := cloneBackend(t, map[string]string{"file_mode": "0604", "qemu_group": "65534"})
			pool := clonePrepared(t, b, filepath.Join(mnt, "storage"))
			ctx := cloneCtx(t)
			src, dst, made := uuid.New(), uuid.New(), uuid.New()
			_, err := b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: src, Format: driver.FormatQCOW2, Size: 64 << 20})
			require.NoError(t, err)
			// The source's file is changed; the clone must still look like a new volume.
			require.NoError(t, os.Chmod(cloneVolumePath(b, pool, src), 0o600))
			require.NoError(t, os.Chown(cloneVolumePath(b, pool, src), 1, 1))
			_, err = b.CloneVolume(ctx, pool, driver.VolumeSpec{ID: src, Format: driver.FormatQCOW2}, dst)
			require.NoError(t, err)
			_, err = b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: made, Format: driver.FormatQCOW2, Size: 64 << 20})
			require.NoError(t, err)

			var want, got unix.Stat_t
			require.NoError(t, unix.Stat(cloneVolumePath(b, pool, made), &want))
			require.NoError(t, unix.Stat(cloneVolumePath(b, pool, dst), &got))
			assert.Equal(t, want.Uid, got.Uid, "owner")
			assert.Equal(t, uint32(65534), got.Gid, "the QEMU group")
			assert.Equal(t, want.Gid, got.Gid, "group")
			assert.Equal(t, want.Mode, got.Mode, "type and permission")
			assert.Equal(t, os.FileMode(0o604)&^umask(), os.FileMode(got.Mode&0o777), "the file_mode option")
			assert.Equal(t, label(t, cloneVolumePath(b, pool, made)), label(t, cloneVolumePath(b, pool, dst)), "security label")
		})
	}
}

// umask returns the process's umask.
func umask() os.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return os.FileMode(m)
}

// label returns a file's SELinux label, "" when it has none.
func label(t *testing.T, path string) string {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(path, "security.selinux", buf)
	if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.EOPNOTSUPP) {
		return ""
	}
	require.NoError(t, err)
	return string(buf[:n])
}

// TestCloneRefused: bad ids and formats are ErrInvalid, a missing source ErrNotFound, an existing target
// ErrAlreadyExists, a source that is a symbolic link ErrInvalid; none leaves anything behind. A partial file
// left by a crashed clone is replaced once stale, and refused (as a clone in progress) before.
func TestCloneRefused(t *testing.T) {
	b := cloneBackend(t, nil)
	dir := filepath.Join(t.TempDir(), "storage")
	pool := clonePrepared(t, b, dir)
	ctx := cloneCtx(t)
	src, existing := uuid.New(), uuid.New()
	for _, id := range []uuid.UUID{src, existing} {
		_, err := b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: driver.FormatRaw, Size: 1 << 20})
		require.NoError(t, err)
	}
	raw := driver.VolumeSpec{ID: src, Format: driver.FormatRaw}

	for name, c := range map[string]struct {
		src  driver.VolumeSpec
		dst  uuid.UUID
		kind error
	}{
		"nil source":      {driver.VolumeSpec{Format: driver.FormatRaw}, uuid.New(), driver.ErrInvalid},
		"nil target":      {raw, uuid.Nil, driver.ErrInvalid},
		"unknown format":  {driver.VolumeSpec{ID: src, Format: "vmdk"}, uuid.New(), driver.ErrInvalid},
		"qcow2 of raw":    {driver.VolumeSpec{ID: src, Format: driver.FormatQCOW2}, uuid.New(), driver.ErrInvalid},
		"missing source":  {driver.VolumeSpec{ID: uuid.New(), Format: driver.FormatRaw}, uuid.New(), driver.ErrNotFound},
		"existing target": {raw, existing, driver.ErrAlreadyExists},
		"onto itself":     {raw, src, driver.ErrAlreadyExists},
	} {
		_, err := b.CloneVolume(ctx, pool, c.src, c.dst)
		require.ErrorIs(t, err, c.kind, name)
		if c.dst != uuid.Nil && c.dst != src && c.dst != existing {
			requireNoClone(t, b, pool, c.dst)
		}
	}
	_, err := b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: existing, Format: driver.FormatRaw})
	require.NoError(t, err, "a refused clone leaves the existing volume")

	t.Run("SymlinkSource", func(t *testing.T) {
		secret := filepath.Join(t.TempDir(), "secret")
		require.NoError(t, os.WriteFile(secret, []byte("not a volume"), 0o600))
		link := uuid.New()
		require.NoError(t, os.Symlink(secret, cloneVolumePath(b, pool, link)))
		dst := uuid.New()
		_, err := b.CloneVolume(ctx, pool, driver.VolumeSpec{ID: link, Format: driver.FormatRaw}, dst)
		require.ErrorIs(t, err, driver.ErrInvalid, "a volume file that is a symbolic link is not followed")
		requireNoClone(t, b, pool, dst)
		require.NoError(t, os.Remove(cloneVolumePath(b, pool, link)))
	})

	t.Run("PartialFile", func(t *testing.T) {
		dst := uuid.New()
		part := cloneVolumePath(b, pool, dst) + ".part"
		require.NoError(t, os.WriteFile(part, []byte("leftover"), 0o600))
		_, err := b.CloneVolume(ctx, pool, raw, dst)
		require.ErrorIs(t, err, driver.ErrAlreadyExists, "a fresh partial file may be a clone in progress")
		old := time.Now().Add(-time.Hour)
		require.NoError(t, os.Chtimes(part, old, old))
		_, err = b.CloneVolume(ctx, pool, raw, dst)
		require.NoError(t, err, "the stale leftover of a crashed clone is replaced")
		_, err = os.Stat(part)
		require.ErrorIs(t, err, os.ErrNotExist)
		require.Equal(t, fileSum(t, cloneVolumePath(b, pool, src)), fileSum(t, cloneVolumePath(b, pool, dst)))
	})
}
