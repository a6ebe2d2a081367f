package sqlstore

import (
	"context"
	"strconv"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// DBOf returns the bun handle units of work run on, for this package's tests that need raw access; bun stays
// out of the public API.
func DBOf(s *Store) *bun.DB { return s.db }

// OpenAt opens the store at dsn migrated up to schema version (not further), as an older openvair left it.
func OpenAt(ctx context.Context, dsn string, version int) (*Store, error) {
	s, err := connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	all, err := migrations(s.dialect)
	if err != nil {
		return nil, err
	}
	some := migrate.NewMigrations()
	for _, m := range all.Sorted() {
		if v, err := strconv.Atoi(m.Name); err == nil && v <= version {
			some.Add(m)
		}
	}
	mg := migrate.NewMigrator(s.db, some, migrate.WithTableName(migrationsTable), migrate.WithLocksTableName(migrationLocks),
		migrate.WithMarkAppliedOnSuccess(true))
	if err := mg.Init(ctx); err != nil {
		return nil, err
	}
	if _, err := mg.Migrate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}
