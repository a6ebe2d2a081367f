package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"math"
	"net"
	"time"

	"github.com/openvair/openvair/internal/cursor"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/event"
	"github.com/uptrace/bun/driver/pgdriver"
)

// eventLog is the change log. Ids are handed out in commit order: on PostgreSQL an appender takes an
// advisory lock held until its unit of work ends, then draws the id from events_id_seq (a sequence, not a
// counter row: updating a row another unit of work changed since this one's snapshot would fail every
// concurrent appender at SERIALIZABLE); on SQLite units of work are serialized anyway and the id is the
// incremented event_marks.last.
type eventLog struct{ s *Store }

// Names used by the change log on PostgreSQL.
const (
	// eventsLock is the advisory lock appenders hold until they commit or roll back.
	eventsLock = 0x6f76616972657674 // "ovairevt"
	// eventsChannel is the LISTEN/NOTIFY channel that wakes followers after a commit.
	eventsChannel = "openvair_events"
)

const eventCols = "id, type, resource, resource_id, version, operation_id, request_id, requester, time, data"

// Append stores e in the unit of work of ctx (or a new one) and sets e.ID.
func (l eventLog) Append(ctx context.Context, e *event.Event) error {
	data := sql.NullString{String: string(e.Data), Valid: e.Data != nil}
	return l.s.write(ctx, func(ctx context.Context, c conn) error {
		var id int64
		scanID := func(rows *sql.Rows) error { return rows.Scan(&id) }
		if l.s.dialect == Postgres {
			if _, err := c.exec(ctx, "SELECT pg_advisory_xact_lock(?)", int64(eventsLock)); err != nil {
				return err
			}
			if err := c.query(ctx, scanID, "SELECT nextval('events_id_seq')"); err != nil {
				return err
			}
		} else if err := c.query(ctx, scanID, "UPDATE event_marks SET last = last + 1 WHERE id = 1 RETURNING last"); err != nil {
			return err
		}
		if _, err := c.exec(ctx, "INSERT INTO events ("+eventCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", id, e.Type, e.Resource,
			e.ResourceID, e.Version, e.OperationID, e.RequestID, e.Requester, nanos(e.Time), data); err != nil {
			return err
		}
		if l.s.dialect == Postgres {
			if _, err := c.exec(ctx, "SELECT pg_notify(?, '')", eventsChannel); err != nil {
				return err
			}
		}
		e.ID = id
		return nil
	})
}

// After returns up to limit (clamped like a page size: 100 when not positive, at most 1000) events after
// the id after, in id order.
func (l eventLog) After(ctx context.Context, after int64, limit int) ([]event.Event, error) {
	out := []event.Event{}
	err := l.s.reader(ctx).query(ctx, func(rows *sql.Rows) error {
		var e event.Event
		var t sql.NullInt64
		var data sql.NullString
		if err := rows.Scan(&e.ID, &e.Type, &e.Resource, &e.ResourceID, &e.Version, &e.OperationID, &e.RequestID, &e.Requester,
			&t, &data); err != nil {
			return err
		}
		e.Time = fromNanos(t)
		if data.Valid {
			e.Data = []byte(data.String)
		}
		out = append(out, e)
		return nil
	}, "SELECT "+eventCols+" FROM events WHERE id > ? ORDER BY id LIMIT ?", after, cursor.Limit(limit))
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Last returns the greatest id committed (or pruned) and the pruned mark.
func (l eventLog) Last(ctx context.Context) (last, pruned int64, err error) {
	query := "SELECT last, pruned FROM event_marks WHERE id = 1"
	if l.s.dialect == Postgres {
		query = "SELECT GREATEST(COALESCE((SELECT max(id) FROM events), 0), pruned), pruned FROM event_marks WHERE id = 1"
	}
	err = l.s.reader(ctx).query(ctx, func(rows *sql.Rows) error { return rows.Scan(&last, &pruned) }, query)
	return last, pruned, err
}

// Prune deletes the oldest events up to the first one whose Time is not before before: the log stays a
// contiguous suffix (an old event committed after a newer one waits for it), so the pruned mark says
// exactly what is gone.
func (l eventLog) Prune(ctx context.Context, before time.Time) (int64, error) {
	cutoff := int64(math.MinInt64) // nothing is older than the zero time
	if !before.IsZero() {
		cutoff = before.UnixNano()
	}
	var pruned int64
	err := l.s.write(ctx, func(ctx context.Context, c conn) error {
		var mark int64
		err := c.query(ctx, func(rows *sql.Rows) error { return rows.Scan(&pruned, &mark) }, `SELECT pruned,
			(SELECT COALESCE(max(id), 0) FROM events WHERE id < COALESCE((SELECT min(id) FROM events WHERE time >= ?), ?))
			FROM event_marks WHERE id = 1`, cutoff, int64(math.MaxInt64))
		if err != nil || mark <= pruned {
			return err
		}
		if _, err := c.exec(ctx, "DELETE FROM events WHERE id <= ?", mark); err != nil {
			return err
		}
		if _, err := c.exec(ctx, "UPDATE event_marks SET pruned = ? WHERE id = 1", mark); err != nil {
			return err
		}
		pruned = mark
		return nil
	})
	return pruned, err
}

var _ event.Notifier = (*Store)(nil)

// listenWait bounds one wait for a notification, and listenBackoff the pause after a failure.
const (
	listenWait    = time.Minute
	listenBackoff = 5 * time.Second
)

// Listen follows the change log of a PostgreSQL store through LISTEN/NOTIFY on its own connection: the
// channel receives a value (coalesced: it holds at most one) soon after any process commits events, and
// also after the connection was lost and is being restored, since notifications may have been missed. It
// reconnects until ctx ends, then closes the channel. On SQLite it returns an error wrapping
// errkind.Unsupported: the file has no other writers to hear from.
func (s *Store) Listen(ctx context.Context) (<-chan struct{}, error) {
	if s.dialect != Postgres {
		return nil, errkind.New(errkind.Unsupported, "events", "", "only a PostgreSQL store notifies other processes of events")
	}
	ln := pgdriver.NewListener(s.db)
	if err := ln.Listen(ctx, eventsChannel); err != nil {
		_ = ln.Close()
		return nil, s.mapErr(ctx, err)
	}
	out := make(chan struct{}, 1)
	wake := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	context.AfterFunc(ctx, func() { _ = ln.Close() }) // ends a wait in progress
	go func() {
		defer close(out)
		for failures := 0; ctx.Err() == nil; {
			_, _, err := ln.ReceiveTimeout(ctx, listenWait)
			var ne net.Error
			switch {
			case ctx.Err() != nil:
			case err == nil:
				failures = 0
				wake()
			case errors.As(err, &ne) && ne.Timeout():
			default: // the listener reconnects (and listens again) on the next wait
				wake()
				failures++
				select {
				case <-ctx.Done():
				case <-time.After(min(listenBackoff, 50*time.Millisecond<<min(failures, 10))):
				}
			}
		}
	}()
	return out, nil
}
