package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/pgdriver"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver, registered as "sqlite"
)

// Pool sizes. SQLite has one writer at a time: one write connection serializes the units of work in the
// process (so they never meet SQLITE_BUSY among themselves) while reads use their own WAL snapshots.
const (
	pgMaxConns      = 16
	sqliteReadConns = 4
	// sqliteBusyTimeout is how long SQLite itself waits for a lock held by another process before the
	// store's own context-aware wait (sqliteBusyWait) takes over.
	sqliteBusyTimeout = 100 * time.Millisecond
)

// connect opens the pools a DSN names, without migrating.
func connect(ctx context.Context, dsn string) (*Store, error) {
	scheme, rest, _ := strings.Cut(dsn, ":")
	switch scheme {
	case "postgres", "postgresql":
		return connectPostgres(ctx, dsn)
	case "sqlite":
		path, err := sqlitePath(rest)
		if err != nil {
			return nil, err
		}
		return connectSQLite(ctx, path)
	}
	return nil, errkind.New(errkind.Unsupported, "database", "", "unknown DSN scheme %q (postgres://, postgresql://, sqlite://)", scheme)
}

// sqlitePath extracts the file path of "sqlite:///abs/path.db", "sqlite://rel/path.db" or "sqlite:path.db".
func sqlitePath(rest string) (string, error) {
	p := strings.TrimPrefix(rest, "//")
	if p == "" || strings.ContainsAny(p, "?#\x00") || p == ":memory:" {
		return "", &errkind.ValidationError{Entity: "database", Fields: []errkind.FieldError{{Field: "dsn",
			Message: "a SQLite DSN names a database file: sqlite:///path/to/file.db (no query parameters, no :memory:)"}}}
	}
	return p, nil
}

func connectPostgres(ctx context.Context, dsn string) (*Store, error) {
	if _, err := url.Parse(dsn); err != nil {
		return nil, &errkind.ValidationError{Entity: "database", Fields: []errkind.FieldError{{Field: "dsn", Message: "is not a postgres:// URL"}}}
	}
	sqldb := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn)))
	sqldb.SetMaxOpenConns(pgMaxConns)
	sqldb.SetMaxIdleConns(pgMaxConns)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	db := bun.NewDB(sqldb, pgdialect.New())
	s := &Store{dialect: Postgres, db: db, rdb: db, dsn: dsn,
		txOpts: &sql.TxOptions{Isolation: sql.LevelSerializable},
		roOpts: &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}}
	if err := db.PingContext(ctx); err != nil {
		_ = s.Close()
		return nil, s.mapErr(ctx, err)
	}
	return s, nil
}

// sqliteDSN returns the modernc DSN of a database file with the store's pragmas.
func sqliteDSN(path string, write bool) string {
	u := url.URL{Scheme: "file", Opaque: (&url.URL{Path: path}).EscapedPath()}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+itoa(sqliteBusyTimeout.Milliseconds())+")")
	q.Add("_pragma", "foreign_keys(1)")
	if write {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// privateDBFile creates the database file 0600 when it is missing and makes an existing one 0600: it holds
// token hashes and sealed secrets, and SQLite gives its -wal and -shm files the mode of the database.
func privateDBFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(path, 0o600); err != nil && !errors.Is(err, fs.ErrPermission) {
		return err // a database another user owns keeps its mode: that user decides
	}
	return nil
}

func connectSQLite(ctx context.Context, path string) (*Store, error) {
	if err := privateDBFile(path); err != nil {
		return nil, errkind.Wrap(errkind.Unavailable, err, "database", "", "create SQLite database file")
	}
	wsql, err := sql.Open("sqlite", sqliteDSN(path, true))
	if err != nil {
		return nil, errkind.Wrap(errkind.Unavailable, err, "database", "", "open SQLite database")
	}
	wsql.SetMaxOpenConns(1)
	wsql.SetMaxIdleConns(1)
	wsql.SetConnMaxLifetime(0)
	wsql.SetConnMaxIdleTime(0)
	rsql, err := sql.Open("sqlite", sqliteDSN(path, false))
	if err != nil {
		_ = wsql.Close()
		return nil, errkind.Wrap(errkind.Unavailable, err, "database", "", "open SQLite database")
	}
	rsql.SetMaxOpenConns(sqliteReadConns)
	rsql.SetMaxIdleConns(sqliteReadConns)
	s := &Store{dialect: SQLite, db: bun.NewDB(wsql, sqlitedialect.New()), rdb: bun.NewDB(rsql, sqlitedialect.New())}
	// The write connection must exist first: it switches the file to WAL before readers open it.
	if err := s.db.PingContext(ctx); err != nil {
		_ = s.Close()
		return nil, s.mapErr(ctx, err)
	}
	if err := s.rdb.PingContext(ctx); err != nil {
		_ = s.Close()
		return nil, s.mapErr(ctx, err)
	}
	return s, nil
}
