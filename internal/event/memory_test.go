package event_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/event"
	"github.com/openvair/openvair/repo/memory"
)

// TestEventMemoryStore: over the memory store's log, with units of work that commit and some that roll
// back, subscribers from the start, from the middle and from now each get exactly the committed events
// after their start, once and in order; after a prune a resume from before it is Gone.
func TestEventMemoryStore(t *testing.T) {
	st := memory.New()
	log := st.Events()
	svc := event.NewService(log, event.Config{Poll: 50 * time.Millisecond, Page: 32})
	run(t, svc)
	appendTx := func(rollback bool) error {
		return st.InTx(context.Background(), func(ctx context.Context) error {
			for range 2 {
				if err := log.Append(ctx, ev("volume", uuid.New(), "updated")); err != nil {
					return err
				}
			}
			if rollback {
				return errors.New("rolled back")
			}
			return nil
		})
	}
	for range 50 {
		require.NoError(t, appendTx(false))
	}
	svc.Notify()
	last, err := svc.Last(context.Background())
	require.NoError(t, err)
	require.Equal(t, int64(100), last)

	starts := []int64{0, 37, 100, -1}
	subs := make([]*sub, len(starts))
	for i, since := range starts {
		subs[i] = subscribe(t, svc, since, event.Filter{}, 0)
	}
	settle()
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := range 40 {
				err := appendTx((w+i)%3 == 0)
				if (w+i)%3 == 0 {
					assert.Error(t, err)
				} else {
					assert.NoError(t, err)
				}
				svc.Notify()
			}
		})
	}
	wg.Wait()
	svc.Notify()

	var all []int64
	for from := int64(0); ; {
		page, err := log.After(context.Background(), from, 100)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			all = append(all, e.ID)
		}
		from = page[len(page)-1].ID
	}
	require.Len(t, all, 100+2*160, "the committed events")
	for i, since := range starts {
		if since < 0 {
			since = 100
		}
		subs[i].waitIDs(t, all[since:])
	}

	// Prune everything but the last event: a resume from before it is Gone.
	st2 := memory.New()
	log2 := st2.Events()
	for i := range 3 {
		e := ev("vm", uuid.New(), "created")
		e.Time = time.Now().Add(time.Duration(i-2) * 48 * time.Hour * 4)
		require.NoError(t, log2.Append(context.Background(), e))
	}
	svc2 := event.NewService(log2, event.Config{})
	require.NoError(t, svc2.Prune(context.Background()))
	assert.ErrorIs(t, svc2.Resumable(context.Background(), 1), errkind.Gone)
	assert.NoError(t, svc2.Resumable(context.Background(), 2))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var got []int64
	for e, err := range svc2.Subscribe(ctx, 1, event.Filter{}) {
		if assert.ErrorIs(t, err, errkind.Gone) {
			continue
		}
		got = append(got, e.ID)
	}
	assert.Empty(t, got)
	for e, err := range svc2.Subscribe(ctx, 2, event.Filter{}) {
		require.NoError(t, err)
		got = append(got, e.ID)
	}
	assert.Equal(t, []int64{3}, got)
}
