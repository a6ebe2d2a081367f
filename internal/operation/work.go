package operation

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/reqctx"
)

// Execute runs the pending operation id on this process: it claims it (pending to running, owned by this
// process), runs the kind's handler and records the outcome. An operation that is no longer pending (it was
// cancelled, or another worker claimed it) is left alone. Workers (River jobs, goroutines) call it; the
// error it returns is only about the claim, never about the work, which is recorded in the operation.
func (s *Service) Execute(ctx context.Context, id uuid.UUID) error {
	var op *Operation
	err := s.tx.InTx(ctx, func(ctx context.Context) error {
		var err error
		if op, err = s.repo.Get(ctx, id); err != nil {
			return err
		}
		if op.Status != StatusPending {
			op = nil
			return nil
		}
		now := s.now().UTC()
		op.Status, op.Owner, op.LeaseUntil, op.StartedAt, op.UpdatedAt = StatusRunning, s.owner, now.Add(s.lease), &now, now
		return s.repo.Update(ctx, op)
	})
	if errors.Is(err, errkind.NotFound) {
		return nil // its unit of work rolled back
	}
	if err != nil || op == nil {
		return err
	}
	s.mu.Lock()
	h := s.handlers[op.Kind]
	s.mu.Unlock()
	ctx = reqctx.WithMeta(ctx, reqctx.Meta{RequestID: op.RequestID, Requester: op.Requester})
	ctx = context.WithValue(ctx, execKey{}, &execMark{})
	var env storedEnvelope
	perr := json.Unmarshal(op.Payload, &env)
	if perr == nil && env.Expect != nil {
		ctx = reqctx.WithExpectedVersion(ctx, env.Expect.ID, env.Expect.Version)
	}
	if tp, ok := s.obs.(TracePropagator); ok && perr == nil && len(env.Trace) > 0 {
		ctx = tp.ExtractTrace(ctx, env.Trace)
	}
	_, _ = s.run(ctx, op, func(ctx context.Context) (*Result, error) {
		switch {
		case h == nil:
			return nil, errkind.New(errkind.Unsupported, "operation", op.ID.String(), "this process cannot run %s operations", op.Kind)
		case perr != nil:
			return nil, errkind.Wrap(errkind.Invalid, perr, "operation", op.ID.String(), "undecodable %s payload", op.Kind)
		}
		return h(ctx, env.Args)
	})
	return nil
}

// goroutineExecutor runs asynchronous operations in goroutines of this process, once the unit of work that
// stored them has ended (the claim waits for it).
type goroutineExecutor struct{ s *Service }

func (g goroutineExecutor) Enqueue(_ context.Context, op *Operation) error {
	id := op.ID
	go func() {
		// A fresh context: the submitter's carries its unit of work, which must not leak into the worker
		// (Execute takes the requester and request id from the operation).
		ctx := context.Background()
		for attempt := 0; attempt < 50; attempt++ {
			// The unit of work that stored the operation may not have committed yet.
			err := g.s.Execute(ctx, id)
			if err == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return nil
}

// Get returns an operation.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (*Operation, error) {
	op, err := s.repo.Get(ctx, id)
	if err == nil {
		s.overlayProgress(op)
	}
	return op, err
}

// List returns a page of operations, newest first.
func (s *Service) List(ctx context.Context, opts ListOptions) (Page, error) {
	if opts.Limit < 0 || opts.Limit > 1000 {
		return Page{}, errkind.New(errkind.Invalid, "operation", "", "limit must be between 0 and 1000")
	}
	if opts.Status != "" && !validStatus(opts.Status) {
		return Page{}, errkind.New(errkind.Invalid, "operation", "", "unknown status %q", opts.Status)
	}
	p, err := s.repo.List(ctx, opts)
	for _, op := range p.Items {
		s.overlayProgress(op)
	}
	return p, err
}

func validStatus(st Status) bool {
	switch st {
	case StatusPending, StatusRunning, StatusSucceeded, StatusFailed, StatusCancelled:
		return true
	}
	return false
}

// overlayProgress shows the latest progress of an operation this process runs, fresher than the stored one.
func (s *Service) overlayProgress(op *Operation) {
	s.mu.Lock()
	st := s.running[op.ID]
	s.mu.Unlock()
	if st != nil && !op.Status.Final() {
		st.mu.Lock()
		op.Progress = st.progress
		st.mu.Unlock()
	}
}

// Wait returns the operation once it is final, or when ctx ends (then with the operation as it is and the
// context's error wrapped in errkind.Timeout).
func (s *Service) Wait(ctx context.Context, id uuid.UUID) (*Operation, error) {
	delay := 10 * time.Millisecond
	for {
		s.mu.Lock()
		finished := s.finished // taken before reading, so an end in between is not missed
		s.mu.Unlock()
		op, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if op.Status.Final() {
			return op, nil
		}
		select {
		case <-ctx.Done():
			return op, errkind.Wrap(errkind.Timeout, ctx.Err(), "operation", id.String(), "operation still %s", op.Status)
		case <-finished: // an operation of this process ended: perhaps this one
		case <-time.After(delay): // another process may run it
			delay = min(2*delay, 250*time.Millisecond)
		}
	}
}

// Cancel cancels an operation: a pending one is cancelled at once; a running one that is cancellable stops
// (at once on this process, within a lease renewal interval on another). A running operation that cannot be
// cancelled gives errkind.WrongState; a final one is returned as it is.
func (s *Service) Cancel(ctx context.Context, id uuid.UUID) (*Operation, error) {
	var out *Operation
	var local bool
	err := s.tx.InTx(ctx, func(ctx context.Context) error {
		op, err := s.repo.Get(ctx, id)
		if err != nil {
			return err
		}
		out = op
		switch {
		case op.Status.Final():
			return nil
		case op.Status == StatusPending:
			now := s.now().UTC()
			op.Status, op.FinishedAt, op.UpdatedAt = StatusCancelled, &now, now
			op.Error = &Problem{Kind: "cancelled", Message: "cancelled before it started"}
		case !op.Cancellable:
			return errkind.New(errkind.WrongState, "operation", id.String(), "a running %s operation cannot be cancelled", op.Kind)
		default:
			op.CancelRequested, op.UpdatedAt = true, s.now().UTC()
			local = op.Owner == s.owner
		}
		return s.repo.Update(ctx, op)
	})
	if err != nil {
		return nil, err
	}
	if local {
		s.cancelLocal(id)
	}
	return out, nil
}

func (s *Service) cancelLocal(id uuid.UUID) {
	s.mu.Lock()
	st := s.running[id]
	s.mu.Unlock()
	if st != nil {
		st.cancel(ErrCancelled)
	}
}

// Progress records bytes done of total for the operation ctx runs under; it is stored at most twice a second
// and shown live by Get on this process.
func (s *Service) Progress(ctx context.Context, done, total int64) {
	s.setProgress(ctx, func(p *Progress) { p.BytesDone, p.BytesTotal = done, total })
}

// Step records step i of n with a message for the operation ctx runs under.
func (s *Service) Step(ctx context.Context, i, n int, msg string) {
	s.setProgress(ctx, func(p *Progress) { p.Step, p.Steps, p.Message = i, n, msg })
}

func (s *Service) setProgress(ctx context.Context, fn func(*Progress)) {
	if s == nil {
		return
	}
	id := reqctx.Operation(ctx)
	s.mu.Lock()
	st := s.running[id]
	s.mu.Unlock()
	if st == nil {
		return
	}
	st.mu.Lock()
	fn(&st.progress)
	st.dirty = true
	st.mu.Unlock()
}

// flushProgress stores the progress of a running operation while it changes; the returned func stops it.
func (s *Service) flushProgress(ctx context.Context, id uuid.UUID, st *runState) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			st.mu.Lock()
			p, dirty := st.progress, st.dirty
			st.dirty = false
			st.mu.Unlock()
			if !dirty {
				continue
			}
			uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := s.update(uctx, id, func(op *Operation) bool { op.Progress = p; return true }); err != nil {
				s.log.Warn("operation: storing progress", "id", id, "err", err)
			}
			cancel()
		}
	}()
	return func() { close(stop); <-done }
}

// Renew extends the lease of every operation this process owns and stops those whose cancellation another
// process requested. Keep calls Renew often enough.
func (s *Service) Renew(ctx context.Context) error {
	cancel, err := s.repo.RenewLeases(ctx, s.owner, s.now().UTC().Add(s.lease))
	for _, id := range cancel {
		s.cancelLocal(id)
	}
	return err
}

// Keep renews this process's leases every tenth of the lease (at least every 5 s) until ctx ends.
func (s *Service) Keep(ctx context.Context) {
	every := min(max(s.lease/10, 100*time.Millisecond), 5*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, every*3)
		if err := s.Renew(rctx); err != nil && ctx.Err() == nil {
			s.log.Warn("operation: renewing leases", "err", err)
		}
		cancel()
	}
}

// Live reports whether an operation that has not ended, and whose owner still holds its lease, acts on
// target. Recovery leaves the entities of live operations alone. Pending operations with a payload are live
// while they wait for a worker: their job survives their creator.
func (s *Service) Live(ctx context.Context, target uuid.UUID) (bool, error) {
	if s == nil {
		return false, nil
	}
	now := s.now().UTC()
	for _, st := range []Status{StatusRunning, StatusPending} {
		p, err := s.repo.List(ctx, ListOptions{TargetID: target, Status: st, Limit: 1000})
		if err != nil {
			return false, err
		}
		for _, op := range p.Items {
			if op.LeaseUntil.After(now) || (op.Status == StatusPending && op.Payload != nil) {
				return true, nil
			}
		}
	}
	return false, nil
}

// FailOrphans fails the operations this owner left running in an earlier life (the process restarted with
// the same identity: nothing of them runs any more), without waiting for their lease to run out. Pending
// operations waiting for a worker are left to the queue.
func (s *Service) FailOrphans(ctx context.Context) error {
	// Every unfinished operation has a lease ending before a century from now.
	return s.failWhere(ctx, s.now().UTC().Add(100*365*24*time.Hour), func(op *Operation, _ time.Time) bool {
		return op.Owner == s.owner && op.Status == StatusRunning
	}, func(*Operation) string { return "the process running it stopped (it was restarted)" })
}

// FailExpired fails every operation whose owner stopped renewing its lease (the process died), so that the
// entities they left in a transitional status are recovered. Pending operations waiting for a worker are
// left to the queue.
func (s *Service) FailExpired(ctx context.Context) error {
	return s.failWhere(ctx, s.now().UTC(), func(op *Operation, now time.Time) bool {
		return !(op.Status == StatusPending && op.Payload != nil) && !op.LeaseUntil.After(now)
	}, func(op *Operation) string {
		return "the process running it (" + op.Owner + ") stopped renewing its lease"
	})
}

// failWhere fails, with the reason why gives, the unfinished operations whose lease ends before before and
// that pick selects (checked again on the stored operation, which another process may have renewed or
// finished meanwhile).
func (s *Service) failWhere(ctx context.Context, before time.Time, pick func(op *Operation, now time.Time) bool,
	why func(op *Operation) string) error {
	if s == nil {
		return nil
	}
	ops, err := s.repo.Expired(ctx, before, 1000)
	if err != nil {
		return err
	}
	for _, op := range ops {
		if !pick(op, s.now().UTC()) {
			continue
		}
		failed := false
		err := s.update(ctx, op.ID, func(cur *Operation) bool {
			now := s.now().UTC()
			if cur.Status.Final() || !pick(cur, now) {
				return false
			}
			cur.Status, cur.FinishedAt = StatusFailed, &now
			cur.Error = &Problem{Kind: "unavailable", Message: why(cur)}
			failed = true
			return true
		})
		if err != nil {
			return err
		}
		if failed {
			s.log.Warn("operation: failed, its owner stopped", "id", op.ID, "kind", op.Kind, "owner", op.Owner, "reason", why(op))
		}
	}
	return nil
}

// Prune deletes operations that finished before before.
func (s *Service) Prune(ctx context.Context, before time.Time) (int, error) {
	return s.repo.Prune(ctx, before)
}

// Busy reports whether recovery must leave target alone: a live operation acts on it, or the store could not
// tell (then it is left for the next pass).
func (s *Service) Busy(ctx context.Context, target uuid.UUID) bool {
	live, err := s.Live(ctx, target)
	if err != nil {
		s.log.Warn("operation: recovery cannot tell whether an operation is live; leaving it", "target", target, "err", err)
		return true
	}
	return live
}
