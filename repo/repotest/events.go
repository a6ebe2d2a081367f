package repotest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/openvair/openvair/internal/event"
	"github.com/openvair/openvair/repo"
	"github.com/openvair/openvair/storage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// NewEvent returns a valid event of a volume change at a time.
func NewEvent(n int, at time.Time) *event.Event {
	return &event.Event{Type: "volume.updated", Resource: "volume", ResourceID: newID(), Version: int64(n), OperationID: newID(),
		RequestID: fmt.Sprintf("req-%d", n), Requester: "admin", Time: at, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}
}

// allEvents reads the whole log in pages.
func allEvents(t *testing.T, ctx context.Context, l event.Log) []event.Event {
	t.Helper()
	var out []event.Event
	var last int64
	for {
		page, err := l.After(ctx, last, 1000)
		require.NoError(t, err)
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		last = page[len(page)-1].ID
	}
}

func eventIDs(evs []event.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func assertLast(t *testing.T, ctx context.Context, l event.Log, wantLast, wantPruned int64, msg string) {
	t.Helper()
	last, pruned, err := l.Last(ctx)
	require.NoError(t, err)
	assert.Equal(t, wantLast, last, "%s: last", msg)
	assert.Equal(t, wantPruned, pruned, "%s: pruned", msg)
}

func testEvents(t *testing.T, open Opener) {
	st, ctx := fresh(t, open)
	l := st.Events()
	assertLast(t, ctx, l, 0, 0, "empty log")
	evs, err := l.After(ctx, 0, 0)
	require.NoError(t, err)
	assert.Empty(t, evs)

	t0 := now()
	e1 := NewEvent(1, t0)
	require.NoError(t, l.Append(ctx, e1))
	assert.Positive(t, e1.ID)
	e2 := NewEvent(2, t0)
	e2.Type, e2.Data, e2.RequestID, e2.Requester = "volume.deleted", nil, "", ""
	require.NoError(t, l.Append(ctx, e2))
	assert.Greater(t, e2.ID, e1.ID)
	assert.Equal(t, []event.Event{*e1, *e2}, allEvents(t, ctx, l), "every field round trips")
	assertLast(t, ctx, l, e2.ID, 0, "two events")

	// An append undone with its unit of work leaves no event and no visible id.
	s1 := NewStorage("s1")
	err = st.InTx(ctx, func(ctx context.Context) error {
		require.NoError(t, st.Storages().Create(ctx, s1))
		require.NoError(t, l.Append(ctx, NewEvent(3, t0)))
		return errBoom
	})
	require.ErrorIs(t, err, errBoom)
	evs, err = l.After(ctx, e2.ID, 10)
	require.NoError(t, err)
	assert.Empty(t, evs, "rolled back")
	assertLast(t, ctx, l, e2.ID, 0, "after a rollback")

	// An append commits with the change it describes.
	e4 := NewEvent(4, t0)
	require.NoError(t, st.InTx(ctx, func(ctx context.Context) error {
		if err := st.Storages().Create(ctx, s1); err != nil {
			return err
		}
		return l.Append(ctx, e4)
	}))
	assert.Greater(t, e4.ID, e2.ID)
	_, err = st.Storages().Get(ctx, s1.ID)
	require.NoError(t, err)
	evs, err = l.After(ctx, e2.ID, 10)
	require.NoError(t, err)
	assert.Equal(t, []event.Event{*e4}, evs)

	// Paging with After.
	for i := range 10 {
		require.NoError(t, l.Append(ctx, NewEvent(10+i, t0)))
	}
	all := allEvents(t, ctx, l)
	require.Len(t, all, 13)
	var paged []event.Event
	var last int64
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		page, err := l.After(ctx, last, 4)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), 4)
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		last = page[len(page)-1].ID
	}
	assert.Equal(t, all, paged)
	for i := 1; i < len(all); i++ {
		assert.Greater(t, all[i].ID, all[i-1].ID, "id order")
	}
	assertLast(t, ctx, l, all[len(all)-1].ID, 0, "13 events")
}

func testEventPrune(t *testing.T, open Opener) {
	st, ctx := fresh(t, open)
	l := st.Events()
	t0 := now()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	var ids []int64
	for i := range 10 {
		e := NewEvent(i, at(i))
		require.NoError(t, l.Append(ctx, e))
		ids = append(ids, e.ID)
	}
	pruned, err := l.Prune(ctx, time.Time{})
	require.NoError(t, err)
	assert.Zero(t, pruned, "nothing is older than the zero time")

	err = st.InTx(ctx, func(ctx context.Context) error {
		_, err := l.Prune(ctx, at(100))
		require.NoError(t, err)
		return errBoom
	})
	require.ErrorIs(t, err, errBoom)
	assert.Equal(t, ids, eventIDs(allEvents(t, ctx, l)), "a rolled-back prune deletes nothing")
	assertLast(t, ctx, l, ids[9], 0, "rolled-back prune")

	pruned, err = l.Prune(ctx, at(5))
	require.NoError(t, err)
	assert.Equal(t, ids[4], pruned, "events 0-4 are older")
	assert.Equal(t, ids[5:], eventIDs(allEvents(t, ctx, l)))
	assertLast(t, ctx, l, ids[9], ids[4], "after a prune")
	pruned, err = l.Prune(ctx, at(2))
	require.NoError(t, err)
	assert.Equal(t, ids[4], pruned, "the mark never moves back")

	// An old event committed after newer ones: the log stays a suffix, the mark exact.
	old := NewEvent(99, at(-3600))
	require.NoError(t, l.Append(ctx, old))
	pruned, err = l.Prune(ctx, at(7))
	require.NoError(t, err)
	assert.Equal(t, ids[6], pruned)
	assert.Equal(t, append(append([]int64{}, ids[7:]...), old.ID), eventIDs(allEvents(t, ctx, l)), "events above the mark all stay")

	pruned, err = l.Prune(ctx, at(3600))
	require.NoError(t, err)
	assert.Equal(t, old.ID, pruned)
	assert.Empty(t, allEvents(t, ctx, l))
	assertLast(t, ctx, l, old.ID, old.ID, "everything pruned")
	next := NewEvent(100, at(3600))
	require.NoError(t, l.Append(ctx, next))
	assert.Greater(t, next.ID, old.ID, "ids go on after the pruned mark")
	assertLast(t, ctx, l, next.ID, old.ID, "appended after pruning")
}

// testEventCommitOrder has writers append events concurrently, each in its own unit of work, some
// committing late and some rolling back, while a reader follows the log by polling After(last seen): the
// reader must see exactly the whole log, in order, once. A store that hands out ids in append order rather
// than commit order fails it: the reader moves past the id of an event that commits later.
func testEventCommitOrder(t *testing.T, open Opener) {
	st, ctx := fresh(t, open)
	l := st.Events()
	const writers, perWriter = 16, 50

	stop := make(chan struct{})
	var seen []int64
	readerDone := make(chan error, 1)
	go func() {
		var last int64
		for {
			var finished bool
			select {
			case <-stop:
				finished = true // every commit happened before: this pass sees them all
			default:
			}
			page, err := l.After(ctx, last, 100)
			if err != nil {
				readerDone <- err
				return
			}
			for _, e := range page {
				seen = append(seen, e.ID)
				last = e.ID
			}
			if len(page) == 0 {
				if finished {
					readerDone <- nil
					return
				}
				time.Sleep(50 * time.Microsecond)
			}
		}
	}()

	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		committed []int64
	)
	errs := make([]error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 42))
			for i := range perWriter {
				id, err := appendOne(ctx, st, rnd, w*perWriter+i, i%10 == 9)
				if err != nil && !errors.Is(err, errBoom) {
					errs[w] = err
					return
				}
				if err == nil {
					mu.Lock()
					committed = append(committed, id)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, <-readerDone)

	full := eventIDs(allEvents(t, ctx, l))
	assert.Len(t, full, writers*perWriter*9/10, "every committed event, no rolled-back one")
	assert.ElementsMatch(t, committed, full, "the log holds exactly the committed events")
	assert.Equal(t, full, seen, "the follower saw the whole log in order: no event skipped, none twice")
	last, _, err := l.Last(ctx)
	require.NoError(t, err)
	assert.Equal(t, full[len(full)-1], last)
}

// appendOne appends one event in a unit of work that first reads (so it has its snapshot before it waits
// to append), sometimes sleeps before and after appending, and rolls back when asked.
func appendOne(ctx context.Context, st repo.Store, rnd *rand.Rand, n int, rollback bool) (int64, error) {
	var id int64
	err := st.InTx(ctx, func(ctx context.Context) error {
		if _, err := st.Storages().List(ctx, storage.ListOptions{Limit: 1}); err != nil {
			return err
		}
		if rnd.IntN(4) == 0 {
			time.Sleep(time.Duration(rnd.IntN(500)) * time.Microsecond)
		}
		e := NewEvent(n, now())
		if err := st.Events().Append(ctx, e); err != nil {
			return err
		}
		id = e.ID
		if rnd.IntN(4) == 0 {
			time.Sleep(time.Duration(rnd.IntN(2000)) * time.Microsecond) // commit late
		}
		if rollback {
			return errBoom
		}
		return nil
	})
	return id, err
}
