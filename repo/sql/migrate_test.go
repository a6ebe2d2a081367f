package sqlstore_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/repo"
	"github.com/openvair/openvair/repo/repotest"
	sqlstore "github.com/openvair/openvair/repo/sql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun/migrate"
)

// Migrations run at open, are idempotent, and the schema version is readable; a newer schema is refused.
func TestMigrations(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := testCtx(t)
			dsn := b.dsn(t)
			s, err := sqlstore.Open(ctx, dsn)
			require.NoError(t, err)
			v, err := s.SchemaVersion(ctx)
			require.NoError(t, err)
			assert.Equal(t, sqlstore.LatestSchemaVersion(), v)
			assert.GreaterOrEqual(t, v, 1)
			st := repotest.NewStorage("kept")
			require.NoError(t, s.Storages().Create(ctx, st))
			require.NoError(t, s.Close())

			// Opening again (twice, concurrently with a still-open store) changes nothing.
			s1 := openStore(t, dsn)
			s2 := openStore(t, dsn)
			v, err = s2.SchemaVersion(ctx)
			require.NoError(t, err)
			assert.Equal(t, sqlstore.LatestSchemaVersion(), v)
			got, err := s1.Storages().Get(ctx, st.ID)
			require.NoError(t, err)
			assert.Equal(t, "kept", got.Name)

			// A migration this code does not know: the database was migrated by a newer openvair.
			m := migrate.NewMigrator(sqlstore.DBOf(s1), migrate.NewMigrations(), migrate.WithTableName("openvair_migrations"))
			require.NoError(t, m.MarkApplied(ctx, &migrate.Migration{Name: "9999", GroupID: 99}))
			_, err = sqlstore.Open(ctx, dsn)
			require.ErrorIs(t, err, errkind.Unsupported)
			assert.Contains(t, err.Error(), "9999")
			t.Logf("newer schema: %v", err)
		})
	}
}

// The registry opens the SQL store by scheme.
func TestRegistered(t *testing.T) {
	ctx := testCtx(t)
	assert.Subset(t, repo.Schemes(), []string{"postgres", "postgresql", "sqlite"})
	s, err := repo.Open(ctx, sqliteDSN(t))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	rel := filepath.Join(t.TempDir(), "rel.db")
	s, err = repo.Open(ctx, "sqlite:"+rel)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = os.Stat(rel)
	assert.NoError(t, err, "sqlite:/path opens that file")
	_, err = repo.Open(ctx, "sqlite://")
	assert.ErrorIs(t, err, errkind.Invalid)
	_, err = repo.Open(ctx, "sqlite:///x.db?mode=memory")
	assert.ErrorIs(t, err, errkind.Invalid)
}

// The store builds without cgo (pure-Go SQLite): with CGO_ENABLED=0 none of its dependencies needs cgo.
// (Checked with go list, which compiles nothing; CI also runs CGO_ENABLED=0 go build.)
func TestBuildsWithoutCgo(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = "/usr/local/go/bin/go"
	}
	if _, err := os.Stat(gobin); err != nil {
		t.Skipf("go tool not found: %v", err)
	}
	cmd := exec.CommandContext(testCtx(t), gobin, "list", "-deps", "-f", "{{if .CgoFiles}}{{.ImportPath}}{{end}}", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	require.NoError(t, err, "%s", out)
	assert.Empty(t, strings.TrimSpace(string(out)), "packages needing cgo")

	cmd = exec.CommandContext(testCtx(t), gobin, "list", "-deps", "-f", "{{if .CgoFiles}}{{.ImportPath}}{{end}}", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	out, err = cmd.Output()
	require.NoError(t, err)
	assert.NotContains(t, string(out), "sqlite", "no cgo SQLite driver even when cgo is available")
}

// TestSQLiteFileIsPrivate: the database file (token hashes, sealed secrets) is 0600 whoever made the
// directory, and an existing readable one is made private.
func TestSQLiteFileIsPrivate(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	path := filepath.Join(dir, "new.db")
	s, err := sqlstore.Open(context.Background(), "sqlite://"+path)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if fi, err := os.Stat(p); err == nil {
			assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), p)
		}
	}
	require.NoError(t, os.Chmod(path, 0o644))
	s, err = sqlstore.Open(context.Background(), "sqlite://"+path)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}
