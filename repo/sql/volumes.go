package sqlstore

import (
	"context"
	"database/sql"
	"strings"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

type volumeRepo struct{ s *Store }

const volumeCols = "v.id, v.name, v.description, v.storage_id, v.format, v.size, v.allocated, v.read_only, v.shareable, v.status, v.status_reason, v.created_at, v.updated_at, v.version, v.backing_volume_id, v.backing_image_id"

// volumeJoin appends each volume's attachments (the VMs using it, in VM id order) to the rows of v.
const volumeJoin = " LEFT JOIN vm_disks d ON d.volume_id = v.id LEFT JOIN vms m ON m.id = d.vm_id"

// active reports whether a VM in power state p is using its disks.
// volumeScanner collects volumes with their attachments from joined rows ordered by volume id, VM id.
type volumeScanner struct{ items []*volume.Volume }

func (sc *volumeScanner) scan(rows *sql.Rows) error {
	var v volume.Volume
	var created, updated sql.NullInt64
	var vmID, backingVolume, backingImage uuid.NullUUID
	var vmName, power sql.NullString
	if err := rows.Scan(&v.ID, &v.Name, &v.Description, &v.StorageID, &v.Format, &v.Size, &v.Allocated, &v.ReadOnly,
		&v.Shareable, &v.Status, &v.StatusReason, &created, &updated, &v.Version, &backingVolume, &backingImage,
		&vmID, &vmName, &power); err != nil {
		return err
	}
	switch {
	case backingVolume.Valid:
		v.Backing = &volume.Backing{Kind: driver.KindVolume, ID: backingVolume.UUID}
	case backingImage.Valid:
		v.Backing = &volume.Backing{Kind: driver.KindImage, ID: backingImage.UUID}
	}
	cur := &v
	if n := len(sc.items); n > 0 && sc.items[n-1].ID == v.ID {
		cur = sc.items[n-1]
	} else {
		v.CreatedAt, v.UpdatedAt = fromNanos(created), fromNanos(updated)
		v.Attachments = []volume.Attachment{}
		sc.items = append(sc.items, cur)
	}
	if vmID.Valid {
		cur.Attachments = append(cur.Attachments, volume.Attachment{VMID: vmID.UUID, VMName: vmName.String, Active: vm.PowerState(power.String).UsesDisks()})
	}
	return nil
}

func (r volumeRepo) Get(ctx context.Context, id uuid.UUID) (*volume.Volume, error) {
	var sc volumeScanner
	err := r.s.reader(ctx).query(ctx, sc.scan,
		"SELECT "+volumeCols+", m.id, m.name, m.power_state FROM volumes v"+volumeJoin+" WHERE v.id = ? ORDER BY m.id", id)
	if err != nil {
		return nil, err
	}
	if len(sc.items) == 0 {
		return nil, notFound("volume", id.String())
	}
	if err := fillLinked(ctx, r.s.reader(ctx), "backing_volume_id", sc.items, addLinkedVolume); err != nil {
		return nil, err
	}
	return sc.items[0], nil
}

func addLinkedVolume(v *volume.Volume, l linked) {
	v.Linked = append(v.Linked, volume.LinkedVolume{VolumeID: l.id, VolumeName: l.name})
}

// linked is a volume that uses another object as its backing file.
type linked struct {
	id, backing uuid.UUID
	name        string
}

// fillLinked adds to each of items (volumes or images) the volumes whose column (backing_volume_id or
// backing_image_id) names it, by name, with one query.
func fillLinked[T interface{ EntityID() uuid.UUID }](ctx context.Context, c conn, column string, items []T, add func(T, linked)) error {
	if len(items) == 0 {
		return nil
	}
	byID := make(map[uuid.UUID]T, len(items))
	args := make([]any, 0, len(items))
	marks := make([]string, 0, len(items))
	for _, it := range items {
		byID[it.EntityID()] = it
		args = append(args, it.EntityID())
		marks = append(marks, "?")
	}
	return c.query(ctx, func(rows *sql.Rows) error {
		var l linked
		if err := rows.Scan(&l.id, &l.name, &l.backing); err != nil {
			return err
		}
		if it, ok := byID[l.backing]; ok {
			add(it, l)
		}
		return nil
	}, "SELECT id, name, "+column+" FROM volumes WHERE "+column+" IN ("+strings.Join(marks, ", ")+") ORDER BY name, id", args...)
}

func (r volumeRepo) List(ctx context.Context, o volume.ListOptions) (volume.Page, error) {
	q, err := newListQuery(o.Cursor, o.Limit, "id")
	if err != nil {
		return volume.Page{}, err
	}
	q.onStorage(o.StorageID, string(o.Status), o.Name)
	if o.Attached != nil {
		not := "NOT "
		if *o.Attached {
			not = ""
		}
		q.add(not + "EXISTS (SELECT 1 FROM vm_disks a WHERE a.volume_id = volumes.id)")
	}
	tail, args := q.tail("id")
	sc := volumeScanner{items: []*volume.Volume{}}
	err = r.s.reader(ctx).query(ctx, sc.scan, "SELECT "+volumeCols+", m.id, m.name, m.power_state FROM (SELECT * FROM volumes"+tail+") v"+
		volumeJoin+" ORDER BY v.id, m.id", args...)
	if err != nil {
		return volume.Page{}, err
	}
	items, next := trim(sc.items, q.limit, func(v *volume.Volume) uuid.UUID { return v.ID })
	if err := fillLinked(ctx, r.s.reader(ctx), "backing_volume_id", items, addLinkedVolume); err != nil {
		return volume.Page{}, err
	}
	return volume.Page{Items: items, NextCursor: next}, nil
}

func volumeArgs(v *volume.Volume) []any {
	return []any{v.Name, v.Description, v.StorageID, v.Format, v.Size, v.Allocated, v.ReadOnly, v.Shareable, v.Status,
		v.StatusReason, nanos(v.CreatedAt), nanos(v.UpdatedAt)}
}

func (r volumeRepo) Create(ctx context.Context, v *volume.Volume) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		dup, err := c.exists(ctx, "SELECT 1 FROM volumes WHERE id = ?", v.ID)
		if err != nil {
			return err
		}
		if dup {
			return exists("volume", "id %s exists", v.ID)
		}
		if err := nameFreeOnStorage(ctx, c, "volumes", "volume", v.ID, v.StorageID, v.Name); err != nil {
			return err
		}
		var backingVolume, backingImage uuid.NullUUID
		if v.Backing != nil && v.Backing.Kind == driver.KindVolume {
			backingVolume = uuid.NullUUID{UUID: v.Backing.ID, Valid: true}
		} else if v.Backing != nil {
			backingImage = uuid.NullUUID{UUID: v.Backing.ID, Valid: true}
		}
		_, err = c.exec(ctx, `INSERT INTO volumes (id, name, description, storage_id, format, size, allocated, read_only, shareable,
			status, status_reason, created_at, updated_at, version, backing_volume_id, backing_image_id)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)`,
			append(append([]any{v.ID}, volumeArgs(v)...), backingVolume, backingImage)...)
		if err != nil {
			return err
		}
		v.Version = 1
		return nil
	})
}

func (r volumeRepo) Update(ctx context.Context, v *volume.Volume) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		status, err := storedOnStorage(ctx, c, "volumes", "volume", v.ID, v.Version, v.StorageID)
		if err != nil {
			return err
		}
		if err := nameFreeOnStorage(ctx, c, "volumes", "volume", v.ID, v.StorageID, v.Name); err != nil {
			return err
		}
		n, err := c.execN(ctx, `UPDATE volumes SET name = ?, description = ?, storage_id = ?, format = ?, size = ?, allocated = ?,
			read_only = ?, shareable = ?, status = ?, status_reason = ?, created_at = ?, updated_at = ?, version = version + 1
			WHERE id = ? AND version = ? AND status = ?`, append(volumeArgs(v), v.ID, v.Version, status)...)
		if err != nil {
			return err
		}
		if n == 0 {
			return conflict("volume", v.ID.String())
		}
		v.Version++
		return nil
	})
}

func (r volumeRepo) Delete(ctx context.Context, id uuid.UUID) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		found, err := c.exists(ctx, "SELECT 1 FROM volumes WHERE id = ?", id)
		if err != nil {
			return err
		}
		if !found {
			return notFound("volume", id.String())
		}
		attached, err := c.exists(ctx, "SELECT 1 FROM vm_disks WHERE volume_id = ?", id)
		if err != nil {
			return err
		}
		if attached {
			return errkind.New(errkind.InUse, "volume", id.String(), "attached to a VM")
		}
		if backs, err := c.exists(ctx, "SELECT 1 FROM volumes WHERE backing_volume_id = ?", id); err != nil || backs {
			if err != nil {
				return err
			}
			return errkind.New(errkind.InUse, "volume", id.String(), "the backing file of linked volumes")
		}
		if snaps, err := c.exists(ctx, "SELECT 1 FROM snapshots WHERE volume_id = ?", id); err != nil || snaps {
			if err != nil {
				return err
			}
			return errkind.New(errkind.InUse, "volume", id.String(), "has snapshots")
		}
		_, err = c.exec(ctx, "DELETE FROM volumes WHERE id = ?", id)
		return err
	})
}

// storedOnStorage reads, for an update of an object that lives on a storage (a volume or an image), the
// stored row's status after checking that the row exists, still has the version the caller read, and stays
// on its storage. The status feeds the UPDATE's compare-and-swap.
func storedOnStorage(ctx context.Context, c conn, table, entity string, id uuid.UUID, version int64, storageID uuid.UUID) (string, error) {
	var (
		storedVersion int64
		status        string
		storedStorage uuid.UUID
		found         bool
	)
	err := c.query(ctx, func(rows *sql.Rows) error {
		found = true
		return rows.Scan(&storedVersion, &status, &storedStorage)
	}, "SELECT version, status, storage_id FROM "+table+" WHERE id = ?", id)
	switch {
	case err != nil:
		return "", err
	case !found:
		return "", notFound(entity, id.String())
	case storedVersion != version:
		return "", conflict(entity, id.String())
	case storedStorage != storageID:
		return "", errkind.New(errkind.Invalid, entity, id.String(), "cannot move to another storage")
	}
	return status, nil
}

// nameFreeOnStorage enforces, for an object that lives on a storage (a volume or an image), that the
// storage exists and that no other object of the table has the name on it.
func nameFreeOnStorage(ctx context.Context, c conn, table, entity string, id, storageID uuid.UUID, name string) error {
	found, err := c.exists(ctx, "SELECT 1 FROM storages WHERE id = ?", storageID)
	if err != nil {
		return err
	}
	if !found {
		return notFound("storage", storageID.String())
	}
	dup, err := c.exists(ctx, "SELECT 1 FROM "+table+" WHERE storage_id = ? AND name = ? AND id <> ?", storageID, name, id)
	if err != nil {
		return err
	}
	if dup {
		return exists(entity, "another %s is named %q on this storage", entity, name)
	}
	return nil
}
