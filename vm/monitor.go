package vm

import (
	"context"
	"errors"
	"fmt"
	"github.com/openvair/openvair/internal/uow"
	"iter"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
)

// reasonMissing is the status reason of a VM whose domain disappeared.
const reasonMissing = "its domain disappeared from the hypervisor; it is not recreated automatically"

// ObservePower records a power state reported by the hypervisor (an event or a resync) at time at, when the
// hypervisor said it (zero: now). It never touches a VM in the middle of an operation (that operation records
// the outcome), nor one whose power state was recorded after at: a late event, or a resync that read the
// states before an operation finished, never overwrites what the operation answered. A domain that
// disappeared puts the VM in error with a reason.
func (s *Service) ObservePower(ctx context.Context, id uuid.UUID, st driver.DomainState, at time.Time) error {
	if at.IsZero() {
		at = s.now()
	}
	_, err := s.update(ctx, id, func(_ context.Context, cur *VM) error {
		if cur.Status != StatusAvailable && cur.Status != StatusError {
			return uow.ErrSkip
		}
		if at.Before(cur.PowerStateObservedAt) {
			return uow.ErrSkip // older news than what is recorded
		}
		if cur.PowerState == st.Power && (cur.PowerStateReason == st.Reason || st.Reason == "") {
			return uow.ErrSkip
		}
		cur.observe(st, at.UTC())
		if st.Power == PowerMissing {
			return cur.SetStatus(StatusError, reasonMissing)
		}
		if cur.Status == StatusError && cur.StatusReason == reasonMissing {
			return cur.SetStatus(StatusAvailable, "")
		}
		return nil
	})
	return err
}

// SyncPowerStates asks the hypervisor for every VM's power state and records the changes.
func (s *Service) SyncPowerStates(ctx context.Context) error {
	hv, err := s.hypervisor()
	if err != nil {
		return err
	}
	var states map[uuid.UUID]driver.DomainState
	at := s.now() // the states are at least as new as this
	if l, ok := hv.(driver.StateLister); ok {
		if err := s.call(ctx, func(ctx context.Context) (err error) { states, err = l.States(ctx); return err }); err != nil {
			return fmt.Errorf("list power states: %w", err)
		}
	}
	var errs []error
	err = forEach(ctx, s.d.Repo, ListOptions{}, func(v *VM) {
		st, ok := states[v.ID]
		switch {
		case states != nil && !ok:
			st = driver.DomainState{Power: PowerMissing}
		case states == nil:
			var err error
			at = s.now()
			if st, err = s.state(ctx, hv, v.ID); err != nil {
				errs = append(errs, err)
				return
			}
		}
		if err := s.ObservePower(ctx, v.ID, st, at); err != nil {
			errs = append(errs, err)
		}
	})
	return errors.Join(append(errs, err)...)
}

// Watch follows the hypervisor's power state events until ctx ends, resynchronising every VM after each
// (re)subscription and every resync interval, so that changes made behind openvair's back (a domain
// destroyed directly through libvirt) show up within a second when events work, and within resync when
// they do not. When the hypervisor cannot be reached it retries with a backoff of at most
// MaxWatchBackoff, so events flow again and a full resync has run about a second after it is back; in
// between, reads mark power states stale.
func (s *Service) Watch(ctx context.Context, resync time.Duration) {
	hv, err := s.hypervisor()
	if err != nil {
		return
	}
	defer s.live.stopped()
	watcher, _ := hv.(driver.StateWatcher)
	backoff := minWatchBackoff
	failing := false // log the first failure of a series as a warning, the repeats at debug level
	report := func(what string, err error) {
		if err == nil || ctx.Err() != nil {
			return
		}
		s.live.lost(s.now())
		if failing {
			s.Log.Debug("vm: "+what, "err", err)
			return
		}
		failing = true
		s.Log.Warn("vm: "+what+" (retrying with backoff)", "err", err)
	}
	for ctx.Err() == nil {
		var events <-chan driver.StateEvent
		subscribed := watcher == nil
		if watcher != nil {
			if events, err = watcher.WatchStates(ctx); err != nil {
				report("subscribing to power state events", err)
			} else {
				subscribed = true
			}
		}
		if subscribed {
			err := s.SyncPowerStates(ctx)
			report("power state resync", err)
			if err == nil {
				s.live.synced(s.now(), watcher != nil)
				if failing {
					s.Log.Info("vm: following power state events again")
				}
				failing, backoff = false, minWatchBackoff
				s.follow(ctx, events, resync)
				if ctx.Err() == nil && watcher != nil {
					s.live.lost(s.now()) // the event stream ended: the connection was lost
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, MaxWatchBackoff)
	}
}

// Backoff between attempts to follow an unreachable hypervisor.
const (
	minWatchBackoff = 50 * time.Millisecond
	// MaxWatchBackoff is the longest wait between attempts, so power states are followed again about
	// that long after the hypervisor comes back.
	MaxWatchBackoff = 500 * time.Millisecond
)

// follow applies events until the channel closes, resynchronising every resync interval. Without events
// (a hypervisor that cannot push them) it returns after one interval.
func (s *Service) follow(ctx context.Context, events <-chan driver.StateEvent, resync time.Duration) {
	tick := time.NewTicker(resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			st := driver.DomainState{Power: ev.State, Reason: ev.Reason}
			if err := s.ObservePower(ctx, ev.ID, st, ev.At); err != nil && ctx.Err() == nil {
				s.Log.Warn("vm: recording a power state event", "id", ev.ID, "err", err)
			}
		case <-tick.C:
			if events == nil {
				return
			}
			if err := s.SyncPowerStates(ctx); err != nil && ctx.Err() == nil {
				s.Log.Warn("vm: power state resync", "err", err)
				s.live.lost(s.now())
			} else if err == nil {
				s.live.synced(s.now(), true)
			}
		}
	}
}

// Recover finishes what a crash interrupted: a VM left creating is removed with its domain; a VM left in
// another operation goes back to available or error according to what the hypervisor reports.
func (s *Service) Recover(ctx context.Context) error {
	for _, status := range []Status{StatusCreating, StatusStarting, StatusStopping, StatusEditing, StatusDeleting} {
		err := forEach(ctx, s.d.Repo, ListOptions{Status: status}, func(v *VM) {
			if s.ops.Busy(ctx, v.ID) {
				return // a live operation of another process (or this one) is on it
			}
			hv, err := s.hypervisor()
			if err != nil {
				s.fail(ctx, v.ID, fmt.Sprintf("interrupted while %s; no hypervisor to check it", status))
				return
			}
			if status == StatusCreating {
				if err := s.call(ctx, func(ctx context.Context) error { return hv.Undefine(ctx, v.ID) }); err == nil {
					s.logErr("recover: remove a half-created VM", v.ID, s.d.Repo.Delete(ctx, v.ID))
					return
				}
			}
			st, err := s.state(ctx, hv, v.ID)
			if err != nil {
				s.fail(ctx, v.ID, fmt.Sprintf("interrupted while %s: %v", status, err))
				return
			}
			_, err = s.update(ctx, v.ID, func(_ context.Context, cur *VM) error {
				cur.observe(st, s.now().UTC())
				if st.Power == PowerMissing {
					return cur.SetStatus(StatusError, reasonMissing)
				}
				if status == StatusDeleting {
					return cur.SetStatus(StatusError, "interrupted while deleting; delete it again")
				}
				return cur.SetStatus(StatusAvailable, "")
			})
			s.logErr("recover", v.ID, err)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// All iterates over every VM matching opts, page by page; a failed page is yielded as its error.
func All(ctx context.Context, repo Repository, opts ListOptions) iter.Seq2[*VM, error] {
	return uow.All(ctx, func(ctx context.Context, cursor string) ([]*VM, string, error) {
		opts.Cursor = cursor
		page, err := repo.List(ctx, opts)
		return page.Items, page.NextCursor, err
	})
}

// forEach calls fn for every VM matching opts and returns the first error.
func forEach(ctx context.Context, repo Repository, opts ListOptions, fn func(*VM)) error {
	return uow.ForEach(All(ctx, repo, opts), fn)
}
