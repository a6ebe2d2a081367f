package sqlstore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openvair/openvair/internal/testenv/pg"
	"github.com/openvair/openvair/repo"
	"github.com/openvair/openvair/repo/repotest"
	sqlstore "github.com/openvair/openvair/repo/sql"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { os.Exit(pg.Main(m, dropFixtures)) }

// backend is one database the suites run on.
type backend struct {
	name string
	dsn  func(t testing.TB) string
}

func sqliteDSN(t testing.TB) string { return "sqlite://" + filepath.Join(t.TempDir(), "openvair.db") }

var backends = []backend{
	{"SQLite", sqliteDSN},
	{"Postgres", func(t testing.TB) string { return pg.Start(t) }},
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// openStore opens a store on dsn and closes it when the test ends.
func openStore(t testing.TB, dsn string) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(testCtx(t), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// opener returns a repotest opener of fresh stores on the backend.
func opener(b backend) repotest.Opener {
	return func(t *testing.T) repo.Store { return openStore(t, b.dsn(t)) }
}

func TestConformance(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { repotest.Run(t, opener(b)) })
	}
}
