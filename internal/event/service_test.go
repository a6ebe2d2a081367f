package event_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/event"
)

// TestEventResume: a subscriber that resumes from an id gets exactly the later events, first from the log
// and then live, with or without Run.
func TestEventResume(t *testing.T) {
	for _, withRun := range []bool{true, false} {
		for _, tc := range []struct {
			name  string
			since int64
		}{
			{"from the start", 0},
			{"from the middle", 7},
			{"from the last id", 20},
			{"across pages", 3}, // Page is 5: several pages of catch-up
		} {
			t.Run(fmt.Sprintf("run=%v/%s", withRun, tc.name), func(t *testing.T) {
				log := &fakeLog{}
				ids := appendN(t, log, 20, "volume")
				svc := event.NewService(log, event.Config{Page: 5, Poll: 10 * time.Millisecond})
				if withRun {
					run(t, svc)
				}
				s := subscribe(t, svc, tc.since, event.Filter{}, 0)
				s.waitIDs(t, ids[tc.since:])

				more := appendN(t, log, 12, "volume")
				svc.Notify()
				s.waitIDs(t, append(slices.Clone(ids[tc.since:]), more...))
			})
		}
	}
}

// TestEventFilters: a subscriber gets only the events its filter matches, from the log and live.
func TestEventFilters(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	// The same sequence twice: once before the subscription (catch-up), once after (live).
	seq := []*event.Event{
		ev("volume", a, "created"), ev("storage", b, "created"), ev("volume", a, "updated"),
		ev("volume", b, "created"), ev("vm", a, "deleted"), ev("volume", a, "deleted"),
	}
	for _, tc := range []struct {
		name string
		f    event.Filter
		want []int // indexes in seq
	}{
		{"everything", event.Filter{}, []int{0, 1, 2, 3, 4, 5}},
		{"resource", event.Filter{Resource: "volume"}, []int{0, 2, 3, 5}},
		{"resource id", event.Filter{ResourceID: a}, []int{0, 2, 4, 5}},
		{"resource and id", event.Filter{Resource: "volume", ResourceID: a}, []int{0, 2, 5}},
		{"types", event.Filter{Types: []string{"volume.created", "vm.deleted"}}, []int{0, 3, 4}},
		{"all three", event.Filter{Resource: "volume", ResourceID: b, Types: []string{"volume.created"}}, []int{3}},
		{"nothing", event.Filter{Resource: "image"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := &fakeLog{}
			svc := event.NewService(log, event.Config{Poll: time.Hour})
			run(t, svc)
			want := []int64{}
			add := func() {
				for i, e := range seq {
					c := *e
					require.NoError(t, log.Append(context.Background(), &c))
					if slices.Contains(tc.want, i) {
						want = append(want, c.ID)
					}
				}
				svc.Notify()
			}
			add()
			s := subscribe(t, svc, 0, tc.f, 0)
			all := subscribe(t, svc, 0, event.Filter{}, 0)
			settle()
			add()
			// Once a subscriber without a filter has every event, the filtered one has had its chance.
			all.waitIDs(t, log.ids())
			require.Eventually(t, func() bool { return len(s.ids()) >= len(want) }, 5*time.Second, time.Millisecond)
			settle()
			assert.Empty(t, s.errors())
			assert.Equal(t, want, s.ids())
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, e := range s.events {
				assert.True(t, tc.f.Match(&e), "event %d (%s) does not match", e.ID, e.Type)
			}
		})
	}
}

// TestEventFromNow: since -1 yields only the events appended after the subscription started.
func TestEventFromNow(t *testing.T) {
	for _, withRun := range []bool{true, false} {
		t.Run(fmt.Sprintf("run=%v", withRun), func(t *testing.T) {
			log := &fakeLog{}
			appendN(t, log, 10, "storage")
			svc := event.NewService(log, event.Config{Poll: 10 * time.Millisecond})
			if withRun {
				run(t, svc)
			}
			s := subscribe(t, svc, -1, event.Filter{}, 0)
			settle()
			assert.Empty(t, s.ids(), "nothing from before")
			later := appendN(t, log, 3, "storage")
			svc.Notify()
			s.waitIDs(t, later)
		})
	}
}

// TestEventGone: after a prune, a resume from below the pruned mark yields one error wrapping
// errkind.Gone and nothing else; a resume from the mark or later works.
func TestEventGone(t *testing.T) {
	log := &fakeLog{}
	old := time.Now().Add(-8 * 24 * time.Hour)
	for i := range 5 {
		e := ev("image", uuid.New(), "created")
		e.Time = old.Add(time.Duration(i) * time.Minute)
		require.NoError(t, log.Append(context.Background(), e))
	}
	recent := appendN(t, log, 3, "image")
	svc := event.NewService(log, event.Config{}) // retention 7 days
	run(t, svc)
	require.NoError(t, svc.Prune(context.Background()))
	assert.Equal(t, recent, log.ids(), "the old events are gone, the recent ones kept")
	last, err := svc.Last(context.Background())
	require.NoError(t, err)
	assert.Equal(t, recent[len(recent)-1], last)

	for _, tc := range []struct {
		since int64
		gone  bool
	}{{0, true}, {4, true}, {5, false}, {6, false}, {8, false}, {9, true}, {100, true}, {-1, false}} {
		t.Run(fmt.Sprint(tc.since), func(t *testing.T) {
			err := svc.Resumable(context.Background(), tc.since)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			var got []int64
			var errs []error
			for e, err := range svc.Subscribe(ctx, tc.since, event.Filter{}) {
				if err != nil {
					errs = append(errs, err)
					continue
				}
				got = append(got, e.ID)
			}
			if tc.gone {
				assert.ErrorIs(t, err, errkind.Gone)
				require.Len(t, errs, 1)
				assert.ErrorIs(t, errs[0], errkind.Gone)
				assert.Equal(t, "gone", errkind.Name(errs[0]))
				assert.Empty(t, got)
				return
			}
			assert.NoError(t, err)
			assert.Empty(t, errs, "the iteration ends without error when ctx ends")
			want := []int64{}
			if tc.since >= 0 {
				for _, id := range recent {
					if id > tc.since {
						want = append(want, id)
					}
				}
			}
			assert.Equal(t, want, append([]int64{}, got...))
		})
	}
}

// TestEventPrunedUnderALiveSubscriber: when the log is pruned beyond what Run delivered, live subscribers
// are not handed a page with a hole: they get Gone.
func TestEventPrunedUnderALiveSubscriber(t *testing.T) {
	log := &fakeLog{}
	svc := event.NewService(log, event.Config{Poll: time.Hour})
	run(t, svc)
	s := subscribe(t, svc, 0, event.Filter{}, 0)
	settle()
	old := ev("vm", uuid.New(), "created")
	old.Time = time.Now().Add(-30 * 24 * time.Hour)
	require.NoError(t, log.Append(context.Background(), old))
	_, err := log.Prune(context.Background(), time.Now().Add(-24*time.Hour)) // before Run read it
	require.NoError(t, err)
	appendN(t, log, 2, "vm")
	svc.Notify()
	require.Eventually(t, func() bool { return len(s.errors()) > 0 }, 5*time.Second, time.Millisecond)
	assert.ErrorIs(t, s.errors()[0], errkind.Gone)
	assert.Empty(t, s.ids())
}

// TestEventManySubscribers: many subscribers, some from the start and some from the middle, each receive
// every later event exactly once and in order while many goroutines append concurrently.
func TestEventManySubscribers(t *testing.T) {
	subscribers, writers, perWriter := 1000, 8, 100
	if testing.Short() {
		subscribers = 100
	}
	log := &fakeLog{}
	svc := event.NewService(log, event.Config{Poll: 50 * time.Millisecond, Page: 64})
	run(t, svc)
	appendN(t, log, 150, "volume") // some history to catch up on

	subs := make([]*sub, subscribers)
	since := make([]int64, subscribers)
	for i := range subs {
		since[i] = int64(i % 151) // 0..150: every one of the history's positions, some at its end
		subs[i] = subscribe(t, svc, since[i], event.Filter{}, 0)
	}
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range perWriter {
				require.NoError(t, log.Append(context.Background(), ev("volume", uuid.New(), "updated")))
				svc.Notify()
			}
		})
	}
	wg.Wait()
	all := log.ids()
	require.Len(t, all, 150+writers*perWriter)
	for i, s := range subs {
		require.Eventually(t, func() bool { return len(s.ids()) >= len(all)-int(since[i]) }, 30*time.Second, time.Millisecond,
			"subscriber %d has %d of %d", i, len(s.ids()), len(all)-int(since[i]))
	}
	settle()
	for i, s := range subs {
		require.Empty(t, s.errors(), "subscriber %d", i)
		require.Equal(t, all[since[i]:], s.ids(), "subscriber %d from %d: every event once, in order", i, since[i])
	}
}

// TestEventLiveSubscribersShareOneReader: once live, subscribers do not read the log: Run reads it once per
// wake-up for all of them.
func TestEventLiveSubscribersShareOneReader(t *testing.T) {
	log := &fakeLog{}
	svc := event.NewService(log, event.Config{Poll: time.Hour})
	run(t, svc)
	subs := make([]*sub, 500)
	for i := range subs {
		subs[i] = subscribe(t, svc, 0, event.Filter{}, 0)
	}
	settle()
	before := log.afterCalls()
	var want []int64
	for range 50 {
		want = append(want, appendN(t, log, 1, "vm")...)
		svc.Notify()
		time.Sleep(time.Millisecond)
	}
	for _, s := range subs {
		s.waitIDs(t, want)
	}
	reads := log.afterCalls() - before
	assert.LessOrEqual(t, reads, 2*50, "reads of the log for 50 events and %d subscribers", len(subs))
}

// TestEventSlowSubscriber: a subscriber slower than the events overflows its queue and reads the rest from
// the log: it loses nothing and gets nothing twice, and a fast one beside it is not held back.
func TestEventSlowSubscriber(t *testing.T) {
	log := &fakeLog{}
	svc := event.NewService(log, event.Config{Poll: time.Hour, Buffer: 4})
	run(t, svc)
	fast := subscribe(t, svc, 0, event.Filter{}, 0)

	// The slow subscriber holds its first event until gate opens.
	gate := make(chan struct{})
	var mu sync.Mutex
	var slow []int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e, err := range svc.Subscribe(ctx, 0, event.Filter{}) {
			if !assert.NoError(t, err) {
				return
			}
			mu.Lock()
			slow = append(slow, e.ID)
			mu.Unlock()
			<-gate
			time.Sleep(100 * time.Microsecond)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	slowIDs := func() []int64 { mu.Lock(); defer mu.Unlock(); return slices.Clone(slow) }
	settle()

	want := appendN(t, log, 1, "storage")
	svc.Notify()
	require.Eventually(t, func() bool { return len(slowIDs()) == 1 }, 5*time.Second, time.Millisecond)
	// Run fans 40 events out in one page: 4 fit in the slow subscriber's queue.
	want = append(want, appendN(t, log, 40, "storage")...)
	svc.Notify()
	fast.waitIDs(t, want)
	assert.Equal(t, want[:1], slowIDs(), "the slow subscriber is still at its first event")
	close(gate)
	for range 3 { // more bursts, while it catches up
		want = append(want, appendN(t, log, 40, "storage")...)
		svc.Notify()
	}
	fast.waitIDs(t, want)
	require.Eventually(t, func() bool { return len(slowIDs()) >= len(want) }, 10*time.Second, time.Millisecond)
	settle()
	assert.Equal(t, want, slowIDs(), "every event once, in order")
	// It got events 2 to 5 from its queue, then read the log after the 5th: Run never asked for that,
	// it read the 40 events after the 1st in one page.
	assert.True(t, log.readFrom(want[4]), "the slow subscriber read the log from its last queued event")
}

// TestEventNotifier: with a Notifier, events appended by another process (no Notify here) are delivered
// as soon as it wakes Run, not at the next poll.
func TestEventNotifier(t *testing.T) {
	log := &fakeLog{}
	n := &fakeNotifier{ch: make(chan struct{}, 1)}
	svc := event.NewService(log, event.Config{Poll: time.Hour, Notifier: n})
	run(t, svc)
	s := subscribe(t, svc, 0, event.Filter{}, 0)
	settle()

	ids := appendN(t, log, 2, "image") // by another process: no Notify
	time.Sleep(100 * time.Millisecond)
	assert.Empty(t, s.ids(), "not delivered before a wake-up")
	n.ch <- struct{}{}
	s.waitIDs(t, ids)

	more := appendN(t, log, 1, "image")
	n.ch <- struct{}{}
	s.waitIDs(t, append(ids, more...))
}

// TestEventNotifierRetries: a Listen that fails is retried, and wake-ups work once it succeeds.
func TestEventNotifierRetries(t *testing.T) {
	log := &fakeLog{}
	n := &fakeNotifier{ch: make(chan struct{}, 1)}
	n.fails.Store(2)
	svc := event.NewService(log, event.Config{Poll: 30 * time.Millisecond, Notifier: n})
	run(t, svc)
	require.Eventually(t, func() bool { return n.listens.Load() == 3 }, 5*time.Second, time.Millisecond, "Listen is retried")
	s := subscribe(t, svc, 0, event.Filter{}, 0)
	ids := appendN(t, log, 1, "image")
	n.ch <- struct{}{}
	s.waitIDs(t, ids)
}

// TestEventRunStops: when Run stops, subscribers keep receiving by reading the log every Poll; when it
// starts again they go live again; nothing is lost or repeated.
func TestEventRunStops(t *testing.T) {
	log := &fakeLog{}
	svc := event.NewService(log, event.Config{Poll: 20 * time.Millisecond})
	stop := run(t, svc)
	s := subscribe(t, svc, 0, event.Filter{}, 0)
	want := appendN(t, log, 3, "volume")
	svc.Notify()
	s.waitIDs(t, want)
	stop()
	time.Sleep(20 * time.Millisecond)
	want = append(want, appendN(t, log, 3, "volume")...)
	s.waitIDs(t, want)
	run(t, svc)
	want = append(want, appendN(t, log, 3, "volume")...)
	svc.Notify()
	s.waitIDs(t, want)
}

// TestEventUnusedIDs: ids handed out but never visible (rolled-back units of work) at the end of the log
// when Run starts do not keep a subscriber from going live.
func TestEventUnusedIDs(t *testing.T) {
	log := &fakeLog{}
	want := appendN(t, log, 2, "vm")
	log.skip()
	log.skip()
	svc := event.NewService(log, event.Config{Poll: time.Hour})
	run(t, svc)
	s := subscribe(t, svc, 0, event.Filter{}, 0)
	s.waitIDs(t, want)
	settle()
	reads := log.afterCalls()
	settle()
	assert.Equal(t, reads, log.afterCalls(), "the subscriber went live: it stopped reading the log")
	want = append(want, appendN(t, log, 1, "vm")...)
	svc.Notify()
	s.waitIDs(t, want)
}

// TestEventEnds: the iteration ends without an error when ctx ends or the caller breaks; a log that fails
// ends it with the log's error.
func TestEventEnds(t *testing.T) {
	log := &fakeLog{}
	appendN(t, log, 3, "vm")
	svc := event.NewService(log, event.Config{Poll: 10 * time.Millisecond})
	run(t, svc)

	n := 0
	for _, err := range svc.Subscribe(context.Background(), 0, event.Filter{}) {
		require.NoError(t, err)
		n++
		if n == 2 {
			break
		}
	}
	assert.Equal(t, 2, n)

	ctx, cancel := context.WithCancel(context.Background())
	s := make(chan error, 10)
	go func() {
		defer close(s)
		for _, err := range svc.Subscribe(ctx, 3, event.Filter{}) {
			s <- err
		}
	}()
	settle()
	cancel()
	for err := range s {
		assert.NoError(t, err)
	}

	bad := &fakeLog{fail: errors.New("database is down")}
	svc2 := event.NewService(bad, event.Config{Poll: 10 * time.Millisecond})
	var errs []error
	for _, err := range svc2.Subscribe(context.Background(), 0, event.Filter{}) {
		errs = append(errs, err)
	}
	require.Len(t, errs, 1)
	assert.ErrorContains(t, errs[0], "database is down")
}
