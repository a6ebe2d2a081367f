package libvirt

import (
	"context"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
)

// States reports the power state of every openvair domain (name prefix "openvair-") in one call.
func (d *Driver) States(ctx context.Context) (map[uuid.UUID]driver.DomainState, error) {
	out := map[uuid.UUID]driver.DomainState{}
	err := d.c.call(ctx, "", "list domains", func(s *session) error {
		doms, _, err := s.l.ConnectListAllDomains(1, 0)
		if err != nil {
			return err
		}
		for _, dom := range doms {
			if !strings.HasPrefix(dom.Name, DomainPrefix) {
				continue
			}
			st, reason, err := s.l.DomainGetState(dom, 0)
			if golibvirt.IsNotFound(err) {
				continue // undefined meanwhile
			}
			if err != nil {
				return err
			}
			out[uuid.UUID(dom.UUID)] = domainState(golibvirt.DomainState(st), reason)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// WatchStates streams the power state changes of openvair domains from libvirt lifecycle events. The
// channel is closed when ctx ends, when the connection to libvirtd is lost, or when the driver is closed;
// the caller then resubscribes (a new call dials a new connection).
func (d *Driver) WatchStates(ctx context.Context) (<-chan driver.StateEvent, error) {
	out := make(chan driver.StateEvent, 64)
	// wctx ends the subscription when the caller's ctx ends, or when the call itself is abandoned (so a
	// subscription that completes after its caller gave up does not linger).
	wctx, wcancel := context.WithCancel(ctx)
	err := d.c.call(ctx, "", "subscribe to events", func(s *session) error {
		if !s.addSub() {
			return errkind.New(driver.ErrUnavailable, entity, "", "connection closing")
		}
		subCtx, cancel := context.WithCancel(s.ctx)
		stop := context.AfterFunc(wctx, cancel)
		src, err := s.l.LifecycleEvents(subCtx)
		if err != nil {
			stop()
			cancel()
			s.subs.Done()
			return err
		}
		go func() {
			defer s.subs.Done()
			defer close(out)
			defer wcancel()
			defer stop()
			defer cancel()
			forward(subCtx, src, out)
		}()
		return nil
	})
	if err != nil {
		wcancel()
		return nil, err
	}
	return out, nil
}

// forward maps lifecycle events until src closes or ctx ends; it then drains src so go-libvirt's
// goroutine (which sends without watching its context) can finish and deregister the callback.
func forward(ctx context.Context, src <-chan golibvirt.DomainEventLifecycleMsg, out chan<- driver.StateEvent) {
	defer func() {
		for range src {
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-src:
			if !ok {
				return
			}
			se, ok := stateEvent(ev)
			if !ok {
				continue
			}
			select {
			case out <- se:
			case <-ctx.Done():
				return
			}
		}
	}
}

// stateEvent maps a lifecycle event of an openvair domain to the power state it leads to.
func stateEvent(ev golibvirt.DomainEventLifecycleMsg) (driver.StateEvent, bool) {
	if !strings.HasPrefix(ev.Dom.Name, DomainPrefix) {
		return driver.StateEvent{}, false
	}
	ds, ok := eventState(golibvirt.DomainEventType(ev.Event), ev.Detail)
	if !ok {
		return driver.StateEvent{}, false
	}
	return driver.StateEvent{ID: uuid.UUID(ev.Dom.UUID), State: ds.Power, Reason: ds.Reason, At: time.Now()}, true
}
