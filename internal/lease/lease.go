// Package lease elects one process among those sharing a store to do a named job (the monitors): the
// holder renews a lease in the database; when it stops renewing, another process takes over once the
// lease has run out.
package lease

import (
	"context"
	"time"
)

// Store persists named leases.
type Store interface {
	// Acquire gives name to holder until until when nobody holds it, holder already does, or the holder's
	// lease ended before now; it reports whether holder now holds it.
	Acquire(ctx context.Context, name, holder string, now, until time.Time) (bool, error)
	// Release gives name up when holder holds it.
	Release(ctx context.Context, name, holder string) error
}
