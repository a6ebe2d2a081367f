// Package fsm holds the one mechanism every openvair status machine uses: an explicit table of legal
// transitions, checked before any status is written.
package fsm

import (
	"fmt"

	"github.com/openvair/openvair/internal/errkind"
)

// Table lists, for each status, the statuses it may move to.
type Table[S ~string] map[S][]S

// Allows reports whether from may move to to.
func (t Table[S]) Allows(from, to S) bool {
	for _, s := range t[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Check returns a WrongState error naming the entity when from may not move to to.
func (t Table[S]) Check(entity, id string, from, to S) error {
	if t.Allows(from, to) {
		return nil
	}
	return errkind.New(errkind.WrongState, entity, id, "cannot go from status %q to %q", from, to)
}

// Move changes *status to to when the table allows it. The reason is kept in *reason when to is the error
// status errStatus, and cleared otherwise. A refused move changes nothing.
func (t Table[S]) Move(entity, id string, status *S, reason *string, to, errStatus S, why string) error {
	if err := t.Check(entity, id, *status, to); err != nil {
		return err
	}
	*status, *reason = to, ""
	if to == errStatus {
		*reason = why
	}
	return nil
}

// Require returns a WrongState error when status is not one of allowed, naming the operation.
func Require[S ~string](entity, id, op string, status S, allowed ...S) error {
	for _, a := range allowed {
		if status == a {
			return nil
		}
	}
	return errkind.New(errkind.WrongState, entity, id, "cannot %s while status is %q (allowed: %v)", op, status, fmt.Sprint(allowed))
}
