// Package outbox wraps a repo.Store so that every create, update and delete of a storage, volume, image,
// VM or operation appends an event to the store's event log in the same unit of work (a transactional
// outbox), and so that a caller's expected version (reqctx.WithExpectedVersion, HTTP If-Match) is checked at
// the first write of that entity. It is the one place where changes become events: services and
// repositories know nothing of it.
package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/event"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/internal/reqctx"
	"github.com/openvair/openvair/repo"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// Store is a repo.Store whose writes emit events.
type Store struct {
	repo.Store
	notify func()
}

// Wrap returns st with events. notify is called after a unit of work that appended events has committed
// (it wakes this process's event followers); it may be nil.
func Wrap(st repo.Store, notify func()) *Store {
	if notify == nil {
		notify = func() {}
	}
	return &Store{Store: st, notify: notify}
}

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() repo.Store { return s.Store }

type uowKey struct{}

// unit tracks what the current attempt of the outermost unit of work did: whether it appended events, and
// which expected versions it checked (given back when the attempt rolls back, so that a retried unit of
// work checks them again).
type unit struct {
	appended bool
	checked  []*reqctx.Expectation
}

// InTx runs fn as one unit of work of the wrapped store and, once it has committed, notifies followers
// when fn appended events.
func (s *Store) InTx(ctx context.Context, fn func(ctx context.Context) error) error {
	if _, nested := ctx.Value(uowKey{}).(*unit); nested {
		return s.Store.InTx(ctx, fn)
	}
	u := &unit{}
	restore := func() {
		for _, e := range u.checked {
			e.Unchecked()
		}
		u.checked = nil
	}
	err := s.Store.InTx(context.WithValue(ctx, uowKey{}, u), func(ctx context.Context) error {
		// The store may run fn again after a serialization failure: that attempt starts afresh.
		restore()
		u.appended = false
		return fn(ctx)
	})
	if err != nil {
		restore()
	}
	if err == nil && u.appended {
		s.notify()
	}
	return err
}

// emit appends the event of a change inside the unit of work of ctx.
func (s *Store) emit(ctx context.Context, resource, verb string, id uuid.UUID, version int64, entity any) error {
	var data json.RawMessage
	if entity != nil {
		raw, err := json.Marshal(entity)
		if err != nil {
			return fmt.Errorf("encode %s event: %w", resource, err)
		}
		data = raw
	}
	m := reqctx.MetaOf(ctx)
	opID := reqctx.Operation(ctx)
	if resource == "operation" {
		opID = id
	}
	e := &event.Event{Type: resource + "." + verb, Resource: resource, ResourceID: id, Version: version,
		OperationID: opID, RequestID: m.RequestID, Requester: m.Requester, Time: time.Now().UTC(), Data: data}
	if err := s.Store.Events().Append(ctx, e); err != nil {
		return err
	}
	if u, ok := ctx.Value(uowKey{}).(*unit); ok {
		u.appended = true
	}
	return nil
}

// expect fails when ctx expects entity id at another version than the one stored.
func expect(ctx context.Context, resource string, id uuid.UUID, stored int64) error {
	e, ok := reqctx.Expected(ctx, id)
	if !ok {
		return nil
	}
	if u, in := ctx.Value(uowKey{}).(*unit); in {
		u.checked = append(u.checked, e)
	}
	if e.Version != stored {
		return errkind.New(errkind.PreconditionFailed, resource, id.String(),
			"expected version %d, the %s is at version %d", e.Version, resource, stored)
	}
	return nil
}

// crud is what every tracked repository offers.
type crud[T any] interface {
	Get(ctx context.Context, id uuid.UUID) (T, error)
	Create(ctx context.Context, v T) error
	Update(ctx context.Context, v T) error
	Delete(ctx context.Context, id uuid.UUID) error
}

// tracked adds events and version checks to a repository of entities of one resource kind.
type tracked[T interface {
	comparable
	EntityID() uuid.UUID
	EntityVersion() int64
}] struct {
	s        *Store
	inner    crud[T]
	resource string
}

func (r tracked[T]) Create(ctx context.Context, v T) error {
	return r.s.InTx(ctx, func(ctx context.Context) error {
		if err := r.inner.Create(ctx, v); err != nil {
			return err
		}
		return r.s.emit(ctx, r.resource, "created", v.EntityID(), v.EntityVersion(), v)
	})
}

func (r tracked[T]) Update(ctx context.Context, v T) error {
	return r.s.InTx(ctx, func(ctx context.Context) error {
		if err := expect(ctx, r.resource, v.EntityID(), v.EntityVersion()); err != nil {
			return err
		}
		if err := r.inner.Update(ctx, v); err != nil {
			return err
		}
		return r.s.emit(ctx, r.resource, "updated", v.EntityID(), v.EntityVersion(), v)
	})
}

func (r tracked[T]) Delete(ctx context.Context, id uuid.UUID) error {
	return r.s.InTx(ctx, func(ctx context.Context) error {
		cur, err := r.inner.Get(ctx, id)
		if err != nil {
			return err
		}
		if err := expect(ctx, r.resource, id, cur.EntityVersion()); err != nil {
			return err
		}
		if err := r.inner.Delete(ctx, id); err != nil {
			return err
		}
		return r.s.emit(ctx, r.resource, "deleted", id, cur.EntityVersion(), nil)
	})
}

type storages struct {
	storage.Repository
	tracked[*storage.Storage]
}

func (r storages) Create(ctx context.Context, v *storage.Storage) error {
	return r.tracked.Create(ctx, v)
}
func (r storages) Update(ctx context.Context, v *storage.Storage) error {
	return r.tracked.Update(ctx, v)
}
func (r storages) Delete(ctx context.Context, id uuid.UUID) error { return r.tracked.Delete(ctx, id) }

type volumes struct {
	volume.Repository
	tracked[*volume.Volume]
}

func (r volumes) Create(ctx context.Context, v *volume.Volume) error { return r.tracked.Create(ctx, v) }
func (r volumes) Update(ctx context.Context, v *volume.Volume) error { return r.tracked.Update(ctx, v) }
func (r volumes) Delete(ctx context.Context, id uuid.UUID) error     { return r.tracked.Delete(ctx, id) }

type images struct {
	image.Repository
	tracked[*image.Image]
}

func (r images) Create(ctx context.Context, v *image.Image) error { return r.tracked.Create(ctx, v) }
func (r images) Update(ctx context.Context, v *image.Image) error { return r.tracked.Update(ctx, v) }
func (r images) Delete(ctx context.Context, id uuid.UUID) error   { return r.tracked.Delete(ctx, id) }

type vms struct {
	vm.Repository
	tracked[*vm.VM]
}

func (r vms) Create(ctx context.Context, v *vm.VM) error     { return r.tracked.Create(ctx, v) }
func (r vms) Update(ctx context.Context, v *vm.VM) error     { return r.tracked.Update(ctx, v) }
func (r vms) Delete(ctx context.Context, id uuid.UUID) error { return r.tracked.Delete(ctx, id) }

// operations emits an event for every stored change of an operation (status, progress, outcome).
type operations struct {
	operation.Repository
	s *Store
}

func (r operations) Create(ctx context.Context, op *operation.Operation) error {
	return r.s.InTx(ctx, func(ctx context.Context) error {
		if err := r.Repository.Create(ctx, op); err != nil {
			return err
		}
		return r.s.emit(ctx, "operation", "created", op.ID, op.Version, op)
	})
}

func (r operations) Update(ctx context.Context, op *operation.Operation) error {
	return r.s.InTx(ctx, func(ctx context.Context) error {
		if err := r.Repository.Update(ctx, op); err != nil {
			return err
		}
		return r.s.emit(ctx, "operation", "updated", op.ID, op.Version, op)
	})
}

// Storages returns the storage repository with events.
func (s *Store) Storages() storage.Repository {
	inner := s.Store.Storages()
	return storages{inner, tracked[*storage.Storage]{s, inner, "storage"}}
}

// Volumes returns the volume repository with events.
func (s *Store) Volumes() volume.Repository {
	inner := s.Store.Volumes()
	return volumes{inner, tracked[*volume.Volume]{s, inner, "volume"}}
}

// Images returns the image repository with events.
func (s *Store) Images() image.Repository {
	inner := s.Store.Images()
	return images{inner, tracked[*image.Image]{s, inner, "image"}}
}

// VMs returns the VM repository with events.
func (s *Store) VMs() vm.Repository {
	inner := s.Store.VMs()
	return vms{inner, tracked[*vm.VM]{s, inner, "vm"}}
}

// Operations returns the operation repository with events.
func (s *Store) Operations() operation.Repository {
	return operations{s.Store.Operations(), s}
}
