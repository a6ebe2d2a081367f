package sqlstore

import (
	"context"
	"database/sql"
)

// SQLDB returns the database/sql pool units of work run on (on SQLite the single write connection), for
// components that share the database and its transactions, such as the job queue.
func (s *Store) SQLDB() *sql.DB { return s.db.DB }

// SQLTx returns the transaction of the unit of work ctx runs in, so that a component can write in it (a
// job enqueued with the operation that needs it); ok is false outside a unit of work.
func (s *Store) SQLTx(ctx context.Context) (tx *sql.Tx, ok bool) {
	t := s.txOf(ctx)
	if t == nil {
		return nil, false
	}
	return t.tx.Tx, true
}

// PostgresDSN returns the DSN of a PostgreSQL store ("" on SQLite), for components that need connections of
// their own to the same database (the job queue's, whose queries bun's pgdriver cannot run).
func (s *Store) PostgresDSN() string { return s.dsn }
