package volume

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/deadline"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/fsm"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/internal/uow"
	"github.com/openvair/openvair/storage"
)

// Repository persists volumes. Implementations enforce that names are unique per storage
// (errkind.AlreadyExists), refuse an Update whose Version is not the stored one (errkind.Conflict), bump the
// Version of the value passed to a successful Update, and fill Attachments on reads.
type Repository interface {
	Get(ctx context.Context, id uuid.UUID) (*Volume, error)
	List(ctx context.Context, opts ListOptions) (Page, error)
	Create(ctx context.Context, v *Volume) error
	Update(ctx context.Context, v *Volume) error
	Delete(ctx context.Context, id uuid.UUID) error
}

// StorageReader reads the storage a volume lives on.
type StorageReader interface {
	Get(ctx context.Context, id uuid.UUID) (*storage.Storage, error)
}

// Transactor runs fn as one unit of work (see storage.Transactor).
type Transactor interface {
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
}

// Backend is what the volume service needs from a storage driver.
type Backend interface {
	Info() driver.StorageInfo
	CreateVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error)
	ExtendVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error)
	DeleteVolume(ctx context.Context, pool driver.PoolSpec, id uuid.UUID) error
	InspectVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error)
}

// Backends finds the backend for a storage type.
type Backends interface {
	VolumeBackend(t storage.Type) (Backend, error)
}

// VMStates asks the hypervisor whether a VM runs now; the stored power state may lag behind changes made
// outside openvair. vm.RunningChecker implements it.
type VMStates interface {
	Running(ctx context.Context, vmID uuid.UUID) (bool, error)
}

// Service holds the volume rules.
type Service struct {
	repo     Repository
	storages StorageReader
	images   ImageReader // the sources of volumes made from images (WithImages)
	// snapshots keeps the volumes' snapshots (WithSnapshots).
	snapshots SnapshotRepository
	tx        Transactor
	backends  Backends
	ops       *operation.Service
	// vms, when set (WithVMStates), confirms with the hypervisor that no VM using a volume runs before the
	// volume is extended (growing a disk under a running guest corrupts it).
	vms VMStates
	// OpTimeout bounds each backend call that has no earlier deadline.
	OpTimeout time.Duration
	// CopyTimeout bounds the making of a volume from a source (a copy of many GiB takes minutes).
	CopyTimeout time.Duration
	// MonitorTimeout bounds one inspection of one volume.
	MonitorTimeout time.Duration
	Log            *slog.Logger
	now            func() time.Time
}

// Option configures a Service at construction (WithOperations, WithVMStates).
type Option = func(*Service)

// configure applies the options and registers the operation kinds when the service records operations.
func (s *Service) configure(opts []Option) *Service {
	return operation.Configure(s, opts, func() *operation.Service { return s.ops }, s.registerOperations)
}

// NewService returns a volume service.
func NewService(repo Repository, storages StorageReader, tx Transactor, backends Backends, opts ...Option) *Service {
	return (&Service{repo: repo, storages: storages, tx: tx, backends: backends, OpTimeout: 5 * time.Minute,
		CopyTimeout: 6 * time.Hour, MonitorTimeout: 5 * time.Second, Log: slog.Default(), now: time.Now}).configure(opts)
}

// WithVMStates has extends confirm with the hypervisor, through vms, that no VM using the volume runs: the
// stored power state may lag behind a VM started outside openvair. Without it, the stored state decides.
func WithVMStates(vms VMStates) Option {
	return func(s *Service) { s.vms = vms }
}

// Get returns a volume by id.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (*Volume, error) { return s.repo.Get(ctx, id) }

// List returns a page of volumes.
func (s *Service) List(ctx context.Context, opts ListOptions) (Page, error) {
	if err := opts.validate(); err != nil {
		return Page{}, err
	}
	return s.repo.List(ctx, opts)
}

// create makes a volume on an available storage. The name must be unique on the storage, the size must fit
// in the storage's available space (ErrTooLarge, "needs N bytes, storage has M bytes free"). The volume's
// Size is the virtual size the backend reports having made, which is req.Size rounded up to what the
// format stores (a multiple of 512 bytes for the localfs and nfs backends: a qcow2 or raw volume asked
// for 1000 bytes has 1024). When the backend fails, nothing remains.
//
// req has been validated, and a source resolved into src (see Create).
func (s *Service) create(ctx context.Context, req CreateRequest, src *origin) (*Volume, error) {
	var o origin
	needs := req.Size
	if src != nil {
		o = *src
		needs = room(req.Source.mode(), o)
	}
	var (
		vol *Volume
		st  *storage.Storage
	)
	err := s.tx.InTx(ctx, func(ctx context.Context) error {
		var err error
		st, err = s.usableStorage(ctx, req.StorageID, needs)
		if err != nil {
			return err
		}
		now := s.now().UTC()
		vol = &Volume{ID: uuid.Must(uuid.NewV7()), Name: req.Name, Description: req.Description, StorageID: req.StorageID,
			Format: req.Format, Size: req.Size, ReadOnly: req.ReadOnly, Shareable: req.Shareable, Status: StatusCreating,
			CreatedAt: now, UpdatedAt: now}
		if req.Source != nil && req.Source.mode() == ModeLinked {
			// The base must still be there in this unit of work: a delete that began meanwhile wins.
			if err := s.requireBase(ctx, o); err != nil {
				return err
			}
			vol.Backing = &Backing{Kind: o.kind, ID: o.id}
		}
		if err := s.ops.SetTarget(ctx, vol.ID); err != nil {
			return err
		}
		return s.repo.Create(ctx, vol)
	})
	if err != nil {
		return nil, err
	}
	backend, err := s.backend(st, vol.Format)
	var info driver.VolumeInfo
	switch {
	case err != nil:
	case req.Source != nil:
		info, err = s.fill(ctx, st, backend, vol, req.Source.mode(), o)
	default:
		dctx, cancel := deadline.Ensure(ctx, s.OpTimeout)
		info, err = backend.CreateVolume(dctx, st.Pool(), driver.VolumeSpec{ID: vol.ID, Format: vol.Format, Size: vol.Size})
		cancel()
	}
	ctx = context.WithoutCancel(ctx)
	if err != nil {
		s.discard(ctx, backend, st, vol.ID)
		return nil, fmt.Errorf("create volume %q: %w", vol.Name, err)
	}
	return s.update(ctx, vol.ID, func(cur *Volume) error {
		cur.Allocated = info.Allocated
		if info.VirtualSize > 0 {
			cur.Size = info.VirtualSize
		}
		return cur.SetStatus(StatusAvailable, "")
	})
}

// discard removes a volume whose creation failed, file and row.
func (s *Service) discard(ctx context.Context, backend Backend, st *storage.Storage, id uuid.UUID) {
	if backend != nil {
		dctx, cancel := deadline.Ensure(ctx, s.OpTimeout)
		if err := backend.DeleteVolume(dctx, st.Pool(), id); err != nil {
			s.Log.Error("volume: removing the file of a failed create", "id", id, "err", err)
		}
		cancel()
	}
	if err := s.repo.Delete(ctx, id); err != nil {
		s.Log.Error("volume: removing a failed create", "id", id, "err", err)
	}
}

// usableStorage returns the storage when it is available and has room for size more bytes.
func (s *Service) usableStorage(ctx context.Context, id uuid.UUID, size int64) (*storage.Storage, error) {
	st, err := s.storages.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := fsm.Require("storage", id.String(), "place volumes", st.Status, storage.StatusAvailable); err != nil {
		return nil, err
	}
	if size > st.Available {
		return nil, errkind.New(errkind.TooLarge, "storage", id.String(),
			"not enough free space: needs %d bytes, storage %q has %d bytes free", size, st.Name, st.Available)
	}
	return st, nil
}

// canExtend refuses, before any I/O, to extend volumes on a backend that does not declare the extend
// capability.
func (s *Service) canExtend(st *storage.Storage) error {
	b, err := s.backends.VolumeBackend(st.Type)
	if err != nil {
		return err
	}
	if info := b.Info(); !info.Capabilities.Extend {
		return errkind.New(errkind.Unsupported, "storage", st.ID.String(),
			"backend %s cannot extend volumes (capability extend)", info.Name)
	}
	return nil
}

func (s *Service) backend(st *storage.Storage, format Format) (Backend, error) {
	b, err := s.backends.VolumeBackend(st.Type)
	if err != nil {
		return nil, err
	}
	for _, f := range b.Info().Capabilities.VolumeFormats {
		if f == format {
			return b, nil
		}
	}
	return nil, errkind.New(errkind.Unsupported, "storage", st.ID.String(), "backend %s cannot hold %s volumes", b.Info().Name, format)
}

// edit changes a volume's name, description, read-only or shareable flag.
func (s *Service) edit(ctx context.Context, id uuid.UUID, req EditRequest) (*Volume, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return s.update(ctx, id, func(cur *Volume) error {
		if err := fsm.Require("volume", id.String(), "edit", cur.Status, StatusAvailable, StatusError); err != nil {
			return err
		}
		if req.Shareable != nil && !*req.Shareable && len(cur.Attachments) > 1 {
			return errkind.New(errkind.InUse, "volume", id.String(), "attached to %d VMs, cannot stop being shareable", len(cur.Attachments))
		}
		if req.Name != nil {
			cur.Name = *req.Name
		}
		if req.Description != nil {
			cur.Description = *req.Description
		}
		if req.ReadOnly != nil {
			cur.ReadOnly = *req.ReadOnly
		}
		if req.Shareable != nil {
			cur.Shareable = *req.Shareable
		}
		return nil
	})
}

// extend grows a volume to newSize bytes. It must grow, fit in the storage's free space (ErrTooLarge), and
// the volume must not be in use by a VM that is not shut off. As with Create, the new Size is the virtual
// size the backend reports: newSize rounded up to what the format stores.
func (s *Service) extend(ctx context.Context, id uuid.UUID, newSize int64) (*Volume, error) {
	var (
		vol *Volume
		st  *storage.Storage
	)
	err := s.tx.InTx(ctx, func(ctx context.Context) error {
		cur, err := s.repo.Get(ctx, id)
		if err != nil {
			return err
		}
		if newSize <= cur.Size {
			return &errkind.ValidationError{Entity: "volume", Fields: []errkind.FieldError{{Field: "size",
				Message: fmt.Sprintf("must be greater than the current size %d bytes", cur.Size)}}}
		}
		if err := fsm.Require("volume", id.String(), "extend", cur.Status, StatusAvailable); err != nil {
			return err
		}
		for _, a := range cur.Attachments {
			if a.Active {
				return errkind.New(errkind.InUse, "volume", id.String(), "attached to VM %q which is not shut off", a.VMName)
			}
		}
		if st, err = s.usableStorage(ctx, cur.StorageID, newSize-cur.Size); err != nil {
			return err
		}
		if err := s.canExtend(st); err != nil {
			return err
		}
		if err := cur.SetStatus(StatusExtending, ""); err != nil {
			return err
		}
		cur.UpdatedAt = s.now().UTC()
		vol = cur
		return s.repo.Update(ctx, cur)
	})
	if err != nil {
		return nil, err
	}
	if err := s.confirmNotRunning(ctx, vol); err != nil {
		_, uerr := s.update(context.WithoutCancel(ctx), id, func(cur *Volume) error { return cur.SetStatus(StatusAvailable, "") })
		if uerr != nil {
			s.Log.Error("volume: release a refused extend", "id", id, "err", uerr)
		}
		return nil, err
	}
	backend, err := s.backend(st, vol.Format)
	var info driver.VolumeInfo
	if err == nil {
		dctx, cancel := deadline.Ensure(ctx, s.OpTimeout)
		info, err = backend.ExtendVolume(dctx, st.Pool(), driver.VolumeSpec{ID: id, Format: vol.Format, Size: newSize})
		cancel()
	}
	ctx = context.WithoutCancel(ctx)
	if err != nil {
		s.fail(ctx, id, "extend failed: "+err.Error())
		return nil, fmt.Errorf("extend volume %q: %w", vol.Name, err)
	}
	return s.update(ctx, id, func(cur *Volume) error {
		cur.Size = newSize
		if info.VirtualSize > 0 {
			cur.Size = info.VirtualSize
		}
		cur.Allocated = info.Allocated
		return cur.SetStatus(StatusAvailable, "")
	})
}

// confirmNotRunning asks the hypervisor about every VM the volume is attached to.
func (s *Service) confirmNotRunning(ctx context.Context, vol *Volume) error {
	if s.vms == nil {
		return nil
	}
	for _, a := range vol.Attachments {
		running, err := s.vms.Running(ctx, a.VMID)
		if err != nil {
			return fmt.Errorf("extend volume %q: checking VM %q: %w", vol.Name, a.VMName, err)
		}
		if running {
			return errkind.New(errkind.InUse, "volume", vol.ID.String(), "attached to VM %q which the hypervisor reports running", a.VMName)
		}
	}
	return nil
}

// fail records that an operation failed, leaving the volume in error with reason.
func (s *Service) fail(ctx context.Context, id uuid.UUID, reason string) {
	if _, err := s.update(ctx, id, func(cur *Volume) error { return cur.SetStatus(StatusError, reason) }); err != nil {
		s.Log.Error("volume: recording a failure", "id", id, "reason", reason, "err", err)
	}
}

// delete removes a volume that no VM uses.
func (s *Service) delete(ctx context.Context, id uuid.UUID, withSnapshots bool) error {
	refs, err := s.snapshotRefs(ctx, id)
	if err != nil {
		return err
	}
	if len(refs) > 0 && !withSnapshots {
		return errkind.InUseBy("volume", id.String(), fmt.Sprintf("has %d snapshots (%q first); delete them, or the volume with them", len(refs), refs[0].Name), refs)
	}
	vol, err := s.update(ctx, id, func(cur *Volume) error {
		if err := fsm.Require("volume", id.String(), "delete", cur.Status, StatusAvailable, StatusError); err != nil {
			return err
		}
		if len(cur.Attachments) > 0 {
			return errkind.InUseBy("volume", id.String(), fmt.Sprintf("attached to VM %q", cur.Attachments[0].VMName), vmRefs(cur.Attachments))
		}
		if len(cur.Linked) > 0 {
			return errkind.InUseBy("volume", id.String(), fmt.Sprintf("the backing file of volume %q", cur.Linked[0].VolumeName), linkedRefs(cur.Linked))
		}
		return cur.SetStatus(StatusDeleting, "")
	})
	if err != nil {
		return err
	}
	if withSnapshots {
		if err := s.deleteSnapshotsOf(ctx, id); err != nil {
			s.fail(context.WithoutCancel(ctx), id, "delete failed: deleting its snapshots: "+err.Error())
			return err
		}
	}
	err = s.withBackend(ctx, vol.StorageID, s.OpTimeout, func(ctx context.Context, b Backend, st *storage.Storage) error {
		return b.DeleteVolume(ctx, st.Pool(), id)
	})
	ctx = context.WithoutCancel(ctx)
	if err != nil {
		s.fail(ctx, id, "delete failed: "+err.Error())
		return fmt.Errorf("delete volume %q: %w", vol.Name, err)
	}
	return s.repo.Delete(ctx, id)
}

func linkedRefs(ls []LinkedVolume) []errkind.Ref {
	refs := make([]errkind.Ref, len(ls))
	for i, l := range ls {
		refs[i] = errkind.Ref{Kind: "volume", ID: l.VolumeID.String(), Name: l.VolumeName}
	}
	return refs
}

func vmRefs(as []Attachment) []errkind.Ref {
	refs := make([]errkind.Ref, len(as))
	for i, a := range as {
		refs[i] = errkind.Ref{Kind: "vm", ID: a.VMID.String(), Name: a.VMName}
	}
	return refs
}

// withBackend runs fn with the storage of a volume and its backend, under a deadline of at most timeout.
func (s *Service) withBackend(ctx context.Context, storageID uuid.UUID, timeout time.Duration, fn func(ctx context.Context, b Backend, st *storage.Storage) error) error {
	st, err := s.storages.Get(ctx, storageID)
	if err != nil {
		return err
	}
	b, err := s.backends.VolumeBackend(st.Type)
	if err != nil {
		return err
	}
	ctx, cancel := deadline.Ensure(ctx, timeout)
	defer cancel()
	return fn(ctx, b, st)
}

// Refresh inspects a volume on its storage: its allocated size, and whether its file is still there (a
// missing file puts it in error). Only available and error volumes are touched, and only if nobody changed
// them meanwhile; an unreachable storage leaves its volumes as they are (the storage shows the problem).
func (s *Service) Refresh(ctx context.Context, id uuid.UUID) (*Volume, error) {
	vol, err := s.repo.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if vol.Status != StatusAvailable && vol.Status != StatusError {
		return vol, nil
	}
	st, err := s.storages.Get(ctx, vol.StorageID)
	if err != nil {
		return nil, err
	}
	if st.Status != storage.StatusAvailable {
		return vol, nil
	}
	backend, err := s.backends.VolumeBackend(st.Type)
	if err != nil {
		return nil, err
	}
	dctx, cancel := deadline.Ensure(ctx, s.MonitorTimeout)
	info, ierr := backend.InspectVolume(dctx, st.Pool(), driver.VolumeSpec{ID: id, Format: vol.Format})
	cancel()
	if ierr != nil && !errors.Is(ierr, errkind.NotFound) {
		return vol, nil
	}
	return s.update(ctx, id, func(cur *Volume) error {
		if cur.Version != vol.Version {
			return uow.ErrSkip
		}
		return uow.Unchanged(cur, func() error {
			if ierr != nil {
				return cur.SetStatus(StatusError, "volume file missing on storage "+st.Name)
			}
			cur.Allocated = info.Allocated
			if info.VirtualSize > 0 {
				cur.Size = info.VirtualSize
			}
			return cur.SetStatus(StatusAvailable, "")
		})
	})
}

// RefreshAll refreshes every volume.
func (s *Service) RefreshAll(ctx context.Context) error {
	return forEach(ctx, s.repo, ListOptions{}, func(v *Volume) {
		if _, err := s.Refresh(ctx, v.ID); err != nil && ctx.Err() == nil {
			s.Log.Warn("volume: refresh failed", "id", v.ID, "err", err)
		}
	})
}

// Recover finishes what a crash interrupted: a half-created volume is removed (file and row); an
// interrupted delete whose file is already gone is completed (the row is removed); an interrupted extend,
// or an interrupted delete whose file is still there, leaves the volume in error with a reason (a refresh
// or a new delete resolves it).
func (s *Service) Recover(ctx context.Context) error {
	for _, status := range []Status{StatusCreating, StatusExtending, StatusReverting, StatusDeleting} {
		err := forEach(ctx, s.repo, ListOptions{Status: status}, func(v *Volume) {
			if s.ops.Busy(ctx, v.ID) {
				return // a live operation of another process (or this one) is on it
			}
			switch status {
			case StatusCreating:
				st, err := s.storages.Get(ctx, v.StorageID)
				if err == nil {
					b, _ := s.backends.VolumeBackend(st.Type)
					s.discard(ctx, b, st, v.ID)
					return
				}
			case StatusDeleting:
				err := s.withBackend(ctx, v.StorageID, s.OpTimeout, func(ctx context.Context, b Backend, st *storage.Storage) error {
					_, err := b.InspectVolume(ctx, st.Pool(), driver.VolumeSpec{ID: v.ID, Format: v.Format})
					return err
				})
				if errors.Is(err, errkind.NotFound) {
					if err := s.repo.Delete(ctx, v.ID); err != nil {
						s.Log.Error("volume: recover: complete an interrupted delete", "id", v.ID, "err", err)
					}
					return
				}
			}
			s.fail(ctx, v.ID, fmt.Sprintf("interrupted while %s", status))
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// update applies fn to the current volume inside a unit of work and stores it.
func (s *Service) update(ctx context.Context, id uuid.UUID, fn func(cur *Volume) error) (*Volume, error) {
	return uow.Update(ctx, s.tx, s.repo.Get, s.repo.Update, id, func(ctx context.Context, cur *Volume) error {
		if err := fn(cur); err != nil {
			return err
		}
		cur.UpdatedAt = s.now().UTC()
		return nil
	})
}

// All iterates over every volume matching opts, page by page; a failed page is yielded as its error.
func All(ctx context.Context, repo Repository, opts ListOptions) iter.Seq2[*Volume, error] {
	return uow.All(ctx, func(ctx context.Context, cursor string) ([]*Volume, string, error) {
		opts.Cursor = cursor
		page, err := repo.List(ctx, opts)
		return page.Items, page.NextCursor, err
	})
}

// forEach calls fn for every volume matching opts and returns the first error.
func forEach(ctx context.Context, repo Repository, opts ListOptions, fn func(*Volume)) error {
	return uow.ForEach(All(ctx, repo, opts), fn)
}
