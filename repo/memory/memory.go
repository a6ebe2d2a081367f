// Package memory is a complete in-process implementation of the openvair repositories: every uniqueness
// rule, foreign key and optimistic version check of the SQL store, with units of work that roll back. It is
// registered for the DSN "memory:".
package memory

import (
	"bytes"
	"context"
	"sort"
	"sync"

	"github.com/google/uuid"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/cursor"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/event"
	"github.com/openvair/openvair/internal/idem"
	"github.com/openvair/openvair/internal/lease"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/repo"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

func init() {
	repo.Register("memory", func(context.Context, string) (repo.Store, error) { return New(), nil })
}

// Store keeps every aggregate in maps guarded by one lock. A unit of work holds the lock for its whole
// duration (so units of work are serializable) and undoes its writes when it fails.
type Store struct {
	mu       sync.RWMutex
	storages table[*storage.Storage]
	volumes  table[*volume.Volume]
	snaps    table[*volume.Snapshot]
	images   table[*image.Image]
	vms      table[*vm.VM]
	rec      records
}

var _ repo.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		storages: table[*storage.Storage]{entity: "storage", rows: map[uuid.UUID]*storage.Storage{},
			id: func(v *storage.Storage) uuid.UUID { return v.ID }, version: func(v *storage.Storage) *int64 { return &v.Version },
			store: (*storage.Storage).Clone},
		volumes: table[*volume.Volume]{entity: "volume", rows: map[uuid.UUID]*volume.Volume{},
			id: func(v *volume.Volume) uuid.UUID { return v.ID }, version: func(v *volume.Volume) *int64 { return &v.Version },
			store: func(v *volume.Volume) *volume.Volume { c := v.Clone(); c.Attachments = nil; return c }},
		snaps: table[*volume.Snapshot]{entity: "snapshot", rows: map[uuid.UUID]*volume.Snapshot{},
			id: func(v *volume.Snapshot) uuid.UUID { return v.ID }, version: func(v *volume.Snapshot) *int64 { return &v.Version },
			store: (*volume.Snapshot).Clone},
		images: table[*image.Image]{entity: "image", rows: map[uuid.UUID]*image.Image{},
			id: func(v *image.Image) uuid.UUID { return v.ID }, version: func(v *image.Image) *int64 { return &v.Version },
			store: func(v *image.Image) *image.Image { c := v.Clone(); c.Attachments = nil; return c }},
		vms: table[*vm.VM]{entity: "vm", rows: map[uuid.UUID]*vm.VM{},
			id: func(v *vm.VM) uuid.UUID { return v.ID }, version: func(v *vm.VM) *int64 { return &v.Version },
			store: (*vm.VM).Clone},
	}
}

type txKey struct{}

// tx is a running unit of work: the undo functions of its writes.
type tx struct {
	store *Store
	undo  []func()
}

func (s *Store) txOf(ctx context.Context) *tx {
	if t, ok := ctx.Value(txKey{}).(*tx); ok && t.store == s {
		return t
	}
	return nil
}

// InTx runs fn as one serializable unit of work; a nested call joins the outer one.
func (s *Store) InTx(ctx context.Context, fn func(ctx context.Context) error) (err error) {
	if s.txOf(ctx) != nil {
		return fn(ctx)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &tx{store: s}
	defer func() {
		if r := recover(); r != nil {
			t.rollback()
			panic(r)
		}
		if err != nil {
			t.rollback()
		}
	}()
	return fn(context.WithValue(ctx, txKey{}, t))
}

func (t *tx) rollback() {
	for i := len(t.undo) - 1; i >= 0; i-- {
		t.undo[i]()
	}
	t.undo = nil
}

// read locks for reading unless ctx is inside a unit of work (which holds the write lock).
func (s *Store) read(ctx context.Context) func() {
	if s.txOf(ctx) != nil {
		return func() {}
	}
	s.mu.RLock()
	return s.mu.RUnlock
}

// write locks for writing unless ctx is inside a unit of work, and returns a function recording an undo.
func (s *Store) write(ctx context.Context) (unlock func(), onUndo func(func())) {
	if t := s.txOf(ctx); t != nil {
		return func() {}, func(f func()) { t.undo = append(t.undo, f) }
	}
	s.mu.Lock()
	return s.mu.Unlock, func(func()) {}
}

// Close does nothing.
func (s *Store) Close() error { return nil }

// Storages returns the storage repository.
func (s *Store) Storages() storage.Repository { return storageRepo{s} }

// Volumes returns the volume repository.
func (s *Store) Volumes() volume.Repository { return volumeRepo{s} }

// Snapshots returns the snapshot repository.
func (s *Store) Snapshots() volume.SnapshotRepository { return snapshotRepo{s} }

// Images returns the image repository.
func (s *Store) Images() image.Repository { return imageRepo{s} }

// VMs returns the VM repository.
func (s *Store) VMs() vm.Repository { return vmRepo{s} }

// Operations returns the operation repository.
func (s *Store) Operations() operation.Repository { return operationRepo{s} }

// Events returns the change log. It is not shared with other processes, so the store is no event.Notifier.
func (s *Store) Events() event.Log { return eventLog{s} }

// Idempotency returns the idempotency key store.
func (s *Store) Idempotency() idem.Store { return idemStore{s} }

// Leases returns the lease store.
func (s *Store) Leases() lease.Store { return leaseStore{s} }

// put stores v under id in m, recording how to undo it.
func put[T any](m map[uuid.UUID]T, id uuid.UUID, v T, onUndo func(func())) {
	old, had := m[id]
	m[id] = v
	onUndo(func() {
		if had {
			m[id] = old
		} else {
			delete(m, id)
		}
	})
}

// remove deletes id from m, recording how to undo it.
func remove[T any](m map[uuid.UUID]T, id uuid.UUID, onUndo func(func())) {
	old, had := m[id]
	if !had {
		return
	}
	delete(m, id)
	onUndo(func() { m[id] = old })
}

// page returns the items of m matching keep, in id order, after the cursor, at most limit, and the next
// cursor.
func page[T any](m map[uuid.UUID]T, cur string, limit int, keep func(T) bool) ([]T, string, error) {
	after, err := cursor.Decode(cur)
	if err != nil {
		return nil, "", err
	}
	limit = cursor.Limit(limit)
	ids := make([]uuid.UUID, 0, len(m))
	for id, v := range m {
		if bytes.Compare(id[:], after[:]) > 0 && keep(v) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
	next := ""
	if len(ids) > limit {
		ids = ids[:limit]
		next = cursor.Encode(ids[limit-1])
	}
	out := make([]T, len(ids))
	for i, id := range ids {
		out[i] = m[id]
	}
	return out, next, nil
}

func notFound(entity string, id uuid.UUID) error {
	return errkind.New(errkind.NotFound, entity, id.String(), "%s not found", entity)
}

func conflict(entity string, id uuid.UUID) error {
	return errkind.New(errkind.Conflict, entity, id.String(), "changed concurrently (stale version), re-read and retry")
}

func exists(entity, format string, args ...any) error {
	return errkind.New(errkind.AlreadyExists, entity, "", format, args...)
}
