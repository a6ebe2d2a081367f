package memory

import (
	"context"
	"slices"
	"sort"
	"strings"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

type storageRepo struct{ s *Store }

func (r storageRepo) Get(ctx context.Context, id uuid.UUID) (*storage.Storage, error) {
	defer r.s.read(ctx)()
	st, err := r.s.storages.get(id)
	if err != nil {
		return nil, err
	}
	return st.Clone(), nil
}

func (r storageRepo) List(ctx context.Context, o storage.ListOptions) (storage.Page, error) {
	defer r.s.read(ctx)()
	items, next, err := page(r.s.storages.rows, o.Cursor, o.Limit, func(st *storage.Storage) bool {
		return (o.Status == "" || st.Status == o.Status) && (o.Type == "" || st.Type == o.Type) && (o.Name == "" || st.Name == o.Name)
	})
	for i := range items {
		items[i] = items[i].Clone()
	}
	return storage.Page{Items: items, NextCursor: next}, err
}

// unique enforces one name and one location per storage.
func (r storageRepo) unique(st *storage.Storage) error {
	for id, o := range r.s.storages.rows {
		if id == st.ID {
			continue
		}
		if o.Name == st.Name {
			return exists("storage", "a storage named %q exists", st.Name)
		}
		if o.Location == st.Location {
			e := exists("storage", "storage %q already uses %s", o.Name, st.Location).(*errkind.Error)
			e.Refs = []errkind.Ref{{Kind: "storage", ID: o.ID.String(), Name: o.Name}}
			return e
		}
	}
	return nil
}

func (r storageRepo) Create(ctx context.Context, st *storage.Storage) error {
	return r.s.storages.create(r.s, ctx, st, r.unique)
}

func (r storageRepo) Update(ctx context.Context, st *storage.Storage) error {
	return r.s.storages.update(r.s, ctx, st, func(_, next *storage.Storage) error { return r.unique(next) })
}

func (r storageRepo) Delete(ctx context.Context, id uuid.UUID) error {
	return r.s.storages.delete(r.s, ctx, id, func() error {
		if deps := r.dependents(id); len(deps) > 0 {
			e := errkind.New(errkind.InUse, "storage", id.String(), "still holds volumes or images")
			e.Refs = deps
			return e
		}
		return nil
	})
}

func (r storageRepo) Dependents(ctx context.Context, id uuid.UUID) ([]errkind.Ref, error) {
	defer r.s.read(ctx)()
	return r.dependents(id), nil
}

func (r storageRepo) dependents(id uuid.UUID) []errkind.Ref {
	var refs []errkind.Ref
	for _, v := range r.s.volumes.rows {
		if v.StorageID == id {
			refs = append(refs, errkind.Ref{Kind: "volume", ID: v.ID.String(), Name: v.Name})
		}
	}
	for _, img := range r.s.images.rows {
		if img.StorageID == id {
			refs = append(refs, errkind.Ref{Kind: "image", ID: img.ID.String(), Name: img.Name})
		}
	}
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].Kind != refs[j].Kind {
			return refs[i].Kind > refs[j].Kind // volumes first
		}
		return refs[i].Name < refs[j].Name
	})
	return refs
}

// onStorage checks that storageID exists and that no other object of the table has the name there.
func onStorage[T any](s *Store, entity string, rows map[uuid.UUID]T, id, storageID uuid.UUID, name string, key func(T) (uuid.UUID, string)) error {
	if _, ok := s.storages.rows[storageID]; !ok {
		return notFound("storage", storageID)
	}
	for oid, o := range rows {
		if sid, oname := key(o); oid != id && sid == storageID && oname == name {
			return exists(entity, "another %s is named %q on this storage", entity, name)
		}
	}
	return nil
}

// stays refuses to move an object to another storage.
func stays(entity string, id, from, to uuid.UUID) error {
	if from != to {
		return errkind.New(errkind.Invalid, entity, id.String(), "a %s cannot move to another storage", entity)
	}
	return nil
}

type volumeRepo struct{ s *Store }

// view returns a copy of v with its attachments filled.
func (r volumeRepo) view(v *volume.Volume) *volume.Volume {
	c := v.Clone()
	c.Attachments = []volume.Attachment{}
	for _, m := range sortedVMs(r.s.vms.rows) {
		if m.HasVolume(v.ID) {
			c.Attachments = append(c.Attachments, volume.Attachment{VMID: m.ID, VMName: m.Name, Active: m.PowerState.UsesDisks()})
		}
	}
	c.Linked = nil
	for _, l := range r.s.linkedTo(driver.KindVolume, v.ID) {
		c.Linked = append(c.Linked, volume.LinkedVolume{VolumeID: l.ID, VolumeName: l.Name})
	}
	return c
}

// linkedTo lists, by name, the volumes whose backing file is the object kind/id.
func (s *Store) linkedTo(kind driver.ObjectKind, id uuid.UUID) []*volume.Volume {
	var out []*volume.Volume
	for _, v := range s.volumes.rows {
		if v.Backing != nil && v.Backing.Kind == kind && v.Backing.ID == id {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b *volume.Volume) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (r volumeRepo) Get(ctx context.Context, id uuid.UUID) (*volume.Volume, error) {
	defer r.s.read(ctx)()
	v, err := r.s.volumes.get(id)
	if err != nil {
		return nil, err
	}
	return r.view(v), nil
}

func (r volumeRepo) List(ctx context.Context, o volume.ListOptions) (volume.Page, error) {
	defer r.s.read(ctx)()
	attached := r.attachedSet()
	items, next, err := page(r.s.volumes.rows, o.Cursor, o.Limit, func(v *volume.Volume) bool {
		return (o.StorageID == uuid.Nil || v.StorageID == o.StorageID) && (o.Status == "" || v.Status == o.Status) &&
			(o.Name == "" || v.Name == o.Name) && (o.Attached == nil || *o.Attached == attached[v.ID])
	})
	for i := range items {
		items[i] = r.view(items[i])
	}
	return volume.Page{Items: items, NextCursor: next}, err
}

func (r volumeRepo) attachedSet() map[uuid.UUID]bool {
	set := map[uuid.UUID]bool{}
	for _, m := range r.s.vms.rows {
		for _, d := range m.Disks {
			set[d.VolumeID] = true
		}
	}
	return set
}

func (r volumeRepo) check(v *volume.Volume) error {
	return onStorage(r.s, "volume", r.s.volumes.rows, v.ID, v.StorageID, v.Name, func(o *volume.Volume) (uuid.UUID, string) { return o.StorageID, o.Name })
}

func (r volumeRepo) Create(ctx context.Context, v *volume.Volume) error {
	return r.s.volumes.create(r.s, ctx, v, r.check)
}

func (r volumeRepo) Update(ctx context.Context, v *volume.Volume) error {
	return r.s.volumes.update(r.s, ctx, v, func(cur, next *volume.Volume) error {
		if err := stays("volume", next.ID, cur.StorageID, next.StorageID); err != nil {
			return err
		}
		next.Backing = cur.Backing // set once, at create
		return r.check(next)
	})
}

func (r volumeRepo) Delete(ctx context.Context, id uuid.UUID) error {
	return r.s.volumes.delete(r.s, ctx, id, func() error {
		if r.attachedSet()[id] {
			return errkind.New(errkind.InUse, "volume", id.String(), "attached to a VM")
		}
		if len(r.s.linkedTo(driver.KindVolume, id)) > 0 {
			return errkind.New(errkind.InUse, "volume", id.String(), "the backing file of linked volumes")
		}
		if len(r.s.snapshotsOf(id)) > 0 {
			return errkind.New(errkind.InUse, "volume", id.String(), "has snapshots")
		}
		return nil
	})
}

type imageRepo struct{ s *Store }

func (r imageRepo) view(img *image.Image) *image.Image {
	c := img.Clone()
	c.Attachments = []image.Attachment{}
	for _, m := range sortedVMs(r.s.vms.rows) {
		if m.HasImage(img.ID) {
			c.Attachments = append(c.Attachments, image.Attachment{VMID: m.ID, VMName: m.Name})
		}
	}
	c.Linked = nil
	for _, l := range r.s.linkedTo(driver.KindImage, img.ID) {
		c.Linked = append(c.Linked, image.LinkedVolume{VolumeID: l.ID, VolumeName: l.Name})
	}
	return c
}

func (r imageRepo) Get(ctx context.Context, id uuid.UUID) (*image.Image, error) {
	defer r.s.read(ctx)()
	img, err := r.s.images.get(id)
	if err != nil {
		return nil, err
	}
	return r.view(img), nil
}

func (r imageRepo) List(ctx context.Context, o image.ListOptions) (image.Page, error) {
	defer r.s.read(ctx)()
	items, next, err := page(r.s.images.rows, o.Cursor, o.Limit, func(img *image.Image) bool {
		return (o.StorageID == uuid.Nil || img.StorageID == o.StorageID) && (o.Status == "" || img.Status == o.Status) &&
			(o.Name == "" || img.Name == o.Name)
	})
	for i := range items {
		items[i] = r.view(items[i])
	}
	return image.Page{Items: items, NextCursor: next}, err
}

func (r imageRepo) check(img *image.Image) error {
	return onStorage(r.s, "image", r.s.images.rows, img.ID, img.StorageID, img.Name, func(o *image.Image) (uuid.UUID, string) { return o.StorageID, o.Name })
}

func (r imageRepo) Create(ctx context.Context, img *image.Image) error {
	return r.s.images.create(r.s, ctx, img, r.check)
}

func (r imageRepo) Update(ctx context.Context, img *image.Image) error {
	return r.s.images.update(r.s, ctx, img, func(cur, next *image.Image) error {
		if err := stays("image", next.ID, cur.StorageID, next.StorageID); err != nil {
			return err
		}
		return r.check(next)
	})
}

func (r imageRepo) Delete(ctx context.Context, id uuid.UUID) error {
	return r.s.images.delete(r.s, ctx, id, func() error {
		for _, m := range r.s.vms.rows {
			if m.HasImage(id) {
				return errkind.New(errkind.InUse, "image", id.String(), "used as a cdrom by VM %q", m.Name)
			}
		}
		if len(r.s.linkedTo(driver.KindImage, id)) > 0 {
			return errkind.New(errkind.InUse, "image", id.String(), "the backing file of linked volumes")
		}
		return nil
	})
}

type vmRepo struct{ s *Store }

func sortedVMs(m map[uuid.UUID]*vm.VM) []*vm.VM {
	out := make([]*vm.VM, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID.String() < out[j].ID.String() })
	return out
}

func (r vmRepo) Get(ctx context.Context, id uuid.UUID) (*vm.VM, error) {
	defer r.s.read(ctx)()
	v, err := r.s.vms.get(id)
	if err != nil {
		return nil, err
	}
	return v.Clone(), nil
}

func (r vmRepo) List(ctx context.Context, o vm.ListOptions) (vm.Page, error) {
	defer r.s.read(ctx)()
	items, next, err := page(r.s.vms.rows, o.Cursor, o.Limit, func(v *vm.VM) bool {
		return (o.Status == "" || v.Status == o.Status) && (o.PowerState == "" || v.PowerState == o.PowerState) &&
			(o.Name == "" || v.Name == o.Name)
	})
	for i := range items {
		items[i] = items[i].Clone()
	}
	return vm.Page{Items: items, NextCursor: next}, err
}

// check enforces the VM constraints: unique name and MACs, disks and cdroms that exist.
func (r vmRepo) check(v *vm.VM) error {
	macs := map[string]bool{}
	for _, n := range v.Interfaces {
		macs[n.MAC] = true
	}
	for id, o := range r.s.vms.rows {
		if id == v.ID {
			continue
		}
		if o.Name == v.Name {
			return exists("vm", "a VM named %q exists", v.Name)
		}
		for _, n := range o.Interfaces {
			if macs[n.MAC] {
				return exists("vm", "MAC address %s is used by VM %q", n.MAC, o.Name)
			}
		}
	}
	for _, d := range v.Disks {
		if _, ok := r.s.volumes.rows[d.VolumeID]; !ok {
			return notFound("volume", d.VolumeID)
		}
	}
	for _, c := range v.CDROMs {
		if _, ok := r.s.images.rows[c.ImageID]; !ok {
			return notFound("image", c.ImageID)
		}
	}
	return nil
}

func (r vmRepo) Create(ctx context.Context, v *vm.VM) error {
	return r.s.vms.create(r.s, ctx, v, r.check)
}

func (r vmRepo) Update(ctx context.Context, v *vm.VM) error {
	return r.s.vms.update(r.s, ctx, v, func(_, next *vm.VM) error { return r.check(next) })
}

func (r vmRepo) Delete(ctx context.Context, id uuid.UUID) error {
	return r.s.vms.delete(r.s, ctx, id, func() error { return nil })
}
