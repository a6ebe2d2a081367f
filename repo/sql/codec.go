package sqlstore

import (
	"database/sql"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/cursor"
)

// nanos stores a time as Unix nanoseconds (lossless, unlike PostgreSQL timestamps), NULL for the zero time.
func nanos(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

// fromNanos is the inverse of nanos; times come back in UTC.
func fromNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// jsonText encodes v as a JSON text column, NULL for a nil pointer.
func jsonText[T any](v *T) (sql.NullString, error) {
	if v == nil {
		return sql.NullString{}, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return sql.NullString{}, err
	}
	return sql.NullString{String: string(b), Valid: true}, nil
}

// fromJSONText decodes a JSON text column, nil for NULL.
func fromJSONText[T any](s sql.NullString) (*T, error) {
	if !s.Valid {
		return nil, nil
	}
	v := new(T)
	if err := json.Unmarshal([]byte(s.String), v); err != nil {
		return nil, err
	}
	return v, nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// listQuery builds "WHERE id > cursor AND filters ... ORDER BY id LIMIT n+1" for keyset pagination.
type listQuery struct {
	where []string
	args  []any
	limit int
}

// newListQuery starts a page query after the cursor; limit is the page size (one more row is fetched to
// know whether a next page exists).
func newListQuery(cur string, limit int, idCol string) (*listQuery, error) {
	after, err := cursor.Decode(cur)
	if err != nil {
		return nil, err
	}
	q := &listQuery{limit: cursor.Limit(limit)}
	q.add(idCol+" > ?", after)
	return q, nil
}

// onStorage adds the filters lists of objects on storages share; zero values filter nothing.
func (q *listQuery) onStorage(storageID uuid.UUID, status, name string) {
	if storageID != uuid.Nil {
		q.add("storage_id = ?", storageID)
	}
	if status != "" {
		q.add("status = ?", status)
	}
	if name != "" {
		q.add("name = ?", name)
	}
}

func (q *listQuery) add(cond string, args ...any) {
	q.where = append(q.where, cond)
	q.args = append(q.args, args...)
}

// tail is the WHERE, ORDER BY and LIMIT clauses; args are its arguments.
func (q *listQuery) tail(idCol string) (string, []any) {
	return " WHERE " + strings.Join(q.where, " AND ") + " ORDER BY " + idCol + " LIMIT ?", append(q.args, q.limit+1)
}

// trim cuts a fetched page to the limit and returns the next cursor ("" on the last page).
func trim[T any](items []T, limit int, id func(T) uuid.UUID) ([]T, string) {
	if len(items) <= limit {
		return items, ""
	}
	items = items[:limit]
	return items, cursor.Encode(id(items[limit-1]))
}
