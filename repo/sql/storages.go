package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"sort"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/storage"
)

type storageRepo struct{ s *Store }

const storageCols = "id, name, description, type, config, state, location, status, status_reason, capacity, available, mount_point, created_at, updated_at, version"

func scanStorage(rows *sql.Rows) (*storage.Storage, error) {
	var st storage.Storage
	var config string
	var state sql.NullString
	var created, updated sql.NullInt64
	if err := rows.Scan(&st.ID, &st.Name, &st.Description, &st.Type, &config, &state, &st.Location, &st.Status, &st.StatusReason,
		&st.Capacity, &st.Available, &st.MountPoint, &created, &updated, &st.Version); err != nil {
		return nil, err
	}
	st.Config = json.RawMessage(config)
	if state.Valid {
		st.State = json.RawMessage(state.String)
	}
	st.CreatedAt, st.UpdatedAt = fromNanos(created), fromNanos(updated)
	return &st, nil
}

func (r storageRepo) Get(ctx context.Context, id uuid.UUID) (*storage.Storage, error) {
	var out *storage.Storage
	err := r.s.reader(ctx).query(ctx, func(rows *sql.Rows) (err error) {
		out, err = scanStorage(rows)
		return err
	}, "SELECT "+storageCols+" FROM storages WHERE id = ?", id)
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, notFound("storage", id.String())
	}
	return out, nil
}

func (r storageRepo) List(ctx context.Context, o storage.ListOptions) (storage.Page, error) {
	q, err := newListQuery(o.Cursor, o.Limit, "id")
	if err != nil {
		return storage.Page{}, err
	}
	if o.Status != "" {
		q.add("status = ?", o.Status)
	}
	if o.Type != "" {
		q.add("type = ?", o.Type)
	}
	if o.Name != "" {
		q.add("name = ?", o.Name)
	}
	tail, args := q.tail("id")
	items := []*storage.Storage{}
	err = r.s.reader(ctx).query(ctx, func(rows *sql.Rows) error {
		st, err := scanStorage(rows)
		items = append(items, st)
		return err
	}, "SELECT "+storageCols+" FROM storages"+tail, args...)
	if err != nil {
		return storage.Page{}, err
	}
	items, next := trim(items, q.limit, func(st *storage.Storage) uuid.UUID { return st.ID })
	return storage.Page{Items: items, NextCursor: next}, nil
}

// unique checks the id (on create), name and location rules against the other storages.
func (r storageRepo) unique(ctx context.Context, c conn, st *storage.Storage, creating bool) error {
	type other struct {
		id             uuid.UUID
		name, location string
	}
	var others []other
	err := c.query(ctx, func(rows *sql.Rows) error {
		var o other
		others = append(others, o)
		return rows.Scan(&others[len(others)-1].id, &others[len(others)-1].name, &others[len(others)-1].location)
	}, "SELECT id, name, location FROM storages WHERE id = ? OR name = ? OR location = ?", st.ID, st.Name, st.Location)
	if err != nil {
		return err
	}
	for _, o := range others {
		if o.id == st.ID && creating {
			return exists("storage", "id %s exists", st.ID)
		}
	}
	for _, o := range others {
		if o.id != st.ID && o.name == st.Name {
			return exists("storage", "a storage named %q exists", st.Name)
		}
	}
	for _, o := range others {
		if o.id != st.ID && o.location == st.Location {
			e := exists("storage", "storage %q already uses %s", o.name, st.Location).(*errkind.Error)
			e.Refs = []errkind.Ref{{Kind: "storage", ID: o.id.String(), Name: o.name}}
			return e
		}
	}
	return nil
}

func storageArgs(st *storage.Storage) ([]any, error) {
	config := "{}"
	if len(st.Config) > 0 {
		if !json.Valid(st.Config) {
			return nil, errkind.New(errkind.Invalid, "storage", st.ID.String(), "configuration is not valid JSON")
		}
		config = string(st.Config)
	}
	var state sql.NullString
	if len(st.State) > 0 {
		if !json.Valid(st.State) {
			return nil, errkind.New(errkind.Invalid, "storage", st.ID.String(), "state is not valid JSON")
		}
		state = sql.NullString{String: string(st.State), Valid: true}
	}
	return []any{st.Name, st.Description, st.Type, config, state, st.Location, st.Status, st.StatusReason,
		st.Capacity, st.Available, st.MountPoint, nanos(st.CreatedAt), nanos(st.UpdatedAt)}, nil
}

func (r storageRepo) Create(ctx context.Context, st *storage.Storage) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		if err := r.unique(ctx, c, st, true); err != nil {
			return err
		}
		args, err := storageArgs(st)
		if err != nil {
			return err
		}
		_, err = c.exec(ctx, `INSERT INTO storages (id, name, description, type, config, state, location, status, status_reason,
			capacity, available, mount_point, created_at, updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
			append([]any{st.ID}, args...)...)
		if err != nil {
			return err
		}
		st.Version = 1
		return nil
	})
}

// current reads the stored version and status of a row, for the checks before an update.
func current(ctx context.Context, c conn, table, entity string, id uuid.UUID) (version int64, status string, err error) {
	found := false
	err = c.query(ctx, func(rows *sql.Rows) error {
		found = true
		return rows.Scan(&version, &status)
	}, "SELECT version, status FROM "+table+" WHERE id = ?", id)
	if err == nil && !found {
		err = notFound(entity, id.String())
	}
	return version, status, err
}

func (r storageRepo) Update(ctx context.Context, st *storage.Storage) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		version, status, err := current(ctx, c, "storages", "storage", st.ID)
		if err != nil {
			return err
		}
		if version != st.Version {
			return conflict("storage", st.ID.String())
		}
		if err := r.unique(ctx, c, st, false); err != nil {
			return err
		}
		args, err := storageArgs(st)
		if err != nil {
			return err
		}
		n, err := c.execN(ctx, `UPDATE storages SET name = ?, description = ?, type = ?, config = ?, state = ?, location = ?,
			status = ?, status_reason = ?, capacity = ?, available = ?, mount_point = ?, created_at = ?, updated_at = ?,
			version = version + 1 WHERE id = ? AND version = ? AND status = ?`, append(args, st.ID, st.Version, status)...)
		if err != nil {
			return err
		}
		if n == 0 {
			return conflict("storage", st.ID.String())
		}
		st.Version++
		return nil
	})
}

func (r storageRepo) Delete(ctx context.Context, id uuid.UUID) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		found, err := c.exists(ctx, "SELECT 1 FROM storages WHERE id = ?", id)
		if err != nil {
			return err
		}
		if !found {
			return notFound("storage", id.String())
		}
		deps, err := dependents(ctx, c, id)
		if err != nil {
			return err
		}
		if len(deps) > 0 {
			e := errkind.New(errkind.InUse, "storage", id.String(), "still holds volumes or images")
			e.Refs = deps
			return e
		}
		_, err = c.exec(ctx, "DELETE FROM storages WHERE id = ?", id)
		return err
	})
}

func (r storageRepo) Dependents(ctx context.Context, id uuid.UUID) ([]errkind.Ref, error) {
	return dependents(ctx, r.s.reader(ctx), id)
}

// dependents lists the volumes, then the images, of a storage, each by name.
func dependents(ctx context.Context, c conn, id uuid.UUID) ([]errkind.Ref, error) {
	var refs []errkind.Ref
	err := c.query(ctx, func(rows *sql.Rows) error {
		var ref errkind.Ref
		var rid uuid.UUID
		if err := rows.Scan(&ref.Kind, &rid, &ref.Name); err != nil {
			return err
		}
		ref.ID = rid.String()
		refs = append(refs, ref)
		return nil
	}, "SELECT 'volume', id, name FROM volumes WHERE storage_id = ? UNION ALL SELECT 'image', id, name FROM images WHERE storage_id = ?", id, id)
	if err != nil {
		return nil, err
	}
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].Kind != refs[j].Kind {
			return refs[i].Kind > refs[j].Kind // volumes first
		}
		return refs[i].Name < refs[j].Name
	})
	return refs, nil
}
