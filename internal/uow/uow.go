// Package uow holds the two loops every openvair service runs over its repository: read-modify-write of one
// entity inside a unit of work, and a walk over every page of a list.
package uow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"iter"

	"github.com/google/uuid"
)

// Transactor runs fn as one unit of work.
type Transactor interface {
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
}

// ErrSkip, returned by the fn of Update, leaves the entity as it is: Update stores nothing and returns the
// entity as read, without error. Monitors use it when the entity changed since they looked.
var ErrSkip = errors.New("skip")

// Update reads the entity id, applies fn to it and stores it, all in one unit of work. fn receives the
// unit of work's context; when it returns an error nothing is stored and that error is returned (ErrSkip
// excepted, see there).
func Update[T any](ctx context.Context, tx Transactor, get func(context.Context, uuid.UUID) (T, error),
	put func(context.Context, T) error, id uuid.UUID, fn func(ctx context.Context, cur T) error) (T, error) {
	var out T
	err := tx.InTx(ctx, func(ctx context.Context) error {
		cur, err := get(ctx, id)
		if err != nil {
			return err
		}
		if err := fn(ctx, cur); errors.Is(err, ErrSkip) {
			out = cur
			return nil
		} else if err != nil {
			return err
		}
		if err := put(ctx, cur); err != nil {
			return err
		}
		out = cur
		return nil
	})
	return out, err
}

// All iterates over every item of a paged list; list returns one page after cursor and the next cursor
// ("" on the last page). A failed page is yielded as its error, and ends the iteration.
func All[T any](ctx context.Context, list func(ctx context.Context, cursor string) ([]T, string, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		cursor := ""
		for {
			items, next, err := list(ctx, cursor)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if next == "" {
				return
			}
			cursor = next
		}
	}
}

// ForEach calls fn for every item of seq and returns the first error.
func ForEach[T any](seq iter.Seq2[T, error], fn func(T)) error {
	for it, err := range seq {
		if err != nil {
			return err
		}
		fn(it)
	}
	return nil
}

// Unchanged runs change on cur and returns ErrSkip when it left cur as it was (compared through its JSON
// form), so that a monitor that finds nothing new stores nothing: no new version, no event.
func Unchanged(cur any, change func() error) error {
	before, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	if err := change(); err != nil {
		return err
	}
	after, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	if bytes.Equal(before, after) {
		return ErrSkip
	}
	return nil
}
