package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/deadline"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/fsm"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/internal/uow"
)

// Repository persists storages. Implementations enforce the uniqueness of Name and of Location (returning
// an error wrapping errkind.AlreadyExists), and refuse an Update whose Version is not the stored one
// (errkind.Conflict); a successful Update increments the Version of the value passed in.
type Repository interface {
	Get(ctx context.Context, id uuid.UUID) (*Storage, error)
	List(ctx context.Context, opts ListOptions) (Page, error)
	Create(ctx context.Context, s *Storage) error
	Update(ctx context.Context, s *Storage) error
	Delete(ctx context.Context, id uuid.UUID) error
	// Dependents names the volumes and images that live on the storage.
	Dependents(ctx context.Context, id uuid.UUID) ([]errkind.Ref, error)
}

// Transactor runs fn as one unit of work: every repository call made with the ctx fn receives commits
// together, or not at all when fn returns an error.
type Transactor interface {
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
}

// Backend is what the storage service needs from a storage driver.
type Backend interface {
	// Info tells what the backend can do; the service refuses what it cannot before any I/O.
	Info() driver.StorageInfo
	// CheckConfig checks and normalizes a new storage's configuration and gives its location key.
	CheckConfig(ctx context.Context, config json.RawMessage) (driver.CheckedConfig, error)
	Prepare(ctx context.Context, pool driver.PoolSpec) (driver.PoolState, error)
	Teardown(ctx context.Context, pool driver.PoolSpec) error
	Status(ctx context.Context, pool driver.PoolSpec) (driver.PoolState, error)
}

// Backends finds the backend for a storage type; an error wrapping errkind.Unavailable when none is
// configured.
type Backends interface {
	StorageBackend(t Type) (Backend, error)
}

// Service holds the storage rules.
type Service struct {
	repo     Repository
	tx       Transactor
	backends Backends
	ops      *operation.Service
	// OpTimeout bounds each backend call that has no earlier deadline.
	OpTimeout time.Duration
	// MonitorTimeout bounds one health check of one storage.
	MonitorTimeout time.Duration
	Log            *slog.Logger
	now            func() time.Time
}

// Option configures a Service at construction (WithOperations).
type Option = func(*Service)

// configure applies the options and registers the operation kinds when the service records operations.
func (s *Service) configure(opts []Option) *Service {
	return operation.Configure(s, opts, func() *operation.Service { return s.ops }, s.registerOperations)
}

// NewService returns a storage service.
func NewService(repo Repository, tx Transactor, backends Backends, opts ...Option) *Service {
	return (&Service{repo: repo, tx: tx, backends: backends, OpTimeout: 2 * time.Minute, MonitorTimeout: 5 * time.Second,
		Log: slog.Default(), now: time.Now}).configure(opts)
}

// Get returns a storage by id.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (*Storage, error) {
	return s.repo.Get(ctx, id)
}

// List returns a page of storages.
func (s *Service) List(ctx context.Context, opts ListOptions) (Page, error) {
	if err := opts.validate(); err != nil {
		return Page{}, err
	}
	return s.repo.List(ctx, opts)
}

// checked is a create request the service and the type's backend accepted.
type checked struct {
	backend Backend
	config  driver.CheckedConfig
}

// check checks a create request (normalizing it) and has the type's backend check its configuration,
// before anything is recorded or queued. Every bad field of both is reported at once.
func (s *Service) check(ctx context.Context, req *CreateRequest) (checked, error) {
	reqErr := req.Validate()
	raw, err := req.config()
	if err != nil {
		return checked{}, mergeInvalid(reqErr, err)
	}
	backend, err := s.backends.StorageBackend(req.Type)
	if err != nil {
		if reqErr != nil {
			return checked{}, reqErr
		}
		return checked{}, err
	}
	dctx, cancel := deadline.Ensure(ctx, s.OpTimeout)
	cfg, err := backend.CheckConfig(dctx, raw)
	cancel()
	if err = mergeInvalid(reqErr, err); err != nil {
		return checked{}, err
	}
	return checked{backend: backend, config: cfg}, nil
}

// create records the checked storage as creating, prepares it on its backend and makes it available. When
// the backend refuses, nothing remains and the backend's error is returned.
func (s *Service) create(ctx context.Context, req CreateRequest, c checked) (*Storage, error) {
	now := s.now().UTC()
	st := &Storage{ID: uuid.Must(uuid.NewV7()), Name: req.Name, Description: req.Description, Type: req.Type,
		Config: c.config.Config, State: c.config.State, Location: c.config.Location,
		Status: StatusCreating, CreatedAt: now, UpdatedAt: now}
	err := s.tx.InTx(ctx, func(ctx context.Context) error {
		if err := s.ops.SetTarget(ctx, st.ID); err != nil {
			return err
		}
		return s.repo.Create(ctx, st)
	})
	if err != nil {
		return nil, err
	}
	dctx, cancel := deadline.Ensure(ctx, s.OpTimeout)
	state, err := c.backend.Prepare(dctx, st.Pool())
	cancel()
	if err != nil {
		if derr := s.repo.Delete(context.WithoutCancel(ctx), st.ID); derr != nil {
			s.Log.Error("storage: removing a storage whose creation failed", "id", st.ID, "err", derr)
		}
		return nil, fmt.Errorf("prepare storage %q: %w", st.Name, err)
	}
	return s.update(context.WithoutCancel(ctx), st.ID, func(cur *Storage) error {
		applyState(cur, state)
		return cur.SetStatus(StatusAvailable, "")
	})
}

// mergeInvalid joins the request's field errors and the backend's: both *errkind.ValidationError are
// reported as one, so that a caller sees every bad field at once. Otherwise the request's error comes
// first.
func mergeInvalid(reqErr, cfgErr error) error {
	var a, b *errkind.ValidationError
	switch {
	case reqErr == nil:
		return cfgErr
	case cfgErr == nil:
		return reqErr
	case errors.As(reqErr, &a) && errors.As(cfgErr, &b):
		return &errkind.ValidationError{Entity: a.Entity, Fields: append(slices.Clone(a.Fields), b.Fields...)}
	}
	return reqErr
}

// applyState records what the backend reported: capacity, mount point and its state.
func applyState(st *Storage, state driver.PoolState) {
	st.Capacity, st.Available = state.Capacity, state.Available
	st.MountPoint = state.MountPoint
	if state.State != nil {
		st.State = slices.Clone(state.State)
	}
}

// edit changes a storage's name or description.
func (s *Service) edit(ctx context.Context, id uuid.UUID, req EditRequest) (*Storage, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return s.update(ctx, id, func(cur *Storage) error {
		if req.Name != nil {
			cur.Name = *req.Name
		}
		if req.Description != nil {
			cur.Description = *req.Description
		}
		return nil
	})
}

// delete removes a storage that holds no volumes and no images; the error names them otherwise. The
// backend releases what it set up: it unmounts a device, and removes a storage directory only when
// openvair created it (CreatedDir) and it is empty. A directory the user gave stays as it is, and so does
// one that holds other files or has something mounted on it; the storage is deleted all the same.
func (s *Service) delete(ctx context.Context, id uuid.UUID) error {
	var st *Storage
	err := s.tx.InTx(ctx, func(ctx context.Context) error {
		cur, err := s.repo.Get(ctx, id)
		if err != nil {
			return err
		}
		if err := fsm.Require("storage", id.String(), "delete", cur.Status, StatusAvailable, StatusError); err != nil {
			return err
		}
		deps, err := s.repo.Dependents(ctx, id)
		if err != nil {
			return err
		}
		if len(deps) > 0 {
			return errkind.InUseBy("storage", id.String(), fmt.Sprintf("storage %q still holds %s", cur.Name, describeRefs(deps)), deps)
		}
		if err := cur.SetStatus(StatusDeleting, ""); err != nil {
			return err
		}
		cur.UpdatedAt = s.now().UTC()
		st = cur
		return s.repo.Update(ctx, cur)
	})
	if err != nil {
		return err
	}
	return s.finishDelete(ctx, st)
}

// finishDelete tears down a storage claimed for deletion and removes its row; when the backend fails, the
// storage is left in error with the reason.
func (s *Service) finishDelete(ctx context.Context, st *Storage) error {
	backend, err := s.backends.StorageBackend(st.Type)
	if err == nil {
		dctx, cancel := deadline.Ensure(ctx, s.OpTimeout)
		err = backend.Teardown(dctx, st.Pool())
		cancel()
	}
	ctx = context.WithoutCancel(ctx)
	if err != nil {
		reason := "delete failed: " + err.Error()
		if _, uerr := s.update(ctx, st.ID, func(cur *Storage) error { return cur.SetStatus(StatusError, reason) }); uerr != nil {
			s.Log.Error("storage: recording a failed delete", "id", st.ID, "err", uerr)
		}
		return fmt.Errorf("tear down storage %q: %w", st.Name, err)
	}
	return s.repo.Delete(ctx, st.ID)
}

func describeRefs(refs []errkind.Ref) string {
	groups := map[string][]string{}
	var order []string
	for _, r := range refs {
		if _, ok := groups[r.Kind]; !ok {
			order = append(order, r.Kind)
		}
		groups[r.Kind] = append(groups[r.Kind], fmt.Sprintf("%q", r.Name))
	}
	out := ""
	for i, k := range order {
		if i > 0 {
			out += " and "
		}
		out += fmt.Sprintf("%ss %v", k, groups[k])
	}
	return out
}

// Refresh asks the backend for the storage's capacity and health. It only touches storages that are
// available or in error: a storage being created or deleted is left to that operation.
func (s *Service) Refresh(ctx context.Context, id uuid.UUID) (*Storage, error) {
	st, err := s.repo.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if st.Status != StatusAvailable && st.Status != StatusError {
		return st, nil
	}
	backend, err := s.backends.StorageBackend(st.Type)
	if err != nil {
		return nil, err
	}
	dctx, cancel := deadline.Ensure(ctx, s.MonitorTimeout)
	state, serr := backend.Status(dctx, st.Pool())
	cancel()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return s.update(ctx, id, func(cur *Storage) error {
		if cur.Version != st.Version {
			return uow.ErrSkip // changed meanwhile: the newer writer knows better
		}
		return uow.Unchanged(cur, func() error {
			if serr != nil {
				return cur.SetStatus(StatusError, "unreachable: "+serr.Error())
			}
			applyState(cur, state)
			return cur.SetStatus(StatusAvailable, "")
		})
	})
}

// RefreshAll refreshes every storage, each with its own deadline, so that one unreachable backend does not
// delay the others by more than MonitorTimeout.
func (s *Service) RefreshAll(ctx context.Context) error {
	return forEach(ctx, s.repo, ListOptions{}, func(st *Storage) {
		if _, err := s.Refresh(ctx, st.ID); err != nil && ctx.Err() == nil {
			s.Log.Warn("storage: refresh failed", "id", st.ID, "err", err)
		}
	})
}

// Recover finishes what a crash interrupted: a delete is completed (teardown and row; in error with the
// reason when the backend cannot do it now), and a storage left creating goes to error with a reason, so
// that an operator sees it and monitoring or a delete can take it from there. A storage interrupted while
// creating has no record of a directory Prepare may have made (CreatedDir is stored
// after Prepare returns), so deleting it leaves that directory: openvair removes only directories it
// knows it created.
func (s *Service) Recover(ctx context.Context) error {
	// A delete that a crash interrupted was asked for and checked (nothing on the storage): finish it.
	// Teardown is idempotent; when the backend cannot do it now, the storage is left in error.
	err := forEach(ctx, s.repo, ListOptions{Status: StatusDeleting}, func(st *Storage) {
		if s.ops.Busy(ctx, st.ID) {
			return // a live operation of another process (or this one) is on it
		}
		if err := s.finishDelete(ctx, st); err != nil {
			s.Log.Error("storage: recover an interrupted delete", "id", st.ID, "err", err)
		}
	})
	if err != nil {
		return err
	}
	return forEach(ctx, s.repo, ListOptions{Status: StatusCreating}, func(st *Storage) {
		if s.ops.Busy(ctx, st.ID) {
			return
		}
		_, err := s.update(ctx, st.ID, func(cur *Storage) error {
			return cur.SetStatus(StatusError, "interrupted while creating; refresh or delete it")
		})
		if err != nil {
			s.Log.Error("storage: recover", "id", st.ID, "err", err)
		}
	})
}

// update applies fn to the current storage inside a unit of work and stores it.
func (s *Service) update(ctx context.Context, id uuid.UUID, fn func(cur *Storage) error) (*Storage, error) {
	return uow.Update(ctx, s.tx, s.repo.Get, s.repo.Update, id, func(ctx context.Context, cur *Storage) error {
		if err := fn(cur); err != nil {
			return err
		}
		cur.UpdatedAt = s.now().UTC()
		return nil
	})
}

// All iterates over every storage matching opts, page by page; a failed page is yielded as its error.
func All(ctx context.Context, repo Repository, opts ListOptions) iter.Seq2[*Storage, error] {
	return uow.All(ctx, func(ctx context.Context, cursor string) ([]*Storage, string, error) {
		opts.Cursor = cursor
		page, err := repo.List(ctx, opts)
		return page.Items, page.NextCursor, err
	})
}

// forEach calls fn for every storage matching opts and returns the first error.
func forEach(ctx context.Context, repo Repository, opts ListOptions, fn func(*Storage)) error {
	return uow.ForEach(All(ctx, repo, opts), fn)
}
