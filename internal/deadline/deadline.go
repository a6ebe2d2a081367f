// Package deadline makes sure every call to the outside world has a deadline.
package deadline

import (
	"context"
	"time"
)

// Ensure returns ctx unchanged when it already has a deadline sooner than d from now, and a context with a
// deadline d from now otherwise.
func Ensure(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
