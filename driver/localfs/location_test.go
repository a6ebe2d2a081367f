package localfs_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/testenv"
)

// requireField checks that err is a *errkind.ValidationError (so ErrInvalid) naming exactly field.
func requireField(t *testing.T, err error, field string) {
	t.Helper()
	require.ErrorIs(t, err, driver.ErrInvalid)
	var ve *errkind.ValidationError
	require.ErrorAs(t, err, &ve, "a field error, not a bare %T: %v", err, err)
	require.Len(t, ve.Fields, 1, "%v", err)
	assert.Equal(t, field, ve.Fields[0].Field, "%v", err)
}

// TestTeardownRemovesOnlyCreatedDir: Teardown removes a storage directory only when Prepare created it and
// it is empty. A directory the user made, one holding other files, a mount point, or one replaced by a
// symbolic link stays, and Teardown succeeds.
func TestTeardownRemovesOnlyCreatedDir(t *testing.T) {
	cases := []struct {
		name     string
		existing bool                           // the user made the directory before Prepare
		after    func(t *testing.T, dir string) // what happens to the directory after Prepare
		root     bool                           // the case mounts
		removed  bool                           // Teardown removes the directory
	}{
		{name: "created and empty", removed: true},
		{name: "user's empty directory", existing: true},
		{name: "created, then holds other files", after: func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600))
		}},
		{name: "user's directory with files", existing: true, after: func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600))
		}},
		{name: "created, then a mount point", root: true, after: mountTmpfs},
		{name: "user's mount point", existing: true, root: true, after: mountTmpfs},
		{name: "created, then replaced by a symbolic link", after: func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(dir))
			require.NoError(t, os.Symlink(t.TempDir(), dir))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.root {
				testenv.RequireRoot(t)
			}
			b := newBackend(t)
			ctx := t.Context()
			dir := filepath.Join(t.TempDir(), "storage")
			if c.existing {
				require.NoError(t, os.Mkdir(dir, 0o750))
			}
			pool := dirPool(dir)
			state, err := b.Prepare(ctx, pool)
			require.NoError(t, err)
			assert.Equal(t, !c.existing, stateOf(t, state).CreatedDir, "PoolState.CreatedDir")
			pool = state.Apply(pool)

			again, err := b.Prepare(ctx, pool)
			require.NoError(t, err)
			assert.Equal(t, stateOf(t, state).CreatedDir, stateOf(t, again).CreatedDir, "a repeated Prepare keeps reporting the recorded CreatedDir")

			if c.after != nil {
				c.after(t, dir)
			}
			require.NoError(t, b.Teardown(ctx, pool))
			require.NoError(t, b.Teardown(ctx, pool), "a second Teardown succeeds")
			_, err = os.Lstat(dir)
			if c.removed {
				require.ErrorIs(t, err, os.ErrNotExist, "the directory Prepare created is removed")
			} else {
				require.NoError(t, err, "the directory stays")
			}
		})
	}
}

// mountTmpfs mounts a tmpfs on dir until the test ends.
func mountTmpfs(t *testing.T, dir string) {
	t.Helper()
	require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"))
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
}

// TestTeardownNeverTouchesSystemDirectories: storages recorded on /proc, /sys or /dev before they were
// refused are torn down without trying to remove those directories.
func TestTeardownNeverTouchesSystemDirectories(t *testing.T) {
	b := newBackend(t)
	for _, dir := range []string{"/proc", "/sys", "/dev", "/dev/shm"} {
		require.NoError(t, b.Teardown(t.Context(), dirPool(dir)), dir)
		fi, err := os.Stat(dir)
		require.NoError(t, err, dir)
		require.True(t, fi.IsDir())
	}
}

// TestSystemDirectoriesRefused: system directories (and the trees below most of them) are refused with a
// field error on localfs.path, by Prepare and by Locate, with symbolic links resolved and without
// allowed_dirs; subdirectories of /var, /run and /tmp are allowed.
func TestSystemDirectoriesRefused(t *testing.T) {
	b := newBackend(t)
	links := t.TempDir()
	require.NoError(t, os.Symlink("/etc", filepath.Join(links, "etc")))
	require.NoError(t, os.Symlink("/usr/local", filepath.Join(links, "local")))
	require.NoError(t, os.Symlink("/var", filepath.Join(links, "var")))
	refused := []string{
		"/bin", "/boot", "/dev", "/dev/shm", "/etc", "/etc/openvair", "/lib", "/lib32", "/lib64", "/libx32",
		"/lib/openvair", "/proc", "/proc/sys", "/root", "/root/pool", "/run", "/sbin", "/sys", "/sys/fs",
		"/usr", "/usr/local/pool", "/var", "/tmp",
		filepath.Join(links, "etc"),         // a symbolic link to /etc
		filepath.Join(links, "etc", "pool"), // below it
		filepath.Join(links, "local", "x"),  // into /usr
		filepath.Join(links, "var"),         // a symbolic link to /var itself
	}
	for _, p := range refused {
		t.Run(p, func(t *testing.T) {
			pool := dirPool(p)
			_, err := check(t.Context(), b, pool)
			requireField(t, err, "config.path")
			_, err = b.Prepare(t.Context(), pool)
			requireField(t, err, "config.path")
			assert.Contains(t, err.Error(), "system directory")
		})
	}
	for _, p := range []string{"/var/lib/openvair-test-" + uuid.NewString(), "/run/openvair-test-" + uuid.NewString(),
		filepath.Join(t.TempDir(), "pool"), filepath.Join(links, "var", "lib", "openvair-test")} {
		t.Run("allowed "+p, func(t *testing.T) {
			_, err := check(t.Context(), b, dirPool(p))
			require.NoError(t, err)
		})
	}
}

// TestDataDirAllowedInSystemTree: the backend's data directory is allowed even inside a refused tree.
func TestDataDirAllowedInSystemTree(t *testing.T) {
	testenv.RequireRoot(t)
	dataDir, err := os.MkdirTemp("/root", "openvair-test-data-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dataDir) })
	b, err := localfs.New(driver.Config{DataDir: dataDir})
	require.NoError(t, err)
	pool := dirPool(filepath.Join(dataDir, "storage"))
	state, err := b.Prepare(t.Context(), pool)
	require.NoError(t, err, "inside the data directory")
	pool = state.Apply(pool)
	require.NoError(t, b.Teardown(t.Context(), pool))
	_, err = b.Prepare(t.Context(), dirPool(dataDir+"-other"))
	requireField(t, err, "config.path")
}

// TestLocateResolvesSymlinks: Locate records the directory with its symbolic links resolved, and the backend
// then works there even when the link changes.
func TestLocateResolvesSymlinks(t *testing.T) {
	b := newBackend(t)
	ctx := t.Context()
	base := t.TempDir()
	real := filepath.Join(base, "real")
	require.NoError(t, os.Mkdir(real, 0o750))
	link := filepath.Join(base, "link")
	require.NoError(t, os.Symlink(real, link))

	for name, c := range map[string]struct{ path, want string }{
		"link":             {link, real},
		"new dir via link": {filepath.Join(link, "new"), filepath.Join(real, "new")},
		"plain":            {real, real},
	} {
		t.Run(name, func(t *testing.T) {
			pool := dirPool(c.path)
			got, err := check(ctx, b, pool)
			require.NoError(t, err)
			assert.Equal(t, c.want, stateIn(t, got).RealPath)
			assert.Equal(t, c.path, configIn(t, got).Path, "the given path is kept")
			assert.Empty(t, stateIn(t, pool).RealPath, "the caller's spec is not changed")
		})
	}

	pool, err := check(ctx, b, dirPool(link))
	require.NoError(t, err)
	_, err = b.Prepare(ctx, pool)
	require.NoError(t, err)
	require.NoError(t, os.Remove(link))
	require.NoError(t, os.Symlink(t.TempDir(), link))
	vol := uuid.New()
	_, err = b.CreateVolume(ctx, pool, driver.VolumeSpec{ID: vol, Format: driver.FormatRaw, Size: 4096})
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(real, "volume-"+vol.String()))
	require.NoError(t, err, "the storage stays in the directory it was created in")
}

// TestLocationErrorsNameTheirField: a path that does not exist (nor its parent), a regular file, a
// dangling symbolic link and a device that does not exist or is not a block device are field errors.
func TestLocationErrorsNameTheirField(t *testing.T) {
	b := newBackend(t)
	base := t.TempDir()
	file := filepath.Join(base, "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o600))
	dangling := filepath.Join(base, "dangling")
	require.NoError(t, os.Symlink(filepath.Join(base, "gone"), dangling))
	cases := []struct {
		name  string
		spec  localfs.Config
		field string
	}{
		{"missing parent", localfs.Config{Path: filepath.Join(base, "no", "such")}, "config.path"},
		{"regular file", localfs.Config{Path: file}, "config.path"},
		{"dangling link", localfs.Config{Path: dangling}, "config.path"},
		{"relative", localfs.Config{Path: "storage/one"}, "config.path"},
		{"missing device", localfs.Config{Device: "/dev/openvair-no-such-device", FSType: "ext4", Format: true}, "config.device"},
		{"char device", localfs.Config{Device: "/dev/null", FSType: "ext4", Format: true}, "config.device"},
		{"device outside /dev", localfs.Config{Device: file, FSType: "ext4", Format: true}, "config.device"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := c.spec
			pool := localfs.Pool(uuid.New(), spec, localfs.State{})
			_, err := b.Prepare(t.Context(), pool)
			requireField(t, err, c.field)
			_, err = check(t.Context(), b, pool)
			requireField(t, err, c.field)
		})
	}
}
