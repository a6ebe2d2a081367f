package sqlstore

import (
	"context"
	"database/sql"

	"github.com/google/uuid"

	"github.com/openvair/openvair/volume"
)

type snapshotRepo struct{ s *Store }

// Snapshots returns the snapshot repository.
func (s *Store) Snapshots() volume.SnapshotRepository { return snapshotRepo{s} }

const snapshotCols = "id, volume_id, storage_id, name, description, format, size, allocated, status, status_reason, created_at, updated_at, version"

func scanSnapshot(rows *sql.Rows) (*volume.Snapshot, error) {
	var sn volume.Snapshot
	var created, updated sql.NullInt64
	if err := rows.Scan(&sn.ID, &sn.VolumeID, &sn.StorageID, &sn.Name, &sn.Description, &sn.Format, &sn.Size, &sn.Allocated,
		&sn.Status, &sn.StatusReason, &created, &updated, &sn.Version); err != nil {
		return nil, err
	}
	sn.CreatedAt, sn.UpdatedAt = fromNanos(created), fromNanos(updated)
	return &sn, nil
}

func (r snapshotRepo) Get(ctx context.Context, id uuid.UUID) (*volume.Snapshot, error) {
	var out *volume.Snapshot
	err := r.s.reader(ctx).query(ctx, func(rows *sql.Rows) (err error) {
		out, err = scanSnapshot(rows)
		return err
	}, "SELECT "+snapshotCols+" FROM snapshots WHERE id = ?", id)
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, notFound("snapshot", id.String())
	}
	return out, nil
}

func (r snapshotRepo) List(ctx context.Context, volumeID uuid.UUID) ([]*volume.Snapshot, error) {
	out := []*volume.Snapshot{}
	err := r.s.reader(ctx).query(ctx, func(rows *sql.Rows) error {
		sn, err := scanSnapshot(rows)
		out = append(out, sn)
		return err
	}, "SELECT "+snapshotCols+" FROM snapshots WHERE volume_id = ? ORDER BY created_at, id", volumeID)
	return out, err
}

// nameFree refuses a second snapshot of a volume with the same name, and a snapshot of a missing volume.
func (r snapshotRepo) nameFree(ctx context.Context, c conn, sn *volume.Snapshot) error {
	found, err := c.exists(ctx, "SELECT 1 FROM volumes WHERE id = ?", sn.VolumeID)
	if err != nil {
		return err
	}
	if !found {
		return notFound("volume", sn.VolumeID.String())
	}
	dup, err := c.exists(ctx, "SELECT 1 FROM snapshots WHERE volume_id = ? AND name = ? AND id <> ?", sn.VolumeID, sn.Name, sn.ID)
	if err != nil {
		return err
	}
	if dup {
		return exists("snapshot", "the volume has a snapshot named %q", sn.Name)
	}
	return nil
}

func snapshotArgs(sn *volume.Snapshot) []any {
	return []any{sn.Name, sn.Description, sn.Format, sn.Size, sn.Allocated, sn.Status, sn.StatusReason, nanos(sn.CreatedAt), nanos(sn.UpdatedAt)}
}

func (r snapshotRepo) Create(ctx context.Context, sn *volume.Snapshot) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		dup, err := c.exists(ctx, "SELECT 1 FROM snapshots WHERE id = ?", sn.ID)
		if err != nil {
			return err
		}
		if dup {
			return exists("snapshot", "id %s exists", sn.ID)
		}
		if err := r.nameFree(ctx, c, sn); err != nil {
			return err
		}
		_, err = c.exec(ctx, `INSERT INTO snapshots (id, volume_id, storage_id, name, description, format, size, allocated, status,
			status_reason, created_at, updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
			append([]any{sn.ID, sn.VolumeID, sn.StorageID}, snapshotArgs(sn)...)...)
		if err != nil {
			return err
		}
		sn.Version = 1
		return nil
	})
}

func (r snapshotRepo) Update(ctx context.Context, sn *volume.Snapshot) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		version, status, err := current(ctx, c, "snapshots", "snapshot", sn.ID)
		if err != nil {
			return err
		}
		if version != sn.Version {
			return conflict("snapshot", sn.ID.String())
		}
		if err := r.nameFree(ctx, c, sn); err != nil {
			return err
		}
		n, err := c.execN(ctx, `UPDATE snapshots SET name = ?, description = ?, format = ?, size = ?, allocated = ?, status = ?,
			status_reason = ?, created_at = ?, updated_at = ?, version = version + 1 WHERE id = ? AND version = ? AND status = ?`,
			append(snapshotArgs(sn), sn.ID, sn.Version, status)...)
		if err != nil {
			return err
		}
		if n == 0 {
			return conflict("snapshot", sn.ID.String())
		}
		sn.Version++
		return nil
	})
}

func (r snapshotRepo) Delete(ctx context.Context, id uuid.UUID) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		found, err := c.exists(ctx, "SELECT 1 FROM snapshots WHERE id = ?", id)
		if err != nil {
			return err
		}
		if !found {
			return notFound("snapshot", id.String())
		}
		_, err = c.exec(ctx, "DELETE FROM snapshots WHERE id = ?", id)
		return err
	})
}
