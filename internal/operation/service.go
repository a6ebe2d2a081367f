package operation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/reqctx"
)

// DefaultLease is how long an owner's claim on its operations lasts without renewal.
const DefaultLease = 30 * time.Second

// ErrCancelled is the cause of the context of an operation somebody cancelled.
var ErrCancelled = errors.New("operation cancelled")

// Transactor runs fn as one unit of work.
type Transactor interface {
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
}

// Executor runs operations submitted for asynchronous execution on some worker, which calls Service.Execute.
type Executor interface {
	// Enqueue schedules op, which is stored as pending inside the unit of work of ctx, so that the job
	// exists exactly when the operation does.
	Enqueue(ctx context.Context, op *Operation) error
}

// Handler runs the payload of an operation kind on a worker; ctx already carries the operation.
type Handler func(ctx context.Context, payload json.RawMessage) (*Result, error)

// Versioned is implemented by the entities operations return, so that the operation's result names them.
type Versioned interface {
	EntityID() uuid.UUID
	EntityVersion() int64
}

// Service records, runs, waits for and cancels operations. A nil *Service runs work without records, so
// services work unwired.
type Service struct {
	repo  Repository
	tx    Transactor
	exec  Executor
	owner string
	lease time.Duration
	log   *slog.Logger
	now   func() time.Time
	obs   Observer

	mu       sync.Mutex
	handlers map[string]Handler
	running  map[uuid.UUID]*runState
	// finished is closed (and replaced) whenever an operation of this process ends, waking local waiters.
	finished chan struct{}
}

type runState struct {
	cancel context.CancelCauseFunc
	done   chan struct{}

	mu       sync.Mutex
	progress Progress
	dirty    bool
}

// Config configures a Service.
type Config struct {
	// Owner names this process in the operations it runs (default: a fresh UUID).
	Owner string
	// Lease is how long the claim of this process on its operations lasts without renewal (default 30 s).
	Lease time.Duration
	// Executor runs asynchronous operations; nil runs them in a goroutine of this process.
	Executor Executor
	Logger   *slog.Logger
	// Observer, when set, watches every operation this process runs (metrics, traces).
	Observer Observer
}

// Observer watches the operations a Service runs, for metrics and traces.
type Observer interface {
	// StartOperation is called when op starts running in this process (in line, or on a worker). The work
	// runs under the returned context; end is called once with the final status and error when it ends.
	StartOperation(ctx context.Context, op *Operation) (_ context.Context, end func(status Status, err error))
}

// TracePropagator is an Observer that carries the caller's trace across a stored operation, so that the
// work a worker runs later (perhaps in another process) continues the trace of the request that asked for
// it: InjectTrace writes the caller's trace context into a carrier stored with the operation's payload, and
// ExtractTrace puts it back into the worker's context.
type TracePropagator interface {
	InjectTrace(ctx context.Context) map[string]string
	ExtractTrace(ctx context.Context, carrier map[string]string) context.Context
}

// NewService returns a Service over repo.
func NewService(repo Repository, tx Transactor, cfg Config) *Service {
	if cfg.Owner == "" {
		cfg.Owner = uuid.NewString()
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{repo: repo, tx: tx, owner: cfg.Owner, lease: cfg.Lease, log: cfg.Logger, now: time.Now,
		handlers: map[string]Handler{}, running: map[uuid.UUID]*runState{}, finished: make(chan struct{})}
	s.exec, s.obs = cfg.Executor, cfg.Observer
	if s.exec == nil {
		s.exec = goroutineExecutor{s}
	}
	return s
}

// SetExecutor replaces the executor of asynchronous operations (before any is submitted).
func (s *Service) SetExecutor(e Executor) { s.exec = e }

// Owner returns the name of this process in operation records.
func (s *Service) Owner() string { return s.owner }

// Lease returns the lease length.
func (s *Service) Lease() time.Duration { return s.lease }

// Register makes kind runnable on workers: fn receives the decoded payload.
func Register[P any, T any](s *Service, kind string, fn func(ctx context.Context, p P) (T, error)) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[kind] = func(ctx context.Context, raw json.RawMessage) (*Result, error) {
		var p P
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, errkind.Wrap(errkind.Invalid, err, "operation", reqctx.Operation(ctx).String(), "undecodable %s payload", kind)
		}
		out, err := fn(ctx, p)
		return resultOf(out), err
	}
}

// Spec describes an operation about to start.
type Spec struct {
	Kind       string
	TargetType string
	// TargetID is the entity acted on; uuid.Nil for a create (SetTarget names it once chosen).
	TargetID uuid.UUID
	// Cancellable says whether a running operation of this kind stops when cancelled.
	Cancellable bool
	// Payload is the request; when the caller asked for asynchronous execution it is stored and handed to
	// the kind's registered handler on a worker. Nil makes the operation bound to this process.
	Payload any
}

// Accepted is returned instead of a result by a call made under Async: the operation was stored and will
// run on a worker.
type Accepted struct{ Op *Operation }

// Error implements error.
func (a *Accepted) Error() string {
	return fmt.Sprintf("operation %s (%s) accepted", a.Op.ID, a.Op.Kind)
}

type (
	asyncKey struct{}
	execKey  struct{}
)

// execMark marks the context of a worker executing a stored operation: the first Do under it is that
// operation.
type execMark struct{ claimed atomic.Bool }

// claimExecution reports whether ctx is a worker's and its operation has not been claimed by a Do yet.
func claimExecution(ctx context.Context) bool {
	m, _ := ctx.Value(execKey{}).(*execMark)
	return m != nil && m.claimed.CompareAndSwap(false, true)
}

// Async runs call with a context asking for asynchronous execution and returns the operation it started.
// A call that cannot run asynchronously (work bound to this process) runs to its end and returns its
// finished operation.
func Async(ctx context.Context, s *Service, call func(ctx context.Context) error) (*Operation, error) {
	ctx, sink := reqctx.WithOpSink(WithAsync(ctx))
	err := call(ctx)
	var acc *Accepted
	if errors.As(err, &acc) {
		return acc.Op, nil
	}
	if id := sink.ID(); id != uuid.Nil && s != nil {
		op, gerr := s.Get(context.WithoutCancel(ctx), id)
		if gerr == nil {
			return op, nil
		}
	}
	return nil, err
}

// WithAsync returns ctx asking the SDK calls made with it to run asynchronously: a call whose work can
// run on any worker returns *Accepted with its pending operation instead of its result.
func WithAsync(ctx context.Context) context.Context { return context.WithValue(ctx, asyncKey{}, true) }

// WantsAsync reports whether ctx asks for asynchronous execution (see Async).
func WantsAsync(ctx context.Context) bool { b, _ := ctx.Value(asyncKey{}).(bool); return b }

// Do runs fn as the operation spec: it records the operation, runs fn under it and records the outcome.
// Inside another operation (a VM create making its volumes) it records a child operation, run in line with
// the same requester. Under Async, when spec has a payload, Do stores the operation as pending, enqueues it
// and returns *Accepted. A worker executing a stored operation calls the same method, whose Do then runs fn
// under that operation.
func Do[T any](ctx context.Context, s *Service, spec Spec, fn func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	if s == nil || claimExecution(ctx) {
		return fn(ctx)
	}
	if WantsAsync(ctx) && spec.Payload != nil && reqctx.Operation(ctx) == uuid.Nil {
		op, err := s.submit(ctx, spec)
		if err != nil {
			return zero, err
		}
		return zero, &Accepted{Op: op}
	}
	op, err := s.start(ctx, spec)
	if err != nil {
		return zero, err
	}
	var out T
	_, err = s.run(ctx, op, func(ctx context.Context) (*Result, error) {
		var err error
		out, err = fn(ctx)
		return resultOf(out), err
	})
	if err != nil {
		return zero, err
	}
	return out, nil
}

func resultOf(v any) *Result {
	if rv := reflect.ValueOf(v); !rv.IsValid() || (rv.Kind() == reflect.Pointer && rv.IsNil()) {
		return nil
	}
	if e, ok := v.(Versioned); ok {
		return &Result{ID: e.EntityID(), Version: e.EntityVersion()}
	}
	return nil
}

// newOp returns the record of an operation about to be stored.
func (s *Service) newOp(ctx context.Context, spec Spec, status Status) (*Operation, error) {
	now := s.now().UTC()
	m := reqctx.MetaOf(ctx)
	op := &Operation{ID: uuid.Must(uuid.NewV7()), Kind: spec.Kind, TargetType: spec.TargetType, TargetID: spec.TargetID,
		Status: status, Requester: m.Requester, RequestID: m.RequestID, Cancellable: spec.Cancellable,
		Owner: s.owner, LeaseUntil: now.Add(s.lease), CreatedAt: now, UpdatedAt: now}
	if status == StatusRunning {
		op.StartedAt = &now
	}
	if spec.Payload != nil {
		env := envelope{Args: spec.Payload}
		if id, v, ok := reqctx.ExpectedVersion(ctx); ok {
			env.Expect = &expectation{ID: id, Version: v}
		}
		if tp, ok := s.obs.(TracePropagator); ok {
			env.Trace = tp.InjectTrace(ctx)
		}
		raw, err := json.Marshal(env)
		if err != nil {
			return nil, fmt.Errorf("encode %s payload: %w", spec.Kind, err)
		}
		op.Payload = raw
	}
	return op, nil
}

// envelope is the stored payload of an asynchronous operation: the request, the caller's expected version
// (If-Match), which the worker checks as the caller would have, and the caller's trace context.
type envelope struct {
	Args   any               `json:"args"`
	Expect *expectation      `json:"expect,omitempty"`
	Trace  map[string]string `json:"trace,omitempty"`
}

type expectation struct {
	ID      uuid.UUID `json:"id"`
	Version int64     `json:"version"`
}

// storedEnvelope decodes an envelope, leaving the request raw for the kind's handler.
type storedEnvelope struct {
	Args   json.RawMessage   `json:"args"`
	Expect *expectation      `json:"expect,omitempty"`
	Trace  map[string]string `json:"trace,omitempty"`
}

// start records a running operation owned by this process.
func (s *Service) start(ctx context.Context, spec Spec) (*Operation, error) {
	op, err := s.newOp(ctx, spec, StatusRunning)
	if err != nil {
		return nil, err
	}
	op.Payload = nil // bound to this process
	if err := s.repo.Create(ctx, op); err != nil {
		return nil, fmt.Errorf("record operation %s: %w", spec.Kind, err)
	}
	reqctx.RecordOperation(ctx, op.ID)
	return op, nil
}

// submit records a pending operation and enqueues it in one unit of work.
func (s *Service) submit(ctx context.Context, spec Spec) (*Operation, error) {
	op, err := s.newOp(ctx, spec, StatusPending)
	if err != nil {
		return nil, err
	}
	err = s.tx.InTx(ctx, func(ctx context.Context) error {
		if err := s.repo.Create(ctx, op); err != nil {
			return err
		}
		return s.exec.Enqueue(ctx, op)
	})
	if err != nil {
		return nil, fmt.Errorf("submit operation %s: %w", spec.Kind, err)
	}
	reqctx.RecordOperation(ctx, op.ID)
	return op, nil
}

// run runs fn under the running operation op and records its outcome.
func (s *Service) run(ctx context.Context, op *Operation, fn func(ctx context.Context) (*Result, error)) (*Result, error) {
	// Work inside an operation is never asynchronous again: nested calls run in line, as child operations.
	ctx = context.WithValue(ctx, asyncKey{}, false)
	observed := func(Status, error) {}
	if s.obs != nil {
		ctx, observed = s.obs.StartOperation(ctx, op)
	}
	rctx, cancel := context.WithCancelCause(reqctx.WithOperation(ctx, op.ID))
	st := &runState{cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	s.running[op.ID] = st
	s.mu.Unlock()
	stopFlush := s.flushProgress(context.WithoutCancel(ctx), op.ID, st)
	res, err := runGuarded(rctx, fn)
	stopFlush()
	cancel(nil)
	if errors.Is(context.Cause(rctx), ErrCancelled) && err != nil {
		err = errkind.Wrap(errkind.WrongState, ErrCancelled, op.TargetType, op.TargetID.String(), "operation %s was cancelled", op.ID)
	}
	s.finish(context.WithoutCancel(ctx), op.ID, st, res, err)
	observed(statusOf(err), err)
	s.mu.Lock()
	delete(s.running, op.ID)
	close(s.finished)
	s.finished = make(chan struct{})
	s.mu.Unlock()
	close(st.done)
	return res, err
}

// runGuarded turns a panic of fn into an error, so the operation is recorded as failed.
func runGuarded(ctx context.Context, fn func(ctx context.Context) (*Result, error)) (res *Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("operation panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return fn(ctx)
}

// finish records the outcome of an operation this process ran.
func (s *Service) finish(ctx context.Context, id uuid.UUID, st *runState, res *Result, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	uerr := s.update(ctx, id, func(op *Operation) bool {
		now := s.now().UTC()
		op.FinishedAt = &now
		st.mu.Lock()
		op.Progress = st.progress
		st.mu.Unlock()
		switch {
		case err == nil:
			op.Status, op.Result = StatusSucceeded, res
			if op.Result == nil && op.TargetID != uuid.Nil {
				op.Result = &Result{ID: op.TargetID}
			}
		case errors.Is(err, ErrCancelled):
			op.Status, op.Error = StatusCancelled, ProblemOf(err)
		default:
			op.Status, op.Error = StatusFailed, ProblemOf(err)
		}
		return true
	})
	if uerr != nil {
		s.log.Error("operation: recording the outcome", "id", id, "err", uerr, "outcome", err)
	}
}

// statusOf is the final status of an operation whose work returned err.
func statusOf(err error) Status {
	switch {
	case err == nil:
		return StatusSucceeded
	case errors.Is(err, ErrCancelled):
		return StatusCancelled
	default:
		return StatusFailed
	}
}

// ProblemOf describes err as stored in an operation.
func ProblemOf(err error) *Problem {
	kind := errkind.Name(err)
	switch {
	case kind != "":
	case errors.Is(err, ErrCancelled), errors.Is(err, context.Canceled):
		kind = "cancelled"
	case errors.Is(err, context.DeadlineExceeded):
		kind = "timeout"
	default:
		kind = "internal"
	}
	return &Problem{Kind: kind, Message: err.Error()}
}

// update applies fn to the stored operation id and stores it when fn says it changed it, retrying on
// concurrent changes.
func (s *Service) update(ctx context.Context, id uuid.UUID, fn func(op *Operation) (changed bool)) error {
	for attempt := 0; ; attempt++ {
		err := s.tx.InTx(ctx, func(ctx context.Context) error {
			op, err := s.repo.Get(ctx, id)
			if err != nil {
				return err
			}
			if !fn(op) {
				return nil // nothing to store: no new version, no event
			}
			op.UpdatedAt = s.now().UTC()
			return s.repo.Update(ctx, op)
		})
		if !errors.Is(err, errkind.Conflict) || attempt == 20 {
			return err
		}
	}
}

// SetTarget names the entity the operation of ctx acts on, once a create has chosen its id. Call it in the
// unit of work that stores the entity, so that no entity exists without its operation naming it.
func (s *Service) SetTarget(ctx context.Context, id uuid.UUID) error {
	opID := reqctx.Operation(ctx)
	if s == nil || opID == uuid.Nil {
		return nil
	}
	op, err := s.repo.Get(ctx, opID)
	if err != nil {
		return err
	}
	if op.TargetID == id {
		return nil
	}
	op.TargetID, op.UpdatedAt = id, s.now().UTC()
	return s.repo.Update(ctx, op)
}
