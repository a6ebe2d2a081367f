package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/cursor"
	"github.com/openvair/openvair/internal/operation"
)

type operationRepo struct{ s *Store }

const operationCols = `id, kind, target_type, target_id, status, progress, requester, request_id, cancellable, cancel_requested,
	error, result, owner, lease_until, created_at, started_at, finished_at, updated_at, payload, version`

// liveStatuses is the SQL list of the statuses of work not finished yet.
const liveStatuses = "('" + string(operation.StatusPending) + "', '" + string(operation.StatusRunning) + "')"

// finalStatuses is the SQL list of the final statuses.
const finalStatuses = "('" + string(operation.StatusSucceeded) + "', '" + string(operation.StatusFailed) + "', '" +
	string(operation.StatusCancelled) + "')"

// nanosPtr is nanos of an optional time.
func nanosPtr(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return nanos(*t)
}

// fromNanosPtr is the inverse of nanosPtr.
func fromNanosPtr(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNanos(n)
	return &t
}

// blob is a byte column's argument: NULL for nil.
func blob(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

func scanOperation(rows *sql.Rows) (*operation.Operation, error) {
	var op operation.Operation
	var progress string
	var problem, result sql.NullString
	var lease, created, started, finished, updated sql.NullInt64
	var payload []byte
	if err := rows.Scan(&op.ID, &op.Kind, &op.TargetType, &op.TargetID, &op.Status, &progress, &op.Requester, &op.RequestID,
		&op.Cancellable, &op.CancelRequested, &problem, &result, &op.Owner, &lease, &created, &started, &finished, &updated,
		&payload, &op.Version); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(progress), &op.Progress); err != nil {
		return nil, err
	}
	var err error
	if op.Error, err = fromJSONText[operation.Problem](problem); err != nil {
		return nil, err
	}
	if op.Result, err = fromJSONText[operation.Result](result); err != nil {
		return nil, err
	}
	op.LeaseUntil, op.CreatedAt, op.UpdatedAt = fromNanos(lease), fromNanos(created), fromNanos(updated)
	op.StartedAt, op.FinishedAt = fromNanosPtr(started), fromNanosPtr(finished)
	if payload != nil {
		op.Payload = json.RawMessage(payload)
	}
	return &op, nil
}

// operationArgs are the values of the columns between id and version, in operationCols order.
func operationArgs(op *operation.Operation) ([]any, error) {
	progress, err := json.Marshal(op.Progress)
	if err != nil {
		return nil, err
	}
	problem, err := jsonText(op.Error)
	if err != nil {
		return nil, err
	}
	result, err := jsonText(op.Result)
	if err != nil {
		return nil, err
	}
	return []any{op.Kind, op.TargetType, op.TargetID, op.Status, string(progress), op.Requester, op.RequestID, op.Cancellable,
		op.CancelRequested, problem, result, op.Owner, nanos(op.LeaseUntil), nanos(op.CreatedAt), nanosPtr(op.StartedAt),
		nanosPtr(op.FinishedAt), nanos(op.UpdatedAt), blob(op.Payload)}, nil
}

// scanOperations returns a scan function appending to *out.
func scanOperations(out *[]*operation.Operation) func(*sql.Rows) error {
	return func(rows *sql.Rows) error {
		op, err := scanOperation(rows)
		if err == nil {
			*out = append(*out, op)
		}
		return err
	}
}

func (r operationRepo) Create(ctx context.Context, op *operation.Operation) error {
	args, err := operationArgs(op)
	if err != nil {
		return err
	}
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		dup, err := c.exists(ctx, "SELECT 1 FROM operations WHERE id = ?", op.ID)
		if err != nil {
			return err
		}
		if dup {
			return exists("operation", "id %s exists", op.ID)
		}
		if _, err := c.exec(ctx, "INSERT INTO operations ("+operationCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
			?, ?, ?, 1)`, append([]any{op.ID}, args...)...); err != nil {
			return err
		}
		op.Version = 1
		return nil
	})
}

func (r operationRepo) Get(ctx context.Context, id uuid.UUID) (*operation.Operation, error) {
	var found []*operation.Operation
	if err := r.s.reader(ctx).query(ctx, scanOperations(&found), "SELECT "+operationCols+" FROM operations WHERE id = ?", id); err != nil {
		return nil, err
	}
	if len(found) == 0 {
		return nil, notFound("operation", id.String())
	}
	return found[0], nil
}

// List returns the operations newest first (by id, a UUIDv7), paged by id.
func (r operationRepo) List(ctx context.Context, o operation.ListOptions) (operation.Page, error) {
	before, err := cursor.Decode(o.Cursor)
	if err != nil {
		return operation.Page{}, err
	}
	q := &listQuery{limit: cursor.Limit(o.Limit)}
	if before != uuid.Nil {
		q.add("id < ?", before)
	}
	if o.TargetID != uuid.Nil {
		q.add("target_id = ?", o.TargetID)
	}
	if o.Kind != "" {
		q.add("kind = ?", o.Kind)
	}
	if o.Status != "" {
		q.add("status = ?", o.Status)
	}
	if o.RequestID != "" {
		q.add("request_id = ?", o.RequestID)
	}
	where := ""
	if len(q.where) > 0 {
		where = " WHERE " + strings.Join(q.where, " AND ")
	}
	items := []*operation.Operation{}
	err = r.s.reader(ctx).query(ctx, scanOperations(&items), "SELECT "+operationCols+" FROM operations"+where+" ORDER BY id DESC LIMIT ?",
		append(q.args, q.limit+1)...)
	if err != nil {
		return operation.Page{}, err
	}
	items, next := trim(items, q.limit, func(op *operation.Operation) uuid.UUID { return op.ID })
	return operation.Page{Items: items, Next: next}, nil
}

// Update stores op when its Version is the stored one. RenewLeases does not change Version, so a copy read
// before a renewal may still be updated: for the same owner the later of the stored and the given lease is
// kept (and set in op), so a lease never moves backwards.
func (r operationRepo) Update(ctx context.Context, op *operation.Operation) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		var version int64
		var owner string
		var lease sql.NullInt64
		found := false
		err := c.query(ctx, func(rows *sql.Rows) error {
			found = true
			return rows.Scan(&version, &owner, &lease)
		}, "SELECT version, owner, lease_until FROM operations WHERE id = ?", op.ID)
		switch {
		case err != nil:
			return err
		case !found:
			return notFound("operation", op.ID.String())
		case version != op.Version:
			return conflict("operation", op.ID.String())
		}
		next := *op
		if stored := fromNanos(lease); owner == op.Owner && stored.After(op.LeaseUntil) {
			next.LeaseUntil = stored
		}
		args, err := operationArgs(&next)
		if err != nil {
			return err
		}
		n, err := c.execN(ctx, `UPDATE operations SET kind = ?, target_type = ?, target_id = ?, status = ?, progress = ?, requester = ?,
			request_id = ?, cancellable = ?, cancel_requested = ?, error = ?, result = ?, owner = ?, lease_until = ?, created_at = ?,
			started_at = ?, finished_at = ?, updated_at = ?, payload = ?, version = version + 1 WHERE id = ? AND version = ?`,
			append(args, op.ID, op.Version)...)
		if err != nil {
			return err
		}
		if n == 0 {
			return conflict("operation", op.ID.String())
		}
		op.LeaseUntil = next.LeaseUntil
		op.Version++
		return nil
	})
}

// RenewLeases extends the leases of owner's unfinished operations (without changing their Version) and
// returns the ids, in id order, of those whose cancellation was requested.
func (r operationRepo) RenewLeases(ctx context.Context, owner string, until time.Time) ([]uuid.UUID, error) {
	var cancel []uuid.UUID
	err := r.s.write(ctx, func(ctx context.Context, c conn) error {
		cancel = []uuid.UUID{}
		if _, err := c.exec(ctx, "UPDATE operations SET lease_until = ? WHERE owner = ? AND status IN "+liveStatuses, nanos(until), owner); err != nil {
			return err
		}
		return c.query(ctx, func(rows *sql.Rows) error {
			var id uuid.UUID
			err := rows.Scan(&id)
			cancel = append(cancel, id)
			return err
		}, "SELECT id FROM operations WHERE owner = ? AND status IN "+liveStatuses+" AND cancel_requested ORDER BY id", owner)
	})
	if err != nil {
		return nil, err
	}
	return cancel, nil
}

// Expired returns, oldest (smallest id) first, unfinished operations whose lease ended before now; an
// operation without a lease (zero LeaseUntil) has none that ends. limit is clamped like a page size.
func (r operationRepo) Expired(ctx context.Context, now time.Time, limit int) ([]*operation.Operation, error) {
	out := []*operation.Operation{}
	err := r.s.reader(ctx).query(ctx, scanOperations(&out), "SELECT "+operationCols+" FROM operations WHERE status IN "+liveStatuses+
		" AND lease_until < ? ORDER BY id LIMIT ?", nanos(now), cursor.Limit(limit))
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Prune deletes the operations in a final status whose FinishedAt is before before.
func (r operationRepo) Prune(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := r.s.write(ctx, func(ctx context.Context, c conn) error {
		var err error
		n, err = c.execN(ctx, "DELETE FROM operations WHERE status IN "+finalStatuses+" AND finished_at < ?", nanos(before))
		return err
	})
	return int(n), err
}
