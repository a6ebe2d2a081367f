package sqlstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/uptrace/bun/migrate"
)

// migrationsFS holds the versioned schema migrations, one directory per dialect; file names start with
// the schema version they produce (0001_init.tx.up.sql).
//
//go:embed migrations
var migrationsFS embed.FS

// Migration bookkeeping tables (bun/migrate's, under openvair names).
const (
	migrationsTable = "openvair_migrations"
	migrationLocks  = "openvair_migration_locks"
	// pgMigrationLock is the advisory lock key that serializes migrations of concurrent openers.
	pgMigrationLock = 0x6f76616972 // "ovair"
)

func migrations(d Dialect) (*migrate.Migrations, error) {
	sub, err := fs.Sub(migrationsFS, "migrations/"+string(d))
	if err != nil {
		return nil, err
	}
	m := migrate.NewMigrations()
	if err := m.Discover(sub); err != nil {
		return nil, err
	}
	return m, nil
}

// LatestSchemaVersion is the schema version this code creates and understands.
func LatestSchemaVersion() int {
	m, err := migrations(Postgres)
	if err != nil {
		panic(err)
	}
	latest := 0
	for _, mig := range m.Sorted() {
		if v, err := strconv.Atoi(mig.Name); err == nil && v > latest {
			latest = v
		}
	}
	return latest
}

func (s *Store) migrator() (*migrate.Migrator, error) {
	m, err := migrations(s.dialect)
	if err != nil {
		return nil, err
	}
	return migrate.NewMigrator(s.db, m, migrate.WithTableName(migrationsTable), migrate.WithLocksTableName(migrationLocks),
		migrate.WithMarkAppliedOnSuccess(true)), nil
}

// migrate applies the pending migrations, refusing a database migrated by newer code. On PostgreSQL an
// advisory lock serializes concurrent openers; on SQLite each migration is one BEGIN IMMEDIATE transaction.
func (s *Store) migrate(ctx context.Context) error {
	m, err := s.migrator()
	if err != nil {
		return err
	}
	if s.dialect == Postgres {
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return s.mapErr(ctx, err)
		}
		defer func() { _ = conn.Close() }()
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(?)", pgMigrationLock); err != nil {
			return s.mapErr(ctx, err)
		}
		defer func() {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(?)", pgMigrationLock)
		}()
	}
	if err := m.Init(ctx); err != nil {
		return s.mapErr(ctx, fmt.Errorf("create migration tables: %w", err))
	}
	unknown, err := m.MissingMigrations(ctx)
	if err != nil {
		return s.mapErr(ctx, fmt.Errorf("read applied migrations: %w", err))
	}
	if len(unknown) > 0 {
		names := make([]string, len(unknown))
		for i, u := range unknown {
			names[i] = u.Name
		}
		sort.Strings(names)
		return errkind.New(errkind.Unsupported, "database", "",
			"the database schema has migrations this build of openvair does not know (%s; this build knows up to version %d): upgrade openvair, or open a database of this version",
			strings.Join(names, ", "), LatestSchemaVersion())
	}
	if _, err := m.Migrate(ctx); err != nil {
		return s.mapErr(ctx, fmt.Errorf("migrate schema: %w", err))
	}
	return nil
}

// SchemaVersion returns the version of the database schema: the highest migration applied.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	m, err := s.migrator()
	if err != nil {
		return 0, err
	}
	applied, err := m.AppliedMigrations(ctx)
	if err != nil {
		return 0, s.mapErr(ctx, err)
	}
	version := 0
	for _, a := range applied {
		if v, err := strconv.Atoi(a.Name); err == nil && v > version {
			version = v
		}
	}
	return version, nil
}
