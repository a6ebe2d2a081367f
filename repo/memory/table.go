package memory

import (
	"context"

	"github.com/google/uuid"
)

// table is one aggregate's rows with the create/update/delete bookkeeping every aggregate shares: id
// uniqueness, the version compare-and-swap, copies in and out, undo records.
type table[T any] struct {
	entity  string
	rows    map[uuid.UUID]T
	id      func(T) uuid.UUID
	version func(T) *int64
	store   func(T) T // the copy kept (without read-only fields)
}

// get returns the stored row.
func (t *table[T]) get(id uuid.UUID) (T, error) {
	v, ok := t.rows[id]
	if !ok {
		var zero T
		return zero, notFound(t.entity, id)
	}
	return v, nil
}

// create stores v after check, with version 1.
func (t *table[T]) create(s *Store, ctx context.Context, v T, check func(T) error) error {
	unlock, onUndo := s.write(ctx)
	defer unlock()
	id := t.id(v)
	if _, dup := t.rows[id]; dup {
		return exists(t.entity, "id %s exists", id)
	}
	if err := check(v); err != nil {
		return err
	}
	*t.version(v) = 1
	put(t.rows, id, t.store(v), onUndo)
	return nil
}

// update stores v if its version is the stored one and check passes, and bumps v's version.
func (t *table[T]) update(s *Store, ctx context.Context, v T, check func(cur, next T) error) error {
	unlock, onUndo := s.write(ctx)
	defer unlock()
	id := t.id(v)
	cur, err := t.get(id)
	if err != nil {
		return err
	}
	if *t.version(cur) != *t.version(v) {
		return conflict(t.entity, id)
	}
	if err := check(cur, v); err != nil {
		return err
	}
	*t.version(v)++
	put(t.rows, id, t.store(v), onUndo)
	return nil
}

// delete removes id if check passes.
func (t *table[T]) delete(s *Store, ctx context.Context, id uuid.UUID, check func() error) error {
	unlock, onUndo := s.write(ctx)
	defer unlock()
	if _, err := t.get(id); err != nil {
		return err
	}
	if err := check(); err != nil {
		return err
	}
	remove(t.rows, id, onUndo)
	return nil
}
