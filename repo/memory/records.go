package memory

import (
	"bytes"
	"context"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/cursor"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/event"
	"github.com/openvair/openvair/internal/idem"
	"github.com/openvair/openvair/internal/operation"
)

// records are the operations, the change log, the idempotency keys and the leases, guarded by the store's
// lock like the aggregates. A zero lease or expiry time never ends, as in the SQL store (where it is NULL).
type records struct {
	ops          map[uuid.UUID]*operation.Operation
	events       []event.Event // in id order
	last, pruned int64
	keys         map[idemKey]*idem.Record
	leases       map[string]leaseRow
}

type idemKey struct{ scope, key string }

type leaseRow struct {
	holder string
	until  time.Time
}

// ended reports whether a lease or expiry time t is over at now (a zero t never is).
func ended(t, now time.Time) bool { return !t.IsZero() && t.Before(now) }

// set stores v under k in m, recording how to undo it.
func set[K comparable, V any](m map[K]V, k K, v V, onUndo func(func())) {
	old, had := m[k]
	m[k] = v
	onUndo(func() {
		if had {
			m[k] = old
		} else {
			delete(m, k)
		}
	})
}

// del deletes k from m, recording how to undo it.
func del[K comparable, V any](m map[K]V, k K, onUndo func(func())) {
	old, had := m[k]
	if had {
		delete(m, k)
		onUndo(func() { m[k] = old })
	}
}

// records returns the records, their maps made, for a writer holding the lock.
func (s *Store) records() *records {
	if s.rec.ops == nil {
		s.rec.ops, s.rec.keys, s.rec.leases = map[uuid.UUID]*operation.Operation{}, map[idemKey]*idem.Record{}, map[string]leaseRow{}
	}
	return &s.rec
}

type operationRepo struct{ s *Store }

func cloneOperation(op *operation.Operation) *operation.Operation {
	c := *op
	if op.Error != nil {
		e := *op.Error
		c.Error = &e
	}
	if op.Result != nil {
		r := *op.Result
		c.Result = &r
	}
	if op.StartedAt != nil {
		t := *op.StartedAt
		c.StartedAt = &t
	}
	if op.FinishedAt != nil {
		t := *op.FinishedAt
		c.FinishedAt = &t
	}
	c.Payload = slices.Clone(op.Payload)
	return &c
}

func live(s operation.Status) bool {
	return s == operation.StatusPending || s == operation.StatusRunning
}

func (r operationRepo) Create(ctx context.Context, op *operation.Operation) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	rec := r.s.records()
	if _, dup := rec.ops[op.ID]; dup {
		return exists("operation", "id %s exists", op.ID)
	}
	op.Version = 1
	set(rec.ops, op.ID, cloneOperation(op), onUndo)
	return nil
}

func (r operationRepo) Get(ctx context.Context, id uuid.UUID) (*operation.Operation, error) {
	defer r.s.read(ctx)()
	op, ok := r.s.rec.ops[id]
	if !ok {
		return nil, notFound("operation", id)
	}
	return cloneOperation(op), nil
}

// List returns the operations newest first (by id), paged by id.
func (r operationRepo) List(ctx context.Context, o operation.ListOptions) (operation.Page, error) {
	before, err := cursor.Decode(o.Cursor)
	if err != nil {
		return operation.Page{}, err
	}
	limit := cursor.Limit(o.Limit)
	defer r.s.read(ctx)()
	items := []*operation.Operation{}
	for _, op := range r.s.rec.ops {
		if (before == uuid.Nil || bytes.Compare(op.ID[:], before[:]) < 0) && (o.TargetID == uuid.Nil || op.TargetID == o.TargetID) &&
			(o.Kind == "" || op.Kind == o.Kind) && (o.Status == "" || op.Status == o.Status) &&
			(o.RequestID == "" || op.RequestID == o.RequestID) {
			items = append(items, op)
		}
	}
	sort.Slice(items, func(i, j int) bool { return bytes.Compare(items[i].ID[:], items[j].ID[:]) > 0 })
	next := ""
	if len(items) > limit {
		items = items[:limit]
		next = cursor.Encode(items[limit-1].ID)
	}
	for i := range items {
		items[i] = cloneOperation(items[i])
	}
	return operation.Page{Items: items, Next: next}, nil
}

// Update stores op when its Version is the stored one. For the same owner the later of the stored and the
// given lease is kept (and set in op): RenewLeases does not change Version, so a lease never moves back.
func (r operationRepo) Update(ctx context.Context, op *operation.Operation) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	rec := r.s.records()
	cur, ok := rec.ops[op.ID]
	if !ok {
		return notFound("operation", op.ID)
	}
	if cur.Version != op.Version {
		return conflict("operation", op.ID)
	}
	if cur.Owner == op.Owner && cur.LeaseUntil.After(op.LeaseUntil) {
		op.LeaseUntil = cur.LeaseUntil
	}
	op.Version++
	set(rec.ops, op.ID, cloneOperation(op), onUndo)
	return nil
}

// RenewLeases extends the leases of owner's unfinished operations (without changing their Version) and
// returns the ids, in id order, of those whose cancellation was requested.
func (r operationRepo) RenewLeases(ctx context.Context, owner string, until time.Time) ([]uuid.UUID, error) {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	rec := r.s.records()
	cancel := []uuid.UUID{}
	for id, op := range rec.ops {
		if op.Owner != owner || !live(op.Status) {
			continue
		}
		c := cloneOperation(op)
		c.LeaseUntil = until
		set(rec.ops, id, c, onUndo)
		if op.CancelRequested {
			cancel = append(cancel, id)
		}
	}
	sort.Slice(cancel, func(i, j int) bool { return bytes.Compare(cancel[i][:], cancel[j][:]) < 0 })
	return cancel, nil
}

// Expired returns, oldest (smallest id) first, unfinished operations whose lease ended before now.
func (r operationRepo) Expired(ctx context.Context, now time.Time, limit int) ([]*operation.Operation, error) {
	defer r.s.read(ctx)()
	out := []*operation.Operation{}
	for _, op := range r.s.rec.ops {
		if live(op.Status) && ended(op.LeaseUntil, now) {
			out = append(out, op)
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].ID[:], out[j].ID[:]) < 0 })
	if limit = cursor.Limit(limit); len(out) > limit {
		out = out[:limit]
	}
	for i := range out {
		out[i] = cloneOperation(out[i])
	}
	return out, nil
}

// Prune deletes the operations in a final status whose FinishedAt is before before.
func (r operationRepo) Prune(ctx context.Context, before time.Time) (int, error) {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	rec := r.s.records()
	n := 0
	for id, op := range rec.ops {
		if op.Status.Final() && op.FinishedAt != nil && op.FinishedAt.Before(before) {
			del(rec.ops, id, onUndo)
			n++
		}
	}
	return n, nil
}

// eventLog is the change log. Units of work hold the store's lock until they end, so ids, handed out
// inside them, follow commit order.
type eventLog struct{ s *Store }

func (l eventLog) Append(ctx context.Context, e *event.Event) error {
	unlock, onUndo := l.s.write(ctx)
	defer unlock()
	rec := l.s.records()
	last, n := rec.last, len(rec.events)
	onUndo(func() { rec.last, rec.events = last, rec.events[:n] })
	rec.last++
	e.ID = rec.last
	c := *e
	c.Data = slices.Clone(e.Data)
	rec.events = append(rec.events, c)
	return nil
}

// After returns up to limit (clamped like a page size) events after the id after, in id order.
func (l eventLog) After(ctx context.Context, after int64, limit int) ([]event.Event, error) {
	defer l.s.read(ctx)()
	evs := l.s.rec.events
	i := sort.Search(len(evs), func(i int) bool { return evs[i].ID > after })
	evs = evs[i:min(len(evs), i+cursor.Limit(limit))]
	out := make([]event.Event, len(evs))
	for i, e := range evs {
		out[i] = e
		out[i].Data = slices.Clone(e.Data)
	}
	return out, nil
}

func (l eventLog) Last(ctx context.Context) (last, pruned int64, err error) {
	defer l.s.read(ctx)()
	return l.s.rec.last, l.s.rec.pruned, nil
}

// Prune deletes the oldest events up to the first one whose Time is not before before.
func (l eventLog) Prune(ctx context.Context, before time.Time) (int64, error) {
	unlock, onUndo := l.s.write(ctx)
	defer unlock()
	rec := l.s.records()
	if before.IsZero() {
		return rec.pruned, nil
	}
	n := 0
	for n < len(rec.events) && rec.events[n].Time.Before(before) {
		n++
	}
	if n == 0 {
		return rec.pruned, nil
	}
	events, pruned := rec.events, rec.pruned
	onUndo(func() { rec.events, rec.pruned = events, pruned })
	rec.pruned = rec.events[n-1].ID
	rec.events = slices.Clone(rec.events[n:])
	return rec.pruned, nil
}

type idemStore struct{ s *Store }

func cloneRecord(r *idem.Record) *idem.Record {
	c := *r
	c.Header = r.Header.Clone()
	c.Body = slices.Clone(r.Body)
	return &c
}

// Begin stores rec, or replaces a stored record that expired or whose running request's lease ended before
// rec.CreatedAt; otherwise it returns the stored record.
func (r idemStore) Begin(ctx context.Context, rec *idem.Record) (*idem.Record, error) {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	recs := r.s.records()
	k := idemKey{rec.Scope, rec.Key}
	if cur, ok := recs.keys[k]; ok && !ended(cur.ExpiresAt, rec.CreatedAt) &&
		!(cur.State == idem.StateRunning && ended(cur.LeaseUntil, rec.CreatedAt)) {
		return cloneRecord(cur), nil
	}
	set(recs.keys, k, cloneRecord(rec), onUndo)
	return nil, nil
}

// Finish stores the response of rec when rec.Owner holds the running record; otherwise it returns an
// error wrapping errkind.NotFound (no record) or errkind.Conflict.
func (r idemStore) Finish(ctx context.Context, rec *idem.Record) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	recs := r.s.records()
	k := idemKey{rec.Scope, rec.Key}
	cur, ok := recs.keys[k]
	switch {
	case !ok:
		return errkind.New(errkind.NotFound, "idempotency key", rec.Key, "idempotency key not found")
	case cur.Owner != rec.Owner || cur.State != idem.StateRunning:
		return errkind.New(errkind.Conflict, "idempotency key", rec.Key, "not a running request of %s", rec.Owner)
	}
	c := cloneRecord(cur)
	c.State, c.Status, c.Header, c.Body = idem.StateDone, rec.Status, rec.Header.Clone(), slices.Clone(rec.Body)
	set(recs.keys, k, c, onUndo)
	return nil
}

// Abandon deletes the record when owner holds it running.
func (r idemStore) Abandon(ctx context.Context, scope, key, owner string) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	recs := r.s.records()
	k := idemKey{scope, key}
	if cur, ok := recs.keys[k]; ok && cur.Owner == owner && cur.State == idem.StateRunning {
		del(recs.keys, k, onUndo)
	}
	return nil
}

// Renew extends to until the lease of the running record owner holds (nothing happens otherwise).
func (r idemStore) Renew(ctx context.Context, scope, key, owner string, until time.Time) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	recs := r.s.records()
	k := idemKey{scope, key}
	if cur, ok := recs.keys[k]; ok && cur.Owner == owner && cur.State == idem.StateRunning {
		c := cloneRecord(cur)
		c.LeaseUntil = until
		set(recs.keys, k, c, onUndo)
	}
	return nil
}

// Prune deletes the records whose ExpiresAt is before now.
func (r idemStore) Prune(ctx context.Context, now time.Time) (int, error) {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	recs := r.s.records()
	n := 0
	for k, rec := range recs.keys {
		if ended(rec.ExpiresAt, now) {
			del(recs.keys, k, onUndo)
			n++
		}
	}
	return n, nil
}

type leaseStore struct{ s *Store }

func (r leaseStore) Acquire(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	recs := r.s.records()
	if cur, ok := recs.leases[name]; ok && cur.holder != holder && !ended(cur.until, now) {
		return false, nil
	}
	set(recs.leases, name, leaseRow{holder: holder, until: until}, onUndo)
	return true, nil
}

func (r leaseStore) Release(ctx context.Context, name, holder string) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	recs := r.s.records()
	if cur, ok := recs.leases[name]; ok && cur.holder == holder {
		del(recs.leases, name, onUndo)
	}
	return nil
}
