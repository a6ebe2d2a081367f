package volume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/deadline"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/fsm"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/internal/uow"
	"github.com/openvair/openvair/internal/validate"
	"github.com/openvair/openvair/storage"
)

// Operation kinds of snapshots.
const (
	OpSnapshot       = "volume.snapshot"
	OpDeleteSnapshot = "volume.delete_snapshot"
	OpRevert         = "volume.revert"
)

// Snapshot is a volume's content at one moment. Its storage form is the backend's clone of the volume
// (driver.VolumeCloner): a reflink on btrfs and xfs with reflink, a sparse copy elsewhere; it lives on the
// volume's storage and takes space there. Snapshots are taken and reverted while no running VM uses the
// volume; a volume with snapshots is deleted only with them.
type Snapshot struct {
	ID           uuid.UUID `json:"id"`
	VolumeID     uuid.UUID `json:"volume_id"`
	StorageID    uuid.UUID `json:"storage_id"`
	Name         string    `json:"name"` // unique among the volume's snapshots
	Description  string    `json:"description"`
	Format       Format    `json:"format"`
	Size         int64     `json:"size"`      // the volume's virtual size when taken
	Allocated    int64     `json:"allocated"` // bytes it takes on the storage (shared blocks counted in full)
	Status       Status    `json:"status"`    // creating, available, deleting or error
	StatusReason string    `json:"status_reason,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	Version      int64     `json:"version"`
}

// Clone returns a copy.
func (s *Snapshot) Clone() *Snapshot { c := *s; return &c }

// EntityID returns the snapshot's id.
func (s *Snapshot) EntityID() uuid.UUID { return s.ID }

// EntityVersion returns the snapshot's version.
func (s *Snapshot) EntityVersion() int64 { return s.Version }

// SnapshotRepository persists snapshots. Implementations refuse a second snapshot of one volume with the
// same name (errkind.AlreadyExists) and an Update whose Version is not the stored one (errkind.Conflict),
// and refuse to delete a volume that has snapshots.
type SnapshotRepository interface {
	Get(ctx context.Context, id uuid.UUID) (*Snapshot, error)
	// List returns the snapshots of a volume, oldest first.
	List(ctx context.Context, volumeID uuid.UUID) ([]*Snapshot, error)
	Create(ctx context.Context, s *Snapshot) error
	Update(ctx context.Context, s *Snapshot) error
	Delete(ctx context.Context, id uuid.UUID) error
}

// WithSnapshots lets the service take snapshots, kept in repo. Without it, snapshots are ErrUnsupported.
func WithSnapshots(repo SnapshotRepository) Option {
	return func(s *Service) { s.snapshots = repo }
}

// SnapshotRequest asks for a snapshot of a volume.
type SnapshotRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// Validate reports every bad field at once.
func (r *SnapshotRequest) Validate() error {
	v := &errkind.Validator{Entity: "snapshot"}
	validate.NormalizeName(&r.Name)
	validate.Name(v, "name", r.Name)
	validate.Description(v, "description", r.Description)
	return v.Err()
}

func (s *Service) snapshotRepo() (SnapshotRepository, error) {
	if s.snapshots == nil {
		return nil, errkind.New(errkind.Unsupported, "snapshot", "", "snapshots are not configured")
	}
	return s.snapshots, nil
}

// quiet checks that no running VM writes to the volume: every VM using it is shut off.
func quiet(vol *Volume, op string) error {
	for _, a := range vol.Attachments {
		if a.Active {
			return errkind.New(errkind.InUse, "volume", vol.ID.String(), "cannot %s while VM %q is not shut off", op, a.VMName)
		}
	}
	return nil
}

// cloner returns the volume's backend as a cloner, refusing before any I/O a backend that cannot clone.
func (s *Service) cloner(st *storage.Storage) (Backend, driver.VolumeCloner, error) {
	b, err := s.backends.VolumeBackend(st.Type)
	if err != nil {
		return nil, nil, err
	}
	c, ok := b.(driver.VolumeCloner)
	if !ok {
		return nil, nil, errkind.New(errkind.Unsupported, "storage", st.ID.String(), "backend %s cannot clone volumes, so it keeps no snapshots", b.Info().Name)
	}
	return b, c, nil
}

// CreateSnapshot takes a snapshot of a volume that no running VM uses (a volume.snapshot operation). A
// backend without instant clones needs the volume's allocated bytes free on the storage (ErrTooLarge).
func (s *Service) CreateSnapshot(ctx context.Context, volumeID uuid.UUID, req SnapshotRequest) (*Snapshot, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return operation.Do(ctx, s.ops, opSpec(OpSnapshot, volumeID, false, nil), func(ctx context.Context) (*Snapshot, error) {
		return s.createSnapshot(ctx, volumeID, req)
	})
}

func (s *Service) createSnapshot(ctx context.Context, volumeID uuid.UUID, req SnapshotRequest) (*Snapshot, error) {
	repo, err := s.snapshotRepo()
	if err != nil {
		return nil, err
	}
	var (
		snap *Snapshot
		st   *storage.Storage
		b    Backend
		c    driver.VolumeCloner
	)
	err = s.tx.InTx(ctx, func(ctx context.Context) error {
		vol, err := s.repo.Get(ctx, volumeID)
		if err != nil {
			return err
		}
		if err := fsm.Require("volume", vol.ID.String(), "take a snapshot", vol.Status, StatusAvailable); err != nil {
			return err
		}
		if err := quiet(vol, "take a snapshot"); err != nil {
			return err
		}
		if st, err = s.storages.Get(ctx, vol.StorageID); err != nil {
			return err
		}
		if b, c, err = s.cloner(st); err != nil {
			return err
		}
		needs := vol.Allocated
		if b.Info().Capabilities.InstantClone {
			needs = 0
		}
		if _, err := s.usableStorage(ctx, st.ID, needs); err != nil {
			return err
		}
		now := s.now().UTC()
		snap = &Snapshot{ID: uuid.Must(uuid.NewV7()), VolumeID: vol.ID, StorageID: vol.StorageID, Name: req.Name,
			Description: req.Description, Format: vol.Format, Size: vol.Size, Status: StatusCreating, CreatedAt: now, UpdatedAt: now}
		return repo.Create(ctx, snap)
	})
	if err != nil {
		return nil, err
	}
	dctx, cancel := deadline.Ensure(ctx, s.CopyTimeout)
	info, err := c.CloneVolume(dctx, st.Pool(), driver.VolumeSpec{ID: snap.VolumeID, Format: snap.Format}, snap.ID)
	cancel()
	ctx = context.WithoutCancel(ctx)
	if err != nil {
		if derr := repo.Delete(ctx, snap.ID); derr != nil {
			s.Log.Error("volume: removing a failed snapshot", "id", snap.ID, "err", derr)
		}
		return nil, fmt.Errorf("snapshot volume %s: %w", snap.VolumeID, err)
	}
	return s.updateSnapshot(ctx, snap.ID, func(cur *Snapshot) error {
		cur.Size, cur.Allocated = info.VirtualSize, info.Allocated
		cur.Status, cur.StatusReason = StatusAvailable, ""
		return nil
	})
}

// Snapshots lists the snapshots of a volume, oldest first.
func (s *Service) Snapshots(ctx context.Context, volumeID uuid.UUID) ([]*Snapshot, error) {
	repo, err := s.snapshotRepo()
	if err != nil {
		return nil, err
	}
	if _, err := s.repo.Get(ctx, volumeID); err != nil {
		return nil, err
	}
	return repo.List(ctx, volumeID)
}

// Snapshot returns a snapshot by id.
func (s *Service) Snapshot(ctx context.Context, id uuid.UUID) (*Snapshot, error) {
	repo, err := s.snapshotRepo()
	if err != nil {
		return nil, err
	}
	return repo.Get(ctx, id)
}

// DeleteSnapshot removes a snapshot and its file (a volume.delete_snapshot operation).
func (s *Service) DeleteSnapshot(ctx context.Context, id uuid.UUID) error {
	_, err := operation.Do(ctx, s.ops, opSpec(OpDeleteSnapshot, id, false, nil), func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.deleteSnapshot(ctx, id)
	})
	return err
}

func (s *Service) deleteSnapshot(ctx context.Context, id uuid.UUID) error {
	repo, err := s.snapshotRepo()
	if err != nil {
		return err
	}
	snap, err := s.updateSnapshot(ctx, id, func(cur *Snapshot) error {
		if cur.Status != StatusAvailable && cur.Status != StatusError {
			return errkind.New(errkind.WrongState, "snapshot", id.String(), "cannot delete while %s", cur.Status)
		}
		cur.Status, cur.StatusReason = StatusDeleting, ""
		return nil
	})
	if err != nil {
		return err
	}
	err = s.withBackend(ctx, snap.StorageID, s.OpTimeout, func(ctx context.Context, b Backend, st *storage.Storage) error {
		return b.DeleteVolume(ctx, st.Pool(), snap.ID)
	})
	ctx = context.WithoutCancel(ctx)
	if err != nil {
		s.failSnapshot(ctx, id, "delete failed: "+err.Error())
		return fmt.Errorf("delete snapshot %q: %w", snap.Name, err)
	}
	return repo.Delete(ctx, id)
}

// RevertSnapshot gives a volume that no running VM uses the content of one of its snapshots (a
// volume.revert operation); the snapshot stays. The volume's file is replaced by a clone of the
// snapshot's: should that fail, the volume is left in error and a new revert completes it.
func (s *Service) RevertSnapshot(ctx context.Context, id uuid.UUID) (*Volume, error) {
	return operation.Do(ctx, s.ops, opSpec(OpRevert, id, false, nil), func(ctx context.Context) (*Volume, error) {
		return s.revert(ctx, id)
	})
}

func (s *Service) revert(ctx context.Context, id uuid.UUID) (*Volume, error) {
	repo, err := s.snapshotRepo()
	if err != nil {
		return nil, err
	}
	snap, err := repo.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := fsm.Require("snapshot", id.String(), "revert to", snap.Status, StatusAvailable); err != nil {
		return nil, err
	}
	vol, err := s.update(ctx, snap.VolumeID, func(cur *Volume) error {
		if err := fsm.Require("volume", cur.ID.String(), "revert", cur.Status, StatusAvailable, StatusError); err != nil {
			return err
		}
		if err := quiet(cur, "revert"); err != nil {
			return err
		}
		if len(cur.Linked) > 0 {
			return errkind.InUseBy("volume", cur.ID.String(), fmt.Sprintf("the backing file of volume %q", cur.Linked[0].VolumeName), linkedRefs(cur.Linked))
		}
		return cur.SetStatus(StatusReverting, "")
	})
	if err != nil {
		return nil, err
	}
	var info driver.VolumeInfo
	err = s.withBackend(ctx, vol.StorageID, s.CopyTimeout, func(ctx context.Context, b Backend, st *storage.Storage) error {
		c, ok := b.(driver.VolumeCloner)
		if !ok {
			return errkind.New(errkind.Unsupported, "storage", st.ID.String(), "backend %s cannot clone volumes", b.Info().Name)
		}
		if err := b.DeleteVolume(ctx, st.Pool(), vol.ID); err != nil {
			return err
		}
		info, err = c.CloneVolume(ctx, st.Pool(), driver.VolumeSpec{ID: snap.ID, Format: snap.Format}, vol.ID)
		return err
	})
	ctx = context.WithoutCancel(ctx)
	if err != nil {
		s.fail(ctx, vol.ID, fmt.Sprintf("revert to snapshot %q failed: %v; revert again", snap.Name, err))
		return nil, fmt.Errorf("revert volume %q to snapshot %q: %w", vol.Name, snap.Name, err)
	}
	return s.update(ctx, vol.ID, func(cur *Volume) error {
		cur.Size, cur.Allocated = info.VirtualSize, info.Allocated
		return cur.SetStatus(StatusAvailable, "")
	})
}

// deleteSnapshotsOf removes every snapshot of a volume, for a delete that asked for it.
func (s *Service) deleteSnapshotsOf(ctx context.Context, volumeID uuid.UUID) error {
	if s.snapshots == nil {
		return nil
	}
	snaps, err := s.snapshots.List(ctx, volumeID)
	if err != nil {
		return err
	}
	for _, sn := range snaps {
		if err := s.deleteSnapshot(ctx, sn.ID); err != nil && !errors.Is(err, errkind.NotFound) {
			return err
		}
	}
	return nil
}

// snapshotRefs names a volume's snapshots, for the error of a delete that did not ask to delete them.
func (s *Service) snapshotRefs(ctx context.Context, volumeID uuid.UUID) ([]errkind.Ref, error) {
	if s.snapshots == nil {
		return nil, nil
	}
	snaps, err := s.snapshots.List(ctx, volumeID)
	if err != nil {
		return nil, err
	}
	refs := make([]errkind.Ref, len(snaps))
	for i, sn := range snaps {
		refs[i] = errkind.Ref{Kind: "snapshot", ID: sn.ID.String(), Name: sn.Name}
	}
	return refs, nil
}

func (s *Service) updateSnapshot(ctx context.Context, id uuid.UUID, fn func(cur *Snapshot) error) (*Snapshot, error) {
	repo, err := s.snapshotRepo()
	if err != nil {
		return nil, err
	}
	return uow.Update(ctx, s.tx, repo.Get, repo.Update, id, func(ctx context.Context, cur *Snapshot) error {
		if err := fn(cur); err != nil {
			return err
		}
		cur.UpdatedAt = s.now().UTC()
		return nil
	})
}

func (s *Service) failSnapshot(ctx context.Context, id uuid.UUID, reason string) {
	if _, err := s.updateSnapshot(ctx, id, func(cur *Snapshot) error {
		cur.Status, cur.StatusReason = StatusError, reason
		return nil
	}); err != nil {
		s.Log.Error("volume: recording a snapshot failure", "id", id, "err", err)
	}
}
