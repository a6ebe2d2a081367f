package memory

import (
	"context"
	"slices"

	"github.com/google/uuid"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/volume"
)

type snapshotRepo struct{ s *Store }

func (r snapshotRepo) Get(ctx context.Context, id uuid.UUID) (*volume.Snapshot, error) {
	defer r.s.read(ctx)()
	sn, err := r.s.snaps.get(id)
	if err != nil {
		return nil, err
	}
	return sn.Clone(), nil
}

func (r snapshotRepo) List(ctx context.Context, volumeID uuid.UUID) ([]*volume.Snapshot, error) {
	defer r.s.read(ctx)()
	return r.s.snapshotsOf(volumeID), nil
}

// snapshotsOf lists copies of a volume's snapshots, oldest first.
func (s *Store) snapshotsOf(volumeID uuid.UUID) []*volume.Snapshot {
	out := []*volume.Snapshot{}
	for _, sn := range s.snaps.rows {
		if sn.VolumeID == volumeID {
			out = append(out, sn.Clone())
		}
	}
	slices.SortFunc(out, func(a, b *volume.Snapshot) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return slices.Compare(a.ID[:], b.ID[:])
	})
	return out
}

func (r snapshotRepo) check(sn *volume.Snapshot) error {
	if _, err := r.s.volumes.get(sn.VolumeID); err != nil {
		return err
	}
	for _, o := range r.s.snaps.rows {
		if o.ID != sn.ID && o.VolumeID == sn.VolumeID && o.Name == sn.Name {
			return exists("snapshot", "the volume has a snapshot named %q", sn.Name)
		}
	}
	return nil
}

func (r snapshotRepo) Create(ctx context.Context, sn *volume.Snapshot) error {
	return r.s.snaps.create(r.s, ctx, sn, r.check)
}

func (r snapshotRepo) Update(ctx context.Context, sn *volume.Snapshot) error {
	return r.s.snaps.update(r.s, ctx, sn, func(cur, next *volume.Snapshot) error {
		if cur.VolumeID != next.VolumeID {
			return errkind.New(errkind.Invalid, "snapshot", next.ID.String(), "a snapshot cannot move to another volume")
		}
		return r.check(next)
	})
}

func (r snapshotRepo) Delete(ctx context.Context, id uuid.UUID) error {
	return r.s.snaps.delete(r.s, ctx, id, func() error { return nil })
}
