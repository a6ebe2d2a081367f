package sqlstore

import (
	"context"
	"database/sql"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

type volumeRepo struct{ s *Store }

const volumeCols = "v.id, v.name, v.description, v.storage_id, v.format, v.size, v.allocated, v.read_only, v.shareable, v.status, v.status_reason, v.created_at, v.updated_at, v.version"

// volumeJoin appends each volume's attachments (the VMs using it, in VM id order) to the rows of v.
const volumeJoin = " LEFT JOIN vm_disks d ON d.volume_id = v.id LEFT JOIN vms m ON m.id = d.vm_id"

// active reports whether a VM in power state p is using its disks.
// volumeScanner collects volumes with their attachments from joined rows ordered by volume id, VM id.
type volumeScanner struct{ items []*volume.Volume }

func (sc *volumeScanner) scan(rows *sql.Rows) error {
	var v volume.Volume
	var created, updated sql.NullInt64
	var vmID uuid.NullUUID
	var vmName, power sql.NullString
	if err := rows.Scan(&v.ID, &v.Name, &v.Description, &v.StorageID, &v.Format, &v.Size, &v.Allocated, &v.ReadOnly,
		&v.Shareable, &v.Status, &v.StatusReason, &created, &updated, &v.Version, &vmID, &vmName, &power); err != nil {
		return err
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
	return sc.items[0], nil
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
		_, err = c.exec(ctx, `INSERT INTO volumes (id, name, description, storage_id, format, size, allocated, read_only, shareable,
			status, status_reason, created_at, updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
			append([]any{v.ID}, volumeArgs(v)...)...)
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
