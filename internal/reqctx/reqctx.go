// Package reqctx carries who asked for a change and why through a context: the request id, the requester
// (a token name), the operation the work belongs to, and the version the caller expects an entity to have.
// The operation runner, the event outbox and the reference server read and write these values; nothing
// else does.
package reqctx

import (
	"context"
	"sync"

	"github.com/google/uuid"
)

// Meta names the origin of a call.
type Meta struct {
	// RequestID is the X-Request-Id of the HTTP request, or empty.
	RequestID string
	// Requester is the name of the token that made the request, or empty for an embedded caller.
	Requester string
}

type (
	metaKey   struct{}
	opKey     struct{}
	expectKey struct{}
	opSinkKey struct{}
)

// WithMeta returns ctx carrying m.
func WithMeta(ctx context.Context, m Meta) context.Context {
	return context.WithValue(ctx, metaKey{}, m)
}

// MetaOf returns the Meta ctx carries (zero when none).
func MetaOf(ctx context.Context) Meta {
	m, _ := ctx.Value(metaKey{}).(Meta)
	return m
}

// WithOperation returns ctx running as part of operation id: nested SDK calls join it instead of starting
// their own, and events written under ctx name it.
func WithOperation(ctx context.Context, id uuid.UUID) context.Context {
	return context.WithValue(ctx, opKey{}, id)
}

// Operation returns the operation ctx runs under (uuid.Nil when none).
func Operation(ctx context.Context) uuid.UUID {
	id, _ := ctx.Value(opKey{}).(uuid.UUID)
	return id
}

// Expectation is a precondition on one entity's version (HTTP If-Match, or the SDK's expected-version
// option). It is checked once, at the first write to that entity under the context.
type Expectation struct {
	ID      uuid.UUID
	Version int64

	mu      sync.Mutex
	checked bool
}

// WithExpectedVersion returns ctx whose first write to entity id must find it at version.
func WithExpectedVersion(ctx context.Context, id uuid.UUID, version int64) context.Context {
	return context.WithValue(ctx, expectKey{}, &Expectation{ID: id, Version: version})
}

// Expected returns the precondition on entity id that ctx carries and has not been checked yet, and marks
// it checked. ok is false when there is none. A unit of work that checked it and then rolled back (to run
// again) gives it back with Unchecked.
func Expected(ctx context.Context, id uuid.UUID) (e *Expectation, ok bool) {
	e, _ = ctx.Value(expectKey{}).(*Expectation)
	if e == nil || e.ID != id {
		return nil, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.checked {
		return nil, false
	}
	e.checked = true
	return e, true
}

// Unchecked makes the precondition due again: the write that checked it was rolled back.
func (e *Expectation) Unchecked() {
	e.mu.Lock()
	e.checked = false
	e.mu.Unlock()
}

// ExpectedVersion returns the precondition ctx carries, without consuming it.
func ExpectedVersion(ctx context.Context) (id uuid.UUID, version int64, ok bool) {
	e, _ := ctx.Value(expectKey{}).(*Expectation)
	if e == nil {
		return uuid.Nil, 0, false
	}
	return e.ID, e.Version, true
}

// OpSink receives the id of the first operation started under a context, so that an HTTP handler can
// name it in an Operation-Id header.
type OpSink struct {
	mu sync.Mutex
	id uuid.UUID
}

// WithOpSink returns ctx with a fresh sink, and the sink.
func WithOpSink(ctx context.Context) (context.Context, *OpSink) {
	s := &OpSink{}
	return context.WithValue(ctx, opSinkKey{}, s), s
}

// RecordOperation stores id in ctx's sink unless one is already there.
func RecordOperation(ctx context.Context, id uuid.UUID) {
	if s, _ := ctx.Value(opSinkKey{}).(*OpSink); s != nil {
		s.mu.Lock()
		if s.id == uuid.Nil {
			s.id = id
		}
		s.mu.Unlock()
	}
}

// ID returns the operation recorded (uuid.Nil when none).
func (s *OpSink) ID() uuid.UUID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}
