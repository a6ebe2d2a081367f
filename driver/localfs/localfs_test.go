package localfs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/drivertest"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/qcow2"
	"github.com/openvair/openvair/internal/testenv"
)

func newBackend(t *testing.T) *localfs.Backend {
	t.Helper()
	b, err := localfs.New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	return b
}

// edit returns pool with its localfs configuration changed by fn.
func edit(pool driver.PoolSpec, fn func(c *localfs.Config)) driver.PoolSpec {
	var c localfs.Config
	if err := json.Unmarshal(pool.Config, &c); err != nil {
		panic(err)
	}
	fn(&c)
	pool.Config = driver.MustJSON(c)
	return pool
}

// stateOf decodes the localfs state a call reported.
func stateOf(t testing.TB, s driver.PoolState) localfs.State {
	t.Helper()
	var st localfs.State
	require.NoError(t, json.Unmarshal(s.State, &st), "the backend reports its state")
	return st
}

// check runs CheckConfig on pool's configuration as openvair does for a new storage, and returns pool with
// the checked configuration and state.
func check(ctx context.Context, b *localfs.Backend, pool driver.PoolSpec) (driver.PoolSpec, error) {
	c, err := b.CheckConfig(ctx, pool.Config)
	if err != nil {
		return pool, err
	}
	pool.Config, pool.State = c.Config, c.State
	return pool, nil
}

// configIn and stateIn decode a pool's localfs configuration and state.
func configIn(t testing.TB, pool driver.PoolSpec) localfs.Config {
	t.Helper()
	var c localfs.Config
	require.NoError(t, json.Unmarshal(pool.Config, &c))
	return c
}

func stateIn(t testing.TB, pool driver.PoolSpec) localfs.State {
	t.Helper()
	var st localfs.State
	require.NoError(t, driver.DecodeState(pool.State, &st))
	return st
}

func dirPool(dir string) driver.PoolSpec {
	return localfs.Pool(uuid.New(), localfs.Config{Path: dir}, localfs.State{})
}

// openAt returns a function that opens a backend on the data directory dataDir, as each start of a process
// with the same configuration does.
func openAt(dataDir string) func(t testing.TB) driver.StorageBackend {
	return func(t testing.TB) driver.StorageBackend {
		b, err := localfs.New(driver.Config{DataDir: dataDir})
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
}

// TestDirectorySuite runs the conformance suite on directories in a temporary directory.
func TestDirectorySuite(t *testing.T) {
	open := openAt(t.TempDir())
	drivertest.RunStorageSuite(t, drivertest.StorageHarness{
		Backend: open(t),
		Open:    open,
		Pool: func(t testing.TB) driver.PoolSpec {
			return dirPool(filepath.Join(t.TempDir(), "storage"))
		},
		Stop: func(t *testing.T, pool driver.PoolSpec) {
			require.NoError(t, os.RemoveAll(configIn(t, pool).Path))
		},
		Restart: func(t *testing.T, pool driver.PoolSpec) {}, // Prepare creates the directory again
	})
}

func TestRegistered(t *testing.T) {
	b, err := driver.OpenStorage("localfs", driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, "localfs", b.Info().Name)
	caps := b.Info().Capabilities
	require.ElementsMatch(t, []driver.VolumeFormat{driver.FormatQCOW2, driver.FormatRaw}, caps.VolumeFormats)
	require.True(t, caps.Extend)
	require.False(t, caps.RemoteAttach)
}

func TestNewOptions(t *testing.T) {
	_, err := localfs.New(driver.Config{DataDir: "relative/dir"})
	require.ErrorIs(t, err, driver.ErrInvalid)
	_, err = localfs.New(driver.Config{DataDir: "/tmp", Options: map[string]string{"file_mode": "rw"}})
	require.ErrorIs(t, err, driver.ErrInvalid)
	_, err = localfs.New(driver.Config{DataDir: "/tmp", Options: map[string]string{"file_mode": "1777"}})
	require.ErrorIs(t, err, driver.ErrInvalid)

	b, err := localfs.New(driver.Config{Options: map[string]string{"file_mode": "0604"}})
	require.NoError(t, err)
	pool := dirPool(t.TempDir())
	ctx := t.Context()
	_, err = b.Prepare(ctx, pool)
	require.NoError(t, err)
	id := uuid.New()
	_, err = b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: driver.FormatRaw, Size: 4096})
	require.NoError(t, err)
	fi, err := os.Stat(b.DiskSource(pool, driver.KindVolume, id).Path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o604), fi.Mode().Perm())
}

func TestDirectoryPathRefused(t *testing.T) {
	b := newBackend(t)
	base := t.TempDir()
	file := filepath.Join(base, "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o600))
	for name, spec := range map[string]localfs.Config{
		"relative":         {Path: "storage/one"},
		"dot-dot":          {Path: base + "/../x"},
		"unclean":          {Path: base + "//x"},
		"trailing slash":   {Path: base + "/x/"},
		"root":             {Path: "/"},
		"a file":           {Path: file},
		"missing parent":   {Path: filepath.Join(base, "no", "such")},
		"path and device":  {Path: base, Device: "/dev/loop0"},
		"neither":          {},
		"device no format": {Device: "/dev/loop0"},
	} {
		pool := localfs.Pool(uuid.New(), spec, localfs.State{})
		_, err := b.Prepare(t.Context(), pool)
		require.ErrorIs(t, err, driver.ErrInvalid, name)
	}
	_, err := b.Prepare(t.Context(), driver.PoolSpec{ID: uuid.New(), Type: localfs.Name})
	require.ErrorIs(t, err, driver.ErrInvalid, "no localfs spec")
	_, err = b.Prepare(t.Context(), driver.PoolSpec{ID: uuid.New(), Type: "nfs", Config: driver.MustJSON(localfs.Config{Path: base})})
	require.ErrorIs(t, err, driver.ErrInvalid, "wrong type")
}

// TestQEMUGroupReachesFiles: with qemu_group set, the storage directory the backend creates is 0710 with
// that group (traverse, no listing, nothing for others) and the volume and image files belong to the
// group; with "none" the directory is private. Unknown groups are refused.
func TestQEMUGroupReachesFiles(t *testing.T) {
	testenv.RequireRoot(t)
	const gid = 65534 // nogroup
	cases := []struct {
		option  string
		dirMode os.FileMode
		gid     int
	}{
		{"65534", 0o710, gid},
		{"none", 0o700, 0},
	}
	for _, c := range cases {
		t.Run(c.option, func(t *testing.T) {
			b, err := localfs.New(driver.Config{DataDir: t.TempDir(), Options: map[string]string{"qemu_group": c.option}})
			require.NoError(t, err)
			dir := filepath.Join(t.TempDir(), "storage")
			pool := dirPool(dir)
			_, err = b.Prepare(t.Context(), pool)
			require.NoError(t, err)
			fi, err := os.Stat(dir)
			require.NoError(t, err)
			assert.Equal(t, c.dirMode, fi.Mode().Perm())
			assert.Equal(t, uint32(c.gid), fi.Sys().(*syscall.Stat_t).Gid)

			vid := uuid.New()
			_, err = b.CreateVolume(t.Context(), pool, driver.VolumeSpec{ID: vid, Format: driver.FormatQCOW2, Size: 1 << 20})
			require.NoError(t, err)
			iid := uuid.New()
			img, err := b.WriteImage(t.Context(), pool, driver.ImageWrite{ID: iid}, strings.NewReader(strings.Repeat("x", 4096)))
			require.NoError(t, err)
			require.NotEmpty(t, img.SHA256)
			for _, f := range []string{"volume-" + vid.String(), "image-" + iid.String()} {
				fi, err := os.Stat(filepath.Join(dir, f))
				require.NoError(t, err)
				assert.Equal(t, uint32(c.gid), fi.Sys().(*syscall.Stat_t).Gid, f)
				assert.Zero(t, fi.Mode().Perm()&0o007, "%s: nothing for others", f)
			}
		})
	}
	_, err := localfs.New(driver.Config{Options: map[string]string{"qemu_group": "no-such-group-xyz"}})
	assert.ErrorIs(t, err, driver.ErrInvalid)
}

func TestDirectoryModeDetails(t *testing.T) {
	b := newBackend(t)
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "storage")
	pool := dirPool(dir)
	_, err := b.Prepare(ctx, pool)
	require.NoError(t, err)
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	// 0710 for the QEMU group when the host has a QEMU user, else 0700 (TestQEMUGroupReachesFiles has both).
	require.Contains(t, []os.FileMode{0o700, 0o710}, fi.Mode().Perm(), "Prepare creates the directory private")

	vid, iid := uuid.New(), uuid.New()
	require.Equal(t, filepath.Join(dir, "volume-"+vid.String()), b.DiskSource(pool, driver.KindVolume, vid).Path)
	require.Equal(t, filepath.Join(dir, "image-"+iid.String()), b.DiskSource(pool, driver.KindImage, iid).Path)

	// Operations on a storage whose directory vanished report it unavailable, not a missing object.
	require.NoError(t, os.Remove(dir))
	_, err = b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: vid, Format: driver.FormatRaw})
	require.ErrorIs(t, err, driver.ErrUnavailable)
	require.ErrorIs(t, b.DeleteVolume(ctx, pool, vid), driver.ErrUnavailable)
	_, err = b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: vid, Format: driver.FormatRaw, Size: 4096})
	require.ErrorIs(t, err, driver.ErrUnavailable)

	// Teardown keeps a directory that still holds files.
	_, err = b.Prepare(ctx, pool)
	require.NoError(t, err)
	_, err = b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: vid, Format: driver.FormatRaw, Size: 4096})
	require.NoError(t, err)
	require.NoError(t, b.Teardown(ctx, pool))
	_, err = os.Stat(b.DiskSource(pool, driver.KindVolume, vid).Path)
	require.NoError(t, err, "Teardown never removes volumes")

	// A volume size is rounded up to 512 bytes.
	odd := uuid.New()
	info, err := b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: odd, Format: driver.FormatRaw, Size: 1000})
	require.NoError(t, err)
	require.Equal(t, int64(1024), info.VirtualSize)

	// Status of a read-only or missing storage.
	missing := dirPool(filepath.Join(t.TempDir(), "never-prepared"))
	_, err = b.Status(ctx, missing)
	require.ErrorIs(t, err, driver.ErrUnavailable)
}

func TestAllowedDirs(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	allowed := filepath.Join(root, "pools")
	require.NoError(t, os.Mkdir(allowed, 0o750))
	require.NoError(t, os.Symlink(outside, filepath.Join(allowed, "escape")))
	b, err := localfs.New(driver.Config{Options: map[string]string{"allowed_dirs": allowed}})
	require.NoError(t, err)
	ctx := context.Background()
	cases := []struct {
		path string
		ok   bool
	}{
		{filepath.Join(allowed, "a"), true},
		{filepath.Join(allowed, "new", "deeper"), false}, // parent missing: Prepare refuses, but the path is allowed
		{allowed, false},
		{filepath.Join(outside, "x"), false},
		{filepath.Join(allowed, "escape", "x"), false}, // through a symbolic link out of the allowed directory
		{"/etc/openvair", false},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			_, err := b.Prepare(ctx, localfs.Pool(uuid.New(), localfs.Config{Path: c.path}, localfs.State{}))
			if c.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, driver.ErrInvalid)
		})
	}
	_, err = localfs.New(driver.Config{Options: map[string]string{"allowed_dirs": "relative/dir"}})
	assert.ErrorIs(t, err, driver.ErrInvalid)
}

// TestUploadContentIntact uploads sizes around the O_DIRECT alignment and reads every byte back.
func TestUploadContentIntact(t *testing.T) {
	b := newBackend(t)
	dir := filepath.Join(t.TempDir(), "pool")
	pool := dirPool(dir)
	ctx := context.Background()
	_, err := b.Prepare(ctx, pool)
	require.NoError(t, err)
	for _, size := range []int{0, 1, 4095, 4096, 2<<20 - 1, 2 << 20, 2<<20 + 1, 3*(2<<20) + 1234} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i*7 + i>>13)
			}
			id := uuid.New()
			info, err := b.WriteImage(ctx, pool, driver.ImageWrite{ID: id}, bytes.NewReader(data))
			require.NoError(t, err)
			sum := sha256.Sum256(data)
			assert.Equal(t, hex.EncodeToString(sum[:]), info.SHA256)
			got, err := os.ReadFile(filepath.Join(dir, "image-"+id.String()))
			require.NoError(t, err)
			assert.True(t, bytes.Equal(data, got), "file content equals the upload")
		})
	}
}

// TestRawVolumeWithQCOW2ContentStaysRaw: a guest that writes a qcow2 header at the start of its raw disk
// must not make the backend treat the disk as qcow2 (that would let Extend "grow" qcow2 tables into the
// guest's data, and Inspect report a size the guest chose).
func TestRawVolumeWithQCOW2ContentStaysRaw(t *testing.T) {
	b := newBackend(t)
	dir := filepath.Join(t.TempDir(), "pool")
	pool := dirPool(dir)
	ctx := context.Background()
	_, err := b.Prepare(ctx, pool)
	require.NoError(t, err)
	id := uuid.New()
	_, err = b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: driver.FormatRaw, Size: 64 << 20})
	require.NoError(t, err)

	// The guest writes a valid qcow2 header claiming 1 TiB.
	var hdr bytes.Buffer
	_, err = qcow2.Create(&bufAt{&hdr}, 1<<40, qcow2.CreateOptions{})
	require.NoError(t, err)
	path := filepath.Join(dir, "volume-"+id.String())
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(hdr.Bytes(), 0)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	info, err := b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: driver.FormatRaw})
	require.NoError(t, err)
	assert.Equal(t, driver.FormatRaw, info.Format)
	assert.EqualValues(t, 64<<20, info.VirtualSize, "the size is the file's, not the header's")

	info, err = b.ExtendVolume(ctx, pool, driver.VolumeSpec{ID: id, Format: driver.FormatRaw, Size: 128 << 20})
	require.NoError(t, err)
	assert.EqualValues(t, 128<<20, info.VirtualSize)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(hdr.Bytes(), got[:hdr.Len()]), "the guest's data is untouched")

	_, err = b.InspectVolume(ctx, pool, driver.VolumeSpec{ID: uuid.New(), Format: driver.FormatQCOW2})
	assert.ErrorIs(t, err, driver.ErrNotFound)
}

// bufAt is an in-memory qcow2.File.
type bufAt struct{ b *bytes.Buffer }

func (w *bufAt) WriteAt(p []byte, off int64) (int, error) {
	for int64(w.b.Len()) < off+int64(len(p)) {
		w.b.WriteByte(0)
	}
	copy(w.b.Bytes()[off:], p)
	return len(p), nil
}

func (w *bufAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(w.b.Len()) {
		return 0, io.EOF
	}
	n := copy(p, w.b.Bytes()[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
