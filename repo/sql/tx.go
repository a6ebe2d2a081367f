package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/uptrace/bun"
)

// Retries of a unit of work that lost a serialization race (PostgreSQL 40001/40P01), and how long a SQLite
// unit of work waits for the write lock another process holds (SQLite's own busy timeout is kept short
// because it waits inside the C code, deaf to the context; the rest of the wait happens here, bounded by the
// context too).
const (
	maxAttempts    = 30
	backoffMax     = 200 * time.Millisecond
	sqliteBusyWait = 10 * time.Second
)

type txKey struct{}

// txState is a running unit of work.
type txState struct {
	store *Store
	tx    bun.Tx
	// failed is the first statement error inside the unit of work on PostgreSQL, where a failed statement
	// aborts the whole transaction: the unit of work cannot commit even if fn ignored that error.
	failed error
	// retry is set when a statement lost a serialization race: the whole unit of work runs again.
	retry bool
}

func (s *Store) txOf(ctx context.Context) *txState {
	if t, ok := ctx.Value(txKey{}).(*txState); ok && t.store == s {
		return t
	}
	return nil
}

// InTx runs fn as one unit of work. On PostgreSQL it runs at SERIALIZABLE and the whole of fn runs again
// (a few times, with jittered backoff) when the database reports a serialization failure or deadlock; when
// the attempts run out the error wraps errkind.Conflict. On SQLite units of work are BEGIN IMMEDIATE
// transactions on the single write connection. A nested InTx joins the outer unit of work.
func (s *Store) InTx(ctx context.Context, fn func(ctx context.Context) error) error {
	if s.txOf(ctx) != nil {
		return fn(ctx)
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	var last error
	start := time.Now()
	for attempt := 1; ; attempt++ {
		retry, err := s.attempt(ctx, fn)
		if !retry {
			return err
		}
		last = err
		if s.dialect == SQLite && time.Since(start) > sqliteBusyWait {
			return errkind.Wrap(errkind.Conflict, last, "database", "", "the database file stayed locked by another writer for %v", sqliteBusyWait)
		}
		if s.dialect != SQLite && attempt == maxAttempts {
			return errkind.Wrap(errkind.Conflict, last, "database", "", "the unit of work kept conflicting with concurrent ones (%d attempts)", maxAttempts)
		}
		d := min(backoffMax, time.Millisecond<<min(attempt, 10))
		d = d/2 + rand.N(d/2+1)
		select {
		case <-ctx.Done():
			return errkind.Wrap(errkind.Conflict, fmt.Errorf("%w (last attempt: %v)", ctx.Err(), last), "database", "",
				"gave up retrying the unit of work at the context deadline")
		case <-time.After(d):
		}
	}
}

// attempt runs fn in one transaction; retry reports a serialization failure.
func (s *Store) attempt(ctx context.Context, fn func(ctx context.Context) error) (retry bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, s.mapErr(ctx, err)
	}
	tx, err := s.db.BeginTx(ctx, s.txOpts)
	if err != nil {
		return retryable(err), s.mapErr(ctx, err)
	}
	t := &txState{store: s, tx: tx}
	finished := false
	defer func() {
		if !finished { // fn panicked
			_ = tx.Rollback()
		}
	}()
	err = fn(context.WithValue(ctx, txKey{}, t))
	if err == nil && t.failed != nil {
		err = t.failed
	}
	finished = true
	if err != nil {
		_ = tx.Rollback()
		return t.retry, err
	}
	if err := tx.Commit(); err != nil {
		return retryable(err), s.mapErr(ctx, err)
	}
	return false, nil
}

// retryable reports whether a failed unit of work may run again: a serialization failure or deadlock
// (PostgreSQL), a write lock held by another process (SQLite).
func retryable(err error) bool {
	c := classify(err)
	return c.retry || c.busy
}

// conn is what a repository call runs its statements on: the unit of work's transaction, a read
// transaction, or the read pool.
type conn struct {
	s  *Store
	db bun.IConn
	t  *txState // nil outside a unit of work
}

// write runs fn in the caller's unit of work, or in a new one.
func (s *Store) write(ctx context.Context, fn func(ctx context.Context, c conn) error) error {
	return s.InTx(ctx, func(ctx context.Context) error {
		t := s.txOf(ctx)
		return fn(ctx, conn{s: s, db: t.tx, t: t})
	})
}

// reader returns a conn for a single-statement read: the unit of work's transaction, or the read pool.
func (s *Store) reader(ctx context.Context) conn {
	if t := s.txOf(ctx); t != nil {
		return conn{s: s, db: t.tx, t: t}
	}
	return conn{s: s, db: s.rdb}
}

// read runs a multi-statement read on one snapshot: in the caller's unit of work, or in a read-only
// transaction.
func (s *Store) read(ctx context.Context, fn func(c conn) error) error {
	if t := s.txOf(ctx); t != nil {
		return fn(conn{s: s, db: t.tx, t: t})
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	tx, err := s.rdb.BeginTx(ctx, s.roOpts)
	if err != nil {
		return s.mapErr(ctx, err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(conn{s: s, db: tx}); err != nil {
		return err
	}
	return s.mapErr(ctx, tx.Commit())
}

// fail maps a statement error and records it in the unit of work.
func (c conn) fail(ctx context.Context, query string, err error) error {
	cl := classify(err)
	if cl.violation == violFK && c.s.dialect == SQLite {
		cl.fkOnDelete = strings.HasPrefix(strings.TrimSpace(query), "DELETE")
	}
	mapped := c.s.mapErr(ctx, err)
	if cl.violation == violFK && c.s.dialect == SQLite && cl.fkOnDelete {
		mapped = errkind.Wrap(errkind.InUse, err, "", "", "still referenced")
	}
	if c.t != nil {
		if cl.retry || cl.busy {
			c.t.retry = true
		}
		if c.s.dialect == Postgres && c.t.failed == nil {
			c.t.failed = mapped
		}
	}
	return mapped
}

func (c conn) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	res, err := c.db.ExecContext(ctx, query, args...)
	if err != nil {
		return nil, c.fail(ctx, query, err)
	}
	return res, nil
}

// execN runs a statement and returns the number of rows it changed.
func (c conn) execN(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := c.exec(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, c.fail(ctx, query, err)
	}
	return n, nil
}

// query runs a query and calls scan for every row.
func (c conn) query(ctx context.Context, scan func(*sql.Rows) error, query string, args ...any) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	rows, err := c.db.QueryContext(ctx, query, args...)
	if err != nil {
		return c.fail(ctx, query, err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return c.fail(ctx, query, err)
		}
	}
	if err := rows.Err(); err != nil {
		return c.fail(ctx, query, err)
	}
	return nil
}

// exists reports whether a query returns a row.
func (c conn) exists(ctx context.Context, query string, args ...any) (bool, error) {
	found := false
	err := c.query(ctx, func(*sql.Rows) error { found = true; return nil }, query, args...)
	return found, err
}

// DefaultTimeout bounds a unit of work, or a statement outside one, whose context has no deadline: a
// database that stops answering gives an error instead of a hang.
const DefaultTimeout = 30 * time.Second

// bounded returns ctx when it has a deadline, else ctx with DefaultTimeout.
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}
