// Package idem stores idempotency keys: the first request with a key records its fingerprint and, once it
// is done, its response; a retry with the same key and request gets that response again instead of doing
// the work twice, from any process, after any restart.
package idem

import (
	"context"
	"net/http"
	"time"
)

// State of a key.
const (
	StateRunning = "running"
	StateDone    = "done"
)

// Record is one idempotency key and what its first request did.
type Record struct {
	// Scope is the requester (token name) the key belongs to; keys of different requesters never meet.
	Scope string
	Key   string
	// Fingerprint identifies the request (method, path, body digest).
	Fingerprint string
	State       string
	// Owner is the process running the first request, which holds it until LeaseUntil; a running key
	// whose lease ended belongs to a process that died and may be taken over.
	Owner      string
	LeaseUntil time.Time
	// Status, Header and Body are the stored response (State done).
	Status    int
	Header    http.Header
	Body      []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Store persists idempotency records.
type Store interface {
	// Begin stores rec when no live record has its scope and key, and returns nil; otherwise it returns the
	// stored record and stores nothing. An expired record, or a running one whose lease ended before
	// rec.CreatedAt, is replaced.
	Begin(ctx context.Context, rec *Record) (existing *Record, err error)
	// Finish stores the response of a running record that owner holds.
	Finish(ctx context.Context, rec *Record) error
	// Abandon deletes a running record that owner holds (the request failed before doing anything, so
	// a retry may run it again).
	Abandon(ctx context.Context, scope, key, owner string) error
	// Renew extends to until the lease of a running record that owner holds, while its request runs.
	Renew(ctx context.Context, scope, key, owner string, until time.Time) error
	// Prune deletes records that expired before now and returns how many.
	Prune(ctx context.Context, now time.Time) (int, error)
}
