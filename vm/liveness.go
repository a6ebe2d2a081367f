package vm

import (
	"sync"
	"time"
)

// liveness is what the power state monitor (Watch) knows about following the hypervisor: whether events
// flow after a full resync, and when the last resync succeeded. Reads use it to say how current a VM's
// power state is.
type liveness struct {
	mu       sync.Mutex
	watching bool      // Watch runs
	live     bool      // subscribed to events and resynchronised since
	lastSync time.Time // end of the last successful full resync
	lostAt   time.Time // when following stopped working (zero while live)
}

// synced records a successful full resync; live says whether events are followed too.
func (l *liveness) synced(at time.Time, live bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.watching, l.lastSync = true, at
	l.live = live
	if live {
		l.lostAt = time.Time{}
	}
}

// lost records that the hypervisor cannot be followed now.
func (l *liveness) lost(at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.watching = true
	if l.live || l.lostAt.IsZero() {
		l.lostAt = at
	}
	l.live = false
}

// stopped records that Watch ended: nothing follows the hypervisor any more, which is not an outage.
func (l *liveness) stopped() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.watching, l.live, l.lostAt = false, false, time.Time{}
}

// annotate sets v's read-only freshness fields: the power state was confirmed at least by the last full
// resync that saw it, and it is stale while Watch runs but cannot follow the hypervisor.
func (l *liveness) annotate(v *VM) *VM {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lastSync.After(v.PowerStateObservedAt) && !v.PowerStateObservedAt.IsZero() && v.PowerState != PowerMissing {
		v.PowerStateObservedAt = l.lastSync
	}
	v.PowerStateStale = l.watching && !l.live
	return v
}

// PowerFollowed reports whether the power state monitor follows the hypervisor now (events flow and a full
// resync ran since they started), and since when it does not when it does not (zero when Watch does not
// run or never lost it).
func (s *Service) PowerFollowed() (live bool, lostAt time.Time) {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	return s.live.live, s.live.lostAt
}
