package memory

import (
	"context"
	"sort"

	"github.com/google/uuid"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

type storageRepo struct{ s *Store }

func (r storageRepo) Get(ctx context.Context, id uuid.UUID) (*storage.Storage, error) {
	defer r.s.read(ctx)()
	st, ok := r.s.storages[id]
	if !ok {
		return nil, notFound("storage", id)
	}
	return st.Clone(), nil
}

func (r storageRepo) List(ctx context.Context, o storage.ListOptions) (storage.Page, error) {
	defer r.s.read(ctx)()
	items, next, err := page(r.s.storages, o.Cursor, o.Limit, func(st *storage.Storage) bool {
		return (o.Status == "" || st.Status == o.Status) && (o.Type == "" || st.Type == o.Type) && (o.Name == "" || st.Name == o.Name)
	})
	for i := range items {
		items[i] = items[i].Clone()
	}
	return storage.Page{Items: items, NextCursor: next}, err
}

func (r storageRepo) unique(st *storage.Storage) error {
	for id, o := range r.s.storages {
		if id == st.ID {
			continue
		}
		if o.Name == st.Name {
			return exists("storage", "a storage named %q exists", st.Name)
		}
		if o.Location() == st.Location() {
			e := exists("storage", "storage %q already uses %s", o.Name, st.Location()).(*errkind.Error)
			e.Refs = []errkind.Ref{{Kind: "storage", ID: o.ID.String(), Name: o.Name}}
			return e
		}
	}
	return nil
}

func (r storageRepo) Create(ctx context.Context, st *storage.Storage) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	if _, dup := r.s.storages[st.ID]; dup {
		return exists("storage", "id %s exists", st.ID)
	}
	if err := r.unique(st); err != nil {
		return err
	}
	st.Version = 1
	put(r.s.storages, st.ID, st.Clone(), onUndo)
	return nil
}

func (r storageRepo) Update(ctx context.Context, st *storage.Storage) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	cur, ok := r.s.storages[st.ID]
	if !ok {
		return notFound("storage", st.ID)
	}
	if cur.Version != st.Version {
		return conflict("storage", st.ID)
	}
	if err := r.unique(st); err != nil {
		return err
	}
	st.Version++
	put(r.s.storages, st.ID, st.Clone(), onUndo)
	return nil
}

func (r storageRepo) Delete(ctx context.Context, id uuid.UUID) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	if _, ok := r.s.storages[id]; !ok {
		return notFound("storage", id)
	}
	if deps := r.dependents(id); len(deps) > 0 {
		e := errkind.New(errkind.InUse, "storage", id.String(), "still holds volumes or images")
		e.Refs = deps
		return e
	}
	remove(r.s.storages, id, onUndo)
	return nil
}

func (r storageRepo) Dependents(ctx context.Context, id uuid.UUID) ([]errkind.Ref, error) {
	defer r.s.read(ctx)()
	return r.dependents(id), nil
}

func (r storageRepo) dependents(id uuid.UUID) []errkind.Ref {
	var refs []errkind.Ref
	for _, v := range r.s.volumes {
		if v.StorageID == id {
			refs = append(refs, errkind.Ref{Kind: "volume", ID: v.ID.String(), Name: v.Name})
		}
	}
	for _, img := range r.s.images {
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

type volumeRepo struct{ s *Store }

// view returns a copy of v with its attachments filled.
func (r volumeRepo) view(v *volume.Volume) *volume.Volume {
	c := v.Clone()
	c.Attachments = []volume.Attachment{}
	for _, m := range sortedVMs(r.s.vms) {
		if m.HasVolume(v.ID) {
			c.Attachments = append(c.Attachments, volume.Attachment{VMID: m.ID, VMName: m.Name, Active: active(m.PowerState)})
		}
	}
	return c
}

func active(p vm.PowerState) bool {
	return p == vm.PowerRunning || p == vm.PowerPaused || p == vm.PowerStopping
}

func (r volumeRepo) Get(ctx context.Context, id uuid.UUID) (*volume.Volume, error) {
	defer r.s.read(ctx)()
	v, ok := r.s.volumes[id]
	if !ok {
		return nil, notFound("volume", id)
	}
	return r.view(v), nil
}

func (r volumeRepo) List(ctx context.Context, o volume.ListOptions) (volume.Page, error) {
	defer r.s.read(ctx)()
	attached := r.attachedSet()
	items, next, err := page(r.s.volumes, o.Cursor, o.Limit, func(v *volume.Volume) bool {
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
	for _, m := range r.s.vms {
		for _, d := range m.Disks {
			set[d.VolumeID] = true
		}
	}
	return set
}

func (r volumeRepo) check(v *volume.Volume) error {
	if _, ok := r.s.storages[v.StorageID]; !ok {
		return notFound("storage", v.StorageID)
	}
	for id, o := range r.s.volumes {
		if id != v.ID && o.StorageID == v.StorageID && o.Name == v.Name {
			return exists("volume", "a volume named %q exists on this storage", v.Name)
		}
	}
	return nil
}

func (r volumeRepo) Create(ctx context.Context, v *volume.Volume) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	if _, dup := r.s.volumes[v.ID]; dup {
		return exists("volume", "id %s exists", v.ID)
	}
	if err := r.check(v); err != nil {
		return err
	}
	v.Version = 1
	put(r.s.volumes, v.ID, stripVolume(v), onUndo)
	return nil
}

func stripVolume(v *volume.Volume) *volume.Volume {
	c := v.Clone()
	c.Attachments = nil
	return c
}

func (r volumeRepo) Update(ctx context.Context, v *volume.Volume) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	cur, ok := r.s.volumes[v.ID]
	if !ok {
		return notFound("volume", v.ID)
	}
	if cur.Version != v.Version {
		return conflict("volume", v.ID)
	}
	if cur.StorageID != v.StorageID {
		return errkind.New(errkind.Invalid, "volume", v.ID.String(), "a volume cannot move to another storage")
	}
	if err := r.check(v); err != nil {
		return err
	}
	v.Version++
	put(r.s.volumes, v.ID, stripVolume(v), onUndo)
	return nil
}

func (r volumeRepo) Delete(ctx context.Context, id uuid.UUID) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	if _, ok := r.s.volumes[id]; !ok {
		return notFound("volume", id)
	}
	if r.attachedSet()[id] {
		return errkind.New(errkind.InUse, "volume", id.String(), "attached to a VM")
	}
	remove(r.s.volumes, id, onUndo)
	return nil
}

type imageRepo struct{ s *Store }

func (r imageRepo) view(img *image.Image) *image.Image {
	c := img.Clone()
	c.Attachments = []image.Attachment{}
	for _, m := range sortedVMs(r.s.vms) {
		if m.HasImage(img.ID) {
			c.Attachments = append(c.Attachments, image.Attachment{VMID: m.ID, VMName: m.Name})
		}
	}
	return c
}

func (r imageRepo) Get(ctx context.Context, id uuid.UUID) (*image.Image, error) {
	defer r.s.read(ctx)()
	img, ok := r.s.images[id]
	if !ok {
		return nil, notFound("image", id)
	}
	return r.view(img), nil
}

func (r imageRepo) List(ctx context.Context, o image.ListOptions) (image.Page, error) {
	defer r.s.read(ctx)()
	items, next, err := page(r.s.images, o.Cursor, o.Limit, func(img *image.Image) bool {
		return (o.StorageID == uuid.Nil || img.StorageID == o.StorageID) && (o.Status == "" || img.Status == o.Status) &&
			(o.Name == "" || img.Name == o.Name)
	})
	for i := range items {
		items[i] = r.view(items[i])
	}
	return image.Page{Items: items, NextCursor: next}, err
}

func (r imageRepo) check(img *image.Image) error {
	if _, ok := r.s.storages[img.StorageID]; !ok {
		return notFound("storage", img.StorageID)
	}
	for id, o := range r.s.images {
		if id != img.ID && o.StorageID == img.StorageID && o.Name == img.Name {
			return exists("image", "an image named %q exists on this storage", img.Name)
		}
	}
	return nil
}

func stripImage(img *image.Image) *image.Image {
	c := img.Clone()
	c.Attachments = nil
	return c
}

func (r imageRepo) Create(ctx context.Context, img *image.Image) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	if _, dup := r.s.images[img.ID]; dup {
		return exists("image", "id %s exists", img.ID)
	}
	if err := r.check(img); err != nil {
		return err
	}
	img.Version = 1
	put(r.s.images, img.ID, stripImage(img), onUndo)
	return nil
}

func (r imageRepo) Update(ctx context.Context, img *image.Image) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	cur, ok := r.s.images[img.ID]
	if !ok {
		return notFound("image", img.ID)
	}
	if cur.Version != img.Version {
		return conflict("image", img.ID)
	}
	if cur.StorageID != img.StorageID {
		return errkind.New(errkind.Invalid, "image", img.ID.String(), "an image cannot move to another storage")
	}
	if err := r.check(img); err != nil {
		return err
	}
	img.Version++
	put(r.s.images, img.ID, stripImage(img), onUndo)
	return nil
}

func (r imageRepo) Delete(ctx context.Context, id uuid.UUID) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	if _, ok := r.s.images[id]; !ok {
		return notFound("image", id)
	}
	for _, m := range r.s.vms {
		if m.HasImage(id) {
			return errkind.New(errkind.InUse, "image", id.String(), "used as a cdrom by VM %q", m.Name)
		}
	}
	remove(r.s.images, id, onUndo)
	return nil
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
	v, ok := r.s.vms[id]
	if !ok {
		return nil, notFound("vm", id)
	}
	return v.Clone(), nil
}

func (r vmRepo) List(ctx context.Context, o vm.ListOptions) (vm.Page, error) {
	defer r.s.read(ctx)()
	items, next, err := page(r.s.vms, o.Cursor, o.Limit, func(v *vm.VM) bool {
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
	for id, o := range r.s.vms {
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
		if _, ok := r.s.volumes[d.VolumeID]; !ok {
			return notFound("volume", d.VolumeID)
		}
	}
	for _, c := range v.CDROMs {
		if _, ok := r.s.images[c.ImageID]; !ok {
			return notFound("image", c.ImageID)
		}
	}
	return nil
}

func (r vmRepo) Create(ctx context.Context, v *vm.VM) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	if _, dup := r.s.vms[v.ID]; dup {
		return exists("vm", "id %s exists", v.ID)
	}
	if err := r.check(v); err != nil {
		return err
	}
	v.Version = 1
	put(r.s.vms, v.ID, v.Clone(), onUndo)
	return nil
}

func (r vmRepo) Update(ctx context.Context, v *vm.VM) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	cur, ok := r.s.vms[v.ID]
	if !ok {
		return notFound("vm", v.ID)
	}
	if cur.Version != v.Version {
		return conflict("vm", v.ID)
	}
	if err := r.check(v); err != nil {
		return err
	}
	v.Version++
	put(r.s.vms, v.ID, v.Clone(), onUndo)
	return nil
}

func (r vmRepo) Delete(ctx context.Context, id uuid.UUID) error {
	unlock, onUndo := r.s.write(ctx)
	defer unlock()
	if _, ok := r.s.vms[id]; !ok {
		return notFound("vm", id)
	}
	remove(r.s.vms, id, onUndo)
	return nil
}
