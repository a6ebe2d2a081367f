package event_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/event"
)

// fakeLog is an event.Log in memory: ids in append order, a pruned mark, and a record of the reads.
type fakeLog struct {
	mu     sync.Mutex
	events []event.Event
	next   int64
	pruned int64
	afters []int64 // the after argument of every After call
	fail   error   // when set, every call fails with it
}

func (l *fakeLog) Append(_ context.Context, e *event.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return l.fail
	}
	l.next++
	e.ID = l.next
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	l.events = append(l.events, *e)
	return nil
}

func (l *fakeLog) After(ctx context.Context, after int64, limit int) ([]event.Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if l.fail != nil {
		return nil, l.fail
	}
	l.afters = append(l.afters, after)
	i := sort.Search(len(l.events), func(i int) bool { return l.events[i].ID > after })
	j := min(len(l.events), i+limit)
	return slices.Clone(l.events[i:j]), nil
}

func (l *fakeLog) Last(ctx context.Context) (int64, int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	if l.fail != nil {
		return 0, 0, l.fail
	}
	return l.next, l.pruned, nil
}

func (l *fakeLog) Prune(_ context.Context, before time.Time) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kept := l.events[:0:0]
	for _, e := range l.events {
		if e.Time.Before(before) {
			l.pruned = max(l.pruned, e.ID)
		} else {
			kept = append(kept, e)
		}
	}
	l.events = kept
	return l.pruned, nil
}

// skip hands out an id that never becomes an event (a unit of work that rolled back).
func (l *fakeLog) skip() {
	l.mu.Lock()
	l.next++
	l.mu.Unlock()
}

// afterCalls is how many times After was called.
func (l *fakeLog) afterCalls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.afters)
}

// readFrom reports whether After was ever called with after id.
func (l *fakeLog) readFrom(id int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.afters, id)
}

// ids returns the ids of the events the log holds.
func (l *fakeLog) ids() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]int64, len(l.events))
	for i, e := range l.events {
		out[i] = e.ID
	}
	return out
}

// fakeNotifier is an event.Notifier whose wake-ups the test sends; the first fails Listen calls fail.
type fakeNotifier struct {
	ch      chan struct{}
	fails   atomic.Int32
	listens atomic.Int32
}

func (n *fakeNotifier) Listen(ctx context.Context) (<-chan struct{}, error) {
	n.listens.Add(1)
	if n.fails.Add(-1) >= 0 {
		return nil, errors.New("listen: connection refused")
	}
	return n.ch, nil
}

// ev returns an event of resource kind with a JSON body.
func ev(resource string, id uuid.UUID, what string) *event.Event {
	return &event.Event{Type: resource + "." + what, Resource: resource, ResourceID: id, Version: 1,
		Data: json.RawMessage(`{"id":"` + id.String() + `"}`)}
}

// appendN appends n events of resource (a new id each), and returns their ids.
func appendN(t testing.TB, l event.Log, n int, resource string) []int64 {
	t.Helper()
	ids := make([]int64, 0, n)
	for range n {
		e := ev(resource, uuid.New(), "created")
		require.NoError(t, l.Append(context.Background(), e))
		ids = append(ids, e.ID)
	}
	return ids
}

// sub collects what a subscription yields, in a goroutine, as fast as it comes (or with a delay per
// event).
type sub struct {
	mu     sync.Mutex
	events []event.Event
	errs   []error
	done   chan struct{}
	cancel context.CancelFunc
}

func subscribe(t testing.TB, svc *event.Service, since int64, f event.Filter, delay time.Duration) *sub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &sub{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(s.done)
		for e, err := range svc.Subscribe(ctx, since, f) {
			s.mu.Lock()
			if err != nil {
				s.errs = append(s.errs, err)
			} else {
				s.events = append(s.events, e)
			}
			s.mu.Unlock()
			if delay > 0 {
				time.Sleep(delay)
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

// ids returns the ids received so far.
func (s *sub) ids() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int64, len(s.events))
	for i, e := range s.events {
		out[i] = e.ID
	}
	return out
}

func (s *sub) errors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.errs)
}

// waitIDs waits until the subscriber has n events or failed, then requires exactly want.
func (s *sub) waitIDs(t testing.TB, want []int64) {
	t.Helper()
	require.Eventually(t, func() bool { return len(s.ids()) >= len(want) || len(s.errors()) > 0 },
		10*time.Second, time.Millisecond, "got %d of %d events", len(s.ids()), len(want))
	require.Empty(t, s.errors())
	require.Equal(t, want, s.ids())
}

// run starts svc.Run until the test ends.
func run(t testing.TB, svc *event.Service) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		svc.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return cancel
}

// settle gives subscriptions time to reach the live feed, where appended events come from Run.
func settle() { time.Sleep(50 * time.Millisecond) }
