// Package revert undoes the completed steps of a multi-step operation when a later step fails, in the
// manner of Incus' reverter: add an undo function after each step, Success() when all steps are done, and
// defer Fail() to run the undos in reverse order otherwise.
package revert

import (
	"context"
	"time"
)

// UndoTimeout bounds the undo functions of one Fail.
const UndoTimeout = time.Minute

// Reverter collects undo functions.
type Reverter struct {
	undo []func(ctx context.Context)
	done bool
}

// Add records an undo function for a completed step.
func (r *Reverter) Add(f func(ctx context.Context)) { r.undo = append(r.undo, f) }

// Success keeps every completed step: later calls to Fail do nothing.
func (r *Reverter) Success() { r.done = true }

// Fail runs the recorded undo functions in reverse order unless Success was called. The undos run with a
// context detached from the caller's cancellation (bounded by UndoTimeout), so a cancelled request is still cleaned up.
func (r *Reverter) Fail(ctx context.Context) {
	if r.done {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), UndoTimeout)
	defer cancel()
	for i := len(r.undo) - 1; i >= 0; i-- {
		r.undo[i](ctx)
	}
	r.done = true
}
