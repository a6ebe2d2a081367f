package storage_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/testenv"
	"github.com/openvair/openvair/internal/testenv/pg"
	_ "github.com/openvair/openvair/repo/sql" // sqlite:// and postgres:// stores
	"github.com/openvair/openvair/storage"
)

// stores are the repositories the storage rules are checked on: CreatedDir and the resolved location must
// survive each of them.
var stores = []struct {
	name string
	dsn  func(t *testing.T) string
}{
	{"memory", func(*testing.T) string { return "memory:" }},
	{"SQLite", func(t *testing.T) string { return "sqlite://" + filepath.Join(t.TempDir(), "openvair.db") }},
	{"Postgres", func(t *testing.T) string { return pg.Start(t) }},
}

// localSystem opens a System on dsn whose localfs storages are real directories (the localfs backend).
func localSystem(t *testing.T, dsn string) (*openvair.System, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	b, err := localfs.New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	sys, err := openvair.Open(ctx, openvair.Config{DSN: dsn, HypervisorInstance: fake.NewHypervisor(),
		StorageBackends: map[storage.Type]driver.StorageBackend{"localfs": b}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sys.Close() })
	return sys, ctx
}

// stateOf and configOf decode a storage's localfs state and configuration.
func stateOf(t *testing.T, st *storage.Storage) localfs.State {
	t.Helper()
	var ls localfs.State
	require.NoError(t, driver.DecodeState(st.State, &ls))
	return ls
}

func configOf(t *testing.T, st *storage.Storage) localfs.Config {
	t.Helper()
	var c localfs.Config
	require.NoError(t, st.DecodeConfig(&c))
	return c
}

func dirRequest(name, path string) storage.CreateRequest {
	return storage.CreateRequest{Name: name, Type: "localfs", Config: localfs.Config{Path: path}}
}

// TestDeleteRemovesOnlyWhatOpenvairCreated: deleting a storage removes its directory only when openvair
// created it (recorded in CreatedDir by every store) and it is empty; a directory the user made, one with
// other files, or a mount point stays, and the storage is deleted all the same.
func TestDeleteRemovesOnlyWhatOpenvairCreated(t *testing.T) {
	cases := []struct {
		name     string
		existing bool                           // the user made the directory
		after    func(t *testing.T, dir string) // after the storage is created
		root     bool
		removed  bool
	}{
		{name: "created by openvair", removed: true},
		{name: "user's empty directory", existing: true},
		{name: "created, then holds other files", after: func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "notes"), []byte("x"), 0o600))
		}},
		{name: "user's mount point", existing: true, root: true, after: func(t *testing.T, dir string) {
			require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"))
			t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
		}},
		{name: "created, then a mount point", root: true, after: func(t *testing.T, dir string) {
			require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"))
			t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
		}},
	}
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			dsn := s.dsn(t)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					if c.root {
						testenv.RequireRoot(t)
					}
					sys, ctx := localSystem(t, dsn)
					dir := filepath.Join(t.TempDir(), "pool")
					if c.existing {
						require.NoError(t, os.Mkdir(dir, 0o750))
					}
					name := "pool-" + uuid.NewString()[:8]
					st, err := sys.Storages.Create(ctx, dirRequest(name, dir))
					require.NoError(t, err)
					assert.Equal(t, !c.existing, stateOf(t, st).CreatedDir)
					got, err := sys.Storages.Get(ctx, st.ID)
					require.NoError(t, err)
					assert.Equal(t, !c.existing, stateOf(t, got).CreatedDir, "CreatedDir is stored")
					if c.after != nil {
						c.after(t, dir)
					}

					require.NoError(t, sys.Storages.Delete(ctx, st.ID))
					_, err = sys.Storages.Get(ctx, st.ID)
					require.ErrorIs(t, err, errkind.NotFound, "the storage is deleted")
					_, err = os.Lstat(dir)
					if c.removed {
						require.ErrorIs(t, err, os.ErrNotExist)
					} else {
						require.NoError(t, err, "the directory stays")
					}
				})
			}
		})
	}
}

// TestLocationComparedResolved: a storage on a symbolic link to a directory another storage uses is the
// same location (AlreadyExists, naming that storage); the given path stays visible next to the resolved one.
func TestLocationComparedResolved(t *testing.T) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			sys, ctx := localSystem(t, s.dsn(t))
			base := t.TempDir()
			real := filepath.Join(base, "real")
			require.NoError(t, os.Mkdir(real, 0o750))
			link := filepath.Join(base, "link")
			require.NoError(t, os.Symlink(real, link))
			other := filepath.Join(base, "other")
			require.NoError(t, os.Symlink(base, other))

			first, err := sys.Storages.Create(ctx, dirRequest("first", real))
			require.NoError(t, err)
			assert.Equal(t, real, stateOf(t, first).RealPath)
			for name, path := range map[string]string{
				"link":             link,
				"parent link":      filepath.Join(other, "real"),
				"link to new name": filepath.Join(other, "fresh"), // not taken: created below through the link
			} {
				_, err := sys.Storages.Create(ctx, dirRequest("dup-"+filepath.Base(path), path))
				if name == "link to new name" {
					require.NoError(t, err)
					continue
				}
				require.ErrorIs(t, err, errkind.AlreadyExists, name)
				var e *errkind.Error
				require.ErrorAs(t, err, &e)
				require.Len(t, e.Refs, 1)
				assert.Equal(t, "first", e.Refs[0].Name)
			}
			viaLink, err := sys.Storages.Create(ctx, dirRequest("via-link", filepath.Join(link, "sub")))
			require.NoError(t, err)
			assert.Equal(t, filepath.Join(link, "sub"), configOf(t, viaLink).Path, "the given path is kept")
			assert.Equal(t, filepath.Join(real, "sub"), stateOf(t, viaLink).RealPath)
			_, err = sys.Storages.Create(ctx, dirRequest("direct", filepath.Join(real, "sub")))
			require.ErrorIs(t, err, errkind.AlreadyExists, "the resolved path of the other")

			page, err := sys.Storages.List(ctx, storage.ListOptions{})
			require.NoError(t, err)
			assert.Len(t, page.Items, 3, "refused creates leave nothing")
		})
	}
}

// TestLocationErrorsNameTheirField: a missing directory, a regular file, a system directory and a missing
// device are *errkind.ValidationError naming config.path or config.device, and nothing is recorded.
func TestLocationErrorsNameTheirField(t *testing.T) {
	sys, ctx := localSystem(t, "memory:")
	base := t.TempDir()
	file := filepath.Join(base, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	link := filepath.Join(base, "etc")
	require.NoError(t, os.Symlink("/etc", link))
	cases := []struct {
		name  string
		spec  localfs.Config
		field string
	}{
		{"missing directory", localfs.Config{Path: filepath.Join(base, "no", "such")}, "config.path"},
		{"regular file", localfs.Config{Path: file}, "config.path"},
		{"system directory", localfs.Config{Path: "/etc"}, "config.path"},
		{"inside a system directory", localfs.Config{Path: "/usr/local/pool"}, "config.path"},
		{"symbolic link to a system directory", localfs.Config{Path: link}, "config.path"},
		{"missing device", localfs.Config{Device: "/dev/openvair-no-such-device", FSType: "ext4", Format: true}, "config.device"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := c.spec
			_, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "x", Type: "localfs", Config: spec})
			require.ErrorIs(t, err, errkind.Invalid)
			var ve *errkind.ValidationError
			require.ErrorAs(t, err, &ve)
			require.Len(t, ve.Fields, 1)
			assert.Equal(t, c.field, ve.Fields[0].Field)
		})
	}
	page, err := sys.Storages.List(ctx, storage.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, page.Items)
}
