// Package event is the SDK's change log: every state change of a storage, volume, image, VM or operation
// appends an Event in the same unit of work as the change (a transactional outbox), with a totally ordered
// id. Subscribers read the log from any id onwards and then follow it live.
package event

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Event is one change.
type Event struct {
	// ID orders events: a subscriber that has seen id n has seen every event with a smaller id that will
	// ever be visible (ids are handed out in commit order).
	ID int64 `json:"id"`
	// Type is "<resource>.<created|updated|deleted>".
	Type string `json:"type"`
	// Resource is the kind of entity (storage, volume, image, vm, operation) and ResourceID its id.
	Resource   string    `json:"resource"`
	ResourceID uuid.UUID `json:"resource_id"`
	// Version is the entity's version after the change (its last version for a delete).
	Version int64 `json:"version"`
	// OperationID is the operation that made the change (uuid.Nil for monitors and embedded calls made
	// outside an operation); RequestID and Requester come from the request that started it.
	OperationID uuid.UUID `json:"operation_id"`
	RequestID   string    `json:"request_id,omitempty"`
	Requester   string    `json:"requester,omitempty"`
	Time        time.Time `json:"time"`
	// Data is the whole entity after the change, as the SDK encodes it to JSON; null for a delete.
	Data json.RawMessage `json:"data"`
}

// Filter selects events; zero fields match everything.
type Filter struct {
	Resource   string
	ResourceID uuid.UUID
	// Types, when not empty, are the event types wanted.
	Types []string
}

// Match reports whether e passes f.
func (f Filter) Match(e *Event) bool {
	if f.Resource != "" && f.Resource != e.Resource {
		return false
	}
	if f.ResourceID != uuid.Nil && f.ResourceID != e.ResourceID {
		return false
	}
	if len(f.Types) == 0 {
		return true
	}
	for _, t := range f.Types {
		if t == e.Type {
			return true
		}
	}
	return false
}

// Log persists events.
type Log interface {
	// Append stores e inside the unit of work of ctx and sets e.ID. Ids are handed out in commit order: an
	// event that commits later never has a smaller id than one already visible.
	Append(ctx context.Context, e *Event) error
	// After returns up to limit events with ids greater than after, in id order.
	After(ctx context.Context, after int64, limit int) ([]Event, error)
	// Last returns the greatest event id ever handed out (0 for none), and the greatest id removed by Prune
	// (events at or below it are gone).
	Last(ctx context.Context) (last, pruned int64, err error)
	// Prune deletes the events older than before and returns the new pruned mark.
	Prune(ctx context.Context, before time.Time) (pruned int64, err error)
}

// Notifier wakes followers of a Log shared by several processes when another process appended events
// (PostgreSQL LISTEN/NOTIFY). A Log that is not shared does not implement it.
type Notifier interface {
	// Listen returns a channel that receives a value soon after events are committed by any process, until
	// ctx ends.
	Listen(ctx context.Context) (<-chan struct{}, error)
}
