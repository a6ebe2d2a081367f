// Package operation records the work the SDK does: every mutating call is an Operation, stored in the same
// database as the data, with a status, progress, the requester, the outcome, and an owner — the process that
// runs it — holding a lease it renews. Recovery touches only operations whose owner's lease has expired, so
// one process never undoes the live work of another.
package operation

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Status is where an operation is in its life.
type Status string

// Operation statuses. Pending work waits for a worker; running work has an owner; the other three are final.
const (
	StatusPending   Status = "pending"
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Final reports whether s is a final status.
func (s Status) Final() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCancelled
}

// Progress is how far an operation is: bytes for copies and uploads, steps for multi-step work.
type Progress struct {
	BytesDone  int64  `json:"bytes_done,omitempty"`
	BytesTotal int64  `json:"bytes_total,omitempty"`
	Step       int    `json:"step,omitempty"`
	Steps      int    `json:"steps,omitempty"`
	Message    string `json:"message,omitempty"`
}

// Problem is why an operation failed: the SDK error kind (as errkind names it: "not_found", "in_use", ...)
// and its message. The reference server renders it as an RFC 9457 problem.
type Problem struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// Result names the entity an operation produced or changed, at the version it left it.
type Result struct {
	ID      uuid.UUID `json:"id"`
	Version int64     `json:"version"`
}

// Operation is one piece of work of the SDK.
type Operation struct {
	ID uuid.UUID `json:"id"`
	// Kind is "<resource>.<verb>": volume.create, image.upload, vm.stop, ...
	Kind string `json:"kind"`
	// TargetType is the kind of entity the operation acts on (storage, volume, image, vm) and TargetID its
	// id; TargetID is uuid.Nil until a create has chosen it.
	TargetType string    `json:"target_type"`
	TargetID   uuid.UUID `json:"target_id"`
	Status     Status    `json:"status"`
	Progress   Progress  `json:"progress"`
	// Requester is the token name of the request that started the operation; RequestID its X-Request-Id.
	Requester string `json:"requester,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// Cancellable says whether Cancel can stop the operation once it runs (a pending one can always be
	// cancelled); CancelRequested that somebody asked.
	Cancellable     bool `json:"cancellable"`
	CancelRequested bool `json:"cancel_requested"`
	// Error is set when Status is failed or cancelled; Result when it succeeded.
	Error  *Problem `json:"error,omitempty"`
	Result *Result  `json:"result,omitempty"`
	// Owner is the process running the operation, which renews its lease until LeaseUntil.
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until"`

	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	UpdatedAt  time.Time  `json:"updated_at"`
	// Version increases with every update; repositories refuse an update based on a stale version.
	Version int64 `json:"version"`
	// Payload is the request of work that a worker anywhere may run (an asynchronous call); nil for work
	// bound to the process that started it.
	Payload json.RawMessage `json:"-"`
}

// ListOptions filter and page a list of operations (newest first).
type ListOptions struct {
	TargetID  uuid.UUID
	Kind      string
	Status    Status
	RequestID string
	// Cursor continues a previous page; Limit caps the page (default 100, at most 1000).
	Cursor string
	Limit  int
}

// Page is one page of operations; Next continues it ("" on the last page).
type Page struct {
	Items []*Operation
	Next  string
}

// Repository persists operations. Update is a compare-and-swap on Version (errkind.Conflict when stale) and
// bumps the Version of the value passed.
type Repository interface {
	Create(ctx context.Context, op *Operation) error
	Get(ctx context.Context, id uuid.UUID) (*Operation, error)
	List(ctx context.Context, opts ListOptions) (Page, error)
	Update(ctx context.Context, op *Operation) error
	// RenewLeases extends to until the lease of every pending or running operation owner holds, and
	// returns the ids of those whose cancellation was requested.
	RenewLeases(ctx context.Context, owner string, until time.Time) (cancel []uuid.UUID, err error)
	// Expired returns up to limit pending or running operations whose lease ended before now, oldest first.
	Expired(ctx context.Context, now time.Time, limit int) ([]*Operation, error)
	// Prune deletes final operations that finished before before, and returns how many.
	Prune(ctx context.Context, before time.Time) (int, error)
}
