package btrfs_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/btrfs"
	"github.com/openvair/openvair/driver/drivertest"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/testenv"
	"github.com/openvair/openvair/internal/testenv/loopdev"
)

// loopSize is the size of the loop devices (sparse).
const loopSize = 1 << 30

// callTimeout bounds every call of these tests.
const callTimeout = 2 * time.Minute

func callCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	tb.Cleanup(cancel)
	return ctx
}

// requireTools skips (or fails under OPENVAIR_REQUIRE_ALL=1) without root, losetup and mkfs.btrfs.
func requireTools(tb testing.TB) {
	tb.Helper()
	testenv.RequireRoot(tb)
	testenv.LookPath(tb, "losetup")
	testenv.LookPath(tb, "mkfs.btrfs")
}

// openAt returns a function that opens a backend on the data directory dataDir, as each start of a process
// with the same configuration does.
func openAt(dataDir string) func(tb testing.TB) driver.StorageBackend {
	return func(tb testing.TB) driver.StorageBackend {
		b, err := btrfs.New(driver.Config{DataDir: dataDir})
		require.NoError(tb, err)
		tb.Cleanup(func() { _ = b.Close() })
		return b
	}
}

// pool returns the spec of a new btrfs storage as a user gives it.
func pool(c btrfs.Config) driver.PoolSpec {
	return driver.PoolSpec{ID: uuid.New(), Type: btrfs.Name, Config: driver.MustJSON(c)}
}

// mountBtrfs makes a btrfs filesystem on a new loop device of size bytes, mounts it on a temporary
// directory and returns the directory; it is unmounted and detached when tb ends.
func mountBtrfs(tb testing.TB, size int64) string {
	tb.Helper()
	requireTools(tb)
	dev := loopdev.New(tb, size)
	out, err := exec.CommandContext(callCtx(tb), "mkfs.btrfs", "-q", "-f", dev).CombinedOutput()
	require.NoError(tb, err, "mkfs.btrfs: %s", out)
	mnt := tb.TempDir()
	require.NoError(tb, unix.Mount(dev, mnt, "btrfs", 0, ""))
	tb.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil && !errors.Is(err, unix.EINVAL) { // EINVAL: unmounted by the test
			tb.Errorf("unmount %s: %v", mnt, err)
		}
	})
	return mnt
}

// mountTmpfs mounts a small tmpfs on a temporary directory and returns it.
func mountTmpfs(tb testing.TB) string {
	tb.Helper()
	testenv.RequireRoot(tb)
	dir := tb.TempDir()
	require.NoError(tb, unix.Mount("tmpfs", dir, "tmpfs", 0, "size=16m"))
	tb.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// badConfigs are configurations every btrfs backend refuses, with the field the error names.
func badConfigs(notBtrfs string) map[string]string {
	return map[string]string{
		`{"path": "/srv/a", "device": "/dev/loop0"}`: "config",
		`{}`:                                 "config",
		`{"path": "/srv/a", "format": true}`: "config.format",
		`{"device": "/dev/loop0", "wipe": true, "reuse_filesystem": true}`: "config.wipe",
		`{"device": "/dev/loop0", "fs_type": "ext4", "format": true}`:      "config.fs_type",
		`{"path": "` + notBtrfs + `"}`:                                     "config.path",
	}
}

// TestDeviceSuite runs the conformance suite on loop devices that the backend formats with btrfs.
func TestDeviceSuite(t *testing.T) {
	requireTools(t)
	dataDir := t.TempDir()
	open := openAt(dataDir)
	b := open(t)
	drivertest.RunStorageSuite(t, drivertest.StorageHarness{
		Backend:    b,
		Open:       open,
		BadConfigs: badConfigs(mountTmpfs(t)),
		Pool: func(tb testing.TB) driver.PoolSpec {
			return pool(btrfs.Config{Device: loopdev.New(tb, loopSize), Format: true})
		},
		Stop: func(t *testing.T, pool driver.PoolSpec) {
			st, err := b.Status(callCtx(t), pool)
			require.NoError(t, err)
			require.NotEmpty(t, st.MountPoint)
			require.NoError(t, unix.Unmount(st.MountPoint, 0))
		},
		Restart: func(t *testing.T, pool driver.PoolSpec) {}, // Prepare mounts the device again
	})
}

// TestPathSuite runs the conformance suite on directories of a btrfs filesystem the test mounts.
func TestPathSuite(t *testing.T) {
	mnt := mountBtrfs(t, loopSize)
	open := openAt(t.TempDir())
	drivertest.RunStorageSuite(t, drivertest.StorageHarness{
		Backend:    open(t),
		Open:       open,
		BadConfigs: badConfigs(mountTmpfs(t)),
		Pool: func(tb testing.TB) driver.PoolSpec {
			return pool(btrfs.Config{Path: filepath.Join(mnt, "storage-"+uuid.NewString())})
		},
		Stop: func(t *testing.T, pool driver.PoolSpec) {
			var c btrfs.Config
			require.NoError(t, json.Unmarshal(pool.Config, &c))
			require.NoError(t, os.RemoveAll(c.Path))
		},
		Restart: func(t *testing.T, pool driver.PoolSpec) {}, // Prepare creates the directory again
	})
}

func TestRegistered(t *testing.T) {
	b, err := driver.OpenStorage("btrfs", driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	l, err := driver.OpenStorage("localfs", driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	info := b.Info()
	require.Equal(t, "btrfs", info.Name)
	require.True(t, info.Capabilities.InstantClone)
	require.False(t, info.Capabilities.RemoteAttach)
	require.Equal(t, l.Info().Capabilities.VolumeFormats, info.Capabilities.VolumeFormats)
	require.Equal(t, l.Info().Capabilities.Extend, info.Capabilities.Extend)
	_, ok := b.(driver.VolumeCloner)
	require.True(t, ok, "InstantClone: the backend implements driver.VolumeCloner")
	_, ok = b.(driver.UploadSweeper)
	require.True(t, ok)
}

// TestConfigSchema: the schema is a valid JSON Schema 2020-12 that accepts the two forms of configuration
// and refuses unknown fields, both forms at once, and neither.
func TestConfigSchema(t *testing.T) {
	b, err := btrfs.New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	var doc any
	require.NoError(t, json.Unmarshal(b.ConfigSchema(), &doc))
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("btrfs.json", doc))
	schema, err := c.Compile("btrfs.json")
	require.NoError(t, err)
	for raw, ok := range map[string]bool{
		`{"path": "/srv/vms"}`:                                 true,
		`{"device": "/dev/sdb", "format": true}`:               true,
		`{"device": "/dev/sdb", "reuse_filesystem": true}`:     true,
		`{"device": "/dev/sdb", "format": true, "wipe": true}`: true,
		`{"path": "/srv/vms", "device": "/dev/sdb"}`:           false,
		`{}`:                      false,
		`{"path": "relative"}`:    false,
		`{"device": "/tmp/file"}`: false,
		`{"path": "/srv/vms", "fs_type": "ext4"}`: false,
		`{"path": 3}`: false,
	} {
		var v any
		require.NoError(t, json.Unmarshal([]byte(raw), &v))
		err := schema.Validate(v)
		if ok {
			assert.NoError(t, err, raw)
		} else {
			assert.Error(t, err, raw)
		}
	}
}

// requireField checks that err is a *driver.ValidationError naming field.
func requireField(t *testing.T, err error, field string) {
	t.Helper()
	require.ErrorIs(t, err, driver.ErrInvalid)
	var ve *driver.ValidationError
	require.ErrorAs(t, err, &ve)
	var names []string
	for _, f := range ve.Fields {
		names = append(names, f.Field)
	}
	require.Contains(t, names, field, "%v", err)
}

// TestCheckConfigPath: a directory on btrfs, existing or new, is accepted with the location localfs gives
// it; a directory elsewhere (tmpfs, or the filesystem under the test's temporary directory when it is not
// btrfs) is refused naming config.path, as is a new directory whose parent is not on btrfs.
func TestCheckConfigPath(t *testing.T) {
	mnt := mountBtrfs(t, loopSize)
	b, err := btrfs.New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	l, err := localfs.New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	ctx := callCtx(t)

	existing := filepath.Join(mnt, "existing")
	require.NoError(t, os.Mkdir(existing, 0o700))
	for _, dir := range []string{existing, filepath.Join(mnt, "new"), filepath.Join(existing, "new")} {
		checked, err := b.CheckConfig(ctx, driver.MustJSON(btrfs.Config{Path: dir}))
		require.NoError(t, err, dir)
		want, err := l.CheckConfig(ctx, driver.MustJSON(localfs.Config{Path: dir}))
		require.NoError(t, err)
		require.Equal(t, want.Location, checked.Location, "the location of the directory, as localfs names it")
		require.JSONEq(t, string(want.State), string(checked.State), "localfs's state")
		require.JSONEq(t, string(driver.MustJSON(btrfs.Config{Path: dir})), string(checked.Config))
	}

	tmpfs := mountTmpfs(t)
	for _, dir := range []string{tmpfs, filepath.Join(tmpfs, "new")} {
		_, err := b.CheckConfig(ctx, driver.MustJSON(btrfs.Config{Path: dir}))
		requireField(t, err, "config.path")
		require.Contains(t, err.Error(), "tmpfs")
	}
	_, err = b.CheckConfig(ctx, driver.MustJSON(btrfs.Config{Path: filepath.Join(mnt, "no", "such")}))
	requireField(t, err, "config.path") // localfs: the parent does not exist
	_, err = b.CheckConfig(ctx, driver.MustJSON(btrfs.Config{Path: "/etc"}))
	requireField(t, err, "config.path") // localfs: a system directory
}

// TestCheckConfigDevice: a device configuration is normalized without localfs's fs_type, and the device
// checks are localfs's.
func TestCheckConfigDevice(t *testing.T) {
	requireTools(t)
	b, err := btrfs.New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	ctx := callCtx(t)
	dev := loopdev.New(t, loopSize)
	checked, err := b.CheckConfig(ctx, driver.MustJSON(btrfs.Config{Device: dev, Format: true}))
	require.NoError(t, err)
	require.JSONEq(t, `{"device": "`+dev+`", "format": true}`, string(checked.Config))
	require.Equal(t, "dev:"+dev, checked.Location)

	_, err = b.CheckConfig(ctx, driver.MustJSON(btrfs.Config{Device: "/dev/openvair-no-such-device", Format: true}))
	requireField(t, err, "config.device")
	_, err = b.CheckConfig(ctx, driver.MustJSON(btrfs.Config{Device: dev}))
	requireField(t, err, "config")
	_, err = b.CheckConfig(ctx, json.RawMessage(`{"device": "`+dev+`", "format": true, "bogus": 1}`))
	requireField(t, err, "config.bogus")
}

// TestDeviceReuse: a device holding a btrfs filesystem is mounted as it is with reuse_filesystem, refused
// (ErrInUse) with format, and a device holding ext4 is refused with reuse_filesystem.
func TestDeviceReuse(t *testing.T) {
	requireTools(t)
	testenv.LookPath(t, "mkfs.ext4")
	b, err := btrfs.New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	ctx := callCtx(t)
	dev := loopdev.New(t, loopSize)
	out, err := exec.CommandContext(ctx, "mkfs.btrfs", "-q", "-f", dev).CombinedOutput()
	require.NoError(t, err, "%s", out)

	formatting := checked(t, b, btrfs.Config{Device: dev, Format: true})
	_, err = b.Prepare(ctx, formatting)
	require.ErrorIs(t, err, driver.ErrInUse, "format never touches an existing filesystem")

	reuse := checked(t, b, btrfs.Config{Device: dev, ReuseFilesystem: true})
	state, err := b.Prepare(ctx, reuse)
	require.NoError(t, err)
	reuse = state.Apply(reuse)
	t.Cleanup(func() { _ = b.Teardown(callCtx(t), reuse) })
	var fs unix.Statfs_t
	require.NoError(t, unix.Statfs(state.MountPoint, &fs))
	require.EqualValues(t, unix.BTRFS_SUPER_MAGIC, fs.Type)
	require.NoError(t, b.Teardown(ctx, reuse))

	ext4 := loopdev.New(t, loopSize)
	out, err = exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", ext4).CombinedOutput()
	require.NoError(t, err, "%s", out)
	_, err = b.Prepare(ctx, checked(t, b, btrfs.Config{Device: ext4, ReuseFilesystem: true}))
	require.ErrorIs(t, err, driver.ErrInvalid, "an ext4 filesystem is not a btrfs storage")
}

// checked returns the checked spec of a new storage with configuration c.
func checked(t *testing.T, b *btrfs.Backend, c btrfs.Config) driver.PoolSpec {
	t.Helper()
	p := pool(c)
	cc, err := b.CheckConfig(callCtx(t), p.Config)
	require.NoError(t, err)
	p.Config, p.State = cc.Config, cc.State
	return p
}

// TestPathUnmounted: when the btrfs filesystem of a directory-mode storage is unmounted, Prepare, Status
// and object operations fail with ErrUnavailable, and nothing is created on the filesystem underneath;
// mounted again, the storage and its volumes are back.
func TestPathUnmounted(t *testing.T) {
	requireTools(t)
	dev := loopdev.New(t, loopSize)
	out, err := exec.CommandContext(callCtx(t), "mkfs.btrfs", "-q", "-f", dev).CombinedOutput()
	require.NoError(t, err, "%s", out)
	mnt := t.TempDir()
	require.NoError(t, unix.Mount(dev, mnt, "btrfs", 0, ""))
	t.Cleanup(func() { _ = unix.Unmount(mnt, 0) })

	b, err := btrfs.New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	ctx := callCtx(t)
	p := checked(t, b, btrfs.Config{Path: filepath.Join(mnt, "storage")})
	state, err := b.Prepare(ctx, p)
	require.NoError(t, err)
	p = state.Apply(p)
	vol := uuid.New()
	_, err = b.CreateVolume(ctx, p, driver.VolumeSpec{ID: vol, Format: driver.FormatRaw, Size: 1 << 20})
	require.NoError(t, err)

	require.NoError(t, unix.Unmount(mnt, 0))
	_, err = b.Prepare(ctx, p)
	require.ErrorIs(t, err, driver.ErrUnavailable)
	_, err = b.Status(ctx, p)
	require.ErrorIs(t, err, driver.ErrUnavailable)
	_, err = b.CreateVolume(ctx, p, driver.VolumeSpec{ID: uuid.New(), Format: driver.FormatRaw, Size: 1 << 20})
	require.ErrorIs(t, err, driver.ErrUnavailable)
	_, err = b.InspectVolume(ctx, p, driver.VolumeSpec{ID: vol, Format: driver.FormatRaw})
	require.ErrorIs(t, err, driver.ErrUnavailable)
	entries, err := os.ReadDir(mnt)
	require.NoError(t, err)
	require.Empty(t, entries, "nothing is created on the filesystem under the mount point")

	require.NoError(t, unix.Mount(dev, mnt, "btrfs", 0, ""))
	_, err = b.Status(ctx, p)
	require.NoError(t, err)
	_, err = b.InspectVolume(ctx, p, driver.VolumeSpec{ID: vol, Format: driver.FormatRaw})
	require.NoError(t, err)
}

// Linux FIEMAP (linux/fiemap.h).
const (
	fsIocFiemap        = 0xC020660B
	fiemapExtentLast   = 0x1
	fiemapExtentShared = 0x2000
)

// sharedBytes reports how many bytes of the file at path lie in extents FIEMAP marks shared.
func sharedBytes(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	const batch, header, extent = 256, 32, 56
	words := make([]uint64, (header+batch*extent)/8)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
	ne := binary.NativeEndian
	var shared int64
	for start := uint64(0); ; {
		clear(buf)
		ne.PutUint64(buf[0:], start)
		ne.PutUint64(buf[8:], ^uint64(0))
		ne.PutUint32(buf[16:], 1) // FIEMAP_FLAG_SYNC
		ne.PutUint32(buf[24:], batch)
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&buf[0])))
		require.Zero(t, errno, "FIEMAP: %v", errno)
		n := ne.Uint32(buf[20:])
		if n == 0 {
			return shared
		}
		for i := range n {
			e := buf[header+int(i)*extent:]
			logical, length, flags := ne.Uint64(e[0:]), ne.Uint64(e[16:]), ne.Uint32(e[40:])
			if flags&fiemapExtentShared != 0 {
				shared += int64(length)
			}
			start = logical + length
			if flags&fiemapExtentLast != 0 {
				return shared
			}
		}
	}
}

// fill writes n bytes of data at off into the file at path.
func fill(t *testing.T, path string, off, n int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	buf := []byte(strings.Repeat("btrfs reflink!!\n", 1<<16))
	for done := int64(0); done < n; done += int64(len(buf)) {
		_, err := f.WriteAt(buf[:min(int64(len(buf)), n-done)], off+done)
		require.NoError(t, err)
	}
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
}

// TestCloneIsReflink: in both modes, a clone shares every data extent with its source.
func TestCloneIsReflink(t *testing.T) {
	requireTools(t)
	mnt := mountBtrfs(t, loopSize)
	b, err := btrfs.New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	for name, c := range map[string]btrfs.Config{
		"path":   {Path: filepath.Join(mnt, "storage")},
		"device": {Device: loopdev.New(t, loopSize), Format: true},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := callCtx(t)
			p := checked(t, b, c)
			state, err := b.Prepare(ctx, p)
			require.NoError(t, err)
			p = state.Apply(p)
			t.Cleanup(func() { _ = b.Teardown(callCtx(t), p) })
			for _, format := range b.Info().Capabilities.VolumeFormats {
				src, dst := uuid.New(), uuid.New()
				_, err := b.CreateVolume(ctx, p, driver.VolumeSpec{ID: src, Format: format, Size: 256 << 20})
				require.NoError(t, err)
				fill(t, b.DiskSource(p, driver.KindVolume, src).Path, 32<<20, 24<<20)
				info, err := b.CloneVolume(ctx, p, driver.VolumeSpec{ID: src, Format: format}, dst)
				require.NoError(t, err)
				require.Equal(t, format, info.Format)
				require.GreaterOrEqual(t, sharedBytes(t, b.DiskSource(p, driver.KindVolume, dst).Path), int64(24<<20),
					"%s: the clone shares the source's data extents", format)
				require.NoError(t, b.DeleteVolume(ctx, p, src))
				require.NoError(t, b.DeleteVolume(ctx, p, dst))
			}
		})
	}
}

// fsNoCOW is FS_NOCOW_FL (linux/fs.h): files created in a directory with it are NOCOW on btrfs.
const fsNoCOW = 0x00800000

// setNoCOW sets or clears FS_NOCOW_FL on the directory dir.
func setNoCOW(t *testing.T, dir string, on bool) {
	t.Helper()
	f, err := os.Open(dir)
	require.NoError(t, err)
	defer f.Close()
	flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	require.NoError(t, err)
	if on {
		flags |= fsNoCOW
	} else {
		flags &^= fsNoCOW
	}
	require.NoError(t, unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags))
}

// TestCloneNeverCopies: btrfs refuses to reflink a NOCOW file into a COW one. The btrfs backend then fails
// with ErrUnsupported and leaves nothing, where localfs's CloneVolume, on the same directory, copies the
// data: a btrfs clone is a reflink or nothing.
func TestCloneNeverCopies(t *testing.T) {
	mnt := mountBtrfs(t, loopSize)
	dir := filepath.Join(mnt, "storage")
	b, err := btrfs.New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	ctx := callCtx(t)
	p := checked(t, b, btrfs.Config{Path: dir})
	state, err := b.Prepare(ctx, p)
	require.NoError(t, err)
	p = state.Apply(p)

	setNoCOW(t, dir, true)
	src := uuid.New()
	_, err = b.CreateVolume(ctx, p, driver.VolumeSpec{ID: src, Format: driver.FormatRaw, Size: 64 << 20})
	require.NoError(t, err)
	fill(t, b.DiskSource(p, driver.KindVolume, src).Path, 0, 8<<20)
	setNoCOW(t, dir, false)

	dst := uuid.New()
	_, err = b.CloneVolume(ctx, p, driver.VolumeSpec{ID: src, Format: driver.FormatRaw}, dst)
	require.ErrorIs(t, err, driver.ErrUnsupported, "a reflink btrfs refuses is an error")
	left, err := filepath.Glob(filepath.Join(dir, "volume-"+dst.String()+"*"))
	require.NoError(t, err)
	require.Empty(t, left, "a failed clone leaves nothing")

	// localfs, which may copy, copies.
	l, err := localfs.New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	lp := localfs.Pool(p.ID, localfs.Config{Path: dir}, localfs.State{})
	_, err = l.CloneVolume(ctx, lp, driver.VolumeSpec{ID: src, Format: driver.FormatRaw}, dst)
	require.NoError(t, err)
	require.Zero(t, sharedBytes(t, b.DiskSource(p, driver.KindVolume, dst).Path), "localfs copied the data")
}

// TestWrongType: a PoolSpec of another type, or with a configuration that is not btrfs's, is refused.
func TestWrongType(t *testing.T) {
	b, err := btrfs.New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	ctx := callCtx(t)
	p := pool(btrfs.Config{Path: "/srv/x"})
	p.Type = "localfs"
	_, err = b.Status(ctx, p)
	require.ErrorIs(t, err, driver.ErrInvalid)
	p = driver.PoolSpec{ID: uuid.New(), Type: btrfs.Name, Config: json.RawMessage(`{"path": "/srv/x", "fs_type": "xfs"}`)}
	_, err = b.Status(ctx, p)
	require.ErrorIs(t, err, driver.ErrInvalid)
	require.Equal(t, driver.DiskSource{Type: "file"}, b.DiskSource(p, driver.KindVolume, uuid.New()))
}
