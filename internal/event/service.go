package event

import (
	"context"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openvair/openvair/internal/errkind"
)

// Defaults of Config.
const (
	// DefaultRetention is how long Prune keeps events.
	DefaultRetention = 7 * 24 * time.Hour
	// DefaultPoll is how often Run reads the log when nothing woke it.
	DefaultPoll = time.Second
	// DefaultBuffer is how many live events a subscriber may have queued before it falls back to reading
	// the log itself.
	DefaultBuffer = 256
	// DefaultPage is how many events one read of the log asks for.
	DefaultPage = 500
	// MaxPage is the most events one read asks for: the stores return at most 1000 at once.
	MaxPage = 1000
)

// Config configures a Service. Zero fields take their defaults.
type Config struct {
	// Retention is the age beyond which Prune deletes events (default DefaultRetention).
	Retention time.Duration
	// Notifier, when set, wakes Run as soon as another process appended events (PostgreSQL LISTEN/NOTIFY);
	// without it, events appended by other processes are seen within Poll.
	Notifier Notifier
	// Poll is how often Run reads the log without a wake-up (default DefaultPoll; a few hundred
	// milliseconds suit a SQLite file shared by several processes). Subscribers also read the log at this
	// pace while Run is not running.
	Poll time.Duration
	// Buffer is how many live events a subscriber may have queued (default DefaultBuffer). A subscriber
	// that falls further behind loses nothing: it reads the log from its last event until it is live again.
	Buffer int
	// Page is how many events one read of the log asks for (default DefaultPage, at most MaxPage).
	Page int
	// Logger receives the warnings of Run (default slog.Default()).
	Logger *slog.Logger
}

// Service follows a Log and hands its events to subscribers: one goroutine (Run) reads the log and fans
// new events out to every live subscriber, and a subscriber that resumes from an old id, or falls behind,
// reads the log itself until it has caught up. A Service is safe for concurrent use.
type Service struct {
	log    Log
	cfg    Config
	logger *slog.Logger
	wake   chan struct{}
	active atomic.Bool // a Run is in progress

	mu      sync.Mutex
	running bool  // Run is fanning out: subscribers at head may go live
	head    int64 // the greatest id Run has fanned out (or the log's last id when Run started)
	subs    map[*liveSub]struct{}
	started chan struct{} // closed when Run starts fanning out; replaced when it stops
}

// liveSub is a subscriber that receives events from Run. Run closes ch (and forgets the subscriber) when
// ch is full or when Run stops: the subscriber then reads the log from its last event.
type liveSub struct {
	ch chan *Event
	f  Filter
}

// NewService returns a Service over log. Call Run for live delivery.
func NewService(log Log, cfg Config) *Service {
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.Page <= 0 {
		cfg.Page = DefaultPage
	}
	cfg.Page = min(cfg.Page, MaxPage)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &Service{log: log, cfg: cfg, logger: logger, wake: make(chan struct{}, 1),
		subs: map[*liveSub]struct{}{}, started: make(chan struct{})}
}

// Notify tells Run that a commit in this process appended events, so that it reads the log now instead of
// at the next poll. It never blocks; wake-ups that come while Run is busy are merged into one.
func (s *Service) Notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Last returns the greatest event id handed out so far (0 when there is none).
func (s *Service) Last(ctx context.Context) (int64, error) {
	last, _, err := s.log.Last(ctx)
	return last, err
}

// Prune deletes the events older than the retention. Subscribers that later ask to resume from an id
// at or below one deleted get an error wrapping errkind.Gone.
func (s *Service) Prune(ctx context.Context) error {
	pruned, err := s.log.Prune(ctx, time.Now().Add(-s.cfg.Retention))
	if err != nil {
		return fmt.Errorf("prune events: %w", err)
	}
	s.logger.DebugContext(ctx, "events pruned", "pruned_mark", pruned)
	return nil
}

// Resumable reports whether a subscription can resume after since: it returns nil when it can (or when
// since is negative, "from now"), an error wrapping errkind.Gone when events after since were pruned or
// since is beyond the log's last id (an id of another log, or of this one before it was reset), or the
// log's error. Subscribe makes the same checks; Resumable lets a caller refuse a resume before it starts
// to answer (an HTTP server answers 410).
func (s *Service) Resumable(ctx context.Context, since int64) error {
	if since < 0 {
		return nil
	}
	last, pruned, err := s.log.Last(ctx)
	if err != nil {
		return fmt.Errorf("read the event log: %w", err)
	}
	if since > last {
		return errkind.New(errkind.Gone, "", "",
			"event id %d is beyond the last event id %d: it is not an id of this log; subscribe from now", since, last)
	}
	return gone(since, pruned)
}

// gone returns the error of a resume from since when the log's pruned mark is pruned, or nil.
func gone(since, pruned int64) error {
	if since >= pruned {
		return nil
	}
	return errkind.New(errkind.Gone, "", "",
		"events after id %d are gone: events up to id %d were pruned (they are kept for a limited time); subscribe from now or from a later id", since, pruned)
}

// Run follows the log until ctx ends: it reads new events when Notify or the Notifier wakes it, and at
// least every Poll, and hands them to every live subscriber. Live delivery needs Run: without it,
// subscribers still get every event, by reading the log themselves every Poll. Only one Run may be in
// progress; a second concurrent call logs an error and returns at once.
func (s *Service) Run(ctx context.Context) {
	if !s.active.CompareAndSwap(false, true) {
		s.logger.ErrorContext(ctx, "event.Service.Run called while already running")
		return
	}
	defer s.active.Store(false)

	// Start from the log's current end: subscribers behind it read the log until they reach it.
	var head int64
	for {
		last, _, err := s.log.Last(ctx)
		if err == nil {
			head = last
			break
		}
		if ctx.Err() != nil {
			return
		}
		s.logger.WarnContext(ctx, "events: cannot read the log; retrying", "err", err)
		if !sleep(ctx, s.cfg.Poll) {
			return
		}
	}
	s.mu.Lock()
	s.running, s.head = true, head
	close(s.started)
	s.mu.Unlock()
	defer s.stop()

	var wg sync.WaitGroup
	if s.cfg.Notifier != nil {
		wg.Go(func() { s.listen(ctx) })
	}
	defer wg.Wait()

	tick := time.NewTicker(s.cfg.Poll)
	defer tick.Stop()
	for {
		s.follow(ctx)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-tick.C:
		}
	}
}

// stop ends live delivery: every live subscriber goes back to reading the log.
func (s *Service) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running = false
	for l := range s.subs {
		close(l.ch)
		delete(s.subs, l)
	}
	s.started = make(chan struct{})
}

// listen turns the Notifier's wake-ups into Notify calls until ctx ends, listening again after a failure.
func (s *Service) listen(ctx context.Context) {
	backoff := max(s.cfg.Poll, 100*time.Millisecond)
	for {
		ch, err := s.cfg.Notifier.Listen(ctx)
		if err == nil {
			s.Notify() // events may have been appended while nobody listened
			err = s.forward(ctx, ch)
		}
		if ctx.Err() != nil {
			return
		}
		s.logger.WarnContext(ctx, "events: cannot listen for other processes' events; polling until it works again", "err", err)
		if !sleep(ctx, backoff) {
			return
		}
	}
}

// forward calls Notify for every value of ch until ch closes or ctx ends.
func (s *Service) forward(ctx context.Context, ch <-chan struct{}) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-ch:
			if !ok {
				return fmt.Errorf("the notifier's channel closed")
			}
			s.Notify()
		}
	}
}

// follow reads the log from head until it has caught up, fanning every page out.
func (s *Service) follow(ctx context.Context) {
	for {
		head := s.head // only Run writes head
		page, err := s.log.After(ctx, head, s.cfg.Page)
		if err != nil {
			if ctx.Err() == nil {
				s.logger.WarnContext(ctx, "events: cannot read the log", "err", err)
			}
			return
		}
		if len(page) == 0 {
			return
		}
		// Events after head that were pruned before this read would be missing from the page: then no
		// live subscriber may take the page as the continuation of what it has.
		_, pruned, err := s.log.Last(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.logger.WarnContext(ctx, "events: cannot read the log", "err", err)
			}
			return
		}
		s.mu.Lock()
		if pruned > head {
			s.logger.WarnContext(ctx, "events: the log was pruned beyond what was delivered; subscribers resume from the log",
				"delivered", head, "pruned_mark", pruned)
			for l := range s.subs {
				close(l.ch)
				delete(s.subs, l)
			}
		}
		for l := range s.subs {
			s.fanout(l, page)
		}
		s.head = page[len(page)-1].ID
		s.mu.Unlock()
		if len(page) < s.cfg.Page {
			return
		}
	}
}

// fanout queues the events of page that l wants; when l's queue is full it closes it, and l reads the
// rest from the log. Called with s.mu held.
func (s *Service) fanout(l *liveSub, page []Event) {
	for i := range page {
		e := &page[i]
		if !l.f.Match(e) {
			continue
		}
		select {
		case l.ch <- e:
		default:
			close(l.ch)
			delete(s.subs, l)
			return
		}
	}
}

// unregister forgets a live subscriber that stops (Run may have forgotten it already).
func (s *Service) unregister(l *liveSub) {
	s.mu.Lock()
	delete(s.subs, l)
	s.mu.Unlock()
}

// Subscribe returns the events with an id greater than since that match f, in id order, each once, and
// then follows the log live until ctx ends. A negative since means "from now": only events after the
// log's last id when the iteration starts.
//
// The iteration ends without an error when ctx ends or the caller stops it. It yields an error, and then
// ends, when events after since were pruned or since is beyond the log's last id (the error wraps
// errkind.Gone; see Resumable), or when reading the log fails (a caller may subscribe again from the last
// id it got).
//
// A subscriber first reads the log itself, a page at a time, until it reaches what Run has fanned out;
// then it receives Run's events, queued up to Config.Buffer. When its queue overflows (the caller is
// slow), it reads the log again from its last event, so it loses nothing. While Run is not running,
// subscribers read the log every Config.Poll. The events share their Data: callers must not modify it.
func (s *Service) Subscribe(ctx context.Context, since int64, f Filter) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		cursor := since
		if since < 0 {
			last, _, err := s.log.Last(ctx)
			if err != nil {
				if ctx.Err() == nil {
					yield(Event{}, fmt.Errorf("read the event log: %w", err))
				}
				return
			}
			cursor = last
		} else if err := s.Resumable(ctx, since); err != nil {
			if ctx.Err() == nil {
				yield(Event{}, err)
			}
			return
		}
		for {
			more, err := s.catchUp(ctx, &cursor, f, yield)
			if err != nil {
				if ctx.Err() == nil {
					yield(Event{}, err)
				}
				return
			}
			if !more {
				return
			}
			s.mu.Lock()
			if s.running && cursor >= s.head {
				l := &liveSub{ch: make(chan *Event, s.cfg.Buffer), f: f}
				s.subs[l] = struct{}{}
				s.mu.Unlock()
				if !s.live(ctx, l, &cursor, yield) {
					return
				}
				continue // overflow, or Run stopped: read the log from cursor
			}
			running, started := s.running, s.started
			s.mu.Unlock()
			if running {
				continue // Run went further while we read: read on
			}
			// No Run: read the log again after Poll, or as soon as Run starts.
			t := time.NewTimer(s.cfg.Poll)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-started:
			case <-t.C:
			}
			t.Stop()
		}
	}
}

// catchUp yields the events after *cursor that the log holds, a page at a time, moving *cursor past
// every event it reads. It returns more=false when the caller stopped the iteration.
func (s *Service) catchUp(ctx context.Context, cursor *int64, f Filter, yield func(Event, error) bool) (more bool, err error) {
	// Every event up to Run's head was visible before this read starts (Run read it, or it was at or
	// below the log's last id when Run started): once the log has nothing after the cursor, the cursor
	// may move to head even when the ids up to it hold no events (ids of units of work that rolled back).
	s.mu.Lock()
	var head int64
	if s.running {
		head = s.head
	}
	s.mu.Unlock()
	for {
		from := *cursor
		page, err := s.log.After(ctx, from, s.cfg.Page)
		if err != nil {
			return false, fmt.Errorf("read the event log after id %d: %w", from, err)
		}
		// The pruned mark read after the page: when it is below from, nothing after from was deleted
		// before the page was read, so the page misses nothing.
		_, pruned, err := s.log.Last(ctx)
		if err != nil {
			return false, fmt.Errorf("read the event log: %w", err)
		}
		if err := gone(from, pruned); err != nil {
			return false, err
		}
		for i := range page {
			*cursor = page[i].ID
			if f.Match(&page[i]) && !yield(page[i], nil) {
				return false, nil
			}
		}
		if len(page) == 0 {
			*cursor = max(*cursor, head)
			return true, nil
		}
		if len(page) < s.cfg.Page && *cursor >= head {
			return true, nil // the log's end, probably; if not, the caller reads on
		}
	}
}

// live yields the events Run queues for l, skipping those at or below *cursor (read from the log
// already), until l's queue is closed (it returns true: read the log from *cursor) or the iteration ends
// (false).
func (s *Service) live(ctx context.Context, l *liveSub, cursor *int64, yield func(Event, error) bool) (more bool) {
	defer func() {
		if !more {
			s.unregister(l)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return false
		case e, ok := <-l.ch:
			if !ok {
				return true
			}
			if e.ID <= *cursor {
				continue
			}
			*cursor = e.ID
			if !yield(*e, nil) {
				return false
			}
		}
	}
}

// sleep waits for d or until ctx ends; it reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
