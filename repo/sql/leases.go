package sqlstore

import (
	"context"
	"time"
)

// leaseStore keeps named leases, one row per held name.
type leaseStore struct{ s *Store }

// Acquire inserts the lease, or takes it over when holder already holds it or its holder's lease ended
// before now, in one statement; two processes racing cannot both win (on PostgreSQL the loser's retry sees
// the winner's row).
func (r leaseStore) Acquire(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	var won bool
	err := r.s.write(ctx, func(ctx context.Context, c conn) error {
		n, err := c.execN(ctx, `INSERT INTO leases (name, holder, until) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
			WHERE leases.holder = excluded.holder OR leases.until < ?`, name, holder, nanos(until), nanos(now))
		won = n > 0
		return err
	})
	return won, err
}

// Release deletes the lease when holder holds it.
func (r leaseStore) Release(ctx context.Context, name, holder string) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		_, err := c.exec(ctx, "DELETE FROM leases WHERE name = ? AND holder = ?", name, holder)
		return err
	})
}
