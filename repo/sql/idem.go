package sqlstore

import (
	"context"
	"database/sql"
	"net/http"
	"time"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/idem"
)

// idemStore keeps idempotency keys. A zero ExpiresAt or LeaseUntil is stored as NULL and never ends.
type idemStore struct{ s *Store }

const idemCols = "scope, key, fingerprint, state, owner, lease_until, status, header, body, created_at, expires_at"

func scanIdem(rows *sql.Rows) (*idem.Record, error) {
	var rec idem.Record
	var header sql.NullString
	var lease, created, expires sql.NullInt64
	if err := rows.Scan(&rec.Scope, &rec.Key, &rec.Fingerprint, &rec.State, &rec.Owner, &lease, &rec.Status, &header, &rec.Body,
		&created, &expires); err != nil {
		return nil, err
	}
	h, err := fromJSONText[http.Header](header)
	if err != nil {
		return nil, err
	}
	if h != nil {
		rec.Header = *h
	}
	rec.LeaseUntil, rec.CreatedAt, rec.ExpiresAt = fromNanos(lease), fromNanos(created), fromNanos(expires)
	return &rec, nil
}

// headerText is a header as a JSON text column, NULL for nil.
func headerText(h http.Header) (sql.NullString, error) {
	if h == nil {
		return sql.NullString{}, nil
	}
	return jsonText(&h)
}

// Begin inserts rec, or replaces a stored record that expired or whose running request's lease ended before
// rec.CreatedAt, in one statement; when neither happens it returns the stored record. Two processes racing
// for the same key cannot both win: the upsert takes the row's lock, and the loser's retry (PostgreSQL
// reports a serialization failure) sees the winner's live record.
func (r idemStore) Begin(ctx context.Context, rec *idem.Record) (*idem.Record, error) {
	header, err := headerText(rec.Header)
	if err != nil {
		return nil, err
	}
	var existing *idem.Record
	err = r.s.write(ctx, func(ctx context.Context, c conn) error {
		existing = nil
		n, err := c.execN(ctx, "INSERT INTO idempotency_keys ("+idemCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, state = excluded.state, owner = excluded.owner,
				lease_until = excluded.lease_until, status = excluded.status, header = excluded.header, body = excluded.body,
				created_at = excluded.created_at, expires_at = excluded.expires_at
			WHERE idempotency_keys.expires_at < excluded.created_at
				OR (idempotency_keys.state = ? AND idempotency_keys.lease_until < excluded.created_at)`,
			rec.Scope, rec.Key, rec.Fingerprint, rec.State, rec.Owner, nanos(rec.LeaseUntil), rec.Status, header, blob(rec.Body),
			nanos(rec.CreatedAt), nanos(rec.ExpiresAt), idem.StateRunning)
		if err != nil || n > 0 {
			return err
		}
		existing, err = r.get(ctx, c, rec.Scope, rec.Key)
		return err
	})
	if err != nil {
		return nil, err
	}
	return existing, nil
}

func (r idemStore) get(ctx context.Context, c conn, scope, key string) (*idem.Record, error) {
	var rec *idem.Record
	err := c.query(ctx, func(rows *sql.Rows) error {
		var err error
		rec, err = scanIdem(rows)
		return err
	}, "SELECT "+idemCols+" FROM idempotency_keys WHERE scope = ? AND key = ?", scope, key)
	if err == nil && rec == nil {
		err = errkind.New(errkind.NotFound, "idempotency key", key, "idempotency key not found")
	}
	return rec, err
}

// Finish stores the response (Status, Header, Body) of rec and marks it done, when rec.Owner holds the
// running record; otherwise it stores nothing and returns an error wrapping errkind.NotFound (no record) or
// errkind.Conflict (done, or held by another owner after a takeover).
func (r idemStore) Finish(ctx context.Context, rec *idem.Record) error {
	header, err := headerText(rec.Header)
	if err != nil {
		return err
	}
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		n, err := c.execN(ctx, `UPDATE idempotency_keys SET state = ?, status = ?, header = ?, body = ?
			WHERE scope = ? AND key = ? AND owner = ? AND state = ?`,
			idem.StateDone, rec.Status, header, blob(rec.Body), rec.Scope, rec.Key, rec.Owner, idem.StateRunning)
		if err != nil || n > 0 {
			return err
		}
		if _, err := r.get(ctx, c, rec.Scope, rec.Key); err != nil {
			return err
		}
		return errkind.New(errkind.Conflict, "idempotency key", rec.Key, "not a running request of %s", rec.Owner)
	})
}

// Abandon deletes the record when owner holds it running; otherwise it does nothing.
func (r idemStore) Abandon(ctx context.Context, scope, key, owner string) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		_, err := c.exec(ctx, "DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND owner = ? AND state = ?",
			scope, key, owner, idem.StateRunning)
		return err
	})
}

// Renew extends to until the lease of the running record owner holds (nothing happens otherwise).
func (r idemStore) Renew(ctx context.Context, scope, key, owner string, until time.Time) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		_, err := c.exec(ctx, "UPDATE idempotency_keys SET lease_until = ? WHERE scope = ? AND key = ? AND owner = ? AND state = ?",
			nanos(until), scope, key, owner, idem.StateRunning)
		return err
	})
}

// Prune deletes the records whose ExpiresAt is before now.
func (r idemStore) Prune(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := r.s.write(ctx, func(ctx context.Context, c conn) error {
		var err error
		n, err = c.execN(ctx, "DELETE FROM idempotency_keys WHERE expires_at < ?", nanos(now))
		return err
	})
	return int(n), err
}
