package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"

	"github.com/google/uuid"
	"github.com/openvair/openvair/vm"
	"github.com/uptrace/bun"
)

type vmRepo struct{ s *Store }

const vmCols = `id, name, description, cpu_sockets, cpu_cores, cpu_threads, cpu_mode, cpu_model, memory_bytes, firmware,
	machine_type, boot, graphics_type, graphics_listen, graphics_password, status, status_reason, power_state,
	power_state_reason, power_state_observed_at, created_at, updated_at, version, cloud_init`

func scanVM(rows *sql.Rows) (*vm.VM, error) {
	var v vm.VM
	var boot string
	var created, updated, observed sql.NullInt64
	var cloudInit sql.NullString
	if err := rows.Scan(&v.ID, &v.Name, &v.Description, &v.CPU.Sockets, &v.CPU.Cores, &v.CPU.Threads, &v.CPU.Mode, &v.CPU.Model,
		&v.MemoryBytes, &v.Firmware, &v.MachineType, &boot, &v.Graphics.Type, &v.Graphics.Listen, &v.Graphics.Password,
		&v.Status, &v.StatusReason, &v.PowerState, &v.PowerStateReason, &observed, &created, &updated, &v.Version, &cloudInit); err != nil {
		return nil, err
	}
	if cloudInit.Valid {
		var ci storedCloudInit
		if err := json.Unmarshal([]byte(cloudInit.String), &ci); err != nil {
			return nil, err
		}
		c := vm.CloudInit(ci)
		v.CloudInit = &c
	}
	if err := json.Unmarshal([]byte(boot), &v.Boot); err != nil {
		return nil, err
	}
	if len(v.Boot) == 0 {
		v.Boot = nil
	}
	v.CreatedAt, v.UpdatedAt, v.PowerStateObservedAt = fromNanos(created), fromNanos(updated), fromNanos(observed)
	return &v, nil
}

// loadDevices fills the disks, cdroms and interfaces of vms, in their stored order.
func loadDevices(ctx context.Context, c conn, vms []*vm.VM) error {
	if len(vms) == 0 {
		return nil
	}
	byID := make(map[uuid.UUID]*vm.VM, len(vms))
	ids := make([]uuid.UUID, len(vms))
	for i, v := range vms {
		byID[v.ID], ids[i] = v, v.ID
	}
	in := bun.List(ids)
	err := c.query(ctx, func(rows *sql.Rows) error {
		var id uuid.UUID
		var d vm.Disk
		if err := rows.Scan(&id, &d.VolumeID, &d.Bus, &d.BootOrder, &d.ReadIOPS, &d.WriteIOPS, &d.ReadBytes, &d.WriteBytes); err != nil {
			return err
		}
		byID[id].Disks = append(byID[id].Disks, d)
		return nil
	}, `SELECT vm_id, volume_id, bus, boot_order, read_iops, write_iops, read_bytes_sec, write_bytes_sec FROM vm_disks
		WHERE vm_id IN (?) ORDER BY vm_id, seq`, in)
	if err != nil {
		return err
	}
	err = c.query(ctx, func(rows *sql.Rows) error {
		var id uuid.UUID
		var cd vm.CDROM
		if err := rows.Scan(&id, &cd.ImageID, &cd.BootOrder); err != nil {
			return err
		}
		byID[id].CDROMs = append(byID[id].CDROMs, cd)
		return nil
	}, "SELECT vm_id, image_id, boot_order FROM vm_cdroms WHERE vm_id IN (?) ORDER BY vm_id, seq", in)
	if err != nil {
		return err
	}
	return c.query(ctx, func(rows *sql.Rows) error {
		var id uuid.UUID
		var n vm.Interface
		if err := rows.Scan(&id, &n.Type, &n.Source, &n.Model, &n.MAC); err != nil {
			return err
		}
		byID[id].Interfaces = append(byID[id].Interfaces, n)
		return nil
	}, "SELECT vm_id, type, source, model, mac FROM vm_interfaces WHERE vm_id IN (?) ORDER BY vm_id, seq", in)
}

func (r vmRepo) Get(ctx context.Context, id uuid.UUID) (*vm.VM, error) {
	var out *vm.VM
	err := r.s.read(ctx, func(c conn) error {
		err := c.query(ctx, func(rows *sql.Rows) (err error) {
			out, err = scanVM(rows)
			return err
		}, "SELECT "+vmCols+" FROM vms WHERE id = ?", id)
		if err != nil || out == nil {
			return err
		}
		return loadDevices(ctx, c, []*vm.VM{out})
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, notFound("vm", id.String())
	}
	return out, nil
}

func (r vmRepo) List(ctx context.Context, o vm.ListOptions) (vm.Page, error) {
	q, err := newListQuery(o.Cursor, o.Limit, "id")
	if err != nil {
		return vm.Page{}, err
	}
	if o.Status != "" {
		q.add("status = ?", o.Status)
	}
	if o.PowerState != "" {
		q.add("power_state = ?", o.PowerState)
	}
	if o.Name != "" {
		q.add("name = ?", o.Name)
	}
	tail, args := q.tail("id")
	items := []*vm.VM{}
	err = r.s.read(ctx, func(c conn) error {
		err := c.query(ctx, func(rows *sql.Rows) error {
			v, err := scanVM(rows)
			items = append(items, v)
			return err
		}, "SELECT "+vmCols+" FROM vms"+tail, args...)
		if err != nil {
			return err
		}
		items, _ = trim(items, q.limit+1, func(v *vm.VM) uuid.UUID { return v.ID })
		return loadDevices(ctx, c, items)
	})
	if err != nil {
		return vm.Page{}, err
	}
	items, next := trim(items, q.limit, func(v *vm.VM) uuid.UUID { return v.ID })
	return vm.Page{Items: items, NextCursor: next}, nil
}

// check enforces the VM rules against the database: unique name (and id on create) and MACs, disks and
// cdroms that exist.
func (r vmRepo) check(ctx context.Context, c conn, v *vm.VM, creating bool) error {
	type other struct {
		id   uuid.UUID
		name string
	}
	var others []other
	err := c.query(ctx, func(rows *sql.Rows) error {
		var o other
		if err := rows.Scan(&o.id, &o.name); err != nil {
			return err
		}
		others = append(others, o)
		return nil
	}, "SELECT id, name FROM vms WHERE id = ? OR name = ?", v.ID, v.Name)
	if err != nil {
		return err
	}
	for _, o := range others {
		if o.id == v.ID && creating {
			return exists("vm", "id %s exists", v.ID)
		}
	}
	for _, o := range others {
		if o.id != v.ID {
			return exists("vm", "a VM named %q exists", v.Name)
		}
	}
	if len(v.Interfaces) > 0 {
		macs := make([]string, len(v.Interfaces))
		for i, n := range v.Interfaces {
			macs[i] = n.MAC
		}
		var mac, owner string
		found := false
		err := c.query(ctx, func(rows *sql.Rows) error {
			found = true
			return rows.Scan(&mac, &owner)
		}, "SELECT i.mac, m.name FROM vm_interfaces i JOIN vms m ON m.id = i.vm_id WHERE i.vm_id <> ? AND i.mac IN (?) ORDER BY m.id, i.seq LIMIT 1",
			v.ID, bun.List(macs))
		if err != nil {
			return err
		}
		if found {
			return exists("vm", "MAC address %s is used by VM %q", mac, owner)
		}
	}
	if err := missing(ctx, c, "volumes", "volume", v.Disks, func(d vm.Disk) uuid.UUID { return d.VolumeID }); err != nil {
		return err
	}
	return missing(ctx, c, "images", "image", v.CDROMs, func(cd vm.CDROM) uuid.UUID { return cd.ImageID })
}

// missing returns NotFound for the first referenced id that is not in table.
func missing[T any](ctx context.Context, c conn, table, entity string, refs []T, id func(T) uuid.UUID) error {
	if len(refs) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(refs))
	for i, ref := range refs {
		ids[i] = id(ref)
	}
	have := map[uuid.UUID]bool{}
	err := c.query(ctx, func(rows *sql.Rows) error {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			return err
		}
		have[id] = true
		return nil
	}, "SELECT id FROM "+table+" WHERE id IN (?)", bun.List(ids))
	if err != nil {
		return err
	}
	for _, id := range ids {
		if !have[id] {
			return notFound(entity, id.String())
		}
	}
	return nil
}

// storedCloudInit is a VM's cloud-init as stored: whole (vm.CloudInit's own JSON redacts the user data).
type storedCloudInit vm.CloudInit

func vmArgs(v *vm.VM) ([]any, error) {
	boot := v.Boot
	if boot == nil {
		boot = []string{}
	}
	b, err := json.Marshal(boot)
	if err != nil {
		return nil, err
	}
	return []any{v.Name, v.Description, v.CPU.Sockets, v.CPU.Cores, v.CPU.Threads, v.CPU.Mode, v.CPU.Model, v.MemoryBytes,
		v.Firmware, v.MachineType, string(b), v.Graphics.Type, v.Graphics.Listen, v.Graphics.Password, v.Status, v.StatusReason,
		v.PowerState, v.PowerStateReason, nanos(v.PowerStateObservedAt), nanos(v.CreatedAt), nanos(v.UpdatedAt)}, nil
}

// cloudInitArg is the cloud_init column of v.
func cloudInitArg(v *vm.VM) (sql.NullString, error) {
	if v.CloudInit == nil {
		return sql.NullString{}, nil
	}
	b, err := json.Marshal(storedCloudInit(*v.CloudInit))
	return sql.NullString{String: string(b), Valid: err == nil}, err
}

// insertDevices writes the disks, cdroms and interfaces of v.
func insertDevices(ctx context.Context, c conn, v *vm.VM) error {
	if len(v.Disks) > 0 {
		var args []any
		for i, d := range v.Disks {
			args = append(args, v.ID, i, d.VolumeID, d.Bus, d.BootOrder, d.ReadIOPS, d.WriteIOPS, d.ReadBytes, d.WriteBytes)
		}
		if _, err := c.exec(ctx, `INSERT INTO vm_disks (vm_id, seq, volume_id, bus, boot_order, read_iops, write_iops, read_bytes_sec,
			write_bytes_sec) VALUES `+values(len(v.Disks), 9), args...); err != nil {
			return err
		}
	}
	if len(v.CDROMs) > 0 {
		var args []any
		for i, cd := range v.CDROMs {
			args = append(args, v.ID, i, cd.ImageID, cd.BootOrder)
		}
		if _, err := c.exec(ctx, "INSERT INTO vm_cdroms (vm_id, seq, image_id, boot_order) VALUES "+values(len(v.CDROMs), 4), args...); err != nil {
			return err
		}
	}
	if len(v.Interfaces) > 0 {
		var args []any
		for i, n := range v.Interfaces {
			args = append(args, v.ID, i, n.Type, n.Source, n.Model, n.MAC)
		}
		if _, err := c.exec(ctx, "INSERT INTO vm_interfaces (vm_id, seq, type, source, model, mac) VALUES "+values(len(v.Interfaces), 6), args...); err != nil {
			return err
		}
	}
	return nil
}

// values returns "(?, ?), (?, ?)" for rows rows of cols placeholders.
func values(rows, cols int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(row+", ", rows), ", ")
}

func (r vmRepo) Create(ctx context.Context, v *vm.VM) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		if err := r.check(ctx, c, v, true); err != nil {
			return err
		}
		args, err := vmArgs(v)
		if err != nil {
			return err
		}
		ci, err := cloudInitArg(v)
		if err != nil {
			return err
		}
		_, err = c.exec(ctx, `INSERT INTO vms (`+vmCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)`,
			append(append([]any{v.ID}, args...), ci)...)
		if err != nil {
			return err
		}
		if err := insertDevices(ctx, c, v); err != nil {
			return err
		}
		v.Version = 1
		return nil
	})
}

func (r vmRepo) Update(ctx context.Context, v *vm.VM) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		version, status, err := current(ctx, c, "vms", "vm", v.ID)
		if err != nil {
			return err
		}
		if version != v.Version {
			return conflict("vm", v.ID.String())
		}
		if err := r.check(ctx, c, v, false); err != nil {
			return err
		}
		args, err := vmArgs(v)
		if err != nil {
			return err
		}
		ci, err := cloudInitArg(v)
		if err != nil {
			return err
		}
		n, err := c.execN(ctx, `UPDATE vms SET name = ?, description = ?, cpu_sockets = ?, cpu_cores = ?, cpu_threads = ?, cpu_mode = ?,
			cpu_model = ?, memory_bytes = ?, firmware = ?, machine_type = ?, boot = ?, graphics_type = ?, graphics_listen = ?,
			graphics_password = ?, status = ?, status_reason = ?, power_state = ?, power_state_reason = ?, power_state_observed_at = ?,
			created_at = ?, updated_at = ?, cloud_init = ?,
			version = version + 1 WHERE id = ? AND version = ? AND status = ?`, append(args, ci, v.ID, v.Version, status)...)
		if err != nil {
			return err
		}
		if n == 0 {
			return conflict("vm", v.ID.String())
		}
		for _, table := range []string{"vm_disks", "vm_cdroms", "vm_interfaces"} {
			if _, err := c.exec(ctx, "DELETE FROM "+table+" WHERE vm_id = ?", v.ID); err != nil {
				return err
			}
		}
		if err := insertDevices(ctx, c, v); err != nil {
			return err
		}
		v.Version++
		return nil
	})
}

func (r vmRepo) Delete(ctx context.Context, id uuid.UUID) error {
	return r.s.write(ctx, func(ctx context.Context, c conn) error {
		n, err := c.execN(ctx, "DELETE FROM vms WHERE id = ?", id)
		if err != nil {
			return err
		}
		if n == 0 {
			return notFound("vm", id.String())
		}
		return nil
	})
}
