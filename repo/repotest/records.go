package repotest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/idem"
	"github.com/openvair/openvair/internal/operation"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// RunRecords checks the stores of operations, events, idempotency keys and leases.
func RunRecords(t *testing.T, open Opener) {
	t.Run("Operations", func(t *testing.T) { testOperations(t, open) })
	t.Run("OperationList", func(t *testing.T) { testOperationList(t, open) })
	t.Run("OperationLeases", func(t *testing.T) { testOperationLeases(t, open) })
	t.Run("Events", func(t *testing.T) { testEvents(t, open) })
	t.Run("EventPrune", func(t *testing.T) { testEventPrune(t, open) })
	t.Run("EventCommitOrder", func(t *testing.T) { testEventCommitOrder(t, open) })
	t.Run("Idempotency", func(t *testing.T) { testIdempotency(t, open) })
	t.Run("Leases", func(t *testing.T) { testLeases(t, open) })
	t.Run("RacingTakeovers", func(t *testing.T) { testRacingTakeovers(t, open) })
}

// now is the present as stores keep it (UTC, microseconds).
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// NewOperation returns a valid operation.
func NewOperation(kind string, target uuid.UUID, owner string, status operation.Status) *operation.Operation {
	t := now()
	return &operation.Operation{ID: newID(), Kind: kind, TargetType: "volume", TargetID: target, Status: status,
		Owner: owner, LeaseUntil: t.Add(time.Minute), CreatedAt: t, UpdatedAt: t}
}

var errBoom = errors.New("boom")

func testOperations(t *testing.T, open Opener) {
	st, ctx := fresh(t, open)
	r := st.Operations()
	t0 := now()
	started, finished := t0.Add(time.Second), t0.Add(2*time.Second)
	op := &operation.Operation{ID: newID(), Kind: "volume.create", TargetType: "volume", TargetID: newID(),
		Status: operation.StatusSucceeded, Progress: operation.Progress{BytesDone: 10, BytesTotal: 20, Step: 1, Steps: 3, Message: "copying"},
		Requester: "admin", RequestID: "req-1", Cancellable: true, CancelRequested: true,
		Error: &operation.Problem{Kind: "in_use", Message: "busy"}, Result: &operation.Result{ID: newID(), Version: 7},
		Owner: "proc-a", LeaseUntil: t0.Add(time.Minute), CreatedAt: t0, StartedAt: &started, FinishedAt: &finished,
		UpdatedAt: finished, Payload: json.RawMessage(`{"size":1073741824}`)}
	require.NoError(t, r.Create(ctx, op))
	assert.EqualValues(t, 1, op.Version)
	got, err := r.Get(ctx, op.ID)
	require.NoError(t, err)
	assert.Equal(t, op, got, "every field round trips")

	bare := NewOperation("vm.stop", uuid.Nil, "", operation.StatusPending)
	bare.LeaseUntil = time.Time{}
	require.NoError(t, r.Create(ctx, bare))
	got, err = r.Get(ctx, bare.ID)
	require.NoError(t, err)
	assert.Equal(t, bare, got, "nil pointers, nil payload and zero times round trip")

	dup := NewOperation("x", uuid.Nil, "", operation.StatusPending)
	dup.ID = op.ID
	assert.ErrorIs(t, r.Create(ctx, dup), errkind.AlreadyExists)
	_, err = r.Get(ctx, newID())
	assert.ErrorIs(t, err, errkind.NotFound)

	// Compare-and-swap on Version.
	stale := *bare
	bare.Status, bare.StartedAt, bare.Owner = operation.StatusRunning, &started, "proc-b"
	require.NoError(t, r.Update(ctx, bare))
	assert.EqualValues(t, 2, bare.Version)
	stale.Progress.Message = "lost"
	assert.ErrorIs(t, r.Update(ctx, &stale), errkind.Conflict)
	assert.EqualValues(t, 1, stale.Version, "a refused update leaves the version alone")
	assert.ErrorIs(t, r.Update(ctx, NewOperation("x", uuid.Nil, "", operation.StatusPending)), errkind.NotFound)
	got, err = r.Get(ctx, bare.ID)
	require.NoError(t, err)
	assert.Equal(t, bare, got)

	// An update undone with its unit of work.
	err = st.InTx(ctx, func(ctx context.Context) error {
		next := *got
		next.Status = operation.StatusFailed
		require.NoError(t, r.Update(ctx, &next))
		require.NoError(t, r.Create(ctx, NewOperation("y", uuid.Nil, "", operation.StatusPending)))
		return errBoom
	})
	require.ErrorIs(t, err, errBoom)
	again, err := r.Get(ctx, bare.ID)
	require.NoError(t, err)
	assert.Equal(t, got, again, "rolled back")
	page, err := r.List(ctx, operation.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, page.Items, 2, "the create was rolled back too")
}

// ids returns the ids of operations.
func ids(ops []*operation.Operation) []uuid.UUID {
	out := make([]uuid.UUID, len(ops))
	for i, op := range ops {
		out[i] = op.ID
	}
	return out
}

// reversed returns the ids from last to first.
func reversed(in []uuid.UUID) []uuid.UUID {
	out := make([]uuid.UUID, len(in))
	for i, id := range in {
		out[len(in)-1-i] = id
	}
	return out
}

func testOperationList(t *testing.T, open Opener) {
	st, ctx := fresh(t, open)
	r := st.Operations()
	targetA, targetB := newID(), newID()
	var all, onA, creates, failed, reqOnA []uuid.UUID // in creation order
	for i := range 12 {
		target, kind, status := targetA, "volume.create", operation.StatusSucceeded
		if i%3 == 0 {
			target = targetB
		}
		if i%2 == 1 {
			kind = "volume.extend"
		}
		if i%4 == 0 {
			status = operation.StatusFailed
		}
		op := NewOperation(kind, target, "proc", status)
		op.RequestID = fmt.Sprintf("req-%d", i%5)
		require.NoError(t, r.Create(ctx, op))
		all = append(all, op.ID)
		if target == targetA {
			onA = append(onA, op.ID)
		}
		if kind == "volume.create" {
			creates = append(creates, op.ID)
		}
		if status == operation.StatusFailed {
			failed = append(failed, op.ID)
		}
		if op.RequestID == "req-0" && target == targetA {
			reqOnA = append(reqOnA, op.ID)
		}
	}
	for _, tc := range []struct {
		name string
		opts operation.ListOptions
		want []uuid.UUID
	}{
		{"all", operation.ListOptions{}, all},
		{"target", operation.ListOptions{TargetID: targetA}, onA},
		{"kind", operation.ListOptions{Kind: "volume.create"}, creates},
		{"status", operation.ListOptions{Status: operation.StatusFailed}, failed},
		{"request and target", operation.ListOptions{RequestID: "req-0", TargetID: targetA}, reqOnA},
		{"nothing matches", operation.ListOptions{Kind: "vm.start"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page, err := r.List(ctx, tc.opts)
			require.NoError(t, err)
			assert.Equal(t, reversed(tc.want), ids(page.Items), "newest first")
			assert.Empty(t, page.Next)
		})
	}

	// Paging, newest first, with a filter.
	var got []uuid.UUID
	opts := operation.ListOptions{TargetID: targetA, Limit: 3}
	pages := 0
	for {
		page, err := r.List(ctx, opts)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Items), 3)
		got = append(got, ids(page.Items)...)
		pages++
		if page.Next == "" {
			break
		}
		opts.Cursor = page.Next
	}
	assert.Equal(t, reversed(onA), got)
	assert.Equal(t, 3, pages, "8 operations in pages of 3")
	_, err := r.List(ctx, operation.ListOptions{Cursor: "not a cursor!"})
	assert.ErrorIs(t, err, errkind.Invalid)
}

func testOperationLeases(t *testing.T, open Opener) {
	st, ctx := fresh(t, open)
	r := st.Operations()
	t0 := now()
	mk := func(owner string, status operation.Status, lease time.Time, cancel bool) *operation.Operation {
		op := NewOperation("vm.start", newID(), owner, status)
		op.LeaseUntil, op.CancelRequested, op.CreatedAt = lease, cancel, t0
		if status.Final() {
			fin := t0
			op.FinishedAt = &fin
		}
		require.NoError(t, r.Create(ctx, op))
		return op
	}
	aPending := mk("a", operation.StatusPending, t0.Add(time.Second), true)
	aRunning := mk("a", operation.StatusRunning, t0.Add(time.Second), false)
	aRunningCancel := mk("a", operation.StatusRunning, t0.Add(time.Second), true)
	aDone := mk("a", operation.StatusSucceeded, t0.Add(time.Second), true)
	bRunning := mk("b", operation.StatusRunning, t0.Add(time.Second), true)

	until := t0.Add(time.Hour)
	cancel, err := r.RenewLeases(ctx, "a", until)
	require.NoError(t, err)
	assert.ElementsMatch(t, []uuid.UUID{aPending.ID, aRunningCancel.ID}, cancel, "only a's unfinished operations with a cancel request")
	for _, tc := range []struct {
		name  string
		op    *operation.Operation
		lease time.Time
	}{
		{"a pending", aPending, until},
		{"a running", aRunning, until},
		{"a running, cancel requested", aRunningCancel, until},
		{"a finished", aDone, t0.Add(time.Second)},
		{"b running", bRunning, t0.Add(time.Second)},
	} {
		got, err := r.Get(ctx, tc.op.ID)
		require.NoError(t, err)
		assert.True(t, tc.lease.Equal(got.LeaseUntil), "%s: lease %v, want %v", tc.name, got.LeaseUntil, tc.lease)
		assert.EqualValues(t, 1, got.Version, "%s: a renewal is no update", tc.name)
	}
	none, err := r.RenewLeases(ctx, "nobody", until)
	require.NoError(t, err)
	assert.Empty(t, none)

	// A copy read before the renewal still updates, and keeps the renewed lease.
	aRunning.Progress.Step = 2
	require.NoError(t, r.Update(ctx, aRunning))
	assert.True(t, until.Equal(aRunning.LeaseUntil), "the lease does not move back: %v", aRunning.LeaseUntil)
	got, err := r.Get(ctx, aRunning.ID)
	require.NoError(t, err)
	assert.True(t, until.Equal(got.LeaseUntil))
	assert.Equal(t, 2, got.Progress.Step)

	// Expired: unfinished operations whose lease ended, oldest first.
	now := t0.Add(2 * time.Second)
	mk("c", operation.StatusRunning, t0.Add(time.Hour), false) // lease still running
	mk("c", operation.StatusFailed, t0, false)                 // finished
	mk("", operation.StatusPending, time.Time{}, false)        // no lease
	expired, err := r.Expired(ctx, now, 10)
	require.NoError(t, err)
	assert.Equal(t, []uuid.UUID{bRunning.ID}, ids(expired), "only b's running operation: a renewed, the rest is live, finished or unleased")
	late := mk("d", operation.StatusPending, t0, false)
	expired, err = r.Expired(ctx, now, 10)
	require.NoError(t, err)
	assert.Equal(t, []uuid.UUID{bRunning.ID, late.ID}, ids(expired))
	expired, err = r.Expired(ctx, now, 1)
	require.NoError(t, err)
	assert.Equal(t, []uuid.UUID{bRunning.ID}, ids(expired), "limit, oldest first")
	expired, err = r.Expired(ctx, t0.Add(-time.Hour), 10)
	require.NoError(t, err)
	assert.Empty(t, expired)

	// Prune: final operations that finished before the cut.
	newer := mk("e", operation.StatusCancelled, t0, false)
	fin := t0.Add(time.Minute)
	newer.FinishedAt = &fin
	require.NoError(t, r.Update(ctx, newer))
	n, err := r.Prune(ctx, t0.Add(time.Second))
	require.NoError(t, err)
	assert.Equal(t, 2, n, "a's succeeded and c's failed operation")
	_, err = r.Get(ctx, aDone.ID)
	assert.ErrorIs(t, err, errkind.NotFound)
	for _, id := range []uuid.UUID{newer.ID, aPending.ID, bRunning.ID} {
		_, err = r.Get(ctx, id)
		assert.NoError(t, err, "kept")
	}
	n, err = r.Prune(ctx, t0.Add(time.Second))
	require.NoError(t, err)
	assert.Zero(t, n)
}

func testIdempotency(t *testing.T, open Opener) {
	st, ctx := fresh(t, open)
	r := st.Idempotency()
	t0 := now()
	rec := func(scope, key, owner string, at time.Time) *idem.Record {
		return &idem.Record{Scope: scope, Key: key, Fingerprint: "POST /api/v1/volumes " + key, State: idem.StateRunning,
			Owner: owner, LeaseUntil: at.Add(time.Minute), CreatedAt: at, ExpiresAt: at.Add(24 * time.Hour)}
	}
	begin := func(r0 *idem.Record) *idem.Record {
		t.Helper()
		existing, err := r.Begin(ctx, r0)
		require.NoError(t, err)
		return existing
	}

	first := rec("alice", "k1", "p1", t0)
	assert.Nil(t, begin(first), "a new key is stored")
	assert.Equal(t, first, begin(rec("alice", "k1", "p2", t0.Add(time.Second))), "a retry gets the running record")
	assert.Nil(t, begin(rec("bob", "k1", "p2", t0)), "keys of other requesters never meet")

	// Renew: only the owner's running record; a renewed lease keeps a retry out past the old one.
	renewed := rec("alice", "k9", "p1", t0)
	assert.Nil(t, begin(renewed))
	require.NoError(t, r.Renew(ctx, "alice", "k9", "p2", t0.Add(time.Hour)), "another owner's renew changes nothing")
	assert.Nil(t, begin(rec("alice", "k9", "p3", t0.Add(2*time.Minute))), "the lease ran out: taken over")
	held := rec("alice", "k10", "p1", t0)
	assert.Nil(t, begin(held))
	require.NoError(t, r.Renew(ctx, "alice", "k10", "p1", t0.Add(time.Hour)))
	got := begin(rec("alice", "k10", "p3", t0.Add(2*time.Minute)))
	require.NotNil(t, got, "renewed: still held")
	assert.Equal(t, "p1", got.Owner)
	require.NoError(t, r.Abandon(ctx, "alice", "k9", "p3"))
	require.NoError(t, r.Abandon(ctx, "alice", "k10", "p1"))

	// Finish: only the owner of the running record.
	done := *first
	done.Status, done.Header, done.Body = http.StatusCreated, http.Header{"Location": {"/api/v1/volumes/1"}}, []byte(`{"id":1}`)
	other := done
	other.Owner = "p2"
	assert.ErrorIs(t, r.Finish(ctx, &other), errkind.Conflict, "not the owner")
	missing := done
	missing.Key = "nope"
	assert.ErrorIs(t, r.Finish(ctx, &missing), errkind.NotFound)
	require.NoError(t, r.Finish(ctx, &done))
	done.State = idem.StateDone
	assert.Equal(t, &done, begin(rec("alice", "k1", "p2", t0.Add(time.Hour))), "a replay gets the stored response, even after the lease ended")
	assert.ErrorIs(t, r.Finish(ctx, &done), errkind.Conflict, "done already")

	for _, tc := range []struct {
		name     string
		stored   *idem.Record
		retryAt  time.Time
		replaced bool
	}{
		{"running, lease alive", rec("alice", "k2", "p1", t0), t0.Add(30 * time.Second), false},
		{"running, lease ended", rec("alice", "k3", "p1", t0), t0.Add(2 * time.Minute), true},
		{"expired", rec("alice", "k4", "p1", t0), t0.Add(25 * time.Hour), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Nil(t, begin(tc.stored))
			retry := rec(tc.stored.Scope, tc.stored.Key, "p9", tc.retryAt)
			existing := begin(retry)
			if !tc.replaced {
				assert.Equal(t, tc.stored, existing)
				return
			}
			assert.Nil(t, existing, "taken over")
			assert.Equal(t, retry, begin(rec(tc.stored.Scope, tc.stored.Key, "p10", tc.retryAt.Add(time.Second))), "the new owner's record")
		})
	}

	// Abandon: only the owner of a running record; the key is free again.
	require.NoError(t, r.Abandon(ctx, "alice", "k2", "p2"))
	assert.NotNil(t, begin(rec("alice", "k2", "p3", t0.Add(time.Second))), "not abandoned by a stranger")
	require.NoError(t, r.Abandon(ctx, "alice", "k2", "p1"))
	assert.Nil(t, begin(rec("alice", "k2", "p3", t0.Add(time.Second))), "abandoned")
	require.NoError(t, r.Abandon(ctx, "alice", "k1", "p1"))
	assert.NotNil(t, begin(rec("alice", "k1", "p3", t0.Add(time.Second))), "a done record is not abandoned")

	// A Begin undone with its unit of work.
	err := st.InTx(ctx, func(ctx context.Context) error {
		existing, err := r.Begin(ctx, rec("alice", "k5", "p1", t0))
		require.NoError(t, err)
		require.Nil(t, existing)
		return errBoom
	})
	require.ErrorIs(t, err, errBoom)
	assert.Nil(t, begin(rec("alice", "k5", "p2", t0)), "rolled back")

	// Prune: k1 (t0+24h), bob's k1 (t0+24h), k5 (t0+24h) and k2 (t0+1s+24h) expire; k3 and k4 were renewed later.
	n, err := r.Prune(ctx, t0.Add(24*time.Hour+2*time.Second))
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	assert.Nil(t, begin(rec("alice", "k1", "p4", t0)), "pruned")
	assert.NotNil(t, begin(rec("alice", "k3", "p4", t0.Add(2*time.Minute))), "kept")
	n, err = r.Prune(ctx, t0)
	require.NoError(t, err)
	assert.Zero(t, n)
}

func testLeases(t *testing.T, open Opener) {
	st, ctx := fresh(t, open)
	r := st.Leases()
	t0 := now()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, step := range []struct {
		name          string
		release       bool
		lease, holder string
		now, until    time.Time
		want          bool
	}{
		{"a takes a free lease", false, "monitor", "a", at(0), at(10), true},
		{"b cannot take it", false, "monitor", "b", at(1), at(11), false},
		{"a renews", false, "monitor", "a", at(5), at(15), true},
		{"b cannot take the renewed lease", false, "monitor", "b", at(12), at(22), false},
		{"b steals it once it ran out", false, "monitor", "b", at(16), at(26), true},
		{"a lost it", false, "monitor", "a", at(17), at(27), false},
		{"a's release does nothing", true, "monitor", "a", at(18), time.Time{}, false},
		{"b still holds it", false, "monitor", "a", at(19), at(29), false},
		{"b releases", true, "monitor", "b", at(20), time.Time{}, false},
		{"a takes the released lease", false, "monitor", "a", at(21), at(31), true},
		{"another name is another lease", false, "sweeper", "b", at(21), at(31), true},
	} {
		if step.release {
			require.NoError(t, r.Release(ctx, step.lease, step.holder), step.name)
			continue
		}
		got, err := r.Acquire(ctx, step.lease, step.holder, step.now, step.until)
		require.NoError(t, err, step.name)
		assert.Equal(t, step.want, got, step.name)
	}
	err := st.InTx(ctx, func(ctx context.Context) error {
		got, err := r.Acquire(ctx, "rolled-back", "a", at(0), at(10))
		require.NoError(t, err)
		require.True(t, got)
		return errBoom
	})
	require.ErrorIs(t, err, errBoom)
	got, err := r.Acquire(ctx, "rolled-back", "b", at(1), at(10))
	require.NoError(t, err)
	assert.True(t, got, "the rolled-back lease was never held")
}

// testRacingTakeovers races processes for one idempotency key whose record died, and for one lease that
// ran out: exactly one wins each.
func testRacingTakeovers(t *testing.T, open Opener) {
	st, ctx := fresh(t, open)
	t0 := now()
	dead := &idem.Record{Scope: "s", Key: "k", State: idem.StateRunning, Owner: "dead", LeaseUntil: t0, CreatedAt: t0.Add(-time.Minute),
		ExpiresAt: t0.Add(time.Hour)}
	existing, err := st.Idempotency().Begin(ctx, dead)
	require.NoError(t, err)
	require.Nil(t, existing)
	ok, err := st.Leases().Acquire(ctx, "monitor", "dead", t0.Add(-time.Minute), t0)
	require.NoError(t, err)
	require.True(t, ok)

	const racers = 16
	keyWins, leaseWins := make([]bool, racers), make([]bool, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprintf("p%d", i)
			existing, err := st.Idempotency().Begin(ctx, &idem.Record{Scope: "s", Key: "k", State: idem.StateRunning, Owner: owner,
				LeaseUntil: t0.Add(time.Hour), CreatedAt: t0.Add(time.Second), ExpiresAt: t0.Add(time.Hour)})
			if err != nil {
				errs[i] = err
				return
			}
			keyWins[i] = existing == nil
			leaseWins[i], errs[i] = st.Leases().Acquire(ctx, "monitor", owner, t0.Add(time.Second), t0.Add(time.Hour))
		}()
	}
	wg.Wait()
	count := func(wins []bool) int {
		n := 0
		for _, w := range wins {
			if w {
				n++
			}
		}
		return n
	}
	for _, err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, 1, count(keyWins), "one process takes the key over")
	assert.Equal(t, 1, count(leaseWins), "one process takes the lease over")
}
