package sqlstore

import (
	"context"
	"database/sql"

	"github.com/google/uuid"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/errkind"
)

type imageRepo struct{ s *Store }

const imageCols = "i.id, i.name, i.description, i.storage_id, i.format, i.size, i.sha256, i.status, i.status_reason, i.created_at, i.updated_at, i.version"

// imageJoin appends each image's attachments (the VMs using it as a cdrom) to the rows of i.
const imageJoin = " LEFT JOIN vm_cdroms c ON c.image_id = i.id LEFT JOIN vms m ON m.id = c.vm_id"

// imageScanner collects images with their attachments from joined rows ordered by image id, VM id.
type imageScanner struct{ items []*image.Image }

func (sc *imageScanner) scan(rows *sql.Rows) error {
	var img image.Image
	var created, updated sql.NullInt64
	var vmID uuid.NullUUID
	var vmName sql.NullString
	if err := rows.Scan(&img.ID, &img.Name, &img.Description, &img.StorageID, &img.Format, &img.Size, &img.SHA256, &img.Status,
		&img.StatusReason, &created, &updated, &img.Version, &vmID, &vmName); err != nil {
		return err
	}
	cur := &img
	if n := len(sc.items); n > 0 && sc.items[n-1].ID == img.ID {
		cur = sc.items[n-1]
	} else {
		img.CreatedAt, img.UpdatedAt = fromNanos(created), fromNanos(updated)
		img.Attachments = []image.Attachment{}
		sc.items = append(sc.items, cur)
	}
	if vmID.Valid {
		cur.Attachments = append(cur.Attachments, image.Attachment{VMID: vmID.UUID, VMName: vmName.String})
	}
	return nil
}

func (r imageRepo) Get(ctx context.Context, id uuid.UUID) (*image.Image, error) {
	var sc imageScanner
	err := r.s.reader(ctx).query(ctx, sc.scan,
		"SELECT "+imageCols+", m.id, m.name FROM images i"+imageJoin+" WHERE i.id = ? ORDER BY m.id", id)
	if err != nil {
		return nil, err
	}
	if len(sc.items) == 0 {
		return nil, notFound("image", id.String())
	}
	if err := fillLinked(ctx, r.s.reader(ctx), "backing_image_id", sc.items, addLinkedImage); err != nil {
		return nil, err
	}
	return sc.items[0], nil
}

func addLinkedImage(img *image.Image, l linked) {
	img.Linked = append(img.Linked, image.LinkedVolume{VolumeID: l.id, VolumeName: l.name})
}

func (r imageRepo) List(ctx context.Context, o image.ListOptions) (image.Page, error) {
	q, err := newListQuery(o.Cursor, o.Limit, "id")
	if err != nil {
		return image.Page{}, err
	}
	q.onStorage(o.StorageID, string(o.Status), o.Name)
	tail, args := q.tail("id")
	sc := imageScanner{items: []*image.Image{}}
	err = r.s.reader(ctx).query(ctx, sc.scan, "SELECT "+imageCols+", m.id, m.name FROM (SELECT * FROM images"+tail+") i"+
		imageJoin+" ORDER BY i.id, m.id", args...)
	if err != nil {
		return image.Page{}, err
	}
	items, next := trim(sc.items, q.limit, func(img *image.Image) uuid.UUID { return img.ID })
	if err := fillLinked(ctx, r.s.reader(ctx), "backing_image_id", items, addLinkedImage); err != nil {
		return image.Page{}, err
	}
	return image.Page{Items: items, NextCursor: next}, nil
}

func imageArgs(img *image.Image) []any {
	return []any{img.Name, img.Description, img.StorageID, img.Format, img.Size, img.SHA256, img.Status, img.StatusReason,
		nanos(img.CreatedAt), nanos(img.UpdatedAt)}
}

func (r imageRepo) Create(ctx context.Context, img *image.Image) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		dup, err := c.exists(ctx, "SELECT 1 FROM images WHERE id = ?", img.ID)
		if err != nil {
			return err
		}
		if dup {
			return exists("image", "id %s exists", img.ID)
		}
		if err := nameFreeOnStorage(ctx, c, "images", "image", img.ID, img.StorageID, img.Name); err != nil {
			return err
		}
		_, err = c.exec(ctx, `INSERT INTO images (id, name, description, storage_id, format, size, sha256, status, status_reason,
			created_at, updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`, append([]any{img.ID}, imageArgs(img)...)...)
		if err != nil {
			return err
		}
		img.Version = 1
		return nil
	})
}

func (r imageRepo) Update(ctx context.Context, img *image.Image) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		status, err := storedOnStorage(ctx, c, "images", "image", img.ID, img.Version, img.StorageID)
		if err != nil {
			return err
		}
		if err := nameFreeOnStorage(ctx, c, "images", "image", img.ID, img.StorageID, img.Name); err != nil {
			return err
		}
		n, err := c.execN(ctx, `UPDATE images SET name = ?, description = ?, storage_id = ?, format = ?, size = ?, sha256 = ?,
			status = ?, status_reason = ?, created_at = ?, updated_at = ?, version = version + 1
			WHERE id = ? AND version = ? AND status = ?`, append(imageArgs(img), img.ID, img.Version, status)...)
		if err != nil {
			return err
		}
		if n == 0 {
			return conflict("image", img.ID.String())
		}
		img.Version++
		return nil
	})
}

func (r imageRepo) Delete(ctx context.Context, id uuid.UUID) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		found, err := c.exists(ctx, "SELECT 1 FROM images WHERE id = ?", id)
		if err != nil {
			return err
		}
		if !found {
			return notFound("image", id.String())
		}
		var user string
		used := false
		err = c.query(ctx, func(rows *sql.Rows) error { used = true; return rows.Scan(&user) },
			"SELECT m.name FROM vm_cdroms c JOIN vms m ON m.id = c.vm_id WHERE c.image_id = ? ORDER BY m.id LIMIT 1", id)
		if err != nil {
			return err
		}
		if used {
			return errkind.New(errkind.InUse, "image", id.String(), "used as a cdrom by VM %q", user)
		}
		if backs, err := c.exists(ctx, "SELECT 1 FROM volumes WHERE backing_image_id = ?", id); err != nil || backs {
			if err != nil {
				return err
			}
			return errkind.New(errkind.InUse, "image", id.String(), "the backing file of linked volumes")
		}
		_, err = c.exec(ctx, "DELETE FROM images WHERE id = ?", id)
		return err
	})
}
