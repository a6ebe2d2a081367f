// Package sqlstore implements the openvair repositories and the unit of work on SQL databases through
// bun: PostgreSQL (pgdialect + pgdriver) and SQLite (sqlitedialect + the pure-Go modernc.org/sqlite, so
// binaries build with CGO_ENABLED=0).
//
// Every uniqueness rule is a UNIQUE constraint and every reference a foreign key, so racing writers cannot
// both win; the loser gets the typed errkind error. Units of work run at SERIALIZABLE on PostgreSQL (retried
// automatically on serialization failures) and as BEGIN IMMEDIATE transactions on one SQLite write
// connection. Updates are compare-and-swap statements on the entity's version and status. Lists are paged
// in the database by id (keyset pagination), so a deep page costs what the first one does.
//
// The schema is created and upgraded by embedded, versioned migrations (bun/migrate) when a store is
// opened; a database whose schema is newer than this code is refused.
//
// Why the statements are written as SQL rather than with bun's models and query builder: every statement
// here is portable SQL with ? placeholders, which bun formats for either dialect, so the builder would
// remove no per-dialect SQL. What does differ between the dialects is behaviour, not syntax: how events
// get their commit-order ids (an advisory transaction lock and a sequence, NOTIFY, on PostgreSQL; the
// single writer on SQLite), transaction retries, and how constraint violations are recognised; the builder
// has no say in those. The rules the repositories enforce (compare-and-swap on version and status,
// uniqueness checked before the constraint so the error names the other entity, keyset pages) read best
// as the statements themselves, next to the migrations that create the tables. bun is used for what it
// does well here: the connection pools and dialect formatting, the driver for each database, and the
// versioned migrations.
//
// DSNs: "postgres://user:pass@host:5432/db?sslmode=disable" (or postgresql://; the driver, pgdriver, uses
// TLS unless sslmode=disable is given, and also reads connect_timeout, read_timeout and write_timeout) and
// "sqlite:///absolute/path/file.db" (or sqlite:relative/path.db). SQLite files run in WAL mode with foreign
// keys on and a busy timeout. The scheme "memory:" belongs to repo/memory.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"sync"

	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/event"
	"github.com/openvair/openvair/internal/idem"
	"github.com/openvair/openvair/internal/lease"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/repo"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
	"github.com/uptrace/bun"
)

func init() {
	for _, scheme := range []string{"postgres", "postgresql", "sqlite"} {
		repo.Register(scheme, func(ctx context.Context, dsn string) (repo.Store, error) { return Open(ctx, dsn) })
	}
}

// Dialect names the database behind a store.
type Dialect string

// The supported dialects.
const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// Store is a SQL-backed repo.Store.
type Store struct {
	dialect Dialect
	// db runs units of work (on SQLite: the single write connection, BEGIN IMMEDIATE).
	db *bun.DB
	// rdb runs reads outside a unit of work (on SQLite a pool of read-only connections; db on PostgreSQL).
	rdb *bun.DB
	// dsn is the PostgreSQL DSN the store was opened with (empty on SQLite).
	dsn string
	// txOpts are the options of a unit of work, roOpts those of a multi-statement read.
	txOpts, roOpts *sql.TxOptions

	closeOnce sync.Once
	closeErr  error
}

var _ repo.Store = (*Store)(nil)

// Open opens the database a DSN names, applies the pending migrations and returns the store. A database
// that cannot be reached gives an error wrapping errkind.Unavailable; one whose schema is newer than this
// code knows gives errkind.Unsupported.
func Open(ctx context.Context, dsn string) (*Store, error) {
	s, err := connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// Dialect reports which database the store uses.
func (s *Store) Dialect() Dialect { return s.dialect }

// Close closes the connection pools.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		err := s.db.Close()
		if s.rdb != s.db {
			err = errors.Join(err, s.rdb.Close())
		}
		s.closeErr = err
	})
	return s.closeErr
}

// Storages returns the storage repository.
func (s *Store) Storages() storage.Repository { return storageRepo{s} }

// Volumes returns the volume repository.
func (s *Store) Volumes() volume.Repository { return volumeRepo{s} }

// Images returns the image repository.
func (s *Store) Images() image.Repository { return imageRepo{s} }

// VMs returns the VM repository.
func (s *Store) VMs() vm.Repository { return vmRepo{s} }

// Operations returns the operation repository.
func (s *Store) Operations() operation.Repository { return operationRepo{s} }

// Events returns the change log. On PostgreSQL, Listen follows what other processes append to it.
func (s *Store) Events() event.Log { return eventLog{s} }

// Idempotency returns the idempotency key store.
func (s *Store) Idempotency() idem.Store { return idemStore{s} }

// Leases returns the lease store.
func (s *Store) Leases() lease.Store { return leaseStore{s} }

func notFound(entity, id string) error {
	return errkind.New(errkind.NotFound, entity, id, "%s not found", entity)
}

func conflict(entity, id string) error {
	return errkind.New(errkind.Conflict, entity, id, "changed concurrently (stale version), re-read and retry")
}

func exists(entity, format string, args ...any) error {
	return errkind.New(errkind.AlreadyExists, entity, "", format, args...)
}
